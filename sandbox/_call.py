"""One operation on a worker, as the host sees it: its limits, its state, its result.

Which process runs this: the host (in the thread that makes the call). The worker's side of
an operation is ``_worker``.

:class:`SandboxLimits` are the per-invocation limits (also the load limits of a pool),
:class:`Call` is one operation in flight (a load or a call: its request frame, its limits,
its deadline and who answers its host calls), :class:`CallResult` is what a call returned,
and :class:`InFlight` counts the calls that are waiting on workers in this process, which
decides how a call waits for its answer (see ``_pool.WorkerPool._exchange``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import SandboxError

__all__ = [
    "MIN_WORKER_CPU_S",
    "WORKER_CPU_CALLS",
    "Call",
    "CallResult",
    "InFlight",
    "LoadReport",
    "OnHostCall",
    "OnLoad",
    "SandboxLimits",
]

# The lifetime CPU backstop of a worker (RLIMIT_CPU), unless SandboxLimits.worker_cpu_s sets
# it: its load plus WORKER_CPU_CALLS calls that each use their whole cpu_ms, and at least
# MIN_WORKER_CPU_S (a worker replaced every few seconds would spend its life loading). With
# the default limits: 2 s + 1000 x 50 ms = 52 s, so 60 s.
WORKER_CPU_CALLS = 1000
MIN_WORKER_CPU_S = 60

# Answers a worker's host call: (method, params) -> a JSON value, or raises.
OnHostCall = Callable[[str, dict[str, Any]], Any]


class LoadReport(NamedTuple):
    """What loading the bundle into one new worker cost, as the host measured it.

    Every worker a pool starts runs the bundle's module-level code (and ``init``) again, so
    the host application is told about each load (``Supervisor.load(on_load=...)``): it may
    count, audit or bill it. ``outcome`` is ``"ok"``, ``"limit"`` (stopped by
    ``load_cpu_ms``), ``"timeout"`` (stopped by ``wall_ms``) or ``"error"`` (a crash or a
    failure to load). ``cpu_ms`` is the kernel's count of the worker's CPU time from the
    fork (confinement included); for a worker its own CPU timer stopped it is the limit,
    which it used at least (a dead process's clock can no longer be read); None when
    unknown. ``wall_ms`` is from the fork to the outcome.
    """

    outcome: str
    cpu_ms: float | None
    wall_ms: float


# Told about every load a pool runs, in the thread that started the worker.
OnLoad = Callable[[LoadReport], None]


class InFlight(list[None]):
    """The calls waiting on workers in this process, one entry each (are others calling?).

    A list because ``append`` and ``pop`` are atomic under the GIL: no lock to take twice
    per call. Two calls entering at once may both see two entries, which only means both
    use the GIL-keeping channel calls. ``spin_limit``: up to how many calls in flight a
    call and its worker may spin (see ``_pool.CPUS_PER_SPINNING_CALL``).
    """

    __slots__ = ("spin_limit",)

    def __init__(self, spin_limit: int = 1) -> None:
        super().__init__()
        self.spin_limit = spin_limit


@dataclass(frozen=True)
class SandboxLimits:
    """Per-invocation limits of sandboxed code.

    ``cpu_ms`` CPU time per call, ``memory_mb`` memory on top of the worker's baseline,
    ``wall_ms`` wall-clock time per call (including host calls), ``load_cpu_ms`` CPU time
    for compiling and loading the bundle (and ``init``) in each new worker: module-level
    code runs again in every worker a pool starts, so this is paid per worker, not once
    (see ``LoadReport``). 2 s by default: compiling costs ~0.1 ms per line of source
    (measured: ~520 ms for 5000 lines), so that is room for well over 10 000 lines.
    ``worker_cpu_s`` the lifetime CPU backstop of one worker in seconds (None: derived
    from the others, see :meth:`lifetime_cpu_s`).
    """

    cpu_ms: int = 50
    memory_mb: int = 128
    wall_ms: int = 30_000
    load_cpu_ms: int = 2_000
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
    """What a call returned, and what it cost.

    ``cpu_ms`` is measured by the host: the kernel's count of the worker's CPU time from
    when the call took the worker to when its answer arrived (so it includes decoding the
    request and encoding the answer). ``rss_kb`` is the worker's own report of its peak
    RSS: a diagnostic (a lying worker only changes when its own process is recycled; the
    memory limit itself is the kernel's RLIMIT_AS). ``worker_cpu_ms`` is what the worker
    said it used: a diagnostic only, never used for any decision.
    """

    value: Any
    cpu_ms: float
    rss_kb: int
    worker_cpu_ms: float = 0.0


@dataclass(slots=True, kw_only=True)
class Call:
    """One operation sent to one worker (``load``, ``call`` or ``raw_exec``).

    Made once per operation, before a worker is taken, and handed to every step of it
    (check-out, the exchange, the verdict), so those steps cannot disagree about its id,
    its limits or its deadline.
    """

    op: str
    """The request's ``op``: ``load`` decides which answers are valid and how to wait."""
    cid: int
    """The id every frame of this operation carries (frames with another id are forged)."""
    frame: bytes
    """The request, already encoded: bad arguments fail before they cost a worker anything."""
    limits: SandboxLimits
    """The limits in force (``memory_mb`` decides the recycle check and names memory errors)."""
    cpu_ms: int
    """The CPU limit the worker arms: ``limits.cpu_ms``, or ``load_cpu_ms`` for a load."""
    budget_ms: int
    """The wall budget, ``min(limits.wall_ms, timeout_ms)``."""
    kind: str
    """Which of the two set ``budget_ms``: ``"wall"`` or ``"timeout"`` (for the error)."""
    on_host_call: OnHostCall | None
    """Answers the worker's host calls in the calling thread; None refuses them all."""
    deadline: float = 0.0
    """Set by :meth:`start_clock`; until then the call has no time at all (fails closed)."""
    limit_ns: int = 0
    """The call's CPU budget as the host measures it, without the shares of the worker's
    previous request and of the answer (see ``_pool.CALL_CPU_SLACK_MS``)."""
    retire: bool = False
    """Set when the host application refused a host call over a limit (subrequests): the
    invocation failed on a limit, so its worker is not reused, whatever the plugin did with
    the error."""

    def start_clock(self) -> None:
        """Start the wall budget now: once a worker is ready, not while one is being made."""
        self.deadline = time.monotonic() + self.budget_ms / 1000
