"""The host side of the sandbox: the supervisor, worker pools and the four limits.

:class:`Supervisor` owns one fork server (``_forkserver``) and one :class:`WorkerPool` per
loaded bundle. A pool starts one warm worker at load time and grows lazily to ``pool_size``
workers when several host threads call at once; a call runs entirely in the calling thread
(including the host's answers to the worker's ``host_call`` frames).

Everything a worker sends is hostile (``_protocol.parse_worker_frame`` validates exact
shapes; anything else gets the worker killed). The limits:

- wall time: a host-side deadline, ``min(limits.wall_ms, timeout_ms)``, covering the time
  the worker runs *and* the time the host spends answering its host calls. On expiry the
  worker is SIGKILLed through its pidfd and the call waits until the fork server reports it
  dead, so nothing scheduled by the call can land after the caller got
  ``WallTimeExceeded`` (EmDash's runner only stopped waiting; the plugin kept going).
- CPU: ``ITIMER_PROF`` armed per call in the worker, SIGPROF at its default action; the
  host sees the death by SIGPROF and raises ``CpuLimitExceeded``.
- memory: ``RLIMIT_AS``/``RLIMIT_DATA`` = baseline + ``memory_mb`` in the worker;
  ``MemoryError`` comes back as ``MemoryLimitExceeded`` and the worker is replaced. A worker
  whose peak RSS grew by more than ``RSS_RECYCLE_FRACTION`` of its budget is replaced after
  the call too: a plugin that caught MemoryError must not keep a bloated, fragmented worker.
- subrequests are counted by the host application in ``on_host_call`` (it knows which
  calls count).
- lifetime CPU backstop: ``RLIMIT_CPU`` = :meth:`SandboxLimits.lifetime_cpu_s` in every
  worker (SIGXCPU at that soft limit). ``ITIMER_PROF`` is armed by the worker itself, so
  native code that broke out of the language layer can disarm it; the rlimit it cannot
  touch. An honest worker never reaches it: the host reads the worker's real CPU time
  (``/proc/<pid>/stat``) every ``CPU_CHECK_EVERY`` calls and replaces it once half the
  budget is used. A worker that dies by SIGXCPU anyway broke its per-call limit: the call
  gets ``CpuLimitExceeded`` and the death counts as a crash (back-off, then refusal).

Crash bookkeeping, per pool: a worker that dies unexpectedly (not by an enforced limit)
counts as a crash. After crash *n* the pool starts no new worker for ``1, 2, 4 ... 30`` s;
more than 5 crashes within 60 s and the pool refuses calls with ``SandboxUnavailableError``
until the window has passed (EmDash logged "will run unsandboxed" here and then failed; we
fail closed and say so). ``epoch`` counts worker replacements.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import (
    CompileError,
    CpuLimitExceeded,
    MemoryLimitExceeded,
    RemoteError,
    SandboxError,
    SandboxNotAvailableError,
    SandboxUnavailableError,
    SandboxViolation,
    WallTimeExceeded,
    WorkerCrashed,
)
from ._forkserver import ForkedProcess, ForkServerClient
from ._protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    ChannelClosed,
    ErrorFrame,
    FrameReader,
    FrameTooLarge,
    HostCallFrame,
    LoadedFrame,
    ProtocolError,
    ReadyFrame,
    ResultFrame,
    WorkerFrame,
    encode_frame,
    parse_worker_frame,
)
from ._quickio import AVAILABLE as QUICK_IO
from ._quickio import QuickIO
from ._worker import EXIT_CONFINEMENT, EXIT_MEMORY, EXIT_PROTOCOL

__all__ = [
    "CPU_CHECK_EVERY",
    "CPU_RETIRE_FRACTION",
    "MIN_WORKER_CPU_S",
    "RSS_RECYCLE_FRACTION",
    "WORKER_CPU_CALLS",
    "CallResult",
    "SandboxLimits",
    "Supervisor",
    "WorkerPool",
]

# A worker whose peak RSS grew by more than this fraction of memory_mb is replaced after the
# call. RLIMIT_AS bounds *virtual* size, and RSS growth stays below it, so waiting for RSS to
# reach the whole budget would never trigger; half of it means "this call nearly filled the
# worker" (typically: it ran into MemoryError and caught it).
RSS_RECYCLE_FRACTION = 0.5

# The lifetime CPU backstop of a worker (RLIMIT_CPU), unless SandboxLimits.worker_cpu_s sets
# it: its load plus WORKER_CPU_CALLS calls that each use their whole cpu_ms, and at least
# MIN_WORKER_CPU_S (a worker replaced every few seconds would spend its life loading). With
# the default limits: 10 s + 1000 x 50 ms = 60 s.
WORKER_CPU_CALLS = 1000
MIN_WORKER_CPU_S = 60
# The host replaces a worker once its real CPU time passes this fraction of the backstop, so
# an honest worker always has room for its next call. Checked every CPU_CHECK_EVERY calls
# (a /proc read costs ~8 us), and sooner after a call that reported much CPU.
CPU_RETIRE_FRACTION = 0.5
CPU_CHECK_EVERY = 64
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

_SPAWN_TIMEOUT_S = 10.0  # fork + confinement + "ready"
_DEATH_REPORT_TIMEOUT_S = 5.0  # how long to wait for the fork server's exit report
_CALL_OPS = frozenset({"host_call", "result", "error"})
_LOAD_OPS = frozenset({"loaded", "error"})
_READY_OPS = frozenset({"ready"})

OnHostCall = Callable[[str, dict[str, Any]], Any]


class _InFlight(list[None]):
    """The calls waiting on workers in this process, one entry each (are others calling?).

    A list because ``append`` and ``pop`` are atomic under the GIL: no lock to take twice
    per call. Two calls entering at once may both see two entries, which only means both
    use the GIL-keeping channel calls.
    """

    __slots__ = ()


@dataclass(frozen=True)
class SandboxLimits:
    """Per-invocation limits of sandboxed code.

    ``cpu_ms`` CPU time per call, ``memory_mb`` memory on top of the worker's baseline,
    ``wall_ms`` wall-clock time per call (including host calls), ``load_cpu_ms`` CPU time
    for compiling and loading the bundle (and ``init``) in each new worker.
    ``worker_cpu_s`` the lifetime CPU backstop of one worker in seconds (None: derived
    from the others, see :meth:`lifetime_cpu_s`).
    """

    cpu_ms: int = 50
    memory_mb: int = 128
    wall_ms: int = 30_000
    load_cpu_ms: int = 10_000
    worker_cpu_s: int | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_ms", "memory_mb", "wall_ms", "load_cpu_ms"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise SandboxError(f"SandboxLimits.{name} must be a positive int, got {value!r}")
        value = self.worker_cpu_s
        if value is not None and (type(value) is not int or value <= 0):
            raise SandboxError(
                f"SandboxLimits.worker_cpu_s must be a positive int or None, got {value!r}"
            )

    def lifetime_cpu_s(self) -> int:
        """The ``RLIMIT_CPU`` of each worker: ``worker_cpu_s``, or the load plus
        :data:`WORKER_CPU_CALLS` full calls (at least :data:`MIN_WORKER_CPU_S`)."""
        if self.worker_cpu_s is not None:
            return self.worker_cpu_s
        total_ms = self.load_cpu_ms + WORKER_CPU_CALLS * self.cpu_ms
        return max(MIN_WORKER_CPU_S, -(-total_ms // 1000))


class CallResult(NamedTuple):
    """What a call returned, and what it cost (as the worker reported it)."""

    value: Any
    cpu_ms: float
    rss_kb: int


def _default_host_error(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc)}


class _CrashTracker:
    """Exponential backoff and the give-up window (EmDash's scheduleRestart, per pool)."""

    def __init__(self, limit: int, window_s: float, base_s: float, max_s: float) -> None:
        self.limit, self.window_s, self.base_s, self.max_s = limit, window_s, base_s, max_s
        self.count = 0
        self.window_start: float | None = None
        self.last = 0.0

    def record(self, now: float) -> None:
        if self.window_start is None or now - self.window_start > self.window_s:
            self.window_start, self.count = now, 0
        self.count += 1
        self.last = now

    def blocked(self, now: float, key: str) -> str | None:
        """Why no new worker may start now, or None."""
        if self.window_start is None:
            return None
        if now - self.window_start > self.window_s:
            self.window_start, self.count = None, 0
            return None
        if self.count > self.limit:
            wait = self.window_start + self.window_s - now
            return (
                f"the sandbox worker for {key} crashed {self.count} times within "
                f"{self.window_s:g} seconds; calls fail for another {wait:.0f}s. Fix the "
                "cause (see the earlier errors) or restart the host to retry sooner."
            )
        delay = min(self.base_s * 2 ** (self.count - 1), self.max_s)
        if now < self.last + delay:
            return (
                f"the sandbox worker for {key} crashed; restarting in "
                f"{(self.last + delay - now) * 1000:.0f}ms (attempt {self.count}/{self.limit})"
            )
        return None


class _Worker:
    """The host's handle on one worker process."""

    def __init__(
        self,
        proc: ForkedProcess,
        max_frame_bytes: int,
        memory_mb: int,
        server_epoch: int,
        cpu_s: int,
    ) -> None:
        self.pid = proc.pid
        self.server_epoch = server_epoch  # which fork server made it
        self.sock = proc.channel
        self.pidfd = proc.pidfd
        self.exit = proc.exit
        # Non-blocking for good: a frame that is already there costs one recv/send and no
        # poll or timeout bookkeeping; waits happen in poll() against the call's deadline.
        # `quick` does the calls that cannot block without releasing the GIL (_quickio).
        self.quick = QuickIO(proc.channel) if QUICK_IO else None
        self.reader = FrameReader(
            proc.channel, max_frame_bytes, nonblocking=True, quick=self.quick
        )
        self.max_frame_bytes = max_frame_bytes
        self.memory_mb = memory_mb
        self.cpu_s = cpu_s  # its RLIMIT_CPU
        self.calls = 0  # calls since its CPU time was last read
        self.reported_cpu_ms = 0.0  # the CPU time all its calls reported
        self.reported_at_check_ms = 0.0  # ... when its CPU time was last read
        self.lock = threading.Lock()
        self.killed = False  # the host killed it (deadline, recycling, close)
        self.disposed = False
        self.baseline_rss_kb = 0
        self.confinement: dict[str, str] = {}
        self.init_result: Any = None

    def usable(self) -> bool:
        return not (self.killed or self.disposed or self.exit.is_set())

    def has_stray_input(self) -> bool:
        """Anything readable while idle: EOF (it died) or bytes nobody asked for.

        An idle worker must send nothing; a frame sent ahead of time could otherwise be
        read as the answer to the next call.
        """
        if self.reader.has_buffered_bytes():
            return True
        return self.quick.readable() if self.quick is not None else self.reader.readable()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used, from ``/proc/<pid>/stat``; None
        when it cannot be read or the process is gone (its pid might name another)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                # fields after the command (which may contain anything, even ')'):
                # [0] is field 3 (state); utime and stime are fields 14 and 15
                fields = stat.read().rsplit(b")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None
        # Alive after the read (its pidfd not readable): the pid was still this worker's.
        if self.disposed or self.wait_exited(0):
            return None
        return ticks / _CLOCK_TICKS

    def wait_exited(self, timeout: float) -> bool:
        """True once the process has exited (its pidfd turns readable), within ``timeout``."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def send(self, frame: bytes, deadline: float, quick: bool = False) -> None:
        """Send a frame; TimeoutError past ``deadline`` (a worker that stops reading).

        MSG_NOSIGNAL: EPIPE (an OSError), never SIGPIPE, if the worker died. The socket is
        non-blocking: a frame that fits in the socket buffer (nearly all) is one send().
        ``quick``: without releasing the GIL (other host threads are calling workers too).
        """
        if time.monotonic() >= deadline:
            raise TimeoutError
        if quick and self.quick is not None:
            sent = self.quick.send(frame)
        else:
            try:
                sent = self.sock.send(frame, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                sent = 0
        if sent == len(frame):
            return
        rest = memoryview(frame)[sent:]
        poller = select.poll()  # not select(): fds above 1023 are common in busy hosts
        poller.register(self.sock, select.POLLOUT)
        while rest:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            poller.poll(int(remaining * 1000) + 1)
            try:
                rest = rest[self.sock.send(rest, socket.MSG_NOSIGNAL) :]
            except BlockingIOError:
                continue

    def kill(self) -> None:
        """SIGKILL through the pidfd: it names this process, never a recycled pid.

        Under the lock with :meth:`dispose`: closing ``pidfd`` in one thread while another
        signals through it could hit a reused descriptor number, i.e. another process.
        """
        with self.lock:
            self.killed = True
            if not self.disposed:
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_gone(self, timeout: float) -> None:
        """Wait until the process has exited and the fork server has reaped it."""
        if not self.disposed:
            self.wait_exited(timeout)
        self.exit.wait(timeout)

    def dispose(self) -> None:
        with self.lock:
            if not self.disposed:
                self.disposed = True
                self.sock.close()
                os.close(self.pidfd)


class WorkerPool:
    """The workers running one loaded bundle; get one from :meth:`Supervisor.load`.

    Thread-safe: each concurrent call checks out its own worker (the pool grows lazily up to
    ``pool_size``; further callers wait for a free worker within their own deadline).
    """

    def __init__(
        self,
        supervisor: Supervisor,
        key: str,
        files: dict[str, str],
        entry: str,
        limits: SandboxLimits,
        pool_size: int,
        init: tuple[str, list[Any]] | None,
    ) -> None:
        self._sup = supervisor
        self.key = key
        self.limits = limits
        self.pool_size = pool_size
        self._files = files
        self._entry = entry
        self._init = init
        # `with self._lock` (a C-level context manager) guards the pool's state; the
        # condition shares that lock, and notify_all runs only when someone waits in it.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed_reason: str | None = None
        self._epoch = 0
        self._crashes = supervisor._new_crash_tracker()
        self._ids = itertools.count(1)
        self._spec: tuple[Any, ...] = ()
        self.init_result: Any = None
        """What ``init`` returned in the first worker (None without ``init``)."""
        self.confinement: dict[str, str] = {}
        """What the first worker's best-effort confinement steps achieved."""

    # -- public -------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Bumps every time a worker of this pool is replaced (killed, crashed, recycled)."""
        return self._epoch

    def call(
        self,
        fn: str,
        args: list[Any],
        *,
        on_host_call: OnHostCall,
        limits: SandboxLimits | None = None,
        timeout_ms: int | None = None,
    ) -> CallResult:
        """Run prelude ``fn`` ("module:function") as ``fn(entry_module, host_call, *args)``.

        ``on_host_call(method, params)`` answers the worker's host calls, in this thread.
        ``limits`` overrides the load limits for this call (CPU and wall time; the memory
        rlimit was fixed when the worker started, ``memory_mb`` here only tightens the
        post-call RSS check). The deadline is ``min(limits.wall_ms, timeout_ms)``.
        """
        if type(fn) is not str or fn.count(":") != 1:
            raise SandboxError(f"fn must look like 'module:function', got {fn!r}")
        if type(args) is not list:
            raise SandboxError("args must be a list")
        return self._invoke({"op": "call", "fn": fn, "args": args}, on_host_call, limits, timeout_ms)

    def raw_exec_for_tests(
        self,
        source: str,
        *,
        on_host_call: OnHostCall | None = None,
        limits: SandboxLimits | None = None,
        timeout_ms: int | None = None,
    ) -> CallResult:
        """Test-only: exec plain Python (no language layer) in a confined worker.

        The code sees ``host_call`` and returns its ``result`` variable. Only available when
        the supervisor was created with ``allow_raw_exec_for_tests=True``: it exists to prove
        that the process layer holds on its own, as if the language layer were broken.
        """
        if not self._sup.allow_raw_exec_for_tests:
            raise SandboxError(
                "raw_exec_for_tests needs Supervisor(allow_raw_exec_for_tests=True)"
            )
        return self._invoke({"op": "raw_exec", "source": source}, on_host_call, limits, timeout_ms)

    def is_healthy(self) -> bool:
        """Open, the supervisor healthy, and not backing off after crashes."""
        with self._lock:
            if self._closed_reason is not None or not self._sup.is_healthy():
                return False
            has_worker = any(w.usable() for w in self._idle) or bool(self._busy)
            return has_worker or self._crashes.blocked(time.monotonic(), self.key) is None

    def worker_pids(self) -> list[int]:
        """Pids of the pool's live workers (diagnostics and tests)."""
        with self._lock:
            return sorted(w.pid for w in [*self._idle, *self._busy] if w.usable())

    def close(self) -> None:
        """Kill this pool's workers; later calls raise ``SandboxUnavailableError``."""
        self._close(f"the sandbox for {self.key} was closed; load the code again for a new handle")

    # -- calls --------------------------------------------------------------------------

    def _invoke(
        self,
        fields: dict[str, Any],
        on_host_call: OnHostCall | None,
        limits: SandboxLimits | None,
        timeout_ms: int | None,
    ) -> CallResult:
        lim = self.limits if limits is None else limits
        if not isinstance(lim, SandboxLimits):
            raise SandboxError("limits must be a SandboxLimits")
        budget_ms, kind = lim.wall_ms, "wall"
        if timeout_ms is not None:
            if type(timeout_ms) is not int or timeout_ms <= 0:
                raise SandboxError(f"timeout_ms must be a positive int, got {timeout_ms!r}")
            if timeout_ms < lim.wall_ms:
                budget_ms, kind = timeout_ms, "timeout"
        start = time.monotonic()
        cid = next(self._ids)
        try:
            # Encoded before a worker is taken: bad arguments cost no worker anything.
            frame = encode_frame(
                {**fields, "id": cid, "cpu_ms": lim.cpu_ms}, self._sup.max_frame_bytes
            )
        except (TypeError, FrameTooLarge) as exc:
            raise SandboxError(
                f"the arguments for {self.key} cannot be sent to the sandbox: {exc}"
            ) from None
        worker = self._checkout(start + budget_ms / 1000, budget_ms, kind)
        # The deadline starts once a worker is ready: starting one is not the call's time.
        deadline = time.monotonic() + budget_ms / 1000
        try:
            outcome = self._exchange(
                worker, cid, frame, on_host_call, deadline, _CALL_OPS, lim.cpu_ms, budget_ms, kind
            )
        except BaseException:
            # Raised by on_host_call (KeyboardInterrupt...): the worker is mid-call and
            # cannot be reused. _exchange already disposed of it in every other case.
            if not worker.disposed:
                self._discard(worker, kill=True, crash=False)
            raise
        if isinstance(outcome, ResultFrame):
            self._release(worker, outcome.rss_kb, outcome.cpu_ms, lim)
            return CallResult(outcome.value, outcome.cpu_ms, outcome.rss_kb)
        assert isinstance(outcome, ErrorFrame)
        if outcome.kind == "memory":
            self._discard(worker, kill=True, crash=False)
            raise self._memory_error(worker.memory_mb)
        self._release(worker, outcome.rss_kb, outcome.cpu_ms, lim)
        raise self._error_from_frame(outcome, lim.memory_mb)

    def _exchange(
        self,
        worker: _Worker,
        cid: int,
        frame: bytes,
        on_host_call: OnHostCall | None,
        deadline: float,
        allowed: frozenset[str],
        cpu_limit_ms: int,
        budget_ms: int,
        kind: str,
    ) -> WorkerFrame:
        """Send one operation and serve its host calls until its outcome frame arrives.

        Every failure disposes of the worker before raising: a deadline kills it (and waits
        until it is gone), a death is classified from its exit status, a protocol
        violation kills it.
        """
        # A call spins briefly for its answer (see _protocol.SpinWait). While other calls are
        # in flight in this process, its channel calls that cannot block also keep the GIL
        # (`quick`): each release would hand the GIL to another host thread and back.
        calls = self._sup._inflight
        if allowed is _CALL_OPS:
            calls.append(None)
            spin, quick = True, len(calls) > 1
        else:
            spin = quick = False
        try:
            worker.send(frame, deadline, quick)
            while True:
                # `allowed` is the state machine: during a load only loaded/error are valid,
                # during a call host_call/result/error; a ready frame now is a forgery.
                msg = parse_worker_frame(
                    worker.reader.read(deadline, spin=spin, quick=quick),
                    expect_id=cid,
                    allowed=allowed,
                )
                if not isinstance(msg, HostCallFrame):
                    return msg
                if time.monotonic() >= deadline:
                    # It may have been buffered in time, but the caller's time is up: no host
                    # code runs on behalf of a call after its deadline.
                    raise TimeoutError
                reply = self._answer(cid, msg, on_host_call, worker.max_frame_bytes)
                # A slow host call can use up the budget; the worker gets no answer then.
                worker.send(reply, deadline, quick)
        except TimeoutError:
            self._discard(worker, kill=True, crash=False)
            raise self._wall_error(budget_ms, kind) from None
        except ChannelClosed:
            raise self._died(worker, cpu_limit_ms) from None
        except ProtocolError as exc:
            self._discard(worker, kill=True, crash=True)
            raise WorkerCrashed(
                f"the sandbox worker for {self.key} broke the protocol ({exc}); it was killed"
            ) from None
        except OSError:  # EPIPE/ECONNRESET while sending: the worker is gone
            raise self._died(worker, cpu_limit_ms) from None
        finally:
            if allowed is _CALL_OPS:
                calls.pop()

    def _answer(
        self, cid: int, call: HostCallFrame, on_host_call: OnHostCall | None, max_bytes: int
    ) -> bytes:
        """The frame answering one host call (the host application's code runs here)."""
        # Exceptions from the host application become a JSON error for the worker (it raises
        # them inside the sandboxed code, which may catch them); BaseException subclasses
        # (KeyboardInterrupt, SystemExit) are not the plugin's business and propagate.
        if on_host_call is None:
            error: dict[str, Any] = {
                "type": "SandboxViolation",
                "message": "host calls are not available for this operation",
            }
        else:
            try:
                value = on_host_call(call.method, call.params)
            except Exception as exc:
                error = self._sup._encode_host_error(exc)
            else:
                try:
                    return encode_frame({"op": "host_result", "id": cid, "value": value}, max_bytes)
                except FrameTooLarge as exc:
                    error = {
                        "type": "SandboxViolation",
                        "message": f"the answer to host call {call.method} is too large "
                        f"({exc.size} bytes; the limit is {exc.limit})",
                    }
                except TypeError as exc:
                    error = {
                        "type": "TypeError",
                        "message": f"the answer to host call {call.method} is not JSON: {exc}",
                    }
        try:
            return encode_frame({"op": "host_error", "id": cid, "error": error}, max_bytes)
        except (TypeError, FrameTooLarge):
            fallback = {"type": "Exception", "message": "the host's error could not be encoded"}
            return encode_frame({"op": "host_error", "id": cid, "error": fallback}, max_bytes)

    # -- errors -------------------------------------------------------------------------

    def _wall_error(self, limit_ms: int, kind: str) -> WallTimeExceeded:
        what = "wall-time limit" if kind == "wall" else "timeout"
        err = WallTimeExceeded(
            f"the sandboxed call for {self.key} exceeded its {what} of {limit_ms}ms; "
            "the worker was killed, so nothing it scheduled will run"
        )
        setattr(err, "limit_ms", limit_ms)  # noqa: B010  (class in _errors has no slot)
        setattr(err, "kind", kind)  # noqa: B010
        return err

    def _cpu_error(self, limit_ms: int) -> CpuLimitExceeded:
        err = CpuLimitExceeded(
            f"the sandboxed call for {self.key} exceeded its CPU-time limit of {limit_ms}ms; "
            "the worker was killed"
        )
        setattr(err, "limit_ms", limit_ms)  # noqa: B010
        return err

    def _memory_error(self, limit_mb: int) -> MemoryLimitExceeded:
        err = MemoryLimitExceeded(
            f"the sandboxed code for {self.key} exceeded its memory limit of {limit_mb} MB; "
            "the worker was replaced"
        )
        setattr(err, "limit_mb", limit_mb)  # noqa: B010
        return err

    def _error_from_frame(self, frame: ErrorFrame, memory_mb: int) -> SandboxError:
        if frame.kind == "remote":
            return RemoteError(frame.data)
        if frame.kind == "compile":
            return CompileError(frame.message, frame.errors)
        if frame.kind == "memory":
            return self._memory_error(memory_mb)
        return SandboxViolation(frame.message)

    def _died(self, worker: _Worker, cpu_limit_ms: int) -> SandboxError:
        """The worker's channel closed: wait for its exit status and say what happened."""
        if not worker.wait_exited(0.5):
            # Alive but it closed its end of the channel: that is a protocol violation.
            self._discard(worker, kill=True, crash=True)
            return WorkerCrashed(
                f"the sandbox worker for {self.key} closed its channel; it was killed"
            )
        worker.exit.wait(_DEATH_REPORT_TIMEOUT_S)
        error, crash = self._classify(worker, cpu_limit_ms)
        self._discard(worker, kill=False, crash=crash)
        return error

    def _classify(self, worker: _Worker, cpu_limit_ms: int) -> tuple[SandboxError, bool]:
        """(error, counts as a crash) for a dead worker, from the fork server's report."""
        box = worker.exit
        who = f"the sandbox worker for {self.key}"
        if worker.killed:
            return SandboxUnavailableError(self._closed_reason or f"{who} was stopped"), False
        if not box.is_set() or not box.known:
            # The fork server went away (its workers die with it). That crash is counted
            # once, by the supervisor, when it starts a new fork server.
            return WorkerCrashed(f"{who} died with the fork server"), False
        if box.signal == signal.SIGPROF:
            return self._cpu_error(cpu_limit_ms), False
        if box.code == EXIT_MEMORY:
            return self._memory_error(worker.memory_mb), False
        if box.signal == signal.SIGSYS:
            return SandboxViolation(f"{who} was killed for a forbidden system call"), False
        if box.signal == signal.SIGXCPU:
            # The lifetime backstop. The host replaces honest workers well before it, so this
            # worker escaped its per-call timer: the call fails as over its CPU limit, and
            # the death counts as a crash, so a plugin doing it again is backed off.
            err = CpuLimitExceeded(
                f"{who} used up its lifetime CPU budget of {worker.cpu_s}s (its per-call "
                f"limit is {cpu_limit_ms}ms) and was killed; a new worker replaces it"
            )
            setattr(err, "limit_ms", cpu_limit_ms)  # noqa: B010
            return err, True
        if box.code == EXIT_CONFINEMENT:
            return WorkerCrashed(f"{who} could not be confined (nothing ran)"), True
        if box.code == EXIT_PROTOCOL:
            return WorkerCrashed(f"{who} gave up on a broken channel"), True
        if box.signal is not None:
            try:
                name = signal.Signals(box.signal).name
            except ValueError:
                name = str(box.signal)
            return WorkerCrashed(f"{who} died with signal {name}"), True
        return WorkerCrashed(f"{who} exited with status {box.code}"), True

    # -- the pool -----------------------------------------------------------------------

    def _closed(self) -> str | None:
        """Why the pool is closed (None while open); re-read under the lock each time."""
        return self._closed_reason

    def _start_first(self) -> None:
        """Start the warm worker (load time): compile errors surface here."""
        worker = self._spawn()
        with self._lock:
            self._idle.append(worker)
        self.init_result = worker.init_result
        self.confinement = dict(worker.confinement)

    def _checkout(self, deadline: float, budget_ms: int, kind: str) -> _Worker:
        while True:
            dead: list[_Worker] = []
            stale: list[_Worker] = []
            spawn = False
            with self._lock:
                if self._closed_reason is not None:
                    raise SandboxUnavailableError(self._closed_reason)
                while self._idle:
                    worker = self._idle.pop()
                    if worker.server_epoch != self._sup.epoch:
                        # Made by a fork server that has been replaced (and died, taking
                        # its workers along): stale, whatever its socket says yet.
                        stale.append(worker)
                    elif worker.usable() and not worker.has_stray_input():
                        self._busy.add(worker)
                        return worker
                    else:
                        dead.append(worker)
                if not dead and not stale:
                    # Grow lazily, one worker per concurrent caller, up to pool_size; after
                    # a crash no new worker starts until the backoff allows it.
                    size = len(self._busy) + self._starting
                    blocked = self._crashes.blocked(time.monotonic(), self.key)
                    if size < self.pool_size and blocked is None:
                        self._starting += 1
                        spawn = True
                    elif size == 0:
                        # Nothing running and nothing may start: fail now (EmDash's runner
                        # did the same after its restart loop gave up), not at the deadline.
                        raise SandboxUnavailableError(blocked or f"no worker for {self.key}")
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            # Nothing ran: there is no worker to kill for this call.
                            raise self._wall_error(budget_ms, kind)
                        self._waiting += 1
                        try:
                            self._cond.wait(remaining)
                        finally:
                            self._waiting -= 1
                        continue
            for worker in stale:
                # The fork server's death was counted by the supervisor, not here.
                self._discard(worker, kill=True, crash=False)
            for worker in dead:
                if worker.wait_exited(0.2):
                    # Died while idle: a crash unless a limit or the host did it.
                    worker.exit.wait(_DEATH_REPORT_TIMEOUT_S)
                    _, crash = self._classify(worker, self.limits.cpu_ms)
                else:
                    crash = True  # alive, but it sent bytes nobody asked for
                self._discard(worker, kill=True, crash=crash)
            if spawn:
                break
        try:
            worker = self._spawn()
        finally:
            with self._lock:
                self._starting -= 1
                self._cond.notify_all()
        with self._lock:
            reason = self._closed()
            if reason is None:
                self._busy.add(worker)
                return worker
        self._discard(worker, kill=True, crash=False)
        raise SandboxUnavailableError(reason)

    def _spawn(self) -> _Worker:
        """Fork a worker, wait until it is confined, load the bundle (and run init)."""
        lim = self.limits
        cpu_s = lim.lifetime_cpu_s()
        proc, server_epoch = self._sup._fork(lim.memory_mb, cpu_s)
        worker = _Worker(proc, self._sup.max_frame_bytes, lim.memory_mb, server_epoch, cpu_s)
        try:
            ready = parse_worker_frame(
                worker.reader.read(time.monotonic() + _SPAWN_TIMEOUT_S),
                expect_id=None,
                allowed=_READY_OPS,
            )
        except TimeoutError:
            self._discard(worker, kill=True, crash=True)
            raise WorkerCrashed(f"the sandbox worker for {self.key} did not start") from None
        except ChannelClosed:
            raise self._died(worker, lim.load_cpu_ms) from None
        except ProtocolError as exc:
            self._discard(worker, kill=True, crash=True)
            raise WorkerCrashed(
                f"the sandbox worker for {self.key} broke the protocol ({exc}); it was killed"
            ) from None
        assert isinstance(ready, ReadyFrame)
        # Sent before any code from the bundle existed in the worker, so these two values
        # can be believed: the RSS baseline for the recycle check, and what confinement got.
        worker.baseline_rss_kb = ready.rss_kb
        worker.confinement = ready.confinement
        cid = next(self._ids)
        init = None if self._init is None else [self._init[0], list(self._init[1])]
        try:
            frame = encode_frame(
                {"op": "load", "id": cid, "files": self._files, "entry": self._entry,
                 "init": init, "cpu_ms": lim.load_cpu_ms},
                worker.max_frame_bytes,
            )
        except (TypeError, FrameTooLarge) as exc:
            self._discard(worker, kill=True, crash=False)
            raise SandboxError(f"the code for {self.key} cannot be sent to the sandbox: {exc}") from None
        outcome = self._exchange(
            worker, cid, frame, None, time.monotonic() + lim.wall_ms / 1000, _LOAD_OPS,
            lim.load_cpu_ms, lim.wall_ms, "wall",
        )
        if isinstance(outcome, LoadedFrame):
            worker.init_result = outcome.init
            return worker
        assert isinstance(outcome, ErrorFrame)
        # The code itself failed to load: deterministic, not a crash. This worker is useless.
        self._discard(worker, kill=True, crash=False)
        raise self._error_from_frame(outcome, lim.memory_mb)

    def _release(self, worker: _Worker, rss_kb: int, cpu_ms: float, lim: SandboxLimits) -> None:
        """Back to the pool after a call, unless the call left it bloated or it has used
        most of its lifetime CPU budget."""
        # rss_kb is the worker's own report: a lying worker only keeps its own bloated
        # process (RLIMIT_AS still bounds it); nothing here is a security decision.
        if rss_kb - worker.baseline_rss_kb > lim.memory_mb * 1024 * RSS_RECYCLE_FRACTION:
            self._discard(worker, kill=True, crash=False)
        elif self._cpu_spent(worker, cpu_ms):
            self._discard(worker, kill=True, crash=False)
        else:
            self._checkin(worker)

    def _cpu_spent(self, worker: _Worker, cpu_ms: float) -> bool:
        """True when the worker has used :data:`CPU_RETIRE_FRACTION` of its RLIMIT_CPU.

        Reported per-call CPU misses what the serve loop does outside calls (decoding an
        8 MiB request, the spin-wait), so the decision rests on the kernel's count, read
        every :data:`CPU_CHECK_EVERY` calls or once the reports add up to an eighth of the
        budget. Where /proc cannot be read, the reports are all there is.
        """
        worker.calls += 1
        worker.reported_cpu_ms += cpu_ms
        limit_ms = worker.cpu_s * 1000.0
        since_check = worker.reported_cpu_ms - worker.reported_at_check_ms
        if worker.calls < CPU_CHECK_EVERY and since_check < limit_ms / 8:
            return False
        worker.calls = 0
        worker.reported_at_check_ms = worker.reported_cpu_ms
        used = worker.cpu_seconds()
        if used is None:
            return worker.reported_cpu_ms >= limit_ms * CPU_RETIRE_FRACTION
        return used * 1000.0 >= limit_ms * CPU_RETIRE_FRACTION

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed_reason is None and worker.usable():
                self._busy.discard(worker)
                self._idle.append(worker)
                if self._waiting:
                    self._cond.notify_all()
                return
        self._discard(worker, kill=True, crash=False)

    def _discard(self, worker: _Worker, *, kill: bool, crash: bool) -> None:
        """Retire a worker for good (waiting until a killed one is really gone)."""
        # Waiting for the fork server's exit report means the process is dead *and* reaped
        # when this returns: a caller that got WallTimeExceeded can rely on it.
        if kill and not worker.disposed:
            worker.kill()
            worker.wait_gone(_DEATH_REPORT_TIMEOUT_S)
        worker.dispose()
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
            self._busy.discard(worker)
            self._epoch += 1
            if crash:
                self._crashes.record(time.monotonic())
            self._cond.notify_all()

    def _close(self, reason: str) -> None:
        with self._lock:
            if self._closed_reason is not None:
                return
            self._closed_reason = reason
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            # A busy worker's caller sees the channel close and raises the reason above.
            worker.kill()
        for worker in workers:
            if worker not in self._busy:
                worker.wait_gone(_DEATH_REPORT_TIMEOUT_S)
                worker.dispose()
        self._sup._forget(self)


class Supervisor:
    """Owns the fork server and the worker pools; the host's entry point to the sandbox.

    ``preludes`` are trusted modules given as source text (``{"pkg.mod": source}``), built
    once in the fork server; ``expose`` maps names sandboxed code may import to prelude
    modules. ``worker_error_encoder``/``worker_error_decoder`` name prelude functions
    (``"module:function"``) that turn a worker-side exception into a JSON dict and a host
    error dict back into the exception ``host_call`` raises; ``host_error_encoder`` turns an
    exception raised by ``on_host_call`` into that dict. The remaining keyword arguments
    tune the crash bookkeeping and the frame cap (tests shorten the backoff).
    """

    def __init__(
        self,
        *,
        preludes: dict[str, str] | None = None,
        expose: dict[str, str] | None = None,
        worker_error_encoder: str | None = None,
        worker_error_decoder: str | None = None,
        host_error_encoder: Callable[[BaseException], dict[str, Any]] | None = None,
        allow_raw_exec_for_tests: bool = False,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        crash_limit: int = 5,
        crash_window_s: float = 60.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        preludes = dict(preludes or {})
        expose = dict(expose or {})
        for name, mapping in (("preludes", preludes), ("expose", expose)):
            if not all(type(k) is str and type(v) is str for k, v in mapping.items()):
                raise SandboxError(f"{name} must map str to str")
        for name, value in (
            ("worker_error_encoder", worker_error_encoder),
            ("worker_error_decoder", worker_error_decoder),
        ):
            if value is not None and (type(value) is not str or value.count(":") != 1):
                raise SandboxError(f"{name} must look like 'module:function', got {value!r}")
        if type(max_frame_bytes) is not int or max_frame_bytes < 4096:
            raise SandboxError("max_frame_bytes must be an int of at least 4096")
        self.allow_raw_exec_for_tests = bool(allow_raw_exec_for_tests)
        self.max_frame_bytes = max_frame_bytes
        self._config = {
            "op": "config",
            "preludes": preludes,
            "expose": expose,
            "worker_error_encoder": worker_error_encoder,
            "worker_error_decoder": worker_error_decoder,
            "allow_raw_exec": self.allow_raw_exec_for_tests,
            "max_frame_bytes": max_frame_bytes,
        }
        self._host_error_encoder = host_error_encoder or _default_host_error
        self._crash_args = (crash_limit, crash_window_s, backoff_base_s, backoff_max_s)
        self._start_timeout_s = start_timeout_s
        self._lock = threading.RLock()
        self._client: ForkServerClient | None = None
        self._server_crashes = self._new_crash_tracker()
        self._epoch = 0  # bumps with every fork server start
        self._pools: dict[str, WorkerPool] = {}
        self._closed = False
        self._inflight = _InFlight()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the fork server (idempotent; ``load`` calls it too)."""
        self._ensure_server()

    def close(self) -> None:
        """Close every pool and stop the fork server (SIGTERM, then SIGKILL); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pools = list(self._pools.values())
            self._pools.clear()
            client, self._client = self._client, None
        for pool in pools:
            pool._close(f"the sandbox supervisor was closed, so the sandbox for {pool.key} is too")
        if client is not None:
            client.close()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def is_healthy(self) -> bool:
        """True while the fork server runs and the supervisor is open."""
        with self._lock:
            return not self._closed and self._client is not None and self._client.is_alive()

    @property
    def epoch(self) -> int:
        """Bumps every time a fork server starts; workers of an older one are stale."""
        return self._epoch

    @property
    def server_pid(self) -> int | None:
        """Pid of the running fork server (diagnostics and tests)."""
        with self._lock:
            return self._client.pid if self._client is not None else None

    # -- loading ------------------------------------------------------------------------

    def load(
        self,
        key: str,
        files: dict[str, str],
        entry: str,
        *,
        limits: SandboxLimits,
        pool_size: int = 2,
        init: tuple[str, list[Any]] | None = None,
    ) -> WorkerPool:
        """Compile and load ``files`` in a fresh worker and return the pool serving them.

        The bundle is compiled *in the worker* (a ``CompileError`` propagates). ``init``
        (``("module:function", args)``) runs once per worker after loading as
        ``fn(entry_module, host_call, *args)``; the first worker's JSON result is
        ``pool.init_result``. Loading a key again with the same arguments returns the same
        pool; with different ones it replaces it (the old handle is then closed).
        """
        if type(key) is not str or not key:
            raise SandboxError("key must be a non-empty str")
        if type(files) is not dict or not all(
            type(k) is str and type(v) is str for k, v in files.items()
        ):
            raise SandboxError(f"files for {key} must map file names to source text")
        if type(entry) is not str or not entry:
            raise SandboxError(f"entry for {key} must be a non-empty str")
        if not isinstance(limits, SandboxLimits):
            raise SandboxError(f"limits for {key} must be a SandboxLimits")
        if type(pool_size) is not int or pool_size < 1:
            raise SandboxError(f"pool_size for {key} must be a positive int")
        if init is not None and (
            not isinstance(init, tuple) or len(init) != 2 or type(init[0]) is not str
            or init[0].count(":") != 1 or not isinstance(init[1], list)
        ):
            raise SandboxError(f"init for {key} must be ('module:function', [args])")
        spec = (dict(files), entry, limits, pool_size, init)
        with self._lock:
            existing = self._pools.get(key)
        if existing is not None and existing._spec == spec and existing._closed_reason is None:
            return existing
        self.start()
        pool = WorkerPool(self, key, dict(files), entry, limits, pool_size, init)
        pool._spec = spec
        pool._start_first()
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                old, self._pools[key] = self._pools.get(key), pool
        if closed:
            pool._close(f"the sandbox supervisor was closed, so the sandbox for {key} is too")
            raise SandboxUnavailableError("the sandbox supervisor is closed")
        if old is not None and old is not pool:
            old._close(
                f"the sandbox for {key} was replaced by a newer load; use the handle that "
                "load returned"
            )
        return pool

    # -- internals used by pools ----------------------------------------------------------

    def _new_crash_tracker(self) -> _CrashTracker:
        return _CrashTracker(*self._crash_args)

    def _encode_host_error(self, exc: Exception) -> dict[str, Any]:
        try:
            data = self._host_error_encoder(exc)
            if type(data) is dict:
                return data
        except Exception:
            pass
        return _default_host_error(exc)

    def _ensure_server(self) -> tuple[ForkServerClient, int]:
        from ._availability import is_available

        with self._lock:
            if self._closed:
                raise SandboxUnavailableError("the sandbox supervisor is closed")
            if self._client is not None and self._client.is_alive():
                return self._client, self._epoch
            now = time.monotonic()
            if self._client is not None:
                # The fork server died under us (its workers died with it).
                self._client.close()
                self._client = None
                self._server_crashes.record(now)
            blocked = self._server_crashes.blocked(now, "the fork server")
            if blocked is not None:
                raise SandboxUnavailableError(blocked)
            availability = is_available()
            if not availability.ok:
                raise SandboxNotAvailableError(availability.reason)
            self._client = ForkServerClient(self._config, start_timeout=self._start_timeout_s)
            self._epoch += 1
            return self._client, self._epoch

    def _fork(self, memory_mb: int, cpu_s: int) -> tuple[ForkedProcess, int]:
        """A new worker and the epoch of the fork server that made it."""
        client, epoch = self._ensure_server()
        try:
            return client.fork(memory_mb, cpu_s), epoch
        except WorkerCrashed:
            if client.is_alive():
                raise
        # The fork server died while we asked: one fresh attempt with a new one.
        client, epoch = self._ensure_server()
        return client.fork(memory_mb, cpu_s), epoch

    def _forget(self, pool: WorkerPool) -> None:
        with self._lock:
            if self._pools.get(pool.key) is pool:
                del self._pools[pool.key]
