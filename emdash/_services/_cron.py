"""The cron scheduler (spec §11): ``rt.cron``.

``schedule`` / ``cancel`` / ``list`` are what ``ctx.cron`` calls through the bridge (always
scoped by the calling plugin's id). :meth:`CronService.tick` is the executor:

1. tasks stuck in ``running`` for more than 10 minutes (a crashed run) go back to idle;
2. up to 10 due tasks are claimed atomically (``running``, oldest due first);
3. each runs the owning plugin's ``cron`` hook with ``{name, data, scheduledAt}``;
4. a **recurring** task, whether the run succeeded or not, is re-armed at its next fire
   time after *now* (missed runs are not replayed one by one);
5. a **one-shot** task is deleted after a successful run; after a failed run it is retried
   1, 2, 4, 8 and 16 minutes later (the count lives in ``data.__emdash.retryCount``) and
   deleted after the fifth failed retry;
6. scheduled content whose time has come is published (``publish_due``, which the runtime
   wires to ``rt.content.publish_due``), so ``content:afterPublish`` fires for it.

A handler that reschedules or cancels its own task during the run wins: the executor sees
that the stored task changed and leaves the new schedule alone.

Time comes from ``clock`` (a callable returning an aware ``datetime``), or the ``now``
argument of :meth:`tick`, so tests drive the executor without sleeping.
:meth:`CronService.start` runs ticks on a background thread for hosts that serve a site
(EmDash's Node driver: wake at the next due time, clamped to 1-60 s).
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._shared._errors import EmDashError
from ._cron_schedule import (
    CronScheduleError,
    format_iso,
    next_fire,
    parse_iso,
    parse_schedule,
    validate_task_name,
)

if TYPE_CHECKING:
    from .._store import Store
    from ._hook_runner import HookRunner

__all__ = ["MAX_RETRIES", "CronRun", "CronScheduleError", "CronService"]

log = logging.getLogger("emdash.cron")

CLAIM_LIMIT = 10
STALE_AFTER_S = 600
MAX_RETRIES = 5
RESERVED_KEY = "__emdash"


@dataclass(frozen=True, slots=True)
class CronRun:
    """What one claimed task did in a tick.

    ``outcome``: ``"rescheduled"`` (recurring, re-armed), ``"completed"`` (one-shot done,
    deleted), ``"retry"`` (one-shot failed, retried at ``next_run_at``), ``"dropped"``
    (one-shot failed its last retry, deleted), ``"changed"`` (the handler rescheduled or
    cancelled its own task), ``"skipped"`` (the stored data was not JSON).
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
    ) -> None:
        self._tasks = store.cron_tasks
        self._hooks = hooks
        self._publish_due = publish_due
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        parsed = parse_schedule(schedule, self._now(), plugin_id=plugin_id)
        if type(data) is dict and RESERVED_KEY in data:
            raise CronScheduleError(
                f'Cron task data must not use the reserved key "{RESERVED_KEY}" '
                "(emdash keeps its retry bookkeeping there)",
                plugin_id=plugin_id,
            )
        self._tasks.upsert(
            plugin_id,
            name,
            parsed.schedule,
            is_oneshot=parsed.one_shot,
            next_run_at=parsed.next_run_at,
            data=data,
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
        with self._tick_lock:  # one executor per service: a task is never run twice at once
            recovered = self._tasks.recover_stale(now_iso, STALE_AFTER_S)
            if recovered:
                log.warning("[cron] reset %d task(s) stuck running for over 10 minutes", recovered)
            runs = [self._run(task, moment) for task in self._tasks.claim_due(now_iso, CLAIM_LIMIT)]
        try:
            self._publish_due(now_iso)
        except EmDashError as exc:
            log.error("[cron] scheduled publishing failed: %s", exc)
        return runs

    def _run(self, task: dict[str, Any], now: datetime) -> CronRun:
        pid, name, scheduled = task["pluginId"], task["name"], task["nextRunAt"]
        now_iso = format_iso(now)
        try:
            raw = None if task["data"] is None else json.loads(task["data"])
        except ValueError:
            log.error('[cron] task "%s" of plugin "%s" has invalid data; skipped', name, pid)
            self._tasks.release(task["id"])
            return CronRun(pid, name, scheduled, False, "skipped", error="invalid JSON data")
        data, retries = _split_data(raw)
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
            try:
                nxt: str | None = format_iso(next_fire(task["schedule"], now))
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
            try:
                self.tick()
            except Exception:  # the driver must survive anything a tick runs into
                log.exception("[cron] tick failed")
            self._wake.wait(self._delay())

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
