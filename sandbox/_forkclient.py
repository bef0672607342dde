"""The host side of the fork server: starts it, asks it for workers, hears their exits.

Which process runs this: the host, the multithreaded application process (web server, thread
pools) that embeds the sandbox. The fork server itself (``_forkserver``) is another process.

Why that matters: the host must never ``fork()`` itself to make a worker. A fork copies only
the calling thread, so locks held by other threads stay held in the child, and the child
would start with everything the host has in memory (credentials, keys, user data). Instead
:class:`ForkServerClient` starts the fork server as a fresh interpreter with a minimal
environment, once, and asks it over a control socket for each new worker. Many host threads
may ask at once, so the client is thread-safe: requests carry an id, and one daemon thread
reads every reply, hands ``forked`` replies (with the worker's channel and pidfd, passed as
``SCM_RIGHTS``) to the thread that asked, and files ``exited`` reports into each worker's
:class:`ExitBox`. Descriptors are received close-on-exec, so they never leak into other
processes the host starts.

A host that is out of descriptors (``RLIMIT_NOFILE``) cannot take a new worker's channel and
pidfd: the kernel installs what it can, drops the rest and flags the read ``MSG_CTRUNC``.
That is the host's trouble, not the fork server's and not the plugin's: the descriptors
that did arrive are closed, the fork server is asked to kill the orphaned worker (which
also dies on its own once its channel is gone), and that one request fails with
``SandboxUnavailableError`` saying so. The control socket stays in step (each ``forked``
frame takes the descriptors of one message, complete or not), so the next request works.

The fork server runs no plugin code, but its replies are still size-capped and shape-checked:
a broken fork server must not take the host down with it. The control frames are listed in
``_forkserver``.
"""

from __future__ import annotations

import array
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ._errors import SandboxNotAvailableError, SandboxUnavailableError, WorkerCrashed
from ._forkserver import CONTROL_MAX_FRAME_BYTES
from ._protocol import HEADER, ChannelClosed, ProtocolError, send_frame
from ._quickio import FdProbe

__all__ = ["HOST_FDS_MESSAGE", "ExitBox", "ForkServerClient", "ForkedProcess"]


class ExitBox:
    """Where the fork server's report of one worker's exit lands.

    ``known`` is False when the fork server went away before reporting (the worker died
    with it: workers carry PDEATHSIG), so the cause of death cannot be told.
    """

    __slots__ = ("_event", "code", "cpu_ms", "known", "reported", "signal")

    def __init__(self) -> None:
        self._event = threading.Event()
        # The event's state as a plain attribute, for the checks every call makes (a
        # worker's usable()): reading it costs no method calls. Set just before the event.
        self.reported = False
        self.code: int | None = None
        self.signal: int | None = None
        self.cpu_ms: float | None = None  # its lifetime CPU time, as the kernel counted it
        self.known = False

    def set(
        self,
        code: int | None,
        signum: int | None,
        *,
        known: bool = True,
        cpu_ms: float | None = None,
    ) -> None:
        if not self._event.is_set():
            self.code, self.signal, self.known, self.cpu_ms = code, signum, known, cpu_ms
            self.reported = True
            self._event.set()

    def wait(self, timeout: float) -> bool:
        """True once the exit was reported (or became unknowable) within ``timeout``."""
        return self._event.wait(timeout)

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass
class ForkedProcess:
    """A fresh worker: its pid, the host's end of its channel, a pidfd and its exit box."""

    pid: int
    channel: socket.socket
    pidfd: int
    exit: ExitBox


class _ControlReader:
    """Frame reader for the control socket, collecting SCM_RIGHTS descriptors in order.

    Descriptors are kept per message: a ``recvmsg`` on a stream socket stops right after
    the data that carried descriptors, so one read takes at most one sender's message's
    descriptors, all of them or (``MSG_CTRUNC``) those the host could still install.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        # (descriptors, complete) per message that carried some
        self._fds: deque[tuple[list[int], bool]] = deque()

    def read(self, deadline: float | None = None) -> Any:
        while True:
            if len(self._buf) >= HEADER.size:
                (length,) = HEADER.unpack_from(self._buf)
                if length > _CONTROL_REPLY_MAX:
                    raise ProtocolError(f"control frame of {length} bytes")
                if len(self._buf) >= HEADER.size + length:
                    payload = bytes(self._buf[HEADER.size : HEADER.size + length])
                    del self._buf[: HEADER.size + length]
                    return orjson.loads(payload)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the fork server did not answer in time")
                self._sock.settimeout(remaining)
            else:
                self._sock.settimeout(None)
            # MSG_CMSG_CLOEXEC: worker channels must never leak into processes the host
            # spawns later. (socket.recv_fds would drop the flag: recvmsg directly.)
            data, ancdata, flags, _ = self._sock.recvmsg(
                65536, socket.CMSG_LEN(8 * _FD_SIZE), socket.MSG_CMSG_CLOEXEC
            )
            got: list[int] = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
                    got.extend(fds)
            truncated = bool(flags & socket.MSG_CTRUNC)
            if got or truncated:
                # Truncated: the host is out of descriptors (EMFILE/ENFILE while the kernel
                # installed them); those that did not fit were dropped by the kernel. The
                # frame they belong to is told so (take_fds), nothing else is affected.
                self._fds.append((got, not truncated))
            if not data:
                raise ChannelClosed("the fork server closed the control socket")
            self._buf += data

    def take_fds(self, count: int) -> list[int] | None:
        """The ``count`` descriptors of the next message; None (and whatever part of them
        arrived closed) when the host could not take them all."""
        if not self._fds:
            raise ProtocolError("a control frame announced descriptors that did not arrive")
        fds, complete = self._fds.popleft()
        if complete and len(fds) == count:
            return fds
        for fd in fds:
            os.close(fd)
        if complete:
            raise ProtocolError(f"a control frame carried {len(fds)} descriptors, not {count}")
        return None

    def close_fds(self) -> None:
        while self._fds:
            for fd in self._fds.popleft()[0]:
                os.close(fd)


_CONTROL_REPLY_MAX = 64 * 1024
_FD_SIZE = array.array("i").itemsize
_BOOT = "import sys; from sandbox._forkserver import main; main(sys.argv)"


class _ForkWait:
    __slots__ = ("error", "event", "host_fds", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: ForkedProcess | None = None
        self.error: str | None = None
        self.host_fds = False  # the host could not take the worker's descriptors


def _nofile_limit() -> str:
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return "RLIMIT_NOFILE"
    return f"RLIMIT_NOFILE {soft}"


def _start_refused(exc: OSError) -> SandboxUnavailableError:
    return SandboxUnavailableError(
        f"the sandbox fork server cannot be started: the host process ran out of a resource "
        f"({exc}; {_nofile_limit()}); this request failed, the next one tries again. Raise "
        "the host's open-file and process limits or find what holds them"
    )


HOST_FDS_MESSAGE = (
    "the host process is out of file descriptors ({limit}), so it could not take a new "
    "sandbox worker's channel; this request failed, the next one tries again. Raise the "
    "host's open-file limit (ulimit -n) or find what holds so many descriptors open"
)


class ForkServerClient:
    """Starts the fork server and talks to it (thread-safe).

    A daemon thread reads the control socket: it matches ``forked`` replies to the threads
    waiting in :meth:`fork` and files ``exited`` reports into each worker's :class:`ExitBox`.
    """

    def __init__(self, config: dict[str, Any], *, start_timeout: float = 60.0) -> None:
        try:
            host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            # Out of descriptors or memory in the host: its trouble, not the sandbox's.
            raise _start_refused(exc) from None
        package_parent = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(dict.fromkeys([package_parent, *[p for p in sys.path if p]]))
        # A minimal environment: the fork server (and so every worker) never sees the
        # host's variables, which often carry secrets.
        env = {"PYTHONPATH": path, "PATH": os.defpath}
        self._sock = host_end
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _ForkWait] = {}
        self._exits: dict[int, ExitBox] = {}
        self._next_req = 0
        self._lost = False
        self._closing = False
        try:
            # `-c` rather than `-m sandbox._forkserver`: importing the package already
            # imports that module (this one takes its frame cap from there), and runpy
            # would then execute a second copy of it. The working directory is "/" so
            # nothing is imported from the host's cwd.
            self._proc = subprocess.Popen(
                [sys.executable, "-s", "-c", _BOOT, str(server_end.fileno())],
                pass_fds=[server_end.fileno()],
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            host_end.close()
            raise _start_refused(exc) from None
        finally:
            server_end.close()
        self._reader = _ControlReader(host_end)
        try:
            send_frame(host_end, config, CONTROL_MAX_FRAME_BYTES)
            reply = self._reader.read(time.monotonic() + start_timeout)
        except (OSError, ProtocolError, ValueError) as exc:
            self._abort()
            raise SandboxNotAvailableError(
                f"the sandbox fork server failed to start: {type(exc).__name__}: {exc}"
            ) from None
        if type(reply) is not dict or reply.get("op") != "ready":
            self._abort()
            why = reply.get("message") if type(reply) is dict else None
            raise SandboxNotAvailableError(
                f"the sandbox fork server failed to start: {why or 'unexpected reply'}"
            )
        self.pid = self._proc.pid
        # A pidfd of the server, for is_alive(): it turns readable when the server exits,
        # and probing it keeps the GIL (see FdProbe); Popen.poll() is the fallback.
        self._pidfd: int | None = None
        self._exited: FdProbe | None = None
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
            self._exited = FdProbe(self._pidfd)
        except (AttributeError, OSError):
            pass
        self._thread = threading.Thread(
            target=self._read_loop, name="sandbox-forkserver-reader", daemon=True
        )
        self._thread.start()

    # -- public ---------------------------------------------------------------------------

    def is_alive(self) -> bool:
        if self._lost or self._closing:
            return False
        probe = self._exited
        if probe is None:  # no pidfd here: ask Popen (waitpid)
            return self._proc.poll() is None
        if not probe.ready():
            return True
        # Exited. Reap it now if no other thread is doing so (close() reaps it otherwise);
        # the answer does not wait on Popen's lock.
        self._proc.poll()
        return False

    def fork(self, memory_mb: int, cpu_s: int, timeout: float = 10.0) -> ForkedProcess:
        """Ask for a new confined worker whose memory budget is ``memory_mb`` and whose
        lifetime CPU budget (``RLIMIT_CPU``) is ``cpu_s`` seconds."""
        wait = _ForkWait()
        with self._lock:
            if self._lost or self._closing:
                raise WorkerCrashed("the sandbox fork server is not running")
            self._next_req += 1
            req = self._next_req
            self._pending[req] = wait
        try:
            with self._send_lock:
                send_frame(
                    self._sock,
                    {"op": "fork", "req": req, "memory_mb": memory_mb, "cpu_s": cpu_s},
                    4096,
                )
        except OSError:
            with self._lock:
                self._pending.pop(req, None)
            raise WorkerCrashed("the sandbox fork server is not running") from None
        if not wait.event.wait(timeout):
            with self._lock:
                self._pending.pop(req, None)
            if not wait.event.is_set():
                raise WorkerCrashed(f"the sandbox fork server did not fork within {timeout:g}s")
        if wait.result is None:
            if wait.host_fds:
                raise SandboxUnavailableError(str(wait.error))
            raise WorkerCrashed(f"the sandbox fork server could not fork: {wait.error}")
        return wait.result

    def close(self, timeout: float = 2.0) -> None:
        """Stop the fork server (it kills and reaps its workers); no zombie is left."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            with self._send_lock:
                send_frame(self._sock, {"op": "shutdown"}, 4096)
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._sock.close()
        self._thread.join(timeout)
        if self._pidfd is not None:
            self._exited = None  # is_alive() saw _closing already; nothing probes it now
            os.close(self._pidfd)
            self._pidfd = None

    # -- the reader thread --------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while True:
                msg = self._reader.read()
                if type(msg) is not dict:
                    raise ProtocolError("control frame is not an object")
                op = msg.get("op")
                if op == "forked":
                    self._on_forked(msg, self._reader.take_fds(2))
                elif op == "fork_failed":
                    with self._lock:
                        wait = self._pending.pop(msg.get("req"), None)  # type: ignore[arg-type]
                    if wait is not None:
                        wait.error = str(msg.get("message"))
                        wait.event.set()
                elif op == "exited":
                    with self._lock:
                        box = self._exits.pop(msg.get("pid"), None)  # type: ignore[arg-type]
                    if box is not None:
                        code, signum = msg.get("code"), msg.get("signal")
                        cpu = msg.get("cpu_ms")
                        box.set(
                            code if type(code) is int else None,
                            signum if type(signum) is int else None,
                            cpu_ms=float(cpu)
                            if isinstance(cpu, (int, float)) and type(cpu) is not bool
                            else None,
                        )
        except (OSError, ValueError, ProtocolError):
            pass
        finally:
            self._on_lost()

    def _on_forked(self, msg: dict[str, Any], fds: list[int] | None) -> None:
        # The exit box is registered here, in the reader thread, before the next frame is
        # read. The fork server can only report this pid's exit after this frame, and the
        # pid cannot be reused before that report (the fork server reaps it first), so the
        # report always finds the right box.
        pid = msg.get("pid")
        if fds is None:
            self._on_fds_lost(msg.get("req"), pid)
            return
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=fds[0])
        box = ExitBox()
        with self._lock:
            wait = self._pending.pop(msg.get("req"), None)  # type: ignore[arg-type]
            if type(pid) is int:
                self._exits[pid] = box
        if wait is None or type(pid) is not int:
            # Nobody waits any more (the request timed out): this worker must not live,
            # and the pidfd makes sure the signal reaches this process and no other.
            _pidfd_kill(fds[1])
            channel.close()
            os.close(fds[1])
            return
        wait.result = ForkedProcess(pid, channel, fds[1], box)
        wait.event.set()

    def _on_fds_lost(self, req: Any, pid: Any) -> None:
        """The host could not take a new worker's descriptors (it is out of them): the
        worker is orphaned, that one request fails, nothing else is affected."""
        # Without its pidfd the host must not signal the pid itself (it could be reused);
        # the fork server can: the worker is its unreaped child. The worker dies anyway
        # once it sees its channel closed (the kernel dropped what the host did not take).
        if type(pid) is int:
            try:
                with self._send_lock:
                    send_frame(self._sock, {"op": "kill", "pid": pid}, 4096)
            except OSError:
                pass  # the fork server is gone: the worker died with it
        with self._lock:
            wait = self._pending.pop(req, None)
        if wait is not None:
            wait.error = HOST_FDS_MESSAGE.format(limit=_nofile_limit())
            wait.host_fds = True
            wait.event.set()

    def _on_lost(self) -> None:
        # The fork server is gone, and its workers with it (PDEATHSIG): nobody will report
        # their exits, so every waiter is released now with "unknown".
        with self._lock:
            self._lost = True
            pending, self._pending = self._pending, {}
            exits, self._exits = self._exits, {}
        for wait in pending.values():
            wait.error = "the sandbox fork server exited"
            wait.event.set()
        for box in exits.values():
            box.set(None, None, known=False)
        self._reader.close_fds()

    def _abort(self) -> None:
        self._lost = True
        self._proc.kill()
        self._proc.wait()
        self._sock.close()


def _pidfd_kill(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
