"""The fork server: a small process that prepares the sandbox runtime once and forks workers.

Why a separate process: the host is multithreaded (web server, thread pools), and forking a
multithreaded process copies locks held by other threads in a held state, plus whatever
secrets the host has in memory. The fork server is started with ``subprocess`` as
``python -c "...sandbox._forkserver.main()" <fd>`` (a fresh interpreter, minimal environment, no
inherited descriptors but its control socket), stays single-threaded, and never holds host
objects: everything a worker inherits from it is the sandbox runtime itself.

Start-up (:func:`main`): read the configuration frame, import the language layer,
RestrictedPython and every shim (``stdlib_shims.preload()``: after seccomp no module can be
imported, because imports need ``open``), build the prelude modules, build the seccomp
filter, then ``gc.freeze()`` so forked workers share those pages copy-on-write instead of
touching them all at their first collection. Then it answers ``fork`` requests: for each, a
socketpair; the child confines itself and serves (``_worker.worker_main``); the parent hands
the host its end of the socketpair and a pidfd of the child with ``SCM_RIGHTS``. The pidfd
lets the host SIGKILL exactly that process later with no pid-reuse race. The fork server
reaps its children and reports each exit status, so the host can tell SIGPROF (CPU limit)
from SIGKILL from a segfault.

It exits when the host closes the control socket or asks it to, or on SIGTERM, killing and
reaping every worker first, so nothing it started outlives it (workers also carry
``PR_SET_PDEATHSIG=SIGKILL``).

Control frames (the same framing as ``_protocol``)::

    host -> server: {"op": "config", "preludes": {..}, "expose": {..},
                     "worker_error_encoder": str|null, "worker_error_decoder": str|null,
                     "allow_raw_exec": bool, "max_frame_bytes": int}
                    {"op": "fork", "req": int, "memory_mb": int, "cpu_s": int}
                    {"op": "shutdown"}
    server -> host: {"op": "ready", "pid": int} | {"op": "fatal", "message": str}
                    {"op": "forked", "req": int, "pid": int}   + fds [channel, pidfd]
                    {"op": "fork_failed", "req": int, "message": str}
                    {"op": "exited", "pid": int, "code": int|null, "signal": int|null}
"""

from __future__ import annotations

import array
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ._errors import SandboxNotAvailableError, WorkerCrashed
from ._protocol import (
    HEADER,
    ChannelClosed,
    FrameReader,
    ProtocolError,
    encode_frame,
    send_frame,
)

__all__ = [
    "CONTROL_MAX_FRAME_BYTES",
    "ExitBox",
    "ForkServerClient",
    "ForkedProcess",
    "main",
]

# The configuration carries the prelude sources, so the host -> server direction allows large
# frames; the host is the trusted side of this channel.
CONTROL_MAX_FRAME_BYTES = 64 * 1024 * 1024

# Modules a test-only raw-exec worker may want: they must be imported before seccomp.
_RAW_EXEC_MODULES = ("ctypes", "ctypes.util", "mmap", "select", "subprocess", "threading")


def _resolve(preludes: Any, name: str | None, what: str) -> Callable[..., Any] | None:
    if name is None:
        return None
    module_name, _, fn_name = name.partition(":")
    module = preludes.get(module_name) if module_name and fn_name else None
    fn = getattr(module, fn_name, None) if module is not None else None
    if not callable(fn):
        raise ValueError(f"{what} {name!r} is not a function of a prelude module")
    return fn  # type: ignore[no-any-return]


def _prepare(config: dict[str, Any]) -> Any:
    """Import and build everything workers need; returns a ``WorkerRuntime``."""
    import RestrictedPython  # noqa: F401  (imported now: workers cannot import later)

    import stdlib_shims

    from . import _compiler, _loader, _seccomp
    from ._worker import WorkerRuntime

    preload = getattr(stdlib_shims, "preload", None)
    if callable(preload):
        preload()
    preludes = _loader.build_preludes(config["preludes"], config["expose"])
    encoder = _resolve(preludes, config["worker_error_encoder"], "worker_error_encoder")
    decoder = _resolve(preludes, config["worker_error_decoder"], "worker_error_decoder")
    if config["allow_raw_exec"]:
        for name in _RAW_EXEC_MODULES:
            __import__(name)
    # One compile and load so that whatever the language layer imports lazily on first use
    # is imported here, not in a worker where imports are impossible. Its outcome does not
    # matter; a failure here shows up as a clear error at the first real load.
    try:
        code = _compiler.compile_bundle({"warmup.py": "x = [i for i in range(3)]\n"})
        _loader.load_bundle(code, "warmup.py", preludes=preludes)
    except Exception:
        pass
    return WorkerRuntime(
        preludes=preludes,
        compile_bundle=_compiler.compile_bundle,
        load_bundle=_loader.load_bundle,
        error_encoder=encoder,
        error_decoder=decoder,
        # Generated once here, not by libseccomp in every worker (see CompiledFilter).
        seccomp_filter=_seccomp.compile_filter(_seccomp.build_filter()),
        max_frame_bytes=int(config["max_frame_bytes"]),
        allow_raw_exec=bool(config["allow_raw_exec"]),
    )


def _send_with_fds(ctl: socket.socket, obj: Any, fds: list[int]) -> None:
    frame = encode_frame(obj, CONTROL_MAX_FRAME_BYTES)
    # The descriptors travel with the first byte of the frame; the host's reader queues
    # them and hands them to the frame that says it carries them.
    sent = socket.send_fds(ctl, [frame], fds)
    if sent < len(frame):
        ctl.sendall(frame[sent:])


class _Server:
    """The fork server's main loop (single-threaded by design)."""

    def __init__(self, ctl: socket.socket, reader: FrameReader, rt: Any) -> None:
        self.ctl = ctl
        self.reader = reader
        self.rt = rt
        self.children: set[int] = set()

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        # SIGCHLD only needs to wake select(); reaping happens in the loop, never in a
        # handler, so there is no reentrancy to think about.
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.signal(signal.SIGTERM, _raise_exit)
        try:
            while True:
                if not self.reader.has_buffered_frame():
                    ready, _, _ = select.select([self.ctl.fileno(), wake_r], [], [])
                    if wake_r in ready:
                        while True:
                            try:
                                if not os.read(wake_r, 512):
                                    break
                            except BlockingIOError:
                                break
                        self.reap()
                    if self.ctl.fileno() not in ready:
                        continue
                try:
                    msg = self.reader.read()
                except ChannelClosed:
                    return
                op = msg.get("op") if type(msg) is dict else None
                if op == "fork":
                    self.fork(msg)
                    self.reap()
                elif op == "shutdown":
                    return
        finally:
            self.kill_all()

    def fork(self, msg: dict[str, Any]) -> None:
        req, memory_mb, cpu_s = msg.get("req"), msg.get("memory_mb"), msg.get("cpu_s")
        if type(req) is not int or type(memory_mb) is not int or memory_mb <= 0:
            return
        if type(cpu_s) is not int or cpu_s <= 0:
            return
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            parent_end.close()
            child_end.close()
            send_frame(self.ctl, {"op": "fork_failed", "req": req, "message": str(exc)}, 4096)
            return
        if pid == 0:  # the worker
            try:
                from ._worker import worker_main

                # Forget (without closing) the fork server's descriptors: the worker closes
                # every fd but its channel itself, and these objects must never close a
                # number that is reused later.
                parent_end.detach()
                self.ctl.detach()
                worker_main(child_end, memory_mb, self.rt, me, cpu_s)
            finally:
                os._exit(70)
        self.children.add(pid)
        child_end.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)  # our unreaped child: the pid cannot be reused
            parent_end.close()
            send_frame(self.ctl, {"op": "fork_failed", "req": req, "message": str(exc)}, 4096)
            return
        try:
            _send_with_fds(
                self.ctl, {"op": "forked", "req": req, "pid": pid}, [parent_end.fileno(), pidfd]
            )
        finally:
            parent_end.close()
            os.close(pidfd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.report_exit(pid, status)

    def report_exit(self, pid: int, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        report = {
            "op": "exited",
            "pid": pid,
            "code": code if code >= 0 else None,
            "signal": -code if code < 0 else None,
        }
        send_frame(self.ctl, report, 4096)

    def kill_all(self) -> None:
        """SIGKILL and reap every worker (they are unreaped children: no pid reuse race)."""
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in list(self.children):
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            # Report it if the host still listens (it does when the host asked us to stop).
            try:
                self.report_exit(pid, status)
            except OSError:
                pass
        self.children.clear()


# Objects that occupy the free blocks of the allocator's pools; kept for the server's life.
_FILLER: list[object] = []


def _fill_allocator_holes() -> list[object]:
    """Occupy every free block of pymalloc's pools (and its unused pools) before forking.

    A worker's allocations would otherwise land in those free blocks, scattered over pages
    it shares with this server, and each one costs the worker a private copy of a whole
    4 KiB page. With the holes filled, its allocations go to fresh pools, densely. Measured
    on the development VM: idle USS per worker 5.06 -> 4.45 MiB, for ~3 MiB more in this
    (single, shared) process and no measurable start-up time.

    The free-block counts come from ``sys._debugmallocstats()``, the only place CPython
    3.11 reports them; it writes to the C-level stderr, captured here through a pipe. Best
    effort: if any of that fails, nothing is filled and everything works as before.
    """
    filler: list[object] = []
    for _ in range(3):  # filling allocates the filler's list too: repeat until it settles
        stats = _allocator_free_blocks()
        if stats is None:
            break
        free_blocks, unused_pools = stats
        for size, count in free_blocks.items():
            filler.extend(_block_of(size, i) for i in range(count))
        # An unused pool (16 KiB) is filled by 31 blocks of the 512-byte class.
        filler.extend(bytes(512 - 33) for _ in range(unused_pools * 31))
    return filler


def _block_of(size: int, i: int) -> object:
    """A new object whose pymalloc block is ``size`` bytes (16..512, a multiple of 16)."""
    if size == 16:
        return object()  # refcount + type
    if size == 32:
        return i + 0.5  # a new float (24 bytes) each time
    return bytes(size - 33)  # header 33 bytes; lengths >= 15 are never shared singletons


def _allocator_free_blocks() -> tuple[dict[int, int], int] | None:
    """({block size: free blocks}, unused pools) from CPython's allocator report."""
    debug_stats = getattr(sys, "_debugmallocstats", None)
    if debug_stats is None:
        return None
    try:
        read_end, write_end = os.pipe()
        saved = os.dup(2)
        try:
            os.dup2(write_end, 2)
            debug_stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            text = pipe.read().decode("ascii", "replace")
    except OSError:
        return None
    free: dict[int, int] = {}
    unused = 0
    for line in text.splitlines():
        fields = line.split()
        # "class  size  num pools  blocks in use  avail blocks"
        if len(fields) == 5 and all(f.isdigit() for f in fields):
            size, avail = int(fields[1]), int(fields[4])
            if 16 <= size <= 512 and size % 16 == 0:
                free[size] = avail
        elif "unused pools" in line and fields[0].isdigit():
            unused = int(fields[0])
    return (free, unused) if free else None


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    """Run the fork server on the control socket whose fd number is ``argv[1]``."""
    args = sys.argv if argv is None else argv
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=int(args[1]))
    # Whatever the launching thread had blocked, workers must be able to receive SIGPROF.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    reader = FrameReader(ctl, CONTROL_MAX_FRAME_BYTES)
    try:
        config = reader.read()
        if type(config) is not dict or config.get("op") != "config":
            raise ValueError("the first control frame must be the configuration")
        rt = _prepare(config)
    except BaseException as exc:  # report why, then leave; the host raises a clear error
        message = f"{type(exc).__name__}: {exc}"[:4000]
        try:
            send_frame(ctl, {"op": "fatal", "message": message}, 8192)
        finally:
            os._exit(1)
    gc.collect()
    _FILLER.extend(_fill_allocator_holes())
    gc.freeze()
    send_frame(ctl, {"op": "ready", "pid": os.getpid()}, 4096)
    try:
        _Server(ctl, reader, rt).run()
    finally:
        os._exit(0)



# --- the host side --------------------------------------------------------------------


class ExitBox:
    """Where the fork server's report of one worker's exit lands.

    ``known`` is False when the fork server went away before reporting (the worker died
    with it: workers carry PDEATHSIG), so the cause of death cannot be told.
    """

    __slots__ = ("_event", "code", "known", "signal")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.code: int | None = None
        self.signal: int | None = None
        self.known = False

    def set(self, code: int | None, signum: int | None, *, known: bool = True) -> None:
        if not self._event.is_set():
            self.code, self.signal, self.known = code, signum, known
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
    """Frame reader for the control socket, collecting SCM_RIGHTS descriptors in order."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._fds: deque[int] = deque()

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
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
                    self._fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise ProtocolError("descriptors were truncated on the control socket")
            if not data:
                raise ChannelClosed("the fork server closed the control socket")
            self._buf += data

    def take_fds(self, count: int) -> list[int]:
        if len(self._fds) < count:
            raise ProtocolError("a control frame announced descriptors that did not arrive")
        return [self._fds.popleft() for _ in range(count)]

    def close_fds(self) -> None:
        while self._fds:
            os.close(self._fds.popleft())


_CONTROL_REPLY_MAX = 64 * 1024
_FD_SIZE = array.array("i").itemsize
_BOOT = "import sys; from sandbox._forkserver import main; main(sys.argv)"


class _ForkWait:
    __slots__ = ("error", "event", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: ForkedProcess | None = None
        self.error: str | None = None


class ForkServerClient:
    """Starts the fork server and talks to it (thread-safe).

    A daemon thread reads the control socket: it matches ``forked`` replies to the threads
    waiting in :meth:`fork` and files ``exited`` reports into each worker's :class:`ExitBox`.
    """

    def __init__(self, config: dict[str, Any], *, start_timeout: float = 60.0) -> None:
        host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
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
            # imports this module, and runpy would then execute a second copy of it. The
            # working directory is "/" so nothing is imported from the host's cwd.
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
        self._thread = threading.Thread(
            target=self._read_loop, name="sandbox-forkserver-reader", daemon=True
        )
        self._thread.start()

    # -- public ---------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return not self._lost and not self._closing and self._proc.poll() is None

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
                        box.set(
                            code if type(code) is int else None,
                            signum if type(signum) is int else None,
                        )
        except (OSError, ValueError, ProtocolError):
            pass
        finally:
            self._on_lost()

    def _on_forked(self, msg: dict[str, Any], fds: list[int]) -> None:
        # The exit box is registered here, in the reader thread, before the next frame is
        # read. The fork server can only report this pid's exit after this frame, and the
        # pid cannot be reused before that report (the fork server reaps it first), so the
        # report always finds the right box.
        pid = msg.get("pid")
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


if __name__ == "__main__":
    main()
