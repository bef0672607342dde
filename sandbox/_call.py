"""One operation on a worker, as the host sees it: its limits, its result, calls in flight.

Which process runs this: the host (in the thread that makes the call). The worker's side of
an operation is ``_worker``.

:class:`SandboxLimits` are the per-invocation limits (also the load limits of a pool),
:class:`CallResult` is what a call returned, and :class:`InFlight` counts the calls that are
waiting on workers in this process, which decides how a call waits for its answer (see
``_pool.WorkerPool._exchange``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import SandboxError

__all__ = ["CallResult", "InFlight", "OnHostCall", "SandboxLimits"]

# Answers a worker's host call: (method, params) -> a JSON value, or raises.
OnHostCall = Callable[[str, dict[str, Any]], Any]


class InFlight(list[None]):
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
    """

    cpu_ms: int = 50
    memory_mb: int = 128
    wall_ms: int = 30_000
    load_cpu_ms: int = 10_000

    def __post_init__(self) -> None:
        for name in ("cpu_ms", "memory_mb", "wall_ms", "load_cpu_ms"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise SandboxError(f"SandboxLimits.{name} must be a positive int, got {value!r}")


class CallResult(NamedTuple):
    """What a call returned, and what it cost (as the worker reported it)."""

    value: Any
    cpu_ms: float
    rss_kb: int
