"""Per-invocation budgets of bridge calls (subrequests) and log lines.

One :class:`CallBudget` is created by the plugin host for each hook or route invocation and
passed to every ``Bridge.dispatch`` of that invocation. Every bridge call except ``log``
costs one subrequest; ``http/fetch`` costs one per hop (charged by the HTTP client, so a
redirect chain cannot be used to multiply requests for free). ``log`` has its own cap
(``log_lines``, 200 per invocation) so a plugin cannot flood the host log, and going over it
drops lines instead of failing. A dropped line still cost the host a round trip, so each
``log`` call past the cap *is* charged as a subrequest: a logging loop ends with
``SubrequestLimitExceeded`` after ``log_lines + subrequests`` calls instead of burning host
CPU until the wall limit.

Across invocations, :class:`LogWindow` caps each plugin's log bytes per minute (quota
``log_bytes_per_minute``): past it lines are dropped, with one warning per window, and the
plugin is never failed for it (logging must not fail a handler).

The budget also carries the invocation's **deadline** (``time.monotonic`` seconds): the
plugin host sets it to the invocation's start plus ``min(limits.wall_ms, timeout_ms)``, so
host-side work done on the plugin's behalf cannot outlive the invocation that asked for it.
The supervisor can stop a worker at its wall limit, but not a host thread blocked in a
service call for that worker: a service that may wait (``http/fetch``: connect, every read,
DNS, redirects) bounds each wait by :meth:`CallBudget.remaining` and gives up once the
deadline has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .._shared._errors import SubrequestLimitExceeded

__all__ = ["LOG_LINE_MAX_BYTES", "CallBudget", "LogWindow"]

LOG_LINE_MAX_BYTES = 8 * 1024


class CallBudget:
    """Counts one invocation's subrequests (``None`` = unlimited) and log lines.

    ``exceeded`` turns true the first time the limit is passed and stays true: the plugin may
    catch the error in its own code, and the host still fails the invocation afterwards.
    """

    __slots__ = (
        "deadline",
        "deadline_ms",
        "exceeded",
        "log_dropped",
        "log_lines",
        "logged",
        "subrequests",
        "used",
    )

    def __init__(
        self,
        subrequests: int | None,
        log_lines: int = 200,
        *,
        deadline_ms: int | None = None,
        deadline: float | None = None,
    ) -> None:
        """``deadline_ms``: the invocation's time budget, counted from now; ``deadline``: the
        same as an absolute ``time.monotonic()`` value (when the host took the start time
        earlier). Given both, the earlier wins. Neither: no deadline.
        """
        self.deadline: float | None = deadline
        if deadline_ms is not None:
            relative = time.monotonic() + deadline_ms / 1000
            self.deadline = relative if deadline is None else min(deadline, relative)
        # For messages only: the budget the plugin (or the hook's caller) configured.
        self.deadline_ms = deadline_ms
        self.subrequests = subrequests
        self.log_lines = log_lines
        self.used = 0
        self.logged = 0
        self.log_dropped = 0
        self.exceeded = False

    def charge(self, plugin_id: str, *, what: str = "") -> None:
        """Count one subrequest; raise ``SubrequestLimitExceeded`` past the limit."""
        self.used += 1
        if self.subrequests is not None and self.used > self.subrequests:
            self.exceeded = True
            raise SubrequestLimitExceeded(
                f"Plugin {plugin_id} exceeded its subrequest limit of {self.subrequests} "
                f"calls during this invocation{what}. Make fewer ctx calls per invocation or "
                "raise limits.subrequests in the plugin descriptor.",
                plugin_id=plugin_id,
            )

    def remaining(self) -> float | None:
        """Seconds left before the invocation's deadline (``<= 0``: passed), ``None``: no deadline."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def take_log_line(self) -> bool:
        """Whether one more log line may be written in this invocation."""
        if self.logged >= self.log_lines:
            self.log_dropped += 1
            return False
        self.logged += 1
        return True


class LogWindow:
    """Log bytes per plugin per fixed one-minute window (quota ``log_bytes_per_minute``).

    ``limit_for(plugin_id)`` gives the plugin's current quota. Windows are fixed (start at
    a plugin's first line after the previous one ended), kept in ``time.monotonic`` so a
    clock change cannot reopen one. One entry per plugin that logged: bounded by the
    number of plugins.
    """

    def __init__(
        self,
        limit_for: Callable[[str], int],
        *,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit_for = limit_for
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # plugin id -> [window start, bytes written, lines dropped]
        self._state: dict[str, list[float]] = {}

    def take(self, plugin_id: str, size: int) -> tuple[bool, int]:
        """``(write, dropped)``: whether a line of ``size`` bytes may be written now, and
        (when not) how many lines this window has dropped so far, this one included."""
        limit = self._limit_for(plugin_id)
        now = self._clock()
        with self._lock:
            state = self._state.get(plugin_id)
            if state is None or now - state[0] >= self.window_s:
                state = self._state[plugin_id] = [now, 0, 0]
            if state[1] + size <= limit:
                state[1] += size
                return True, 0
            state[2] += 1
            return False, int(state[2])

    def limit(self, plugin_id: str) -> int:
        return self._limit_for(plugin_id)
