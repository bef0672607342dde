"""The cron scheduler (docs/plugin-reference.md, ctx.cron): ``rt.cron``.

``schedule`` / ``cancel`` / ``list`` are what ``ctx.cron`` calls through the bridge (always
scoped by the calling plugin's id). :meth:`CronService.tick` is the executor:

1. tasks stuck in ``running`` (a crashed run) go back to idle: those locked longer ago than
   10 minutes, or than the longest cron hook timeout of the enabled plugins plus a minute if
   that is longer (so a task still running on another host is never taken from it); a task's
   lock restarts when its run begins, so waiting behind the tick's other tasks does not count;
2. up to ``tasks_per_tick`` due tasks are claimed atomically (``running``), round-robin
   across plugins: each plugin's oldest due task first, at most ``plugin_tasks_per_tick``
   per plugin, the plugins in an order that rotates from tick to tick;
3. each runs the owning plugin's ``cron`` hook with ``{name, data, scheduledAt}``;
4. a **recurring** task, whether the run succeeded or not, is re-armed at its next fire
   time after the run ended (missed runs are not replayed one by one), and never sooner
   than ``min_interval_s`` after the run it just had;
5. a **one-shot** task is deleted after a successful run; after a failed run it is retried
   1, 2, 4, 8 and 16 minutes later (the count lives in ``data.__emdash.retryCount``) and
   deleted after the fifth failed retry;
6. scheduled content whose time has come is published (``publish_due``, which the runtime
   wires to ``rt.content.publish_due``), so ``content:afterPublish`` fires for it.

A handler that reschedules or cancels its own task during the run wins: the executor sees
that the stored task changed and leaves the new schedule alone.

**Quotas** (:class:`CronLimits`, ``rt.cron.limits``, ``[cron]`` in ``emdash.toml``): a
plugin has at most ``max_tasks_per_plugin`` tasks; a recurring schedule must not run more
often than every ``min_interval_s`` seconds; and at most ``max_imminent_oneshots`` of its
one-shot tasks may be due within ``min_interval_s`` from now (a past time counts: it is due
at once); a task's data is at most ``max_data_bytes`` of JSON. ``schedule`` refuses what exceeds one with a :class:`CronScheduleError` naming the
plugin and the quota; tasks already stored are never dropped when a quota is lowered (a
recurring one that now runs too often is re-armed no sooner than the minimum interval).

**Clock jumps.** Fire times are wall-clock times (they are stored and shared with other
processes), but the executor never trusts a wall-clock reading on its own: run durations are
measured with the monotonic clock, and every tick compares the wall clock with the previous
tick's reading plus the monotonic time elapsed. When the wall clock went *backwards* (the
correction after a forward jump), or on the first tick of a service (the process may have
been restarted after one), next run times that a jumped clock pushed too far ahead are
pulled back: a recurring task to its next fire time from now, a one-shot retry to now plus
its backoff. A lock taken under a jumped clock is released too (see ``recover_stale``).

Time comes from ``clock`` (a callable returning an aware ``datetime``), or the ``now``
argument of :meth:`tick`, so tests drive the executor without sleeping.
:meth:`CronService.start` runs ticks on a background thread for hosts that serve a site
(EmDash's Node driver: wake at the next due time, clamped to 1-60 s; a ``schedule`` call
wakes it early, but ticks never start less than a second apart, so plugins scheduling
tasks from their own cron handlers cannot turn the driver into a busy loop).
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .._shared._errors import EmDashError
from ._cron_schedule import (
    CronScheduleError,
    format_iso,
    min_gap_seconds,
    next_fire,
    parse_iso,
    parse_schedule,
    validate_task_name,
)

if TYPE_CHECKING:
    from .._store import Store
    from ._hook_runner import HookRunner

__all__ = ["MAX_RETRIES", "CronLimits", "CronRun", "CronScheduleError", "CronService"]

log = logging.getLogger("emdash.cron")

STALE_AFTER_S = 600
# Added to the longest cron hook timeout: a run that ended at its timeout still has to write
# its outcome (and its host may be slow) before its lock may be called stale.
STALE_MARGIN_S = 60
MAX_RETRIES = 5
RESERVED_KEY = "__emdash"
# A wall-clock reading this far from the previous tick's plus the monotonic time elapsed
# is a clock jump (NTP slews by far less; a suspended machine only looks like a forward jump,
# which needs no repair).
CLOCK_JUMP_S = 60.0
# Ticks of the background driver start at least this far apart (monotonic seconds).
MIN_TICK_GAP_S = 1.0


class CronLimits(BaseModel):
    """The scheduler's quotas and per-tick budget (``[cron]`` in ``emdash.toml``).

    Defaults suit a site running untrusted plugins; every value can be raised. The
    per-plugin ones bound what one plugin can make the host store and run; the per-tick
    ones bound how long one tick takes and how it is shared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tasks_per_plugin: int = Field(
        default=100, ge=1, le=1_000_000, description="tasks one plugin may have stored"
    )
    min_interval_s: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="shortest time between two runs of a recurring task; also the window "
        "within which one-shots count as imminent",
    )
    max_imminent_oneshots: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="one-shot tasks one plugin may have due within min_interval_s",
    )
    max_data_bytes: int = Field(
        default=65_536, ge=0, le=64 * 1024 * 1024, description="one task's data, as JSON"
    )
    tasks_per_tick: int = Field(
        default=10, ge=1, le=10_000, description="tasks one tick claims and runs"
    )
    plugin_tasks_per_tick: int = Field(
        default=5, ge=1, le=10_000, description="of those, at most this many per plugin"
    )


@dataclass(frozen=True, slots=True)
class CronRun:
    """What one claimed task did in a tick.

    ``outcome``: ``"rescheduled"`` (recurring, re-armed), ``"completed"`` (one-shot done,
    deleted), ``"retry"`` (one-shot failed, retried at ``next_run_at``), ``"dropped"``
    (one-shot failed its last retry, deleted), ``"changed"`` (the handler rescheduled or
    cancelled its own task), ``"skipped"`` (the stored data was not JSON), ``"taken"``
    (another tick took the task over before it started here: it ran there, not here).
    """

    plugin_id: str
    name: str
    scheduled_at: str
    success: bool
    outcome: str
    next_run_at: str | None = None
    retry_count: int = 0
    error: str | None = None


class CronService:
    """Per-plugin scheduled tasks and their executor; available as ``rt.cron``.

    ``publish_due(now_iso)`` publishes the scheduled content due at ``now_iso``; every tick
    calls it after the plugins' tasks. No thread runs until :meth:`start`.
    """

    def __init__(
        self,
        store: Store,
        hooks: HookRunner,
        *,
        publish_due: Callable[[str], object],
        clock: Callable[[], datetime] | None = None,
        limits: CronLimits | None = None,
    ) -> None:
        self._tasks = store.cron_tasks
        self._hooks = hooks
        self._publish_due = publish_due
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        # Read at every schedule() and tick(): an operator may replace it at any time.
        self.limits: CronLimits = limits or CronLimits()
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rotation = ""  # plugin of the last task claimed: the next claim starts after it
        self._last_tick: tuple[datetime, float] | None = None  # (wall, monotonic)

    def _now(self) -> datetime:
        now = self.clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    # -- ctx.cron -----------------------------------------------------------------------

    def schedule(
        self, plugin_id: str, name: str, schedule: str, data: Any = None
    ) -> dict[str, Any]:
        """Create or replace the plugin's task ``name``; returns its ``list()`` entry.

        ``schedule`` is a cron expression (5 fields, 6 with seconds first, or ``@hourly``,
        ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``) or an ISO 8601 datetime for a
        one-shot run. ``data`` (JSON) is handed to the ``cron`` hook on every run.
        """
        validate_task_name(name, plugin_id=plugin_id)
        now = self._now()
        limits = self.limits
        parsed = parse_schedule(schedule, now, plugin_id=plugin_id)
        if type(data) is dict and RESERVED_KEY in data:
            raise CronScheduleError(
                f'Cron task data must not use the reserved key "{RESERVED_KEY}" '
                "(emdash keeps its retry bookkeeping there)",
                plugin_id=plugin_id,
            )
        if not parsed.one_shot:
            gap = min_gap_seconds(parsed.schedule)
            if gap < limits.min_interval_s:
                raise CronScheduleError(
                    f'Plugin "{plugin_id}": cron schedule "{parsed.schedule}" runs as often as '
                    f"every {gap} s, more often than the minimum interval "
                    f"(cron.min_interval_s = {limits.min_interval_s} s): use a schedule whose "
                    "runs are further apart, or ask the site operator to lower "
                    "cron.min_interval_s",
                    plugin_id=plugin_id,
                )
        self._tasks.upsert(
            plugin_id,
            name,
            parsed.schedule,
            is_oneshot=parsed.one_shot,
            next_run_at=parsed.next_run_at,
            data=data,
            max_tasks=limits.max_tasks_per_plugin,
            max_imminent=limits.max_imminent_oneshots,
            imminent_before=format_iso(now + timedelta(seconds=limits.min_interval_s)),
            max_data_bytes=limits.max_data_bytes,
        )
        self._wake.set()  # a sleeping scheduler thread re-arms for the new due time
        return {
            "name": name,
            "schedule": parsed.schedule,
            "nextRunAt": parsed.next_run_at,
            "oneShot": parsed.one_shot,
        }

    def cancel(self, plugin_id: str, name: str) -> bool:
        """Delete the plugin's task ``name``; False if it had none."""
        validate_task_name(name, plugin_id=plugin_id)
        return bool(self._tasks.cancel(plugin_id, name))

    def list(self, plugin_id: str) -> list[dict[str, Any]]:
        """The plugin's enabled tasks by next run: ``[{name, schedule, nextRunAt, lastRunAt}]``."""
        tasks: list[dict[str, Any]] = self._tasks.list(plugin_id)
        return tasks

    # -- runtime lifecycle coupling -----------------------------------------------------

    def set_plugin_enabled(self, plugin_id: str, enabled: bool) -> None:
        """Disabled plugins' tasks are kept but not run (called on enable/disable)."""
        self._tasks.set_enabled(plugin_id, enabled)

    def delete_plugin_tasks(self, plugin_id: str) -> None:
        """Remove every task of a plugin (called on uninstall)."""
        self._tasks.delete_plugin(plugin_id)

    # -- executor -----------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> builtins.list[CronRun]:
        """Run everything due at ``now`` (default: the clock); return what each task did."""
        moment = (
            self._now()
            if now is None
            else (now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC))
        )
        now_iso = format_iso(moment)
        limits = self.limits
        with self._tick_lock:  # one executor per service: a task is never run twice at once
            started = time.monotonic()
            if self._clock_went_back(moment, started):
                self._repair(moment)
            stale_s = max(STALE_AFTER_S, self._hooks.cron_timeout_ms() / 1000 + STALE_MARGIN_S)
            recovered = self._tasks.recover_stale(now_iso, stale_s)
            if recovered:
                log.warning(
                    "[cron] reset %d task(s) stuck running for over %.0f s (or locked "
                    "under a clock since set back)",
                    recovered,
                    stale_s,
                )
            claimed = self._tasks.claim_due(
                now_iso,
                limits.tasks_per_tick,
                per_plugin=limits.plugin_tasks_per_tick,
                after_plugin=self._rotation,
            )
            if claimed:
                self._rotation = claimed[-1]["pluginId"]
            runs = [self._run(task, moment, started, limits) for task in claimed]
        try:
            self._publish_due(now_iso)
        except EmDashError as exc:
            log.error("[cron] scheduled publishing failed: %s", exc)
        return runs

    # -- clock jumps --------------------------------------------------------------------

    def _clock_went_back(self, wall: datetime, mono: float) -> bool:
        """Whether next run times may have been computed under a clock now set back.

        True on the first tick (the previous process may have run under a jumped clock)
        and when the wall clock is behind the previous tick's reading plus the monotonic
        time since by more than :data:`CLOCK_JUMP_S`. A forward jump is only logged: run
        times computed under it are repaired when the clock is set back.
        """
        last, self._last_tick = self._last_tick, (wall, mono)
        if last is None:
            return True
        expected = last[0] + timedelta(seconds=mono - last[1])
        drift = (wall - expected).total_seconds()
        if drift > CLOCK_JUMP_S:
            log.warning("[cron] the wall clock jumped forward by %.0f s", drift)
        if drift < -CLOCK_JUMP_S:
            log.warning("[cron] the wall clock jumped back by %.0f s", -drift)
            return True
        return False

    def _repair(self, now: datetime) -> None:
        """Pull back next run times that lie further ahead than their schedule allows.

        With a clock that never goes back, a recurring task's stored next run is at most its
        next fire time after now (it was computed from an earlier now), and a one-shot retry
        is at most now plus its backoff. Anything later was computed under a clock that was
        ahead; left alone, it would stall the task for as long as the clock was off.
        """
        moves: builtins.list[tuple[str, str, str]] = []
        fires: dict[str, datetime | None] = {}  # tasks often share a schedule
        for task in self._tasks.idle_tasks():
            due = parse_iso(task["nextRunAt"])
            if due is None:
                continue
            latest: datetime | None
            if not task["isOneshot"]:
                schedule = task["schedule"]
                if schedule not in fires:
                    try:
                        fires[schedule] = next_fire(schedule, now)
                    except ValueError:
                        fires[schedule] = None
                latest = fires[schedule]
            else:
                retries = _stored_retries(task["data"])
                if not retries:
                    continue  # the plugin chose this time: it may be far ahead on purpose
                latest = now + timedelta(minutes=2 ** (min(retries, MAX_RETRIES) - 1))
            if latest is not None and due > latest:
                moves.append((task["id"], task["nextRunAt"], format_iso(latest)))
        repaired = self._tasks.rearm(moves) if moves else 0
        if repaired:
            log.warning(
                "[cron] moved %d task(s) scheduled under a clock that was ahead back to "
                "their next run from now",
                repaired,
            )

    def _run(
        self, task: dict[str, Any], now: datetime, started: float, limits: CronLimits
    ) -> CronRun:
        pid, name, scheduled = task["pluginId"], task["name"], task["nextRunAt"]
        now_iso = format_iso(now)
        try:
            raw = None if task["data"] is None else json.loads(task["data"])
        except ValueError:
            log.error('[cron] task "%s" of plugin "%s" has invalid data; skipped', name, pid)
            self._tasks.release(task["id"])
            return CronRun(pid, name, scheduled, False, "skipped", error="invalid JSON data")
        data, retries = _split_data(raw)
        # The lock restarts now (the tick's other tasks ran before this one): unless another
        # tick already took the task over because this claim's lock looked stale.
        begun = format_iso(now + timedelta(seconds=time.monotonic() - started))
        if not self._tasks.start(task["id"], task["lockedAt"], begun):
            log.warning(
                '[cron] task "%s" of plugin "%s" was taken over by another tick before it '
                "started here; not run twice",
                name,
                pid,
            )
            return CronRun(pid, name, scheduled, False, "taken", error="taken over by another tick")
        event = {"name": name, "data": data, "scheduledAt": scheduled}
        result = self._hooks.invoke_cron(pid, event)
        error = None if result.success else str(result.error)
        if not result.success:
            log.error('[cron] task "%s" of plugin "%s" failed: %s', name, pid, error)

        current = self._tasks.get(pid, name)
        if current is None or current["id"] != task["id"]:
            return CronRun(pid, name, scheduled, result.success, "changed", error=error)
        if (
            current["schedule"] != task["schedule"]
            or current["nextRunAt"] != scheduled
            or (current["data"] != task["data"])
        ):
            self._tasks.release(task["id"])  # rescheduled by its own handler: keep that
            return CronRun(
                pid, name, scheduled, result.success, "changed", current["nextRunAt"], error=error
            )

        if not task["isOneshot"]:
            # The run ended at the tick's wall time plus the *monotonic* time since: a clock
            # jump during the run does not move it.
            ended = now + timedelta(seconds=time.monotonic() - started)
            # Never sooner than the minimum interval after this run's slot. A no-op for
            # schedules accepted under the current limits; it throttles a task stored before
            # the limit was lowered (kept, as promised, but not run more often).
            slot = parse_iso(scheduled)
            after = ended
            if slot is not None:
                floor = slot + timedelta(seconds=limits.min_interval_s, microseconds=-1)
                after = max(ended, floor)
            try:
                nxt: str | None = format_iso(next_fire(task["schedule"], after))
            except ValueError:
                nxt = None  # the expression never fires again: nothing left to run
            self._tasks.finish(task["id"], next_run_at=nxt, last_run_at=now_iso)
            return CronRun(pid, name, scheduled, result.success, "rescheduled", nxt, retries, error)
        if result.success:
            self._tasks.finish(task["id"], next_run_at=None, last_run_at=now_iso)
            return CronRun(pid, name, scheduled, True, "completed", None, retries)
        if retries >= MAX_RETRIES:
            self._tasks.finish(task["id"], next_run_at=None, last_run_at=now_iso)
            log.error(
                '[cron] one-shot task "%s" of plugin "%s" dropped after %d retries',
                name,
                pid,
                retries,
            )
            return CronRun(pid, name, scheduled, False, "dropped", None, retries, error)
        retries += 1
        retry_at = format_iso(now + timedelta(minutes=2 ** (retries - 1)))
        self._tasks.finish(
            task["id"],
            next_run_at=retry_at,
            last_run_at=now_iso,
            data=_join_data(data, retries),
        )
        return CronRun(pid, name, scheduled, False, "retry", retry_at, retries, error)

    # -- background driver --------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` on a daemon thread until :meth:`stop` (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="emdash-cron", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread (waits for a tick in progress)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Cleared before the tick, not after: a stop() or schedule() that arrives while
            # the tick runs keeps its wake-up instead of waiting out the whole delay.
            self._wake.clear()
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # the driver must survive anything a tick runs into
                log.exception("[cron] tick failed")
            self._wake.wait(self._delay())
            # A schedule() call wakes the driver early, but a plugin whose cron handler
            # schedules more tasks would then have it tick back to back: keep ticks apart.
            rest = MIN_TICK_GAP_S - (time.monotonic() - started)
            if rest > 0:
                self._stop.wait(rest)

    def _delay(self) -> float:
        """Seconds until the next due task, clamped to [1, 60]."""
        try:
            due = self._tasks.next_due_at()
        except EmDashError:
            return 60.0
        if due is None:
            return 60.0
        at = parse_iso(due)
        if at is None:
            return 60.0
        return min(60.0, max(1.0, (at - self._now()).total_seconds()))


def _stored_retries(text: str | None) -> int:
    """The retry count in a stored task's data (0 when there is none or it is unreadable)."""
    if text is None:
        return 0
    try:
        return _split_data(json.loads(text))[1]
    except ValueError:
        return 0


def _split_data(raw: Any) -> tuple[Any, int]:
    """Separate the plugin's data from emdash's retry bookkeeping."""
    if type(raw) is not dict or type(raw.get(RESERVED_KEY)) is not dict:
        return raw, 0
    meta = raw[RESERVED_KEY]
    count = meta.get("retryCount")
    retries = count if type(count) is int and count >= 0 else 0
    if "value" in meta:  # the plugin's data was not an object: it was wrapped
        return meta["value"], retries
    return {k: v for k, v in raw.items() if k != RESERVED_KEY}, retries


def _join_data(data: Any, retries: int) -> Any:
    """Store ``retries`` in ``data.__emdash.retryCount`` (wrapping non-object data)."""
    if type(data) is dict:
        return {**data, RESERVED_KEY: {"retryCount": retries}}
    return {RESERVED_KEY: {"retryCount": retries, "value": data}}
