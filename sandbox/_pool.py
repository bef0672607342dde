"""The workers serving one loaded bundle: check-out/check-in, spawning, calls and the limits.

Which process runs this: the host. A call runs entirely in the calling thread, including the
host's answers to the worker's ``host_call`` frames; many threads call one pool at once, so
its state is under one lock. The workers are other processes (``_worker``), reached through
their handles (``_handle``).

:meth:`Supervisor.load` makes a :class:`WorkerPool`, which starts one warm worker at load
time and grows lazily to ``pool_size`` workers when several host threads call at once.

Everything a worker sends is hostile (``_protocol.parse_worker_frame`` validates exact
shapes; anything else gets the worker killed). The limits:

- wall time: a host-side deadline, ``min(limits.wall_ms, timeout_ms)``, covering the time
  the worker runs *and* the time the host spends answering its host calls. On expiry the
  worker is SIGKILLed through its pidfd and the call waits until the fork server reports it
  dead, so nothing scheduled by the call can land after the caller got
  ``WallTimeExceeded`` (EmDash's runner only stopped waiting; the plugin kept going).
- CPU, three layers. (1) ``ITIMER_PROF`` armed per call in the worker, SIGPROF at its
  default action: the kernel kills the worker even inside one C call, and the host raises
  ``CpuLimitExceeded``. The worker arms that timer itself, so native code that broke out of
  the language layer can disarm it; hence (2) the host measures every worker's CPU time
  from the kernel (``WorkerHandle.cpu_ns``: one ``clock_gettime`` on the worker's process
  CPU clock, when a call takes the worker and when its answer arrives). A call whose
  measured CPU exceeds ``cpu_ms`` + :data:`CALL_CPU_SLACK_MS` and a share per MiB of the
  frames the serve loop handles outside the timer (decoding the request, sending the
  answer) gets the worker killed and ``CpuLimitExceeded``; a worker that used more than :data:`IDLE_CPU_MS` while idle
  (an honest one spins at most 0.5 ms after each answer, ``_protocol.SPIN_CAP_S``) is
  killed and replaced, found by the supervisor's watch thread (every
  :data:`WATCH_INTERVAL_S`) or when a call takes it. The watch also kills a busy worker
  as soon as its call is over budget, rather than at its wall deadline (and a loading one
  over its load's budget). Both count as a
  crash (back-off applies): an honest worker never gets there. The figure a call reports
  (``CallResult.cpu_ms``) is this host measurement; the worker's own report is kept only
  as ``worker_cpu_ms``. (3) See the lifetime backstop below.
- memory: ``RLIMIT_AS``/``RLIMIT_DATA`` = baseline + ``memory_mb`` in the worker;
  ``MemoryError`` comes back as ``MemoryLimitExceeded`` and the worker is replaced. A worker
  whose peak RSS grew by more than ``RSS_RECYCLE_FRACTION`` of its budget is replaced after
  the call too: a plugin that caught MemoryError must not keep a bloated, fragmented worker.
- subrequests are counted by the host application in ``on_host_call`` (it knows which
  calls count).
- lifetime CPU backstop: ``RLIMIT_CPU`` = :meth:`SandboxLimits.lifetime_cpu_s` in every
  worker (SIGXCPU at that soft limit), which the worker cannot touch, so even a breakout
  the host-side watch missed (the host stopped, say) ends there. An honest worker never
  reaches it: after each call the host's measurement of its CPU time decides, and it is
  replaced once :data:`CPU_RETIRE_FRACTION` of the budget is used. A worker that dies by
  SIGXCPU anyway broke its per-call limit: the call gets ``CpuLimitExceeded`` and the
  death counts as a crash (back-off, then refusal).

A worker is reused only after a call that ended normally (a result, or an exception the
plugin raised, or a ``SandboxViolation``: the language layer refused and stopped the
attempt). After a limit error (CPU, memory, wall, subrequests refused by the host
application), a crash, a protocol error or a forged frame, and after every call when the
pool was loaded with ``fresh_worker=True``, it is killed and the next call gets a new one.

Crash bookkeeping, per pool (the policy is the supervisor's ``_CrashTracker``): a worker that
dies unexpectedly (not by an enforced limit, not killed from outside) counts as a crash, and
after crashes the pool starts no new worker until the back-off allows it. A worker stopped by
an enforced limit (its CPU timer, the memory limit, the wall deadline) is a *limit kill*: the
first few within the window are free, later ones count like crashes, because each
replacement makes the host fork and re-run the bundle's module code. A worker killed from
outside (a SIGKILL the host did not send: an operator, the kernel's OOM killer; not the hard
``RLIMIT_CPU``, which the fork server's CPU figure for the dead worker tells apart) is not
the plugin's doing: it is logged, counted in ``outside_kills`` and replaced, never backed
off. Nor is a worker that died with the fork server, nor a request the host could not serve
because it was out of descriptors. While backed off, a call that finds no worker fails at
once with ``SandboxUnavailableError`` saying why and when the pool retries.
``epoch`` counts worker replacements, ``workers_started`` the workers forked.

Loads are budgeted and counted: each new worker compiles and loads the bundle (and runs
``init``) under ``load_cpu_ms``, and the host's measurement of that load goes to the pool's
``on_load`` callback as a ``LoadReport``.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._call import Call, CallResult, LoadReport, OnHostCall, OnLoad, SandboxLimits
from ._cpus import usable_cpus
from ._errors import (
    CompileError,
    CpuLimitExceeded,
    MemoryLimitExceeded,
    RemoteError,
    SandboxError,
    SandboxNotAvailableError,
    SandboxUnavailableError,
    SandboxViolation,
    SubrequestLimitExceeded,
    WallTimeExceeded,
    WorkerCrashed,
)
from ._handle import WorkerHandle
from ._protocol import (
    ChannelClosed,
    ErrorFrame,
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
from ._worker import EXIT_CONFINEMENT, EXIT_MEMORY, EXIT_PROTOCOL

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = [
    "ANSWER_CPU_MS_PER_MIB",
    "CALL_CPU_SLACK_MS",
    "CPU_RETIRE_FRACTION",
    "IDLE_CPU_MS",
    "REQUEST_CPU_MS_PER_MIB",
    "RSS_RECYCLE_FRACTION",
    "WATCH_INTERVAL_S",
    "LoadSpec",
    "WorkerPool",
]

log = logging.getLogger("sandbox")

# A worker whose peak RSS grew by more than this fraction of memory_mb is replaced after the
# call. RLIMIT_AS bounds *virtual* size, and RSS growth stays below it, so waiting for RSS to
# reach the whole budget would never trigger; half of it means "this call nearly filled the
# worker" (typically: it ran into MemoryError and caught it).
RSS_RECYCLE_FRACTION = 0.5

# The host replaces a worker once its measured CPU time passes this fraction of the
# backstop, so an honest worker always has room for its next call.
CPU_RETIRE_FRACTION = 0.5

# What a call may use on top of its cpu_ms, as the host measures it: the serve loop's work
# outside the worker's timer, and the timer's granularity (ITIMER_PROF expiry is noticed at
# a scheduler tick: up to 10 ms late at HZ=100, so a call can finish a little over its
# budget without being stopped).
# - CALL_CPU_SLACK_MS, fixed (a no-op call's untimed work is ~0.2 ms). Also what a load may
#   use on top of load_cpu_ms (confinement before the load's timer: ~4 ms).
# - REQUEST_CPU_MS_PER_MIB, per MiB of this call's request and of the worker's previous
#   one: the worker receives and decodes a request before it knows its budget, and frees
#   the previous request's objects while it reads the next. Measured on the 2-CPU
#   development VM: 5 ms/MiB for one long string, 12 for a list of ints, up to ~50 for
#   lists of tiny lists or dicts (the worst shape JSON allows); 100 leaves twice that.
#   The host chooses what it sends, so a worker cannot stretch this part.
# - ANSWER_CPU_MS_PER_MIB, per MiB of its answer: encoded under the timer, then copied and
#   sent outside it, ~2-3 ms/MiB. The worker chooses its answer's size, so this part is
#   kept tight: at most 8 MiB x 15 = 120 ms more for a worker that pads its answer.
CALL_CPU_SLACK_MS = 15
REQUEST_CPU_MS_PER_MIB = 100
ANSWER_CPU_MS_PER_MIB = 15
_REQUEST_NS_PER_BYTE = REQUEST_CPU_MS_PER_MIB * 1_000_000 / (1 << 20)
_ANSWER_NS_PER_BYTE = ANSWER_CPU_MS_PER_MIB * 1_000_000 / (1 << 20)
# What a worker may use while idle, from when its answer arrived to when the next call
# takes it (or the watch looks). An honest one only finishes its send and spins for at most
# SPIN_CAP_S (0.5 ms) waiting for the next request; this is twenty times that.
IDLE_CPU_MS = 10
# How often the supervisor's watch thread reads the CPU time of every worker.
WATCH_INTERVAL_S = 0.2

_SPAWN_TIMEOUT_S = 10.0  # fork + confinement + "ready"
_DEATH_REPORT_TIMEOUT_S = 5.0  # how long to wait for the fork server's exit report
_CALL_OPS = frozenset({"host_call", "result", "error"})

# A spinning call keeps two CPUs busy (its host thread and its worker), so calls spin for
# their answers (and their workers for that call's host-call answers and its next request)
# while at most one call per CPUS_PER_SPINNING_CALL usable CPUs is in flight in this
# process; beyond that the call frame carries "spin": false. On 2 CPUs: a call spins only
# while it is alone. Measured on the 2-core VM with the benchmark's throughput loop
# (bench_sandbox._rate, 2 host threads, 2 s per figure), no-op hooks/s with one call or two
# calls allowed to spin: idle 7.7-12.7 / 13.6-14.6 k/s, but with two busy loops on the CPUs
# 5.2-9.2 / 2.5-7.5 k/s: a host thread spinning while another call is in flight holds the
# GIL, and when its sched_yield hands the CPU to another process for a slice, every other
# host thread waits for that slice too. (Releasing the GIL for each turn did not help:
# 3.9-6.7 k/s loaded.)
CPUS_PER_SPINNING_CALL = 2


def spin_call_limit() -> int:
    """Calls in flight up to which calls spin: one per CPUS_PER_SPINNING_CALL usable CPUs,
    at least one (the usable CPUs: the affinity, capped by a container's CPU quota, see
    ``_cpus``; a lone call on one CPU is left to the spin-wait's own measurements)."""
    return max(1, usable_cpus() // CPUS_PER_SPINNING_CALL)


_LOAD_OPS = frozenset({"loaded", "error"})
_READY_OPS = frozenset({"ready"})


@dataclass(frozen=True)
class LoadSpec:
    """What a pool serves and how: the arguments of ``Supervisor.load`` but the key.

    Compared whole when a key is loaded again: an equal spec reuses the pool, any other
    replaces it.
    """

    files: dict[str, str]
    entry: str
    limits: SandboxLimits
    pool_size: int
    init: tuple[str, list[Any]] | None
    fresh_worker: bool = False
    """A new worker for every call: no state of one call (module globals, caches, anything
    a breakout left behind) can reach the next. Costs a fork and a load per call."""


def _limit_kill(error: SandboxError, crash: bool) -> str | None:
    """Which enforced limit stopped a dead worker that is not a crash (None: neither)."""
    if crash:
        return None
    if isinstance(error, CpuLimitExceeded):
        return "cpu"
    if isinstance(error, MemoryLimitExceeded):
        return "memory"
    return None


class WorkerPool:
    """The workers running one loaded bundle; get one from :meth:`Supervisor.load`.

    Thread-safe: each concurrent call checks out its own worker (the pool grows lazily up to
    ``pool_size``; further callers wait for a free worker within their own deadline).
    """

    def __init__(
        self, supervisor: Supervisor, key: str, spec: LoadSpec, on_load: OnLoad | None = None
    ) -> None:
        self._sup = supervisor
        self.on_load = on_load
        """Told about every load (:class:`LoadReport`), in the thread that started the worker."""
        self.workers_started = 0
        """How many workers this pool has forked (each one ran the bundle's module code)."""
        self.outside_kills = 0
        """Workers killed from outside (SIGKILL the host did not send); not crashes."""
        self.key = key
        self.limits = spec.limits
        self.pool_size = spec.pool_size
        self._spec = spec
        # `with self._lock` (a C-level context manager) guards the pool's state; the
        # condition shares that lock, and notify_all runs only when someone waits in it.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self._idle: list[WorkerHandle] = []
        self._busy: set[WorkerHandle] = set()
        self._starting = 0
        self._loading: set[WorkerHandle] = set()  # started, their load not done yet
        self._closed_reason: str | None = None
        self._epoch = 0
        self._crashes = supervisor._new_crash_tracker()
        self._ids = itertools.count(1)
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
        return self._invoke(
            {"op": "call", "fn": fn, "args": args}, on_host_call, limits, timeout_ms
        )

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
            raise SandboxError("raw_exec_for_tests needs Supervisor(allow_raw_exec_for_tests=True)")
        return self._invoke({"op": "raw_exec", "source": source}, on_host_call, limits, timeout_ms)

    def is_healthy(self) -> bool:
        """Open, the supervisor healthy, and not backing off after crashes."""
        with self._lock:
            if self._closed_reason is not None or not self._sup.is_healthy():
                return False
            has_worker = any(w.usable() for w in self._idle) or bool(self._busy)
            return has_worker or self._crashes.blocked(self.key) is None

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
        request = {**fields, "id": cid, "cpu_ms": lim.cpu_ms}
        inflight = self._sup._inflight
        if len(inflight) >= inflight.spin_limit:
            # With this call, more calls are in flight than calls may spin: the worker does
            # not spin either (for this call's host-call answers, nor for its next request);
            # see CPUS_PER_SPINNING_CALL.
            request["spin"] = False
        try:
            # Encoded before a worker is taken: bad arguments cost no worker anything.
            frame = encode_frame(request, self._sup.max_frame_bytes)
        except (TypeError, FrameTooLarge) as exc:
            raise SandboxError(
                f"the arguments for {self.key} cannot be sent to the sandbox: {exc}"
            ) from None
        call = Call(
            op=fields["op"],
            cid=cid,
            frame=frame,
            limits=lim,
            cpu_ms=lim.cpu_ms,
            budget_ms=budget_ms,
            kind=kind,
            on_host_call=on_host_call,
        )
        # The CPU budget as the host measures it (see CALL_CPU_SLACK_MS); the checkout adds
        # the share of the worker's previous request, the end of the call its answer's.
        call.limit_ns = (lim.cpu_ms + CALL_CPU_SLACK_MS) * 1_000_000 + int(
            len(frame) * _REQUEST_NS_PER_BYTE
        )
        # Waiting for a worker counts against the caller's budget...
        worker = self._checkout(start + budget_ms / 1000, call)
        # ...but the call's own deadline starts once a worker is ready: starting one is not
        # the call's time.
        call.start_clock()
        try:
            outcome = self._exchange(worker, call)
        except BaseException:
            # Raised by on_host_call (KeyboardInterrupt...): the worker is mid-call and
            # cannot be reused. _exchange already disposed of it in every other case.
            if not worker.disposed:
                self._discard(worker, kill=True, crash=False)
            raise
        assert isinstance(outcome, (ResultFrame, ErrorFrame))
        cpu_ms = self._measure(worker, call)
        if isinstance(outcome, ResultFrame):
            self._release(worker, call, outcome.rss_kb)
            return CallResult(outcome.value, cpu_ms, outcome.rss_kb, outcome.cpu_ms)
        if outcome.kind == "memory":
            self._discard(worker, kill=True, crash=False, limit="memory")
            raise self._memory_error(worker.memory_mb)
        # Anything else is the plugin's own error, or a refusal by the language layer (which
        # stopped the attempt, so the worker is intact): it serves the next call.
        self._release(worker, call, outcome.rss_kb)
        err = self._error_from_frame(outcome, lim.memory_mb)
        setattr(err, "cpu_ms", cpu_ms)  # noqa: B010  (the host's figure, for the audit)
        raise err

    def _measure(self, worker: WorkerHandle, call: Call) -> float:
        """The call's CPU time as the kernel counts it (ms); kills the worker and raises
        ``CpuLimitExceeded`` when it is over budget.

        One clock read: the other edge was read when the call took the worker."""
        after = worker.cpu_ns()
        if after is None:
            # Reaped already (it answered and died at once): no figure, and no answer from a
            # worker whose cost cannot be measured.
            raise self._died(worker, call.cpu_ms)
        used_ns = after - worker.call_cpu_ns
        used_ms = used_ns / 1e6
        limit_ns = worker.call_limit_ns or 0
        if used_ns > limit_ns + worker.reader.last_size * _ANSWER_NS_PER_BYTE:
            # Its timer did not stop it: disarmed by code that broke out of the language
            # layer. Whatever it answered is not used.
            worker.cpu_verdict = "call"
            self._discard(worker, kill=True, crash=True)
            raise self._cpu_error(call.cpu_ms, used_ms)
        worker.idle_cpu_ns = after
        worker.last_request_size = len(call.frame)
        return used_ms

    def _exchange(self, worker: WorkerHandle, call: Call) -> WorkerFrame:
        """Send one operation and serve its host calls until its outcome frame arrives.

        Every failure disposes of the worker before raising: a deadline kills it (and waits
        until it is gone), a death is classified from its exit status, a protocol
        violation kills it.
        """
        # `allowed` is the state machine: during a load only loaded/error are valid, during a
        # call (or raw exec) host_call/result/error; a ready frame now is a forgery.
        is_load = call.op == "load"
        allowed = _LOAD_OPS if is_load else _CALL_OPS
        cid, deadline = call.cid, call.deadline
        # A call spins briefly for its answer (see _protocol.SpinWait) unless more calls
        # are in flight than may spin (CPUS_PER_SPINNING_CALL); a load does not (compiling
        # takes far longer than any spin). While other calls are in flight in this
        # process, a call's channel calls that cannot block also keep the GIL (`quick`):
        # each release would hand the GIL to another host thread and back.
        calls = self._sup._inflight
        if not is_load:
            calls.append(None)
            quick = len(calls) > 1
            spin = len(calls) <= calls.spin_limit
        else:
            spin = quick = False
        try:
            worker.send(call.frame, deadline, quick)
            while True:
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
                reply = self._answer(call, msg, worker.max_frame_bytes)
                # A slow host call can use up the budget; the worker gets no answer then.
                worker.send(reply, deadline, quick)
        except TimeoutError:
            self._discard(worker, kill=True, crash=False, limit="wall")
            raise self._wall_error(call) from None
        except ChannelClosed:
            raise self._died(worker, call.cpu_ms) from None
        except ProtocolError as exc:
            self._discard(worker, kill=True, crash=True)
            raise WorkerCrashed(
                f"the sandbox worker for {self.key} broke the protocol ({exc}); it was killed"
            ) from None
        except OSError:  # EPIPE/ECONNRESET while sending: the worker is gone
            raise self._died(worker, call.cpu_ms) from None
        finally:
            if not is_load:
                calls.pop()

    def _answer(self, call: Call, request: HostCallFrame, max_bytes: int) -> bytes:
        """The frame answering one host call (the host application's code runs here)."""
        # Exceptions from the host application become a JSON error for the worker (it raises
        # them inside the sandboxed code, which may catch them); BaseException subclasses
        # (KeyboardInterrupt, SystemExit) are not the plugin's business and propagate.
        cid, on_host_call = call.cid, call.on_host_call
        if on_host_call is None:
            error: dict[str, Any] = {
                "type": "SandboxViolation",
                "message": "host calls are not available for this operation",
            }
        else:
            try:
                value = on_host_call(request.method, request.params)
            except Exception as exc:
                if isinstance(exc, SubrequestLimitExceeded):
                    call.retire = True
                error = self._sup._encode_host_error(exc)
            else:
                try:
                    return encode_frame({"op": "host_result", "id": cid, "value": value}, max_bytes)
                except FrameTooLarge as exc:
                    error = {
                        "type": "SandboxViolation",
                        "message": f"the answer to host call {request.method} is too large "
                        f"({exc.size} bytes; the limit is {exc.limit})",
                    }
                except TypeError as exc:
                    error = {
                        "type": "TypeError",
                        "message": f"the answer to host call {request.method} is not JSON: {exc}",
                    }
        try:
            return encode_frame({"op": "host_error", "id": cid, "error": error}, max_bytes)
        except (TypeError, FrameTooLarge):
            fallback = {"type": "Exception", "message": "the host's error could not be encoded"}
            return encode_frame({"op": "host_error", "id": cid, "error": fallback}, max_bytes)

    # -- errors -------------------------------------------------------------------------

    def _wall_error(self, call: Call) -> WallTimeExceeded:
        limit_ms, kind = call.budget_ms, call.kind
        what = "wall-time limit" if kind == "wall" else "timeout"
        err = WallTimeExceeded(
            f"the sandboxed call for {self.key} exceeded its {what} of {limit_ms}ms; "
            "the worker was killed, so nothing it scheduled will run"
        )
        setattr(err, "limit_ms", limit_ms)  # noqa: B010  (class in _errors has no slot)
        setattr(err, "kind", kind)  # noqa: B010
        return err

    def _cpu_error(self, limit_ms: int, used_ms: float | None = None) -> CpuLimitExceeded:
        return self._cpu_limit_error(
            f"the sandboxed call for {self.key} exceeded its CPU-time limit", limit_ms, used_ms
        )

    def _load_cpu_error(self, limit_ms: int, used_ms: float | None) -> CpuLimitExceeded:
        err = self._cpu_limit_error(
            f"loading the code for {self.key} (its module-level code and init) exceeded its "
            "load CPU-time limit",
            limit_ms,
            used_ms,
        )
        setattr(err, "phase", "load")  # noqa: B010
        return err

    @staticmethod
    def _cpu_limit_error(what: str, limit_ms: int, used_ms: float | None) -> CpuLimitExceeded:
        measured = "" if used_ms is None else f" (the host measured {used_ms:.0f}ms)"
        err = CpuLimitExceeded(f"{what} of {limit_ms}ms{measured}; the worker was killed")
        setattr(err, "limit_ms", limit_ms)  # noqa: B010  (class in _errors has no slot)
        # Unmeasured: its timer or the watch stopped it, so it used the limit at least (a
        # dead worker's CPU clock can no longer be read). The audit records this figure.
        setattr(err, "cpu_ms", float(limit_ms) if used_ms is None else used_ms)  # noqa: B010
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

    def _died(self, worker: WorkerHandle, cpu_limit_ms: int) -> SandboxError:
        """The worker's channel closed: wait for its exit status and say what happened."""
        if not worker.wait_exited(0.5):
            # Alive but it closed its end of the channel: that is a protocol violation.
            self._discard(worker, kill=True, crash=True)
            return WorkerCrashed(
                f"the sandbox worker for {self.key} closed its channel; it was killed"
            )
        worker.exit.wait(_DEATH_REPORT_TIMEOUT_S)
        error, crash = self._classify(worker, cpu_limit_ms)
        self._discard(worker, kill=False, crash=crash, limit=_limit_kill(error, crash))
        return error

    def _classify(self, worker: WorkerHandle, cpu_limit_ms: int) -> tuple[SandboxError, bool]:
        """(error, counts as a crash) for a dead worker, from the fork server's report."""
        box = worker.exit
        who = f"the sandbox worker for {self.key}"
        if worker.cpu_verdict == "call":
            # Killed by the host's CPU watch in the middle of its call.
            return self._cpu_error(cpu_limit_ms), True
        if worker.cpu_verdict == "idle":
            return CpuLimitExceeded(
                f"{who} used CPU time while idle (more than {IDLE_CPU_MS}ms between calls) "
                "and was killed; a new worker replaces it"
            ), True
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
            setattr(err, "cpu_ms", float(cpu_limit_ms))  # noqa: B010  (at least)
            return err, True
        if box.code == EXIT_CONFINEMENT:
            return WorkerCrashed(f"{who} could not be confined (nothing ran)"), True
        if box.code == EXIT_PROTOCOL:
            return WorkerCrashed(f"{who} gave up on a broken channel"), True
        if box.signal == signal.SIGKILL:
            if box.cpu_ms is not None and box.cpu_ms >= worker.cpu_s * 1000:
                # The hard RLIMIT_CPU (one second past SIGXCPU): it survived SIGXCPU, so it
                # escaped its timers, like the SIGXCPU case above.
                err = CpuLimitExceeded(
                    f"{who} used up its lifetime CPU budget of {worker.cpu_s}s (its per-call "
                    f"limit is {cpu_limit_ms}ms) and was killed; a new worker replaces it"
                )
                setattr(err, "limit_ms", cpu_limit_ms)  # noqa: B010
                setattr(err, "cpu_ms", float(cpu_limit_ms))  # noqa: B010  (at least)
                return err, True
            # Not the host (worker.killed is set before every kill the host sends), not a
            # limit: an operator or the kernel's OOM killer. Not the plugin's doing, so no
            # back-off; counted apart and logged, so an operator can see it happen.
            with self._lock:
                self.outside_kills += 1
            log.warning(
                "the sandbox worker %d for %s was killed from outside the sandbox (SIGKILL "
                "not sent by the host, e.g. by an operator or the OOM killer); it is "
                "replaced and not counted as a crash",
                worker.pid,
                self.key,
            )
            return WorkerCrashed(
                f"{who} was killed from outside the sandbox (SIGKILL not sent by the host, "
                "e.g. by an operator or the kernel's OOM killer); a new worker replaces it. "
                "Retry the request; if it keeps happening, check the host's memory and who "
                "sends signals to its processes"
            ), False
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

    def _checkout(self, deadline: float, call: Call) -> WorkerHandle:
        while True:
            dead: list[WorkerHandle] = []
            stale: list[WorkerHandle] = []
            burners: list[WorkerHandle] = []
            spawn = False
            # Asked before the lock, not under it: a probe that let go of the GIL while
            # holding the pool's lock made every other host thread queue behind it.
            server_ok = self._sup._server_alive()
            with self._lock:
                if self._closed_reason is not None:
                    raise SandboxUnavailableError(self._closed_reason)
                while self._idle:
                    worker = self._idle.pop()
                    if worker.server_epoch != self._sup.epoch or not server_ok:
                        # Made by a fork server that has died or been replaced (its workers
                        # die with it): stale, whatever its socket says yet. The spawn
                        # below starts a new fork server at once.
                        stale.append(worker)
                        continue
                    # The call's CPU baseline, read before the liveness checks below: a
                    # worker still alive after the read owned its pid during it.
                    cpu = worker.cpu_ns()
                    if not worker.usable() or worker.has_stray_input() or cpu is None:
                        dead.append(worker)
                    elif cpu - worker.idle_cpu_ns > IDLE_CPU_MS * 1_000_000:
                        worker.cpu_verdict = "idle"
                        burners.append(worker)
                    else:
                        worker.call_cpu_ns = cpu
                        worker.call_limit_ns = call.limit_ns + int(
                            worker.last_request_size * _REQUEST_NS_PER_BYTE
                        )
                        self._busy.add(worker)
                        return worker
                if not dead and not stale and not burners:
                    # Grow lazily, one worker per concurrent caller, up to pool_size; after
                    # a crash no new worker starts until the backoff allows it.
                    size = len(self._busy) + self._starting
                    blocked = self._crashes.blocked(self.key)
                    if size < self.pool_size and blocked is None:
                        self._starting += 1
                        spawn = True
                    elif size == 0:
                        # Nothing running and nothing may start: fail now (EmDash's runner
                        # did the same after its restart loop gave up), not at the deadline.
                        err = SandboxUnavailableError(blocked or f"no worker for {self.key}")
                        # When a new worker may start (seconds), for a Retry-After.
                        setattr(err, "retry_after_s", self._crashes.retry_in())  # noqa: B010
                        raise err
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            # Nothing ran: there is no worker to kill for this call.
                            raise self._wall_error(call)
                        self._waiting += 1
                        try:
                            self._cond.wait(remaining)
                        finally:
                            self._waiting -= 1
                        continue
            for worker in stale:
                # The fork server's death was counted by the supervisor, not here.
                self._discard(worker, kill=True, crash=False)
            for worker in burners:
                self._kill_burner(worker)
            for worker in dead:
                if worker.wait_exited(0.2):
                    # Died while idle: a crash unless a limit or the host did it.
                    worker.exit.wait(_DEATH_REPORT_TIMEOUT_S)
                    error, crash = self._classify(worker, self.limits.cpu_ms)
                    limit = _limit_kill(error, crash)
                else:
                    crash, limit = True, None  # alive, but it sent bytes nobody asked for
                self._discard(worker, kill=True, crash=crash, limit=limit)
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
                # Idle since its load was measured: a few microseconds of its spin-wait
                # are charged to this call (well within the slack).
                worker.call_cpu_ns = worker.idle_cpu_ns
                worker.call_limit_ns = call.limit_ns + int(
                    worker.last_request_size * _REQUEST_NS_PER_BYTE
                )
                self._busy.add(worker)
                return worker
        self._discard(worker, kill=True, crash=False)
        raise SandboxUnavailableError(reason)

    def _spawn(self) -> WorkerHandle:
        """Fork a worker, wait until it is confined, load the bundle (and run init)."""
        lim = self.limits
        cpu_s = lim.lifetime_cpu_s()
        forked = time.monotonic()
        try:
            proc, server_epoch = self._sup._fork(lim.memory_mb, cpu_s)
        except SandboxUnavailableError as exc:
            # The host itself is short of descriptors (or processes): this request fails,
            # and it is no crash of anyone's (nothing is counted, nothing backs off).
            raise SandboxUnavailableError(
                f"no sandbox worker could be started for {self.key}: {exc}"
            ) from None
        with self._lock:
            self.workers_started += 1
        worker = WorkerHandle(proc, self._sup.max_frame_bytes, lim.memory_mb, server_epoch, cpu_s)
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
        spec = self._spec
        init = None if spec.init is None else [spec.init[0], list(spec.init[1])]
        try:
            frame = encode_frame(
                {
                    "op": "load",
                    "id": cid,
                    "files": spec.files,
                    "entry": spec.entry,
                    "init": init,
                    "cpu_ms": lim.load_cpu_ms,
                },
                worker.max_frame_bytes,
            )
        except (TypeError, FrameTooLarge) as exc:
            self._discard(worker, kill=True, crash=False)
            raise SandboxError(
                f"the code for {self.key} cannot be sent to the sandbox: {exc}"
            ) from None
        # No host calls during a load (init included): on_host_call is None.
        load = Call(
            op="load",
            cid=cid,
            frame=frame,
            limits=lim,
            cpu_ms=lim.load_cpu_ms,
            budget_ms=lim.wall_ms,
            kind="wall",
            on_host_call=None,
        )
        load.start_clock()
        # The load's CPU budget as the host measures it, from the fork (the clock starts
        # there): the watch holds a loading worker to it too, as it does a busy one.
        load_limit_ns = (lim.load_cpu_ms + CALL_CPU_SLACK_MS) * 1_000_000 + int(
            len(frame) * _REQUEST_NS_PER_BYTE
        )
        worker.call_cpu_ns, worker.call_limit_ns = 0, load_limit_ns
        with self._lock:
            self._loading.add(worker)
        try:
            outcome = self._exchange(worker, load)
        except CpuLimitExceeded:
            # Stopped by its own timer (SIGPROF: it used load_cpu_ms, at least) or by the
            # watch (over the host-measured budget, which is more).
            self._report_load("limit", float(lim.load_cpu_ms), forked)
            raise self._load_cpu_error(lim.load_cpu_ms, None) from None
        except WallTimeExceeded:
            self._report_load("timeout", None, forked)
            raise
        except SandboxError:
            self._report_load("error", None, forked)
            raise
        finally:
            with self._lock:
                self._loading.discard(worker)
            worker.call_limit_ns = None
        if isinstance(outcome, LoadedFrame):
            # Its whole life so far (the clock starts at the fork) is confinement and the
            # load, which its timer should have kept under load_cpu_ms.
            cpu = worker.cpu_ns()
            if cpu is None and not worker.wait_exited(0.5):
                # Alive, yet unreadable: no silent fallback to what the worker says.
                self._discard(worker, kill=True, crash=False)
                raise SandboxNotAvailableError(
                    "the host cannot read the CPU time of its sandbox workers "
                    "(clock_gettime on a worker's process CPU clock failed), so CPU limits "
                    "cannot be enforced; run the sandbox on a host where it can"
                )
            if cpu is None or worker.wait_exited(0):
                self._report_load("error", None, forked)
                raise self._died(worker, lim.load_cpu_ms)
            if cpu > load_limit_ns:
                worker.cpu_verdict = "call"
                self._discard(worker, kill=True, crash=True)
                self._report_load("limit", cpu / 1e6, forked)
                raise self._load_cpu_error(lim.load_cpu_ms, cpu / 1e6)
            self._report_load("ok", cpu / 1e6, forked)
            worker.idle_cpu_ns = cpu
            worker.last_request_size = len(frame)
            worker.init_result = outcome.init
            return worker
        assert isinstance(outcome, ErrorFrame)
        # The code itself failed to load: deterministic, not a crash. This worker is useless.
        self._discard(worker, kill=True, crash=False)
        self._report_load("error", None, forked)
        raise self._error_from_frame(outcome, lim.memory_mb)

    def _report_load(self, outcome: str, cpu_ms: float | None, forked: float) -> None:
        """Tell the host application what one load cost (its errors never fail the load)."""
        on_load = self.on_load
        if on_load is None:
            return
        try:
            on_load(LoadReport(outcome, cpu_ms, (time.monotonic() - forked) * 1000))
        except Exception:
            log.exception("the on_load callback failed for %s", self.key)

    def _release(self, worker: WorkerHandle, call: Call, rss_kb: int) -> None:
        """Back to the pool after a call that ended normally, unless the pool wants a fresh
        worker per call, the host application refused one of its host calls over a limit,
        the call left it bloated, or it has used most of its lifetime CPU budget."""
        # rss_kb is the worker's own report: a lying worker only keeps its own bloated
        # process (RLIMIT_AS still bounds it) or gets itself replaced; nothing here is a
        # security decision. memory_mb of this call's limits: a call may tighten the check.
        # The lifetime check uses the host's figure (idle_cpu_ns was just read).
        if self._spec.fresh_worker and not call.retire:
            self._retire_fresh(worker)
        elif (
            call.retire
            or rss_kb - worker.baseline_rss_kb > call.limits.memory_mb * 1024 * RSS_RECYCLE_FRACTION
            or worker.idle_cpu_ns >= worker.cpu_s * 1e9 * CPU_RETIRE_FRACTION
        ):
            self._discard(worker, kill=True, crash=False)
        else:
            self._checkin(worker)

    def _retire_fresh(self, worker: WorkerHandle) -> None:
        """``fresh_worker``: the used worker is killed now; waiting for it to be reaped and
        making the next call's worker happen off the caller's thread, so a caller pays the
        fork and load only when calls come faster than workers can be made."""
        worker.kill()  # at once: it never runs anything again
        with self._lock:
            self._busy.discard(worker)
            self._epoch += 1
            start = (
                self._closed_reason is None
                and len(self._busy) + len(self._idle) + self._starting < self.pool_size
                and self._crashes.blocked(self.key) is None
            )
            if start:
                self._starting += 1
            elif self._waiting:
                self._cond.notify_all()
        threading.Thread(
            target=self._after_fresh, args=(worker, start), name="sandbox-fresh-worker", daemon=True
        ).start()

    def _after_fresh(self, worker: WorkerHandle, start: bool) -> None:
        worker.wait_gone(_DEATH_REPORT_TIMEOUT_S)
        worker.dispose()
        if not start:
            return
        new: WorkerHandle | None = None
        try:
            new = self._spawn()
        except SandboxUnavailableError:
            pass  # closed, or backing off after crashes: the next call says so
        except Exception as exc:
            # The next call starts a worker itself and reports what goes wrong then.
            log.warning("could not prepare a fresh sandbox worker for %s: %s", self.key, exc)
        finally:
            with self._lock:
                self._starting -= 1
                if new is not None and self._closed_reason is None:
                    self._idle.append(new)
                    new = None
                self._cond.notify_all()
        if new is not None:  # the pool was closed meanwhile
            self._discard(new, kill=True, crash=False)

    def _kill_burner(self, worker: WorkerHandle) -> None:
        """Kill a worker the CPU watch caught (``cpu_verdict`` set): a crash of this pool."""
        what = "while idle" if worker.cpu_verdict == "idle" else "beyond its call's budget"
        log.warning(
            "the sandbox worker %d for %s used CPU time %s; it was killed and will be "
            "replaced (counted as a crash)",
            worker.pid,
            self.key,
            what,
        )
        self._discard(worker, kill=True, crash=True)

    def _watch(self) -> None:
        """One look of the supervisor's watch thread at this pool's workers' CPU time.

        Idle workers must stay within :data:`IDLE_CPU_MS` of where their last call left
        them; busy ones within their call's budget. An offender is taken out of the pool
        under the lock (no caller can take it meanwhile) and killed outside it. A busy one
        is only killed: its caller sees the death and reports it (``cpu_verdict``).
        """
        idle_budget = IDLE_CPU_MS * 1_000_000
        # Before the answer arrives its size is unknown: allow for the largest.
        any_answer = int(self._sup.max_frame_bytes * _ANSWER_NS_PER_BYTE)
        burners: list[WorkerHandle] = []
        with self._lock:
            if self._closed_reason is not None:
                return
            for worker in self._idle:
                cpu = worker.cpu_ns()
                # Alive after the read: the figure was this worker's (a dead one is left
                # for the next checkout to classify).
                if cpu is None or not worker.usable() or worker.wait_exited(0):
                    continue
                if cpu - worker.idle_cpu_ns > idle_budget:
                    worker.cpu_verdict = "idle"
                    burners.append(worker)
            for worker in burners:
                self._idle.remove(worker)
                self._busy.add(worker)  # in nobody's hands, but out of the idle list
            for worker in [*self._busy, *self._loading]:
                limit = worker.call_limit_ns
                if worker.cpu_verdict is not None or limit is None:
                    continue
                cpu = worker.cpu_ns()
                if cpu is None or not worker.usable() or worker.wait_exited(0):
                    continue
                if cpu - worker.call_cpu_ns > limit + any_answer:
                    worker.cpu_verdict = "call"
                    worker.kill()
                    log.warning(
                        "the sandbox worker %d for %s used more CPU time than its call's "
                        "budget; it was killed",
                        worker.pid,
                        self.key,
                    )
        for worker in burners:
            self._kill_burner(worker)

    def _checkin(self, worker: WorkerHandle) -> None:
        with self._lock:
            if self._closed_reason is None and worker.usable():
                worker.call_limit_ns = None
                self._busy.discard(worker)
                self._idle.append(worker)
                if self._waiting:
                    self._cond.notify_all()
                return
        self._discard(worker, kill=True, crash=False)

    def _discard(
        self, worker: WorkerHandle, *, kill: bool, crash: bool, limit: str | None = None
    ) -> None:
        """Retire a worker for good (waiting until a killed one is really gone).

        ``crash``: count it as a crash; else ``limit`` (``"cpu"``, ``"memory"``, ``"wall"``):
        it was stopped by that enforced limit, which counts once past the allowance (see
        the supervisor's ``_CrashTracker``)."""
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
                self._crashes.record()
            elif limit is not None:
                self._crashes.record(limit)
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
