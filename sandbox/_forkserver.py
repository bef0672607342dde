"""The fork server process: prepares the sandbox runtime once, then forks the workers.

Which process runs this: the fork server, a fresh interpreter the host starts with
``subprocess`` (``_forkclient.ForkServerClient``) as ``python -c "...sandbox._forkserver.main()"
<fd>``, with a minimal environment and no inherited descriptors but its control socket.
Right after each ``fork()`` the child runs a few lines of it too, before it hands over to
``_worker.worker_main``, which confines it.

Why that matters: this process is *not* confined (no seccomp, no Landlock), because it has to
import and build everything workers use, and every worker inherits its memory. So it stays
single-threaded (a fork copies only the calling thread: a lock another thread held would stay
held forever in the child), never holds host objects or secrets, and runs no plugin code:
what a worker inherits from it is the sandbox runtime and nothing else. The host, which is
multithreaded and full of secrets, is never forked (see ``_forkclient``).

Start-up (:func:`main`): read the configuration frame, import the language layer,
RestrictedPython and every shim (``stdlib_shims.preload()``: after seccomp no module can be
imported, because imports need ``open``), build the prelude modules, build the seccomp
filter, make all of it immortal where the interpreter has immortal objects (``_immortal``,
CPython 3.12+: workers then stop writing reference counts into shared pages), then
``gc.freeze()`` so forked workers share those pages copy-on-write instead of
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
                    {"op": "kill", "pid": int}   (a worker the host could not take)
                    {"op": "shutdown"}
    server -> host: {"op": "ready", "pid": int} | {"op": "fatal", "message": str}
                    {"op": "forked", "req": int, "pid": int}   + fds [channel, pidfd]
                    {"op": "fork_failed", "req": int, "message": str}
                    {"op": "exited", "pid": int, "code": int|null, "signal": int|null,
                     "cpu_ms": float}
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from . import _immortal
from ._protocol import (
    ChannelClosed,
    FrameReader,
    encode_frame,
    send_frame,
)

__all__ = ["CONTROL_MAX_FRAME_BYTES", "main"]

# The configuration carries the prelude sources, so the host -> server direction allows large
# frames; the host is the trusted side of this channel.
CONTROL_MAX_FRAME_BYTES = 64 * 1024 * 1024

# Modules a test-only raw-exec worker may want: they must be imported before seccomp.
_RAW_EXEC_MODULES = ("ctypes", "ctypes.util", "mmap", "select", "subprocess", "threading")


# The warm-up bundle: plain Python using the constructs plugins use most, run under the
# sandbox's own rules (see _prepare). Three rounds: CPython specialises an instruction on its
# second run and settles its counters over the next ones.
_WARMUP_ROUNDS = 3
_WARMUP_SOURCE = """
import json
import re
import time


class Counter:
    def __init__(self, start=0):
        self.value = start

    def add(self, n=1):
        self.value = self.value + n
        return self.value


def helper(item, *args, key="k", **kwargs):
    return {key: item, "args": list(args), **kwargs}


def run(event, extra=None):
    content = event.get("content") or {}
    title = content.get("title", "")
    counter = Counter()
    out = []
    for i, value in enumerate(event.get("n", [])):
        if value is None:
            continue
        out.append(helper(value, i, key=f"v{i}", title=title))
        counter.add()
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        out.append(str(exc))
    finally:
        counter.add(2)
    words = [w.upper() for w in re.split("[ _]", title) if w]
    pairs = {k: v for k, v in zip(words, range(len(words)))}
    return {"count": counter.value, "out": out, "pairs": pairs, "t": time.time() > 0,
            "s": "%s-%d" % (title, len(out)), "sl": title[1:], "t2": (1, 2)[0]}


RESULT = run({"content": {"id": "w", "title": "warm up"}, "n": [1, None, 2.5]})
"""


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
    # Warm-up compiles and loads, for two reasons. Whatever the language layer imports
    # lazily on first use is imported here, not in a worker where imports are impossible.
    # And the code they run (RestrictedPython's transformer, the guards, the loader) is
    # specialised here: CPython writes its inline caches on the first runs of each code
    # object, and a worker that did that itself would own a copy of every page it wrote
    # (tests/sandbox/test_forkserver.py checks the bundle is still accepted). Its outcome
    # does not matter; a failure here shows up as a clear error at the first real load.
    for _ in range(_WARMUP_ROUNDS):
        try:
            code = _compiler.compile_bundle({"warmup.py": _WARMUP_SOURCE})
            module = _loader.load_bundle(code, "warmup.py", preludes=preludes)
            module.run({"content": {"id": "x", "title": "t"}, "n": [1, 2.5, None]})
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
                elif op == "kill":
                    self.kill(msg.get("pid"))
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
        try:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            # Out of descriptors (or memory) here: this request fails, the server lives on.
            send_frame(self.ctl, {"op": "fork_failed", "req": req, "message": str(exc)}, 4096)
            return
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

    def kill(self, pid: Any) -> None:
        """Kill a worker the host could not take (it was out of descriptors).

        Only our own unreaped children: their pids cannot have been reused, so the signal
        reaches that worker and no other process."""
        if type(pid) is int and pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.report_exit(pid, status, usage)

    def report_exit(self, pid: int, status: int, usage: Any) -> None:
        code = os.waitstatus_to_exitcode(status)
        # The CPU time it used in its life: a SIGKILL at the hard RLIMIT_CPU (a worker
        # that survived SIGXCPU) looks like any other SIGKILL but for this figure.
        report = {
            "op": "exited",
            "pid": pid,
            "code": code if code >= 0 else None,
            "signal": -code if code < 0 else None,
            "cpu_ms": round((usage.ru_utime + usage.ru_stime) * 1000, 3),
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
                _, status, usage = os.wait4(pid, 0)
            except ChildProcessError:
                continue
            # Report it if the host still listens (it does when the host asked us to stop).
            try:
                self.report_exit(pid, status, usage)
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
    # Immortal objects (3.12+): workers stop writing reference counts into the pages they
    # share with this process (see _immortal). Before the holes are filled: the walk's
    # own garbage leaves holes too.
    _immortal.immortalize()
    _FILLER.extend(_fill_allocator_holes())
    gc.freeze()
    send_frame(ctl, {"op": "ready", "pid": os.getpid()}, 4096)
    try:
        _Server(ctl, reader, rt).run()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
