"""Cron task storage (docs/plugin-reference.md, ctx.cron): ``_emdash_cron_tasks`` and what the executor needs.

Schedule parsing and next-fire computation live in ``emdash._services._cron_schedule``; this module
only stores tasks and moves them through ``idle -> running -> idle | deleted``. Every
plugin-facing method is scoped by the plugin id. Times are canonical UTC strings
(``YYYY-MM-DDTHH:MM:SS.mmmZ``, normalised here), so "due" is a string comparison that is
also a correct time comparison.

``claim_due`` is atomic: it selects and marks tasks ``running`` in one ``BEGIN IMMEDIATE``
transaction, so two executors (threads or processes on one file) never claim the same run.
It is also fair across plugins: due tasks are taken round-robin (each plugin's oldest first,
at most ``per_plugin`` of them, the plugins in a rotating order), so one plugin's backlog
never delays another plugin's due task by more than a tick per other busy plugin.

``upsert`` enforces the per-plugin quotas in the same transaction as the insert, so two
concurrent ``schedule`` calls cannot both take the last free slot.
"""

from __future__ import annotations

import builtins
import re
from datetime import datetime, timedelta
from typing import Any

from .._shared._errors import BridgeError, CronScheduleError
from ._db import Db, parse_timestamp
from ._values import check_plugin_id, encode_json

__all__ = ["CronTasks"]

_TASK_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]*")
_KEEP: Any = object()


class CronTasks:
    def __init__(self, db: Db) -> None:
        self._db = db

    # -- plugin-facing (ctx.cron) ------------------------------------------------------

    def upsert(
        self,
        plugin_id: str,
        name: str,
        schedule: str,
        *,
        is_oneshot: bool,
        next_run_at: str,
        data: Any = None,
        max_tasks: int | None = None,
        max_imminent: int | None = None,
        imminent_before: str | None = None,
        max_data_bytes: int | None = None,
    ) -> None:
        """Create or replace the task ``(plugin_id, name)``; re-enables it and keeps a
        ``running`` status (the run in progress finishes normally).

        Quotas (``None``: unlimited), checked in the write transaction; replacing a task the
        plugin already has never counts against them, and nothing stored is ever dropped:
        a plugin over a lowered quota keeps its tasks and cannot add new ones.

        * ``max_tasks``: the plugin's tasks (enabled or not, any status);
        * ``max_imminent``: the plugin's one-shot tasks due before ``imminent_before`` (a
          canonical time), counted only when the new task is such a one-shot itself;
        * ``max_data_bytes``: the task's ``data`` as stored (UTF-8 JSON).
        """
        pid = check_plugin_id(plugin_id)
        name = _task_name(name)
        if type(schedule) is not str or not 1 <= len(schedule) <= 256:
            raise BridgeError(
                f'Invalid schedule "{str(schedule)[:256]}": must be a valid cron expression or '
                "ISO 8601 datetime"
            )
        next_run = parse_timestamp(next_run_at, what="next run time")
        text = None if data is None else encode_json(data, what="Cron task data", plugin_id=pid)
        size = 0 if text is None else len(text.encode("utf-8"))
        if max_data_bytes is not None and size > max_data_bytes:
            raise CronScheduleError(
                f'Plugin "{pid}": cron task data is {size} bytes as JSON, over the quota '
                f"(cron.max_data_bytes = {max_data_bytes}): keep the data small (store the "
                "rest with ctx.kv or ctx.storage and pass a key), or ask the site operator to "
                "raise cron.max_data_bytes",
                plugin_id=pid,
            )
        soon = None if imminent_before is None else parse_timestamp(imminent_before, what="time")
        with self._db.transaction():
            if max_tasks is not None:
                self._check_task_quota(pid, name, max_tasks)
            if max_imminent is not None and soon is not None and is_oneshot and next_run < soon:
                self._check_imminent_quota(pid, name, max_imminent, soon)
            self._db.execute(
                "INSERT INTO _emdash_cron_tasks (id, plugin_id, task_name, schedule, is_oneshot, "
                "data, next_run_at, last_run_at, status, locked_at, enabled, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 'idle', NULL, 1, ?) "
                "ON CONFLICT(plugin_id, task_name) DO UPDATE SET schedule = excluded.schedule, "
                "is_oneshot = excluded.is_oneshot, data = excluded.data, "
                "next_run_at = excluded.next_run_at, enabled = 1",
                (
                    self._db.new_id(),
                    pid,
                    name,
                    schedule,
                    int(bool(is_oneshot)),
                    text,
                    next_run,
                    self._db.now(),
                ),
            )

    def _check_task_quota(self, pid: str, name: str, limit: int) -> None:
        if self._db.scalar(
            "SELECT 1 FROM _emdash_cron_tasks WHERE plugin_id = ? AND task_name = ?", (pid, name)
        ):
            return  # replacing a task the plugin has: no new row, even over a lowered quota
        count = int(
            self._db.scalar("SELECT COUNT(*) FROM _emdash_cron_tasks WHERE plugin_id = ?", (pid,))
            or 0
        )
        if count >= limit:
            raise CronScheduleError(
                f'Plugin "{pid}" already has {count} cron tasks, its quota '
                f"(cron.max_tasks_per_plugin = {limit}): cancel one with ctx.cron.cancel() "
                "or reuse a task name before scheduling another, or ask the site operator to "
                "raise cron.max_tasks_per_plugin",
                plugin_id=pid,
            )

    def _check_imminent_quota(self, pid: str, name: str, limit: int, soon: str) -> None:
        count = int(
            self._db.scalar(
                "SELECT COUNT(*) FROM _emdash_cron_tasks WHERE plugin_id = ? AND task_name != ? "
                "AND is_oneshot = 1 AND next_run_at < ?",
                (pid, name, soon),
            )
            or 0
        )
        if count >= limit:
            raise CronScheduleError(
                f'Plugin "{pid}" already has {count} one-shot cron tasks due within the '
                f"minimum interval, its quota (cron.max_imminent_oneshots = {limit}): schedule "
                "this one later, or wait for those to run, or ask the site operator to raise "
                "cron.max_imminent_oneshots",
                plugin_id=pid,
            )

    def count(self, plugin_id: str) -> int:
        """How many tasks the plugin has (enabled or not): what ``max_tasks`` counts."""
        pid = check_plugin_id(plugin_id)
        return int(
            self._db.scalar("SELECT COUNT(*) FROM _emdash_cron_tasks WHERE plugin_id = ?", (pid,))
            or 0
        )

    def cancel(self, plugin_id: str, name: str) -> bool:
        pid = check_plugin_id(plugin_id)
        name = _task_name(name)
        with self._db.transaction():
            return (
                self._db.execute(
                    "DELETE FROM _emdash_cron_tasks WHERE plugin_id = ? AND task_name = ?",
                    (pid, name),
                )
                > 0
            )

    def list(self, plugin_id: str) -> builtins.list[dict[str, Any]]:
        """The plugin's enabled tasks by next run: ``[{name, schedule, nextRunAt, lastRunAt}]``."""
        pid = check_plugin_id(plugin_id)
        rows = self._db.rows(
            "SELECT task_name, schedule, next_run_at, last_run_at FROM _emdash_cron_tasks "
            "WHERE plugin_id = ? AND enabled = 1 ORDER BY next_run_at, task_name",
            (pid,),
        )
        return [
            {
                "name": r["task_name"],
                "schedule": r["schedule"],
                "nextRunAt": r["next_run_at"],
                "lastRunAt": r["last_run_at"],
            }
            for r in rows
        ]

    # -- executor ----------------------------------------------------------------------

    def claim_due(
        self,
        now_iso: str,
        limit: int = 10,
        *,
        per_plugin: int | None = None,
        after_plugin: str = "",
    ) -> builtins.list[dict[str, Any]]:
        """Atomically mark up to ``limit`` due idle enabled tasks ``running``; return them.

        Round-robin across plugins: every plugin with due tasks gets its oldest one before
        any plugin gets a second, and so on, at most ``per_plugin`` each (default: no cap
        beyond ``limit``). Within a round, plugins come in id order starting after
        ``after_plugin``: the executor passes the plugin of the last task it claimed, so when
        more plugins are due than fit in one claim, the next claim starts where this one
        stopped and no plugin is passed over twice in a row.

        Each task: ``{id, pluginId, name, schedule, isOneshot, data (raw JSON text or
        None), nextRunAt, lastRunAt, lockedAt}`` (``lockedAt``: this claim's lock, for
        :meth:`start`).
        """
        now = parse_timestamp(now_iso, what="time")
        limit = max(1, int(limit))
        cap = limit if per_plugin is None else max(1, int(per_plugin))
        claimed: builtins.list[dict[str, Any]] = []
        with self._db.transaction():
            # Round one discovers the plugins with due tasks in rotation order, one index
            # seek each, and stops as soon as the claim is full: a tick never looks at more
            # than ``limit`` plugins, nor at more of a plugin's backlog than it takes.
            due_plugins: builtins.list[str] = []
            cursor, wrapped = str(after_plugin), False
            while len(claimed) < limit:
                pid = self._next_due_plugin(now, cursor)
                if pid is None or (wrapped and pid > str(after_plugin)):
                    if wrapped or not after_plugin:
                        break
                    cursor, wrapped = "", True  # wrap around to the start of the ids
                    continue
                cursor = pid
                task = self._claim_oldest(pid, now)
                if task is not None:
                    claimed.append(task)
                    due_plugins.append(pid)
            # Further rounds (only reached when every plugin with due tasks has had one):
            # the same plugins in the same order, until each is drained, capped or the
            # claim is full.
            for _turn in range(1, cap):
                still, due_plugins = due_plugins, []
                for pid in still:
                    if len(claimed) >= limit:
                        break
                    task = self._claim_oldest(pid, now)
                    if task is not None:
                        claimed.append(task)
                        due_plugins.append(pid)
                if not due_plugins:
                    break
        return claimed

    def _next_due_plugin(self, now: str, after: str) -> str | None:
        """The first plugin id after ``after`` with an idle enabled task due at ``now``."""
        value = self._db.scalar(
            "SELECT plugin_id FROM _emdash_cron_tasks "
            "WHERE enabled = 1 AND status = 'idle' AND plugin_id > ? AND next_run_at <= ? "
            "ORDER BY plugin_id LIMIT 1",
            (after, now),
        )
        return None if value is None else str(value)

    def _claim_oldest(self, pid: str, now: str) -> dict[str, Any] | None:
        """Mark the plugin's oldest idle due task ``running``; return it (None: none left)."""
        row = self._db.row(
            "SELECT * FROM _emdash_cron_tasks "
            "WHERE enabled = 1 AND status = 'idle' AND plugin_id = ? AND next_run_at <= ? "
            "ORDER BY next_run_at, id LIMIT 1",
            (pid, now),
        )
        if row is None:
            return None
        self._db.execute(
            "UPDATE _emdash_cron_tasks SET status = 'running', locked_at = ? WHERE id = ?",
            (now, row["id"]),
        )
        return {**_task(row), "lockedAt": now}

    def start(self, task_id: str, claimed_at: str, now_iso: str) -> bool:
        """Restart the lock of a claimed task as its run begins (``locked_at = now``), if
        this claim still holds it; False when it does not (its lock went stale while it
        waited behind the tick's other tasks and another tick took it over).

        A tick claims several tasks at once and runs them one after another: without this,
        the last of them could wait past the stale-lock bound before it even started, and
        another host's tick would reset and run it too."""
        now = parse_timestamp(now_iso, what="time")
        with self._db.transaction():
            return (
                self._db.execute(
                    "UPDATE _emdash_cron_tasks SET locked_at = ? "
                    "WHERE id = ? AND status = 'running' AND locked_at = ?",
                    (now, str(task_id), str(claimed_at)),
                )
                > 0
            )

    def finish(
        self,
        task_id: str,
        *,
        next_run_at: str | None,
        last_run_at: str,
        data: Any = _KEEP,
    ) -> bool:
        """End a run: ``next_run_at=None`` deletes the task (a finished one-shot); else the
        task goes back to idle with the new times. ``data`` (a JSON value) replaces the
        stored data when given. Returns whether the task still existed."""
        last = parse_timestamp(last_run_at, what="last run time")
        with self._db.transaction():
            if next_run_at is None:
                return (
                    self._db.execute("DELETE FROM _emdash_cron_tasks WHERE id = ?", (str(task_id),))
                    > 0
                )
            nxt = parse_timestamp(next_run_at, what="next run time")
            if data is _KEEP:
                return (
                    self._db.execute(
                        "UPDATE _emdash_cron_tasks SET status = 'idle', locked_at = NULL, "
                        "next_run_at = ?, last_run_at = ? WHERE id = ?",
                        (nxt, last, str(task_id)),
                    )
                    > 0
                )
            text = None if data is None else encode_json(data, what="Cron task data")
            return (
                self._db.execute(
                    "UPDATE _emdash_cron_tasks SET status = 'idle', locked_at = NULL, "
                    "next_run_at = ?, last_run_at = ?, data = ? WHERE id = ?",
                    (nxt, last, text, str(task_id)),
                )
                > 0
            )

    def release(self, task_id: str) -> bool:
        """Put a claimed task back to idle without changing its times (e.g. bad data)."""
        with self._db.transaction():
            return (
                self._db.execute(
                    "UPDATE _emdash_cron_tasks SET status = 'idle', locked_at = NULL WHERE id = ?",
                    (str(task_id),),
                )
                > 0
            )

    def set_enabled(self, plugin_id: str, enabled: bool) -> int:
        pid = check_plugin_id(plugin_id)
        with self._db.transaction():
            return self._db.execute(
                "UPDATE _emdash_cron_tasks SET enabled = ? WHERE plugin_id = ?",
                (int(bool(enabled)), pid),
            )

    def delete_plugin(self, plugin_id: str) -> int:
        pid = check_plugin_id(plugin_id)
        with self._db.transaction():
            return self._db.execute("DELETE FROM _emdash_cron_tasks WHERE plugin_id = ?", (pid,))

    def recover_stale(self, now_iso: str, older_than_s: float = 600) -> int:
        """Reset tasks ``running`` for more than ``older_than_s`` seconds back to idle.

        A lock taken more than ``older_than_s`` in the *future* is reset too: it was taken
        while the wall clock was ahead (a forward jump since corrected), and would otherwise
        keep its task from running until the clock caught up again.
        """
        now = datetime.fromisoformat(parse_timestamp(now_iso, what="time"))
        cutoff = parse_timestamp(now - timedelta(seconds=older_than_s), what="time")
        ahead = parse_timestamp(now + timedelta(seconds=older_than_s), what="time")
        with self._db.transaction():
            return self._db.execute(
                "UPDATE _emdash_cron_tasks SET status = 'idle', locked_at = NULL "
                "WHERE status = 'running' AND (locked_at < ? OR locked_at > ?)",
                (cutoff, ahead),
            )

    def idle_tasks(self) -> builtins.list[dict[str, Any]]:
        """Every idle task (enabled or not), for the executor's clock-jump repair."""
        rows = self._db.rows("SELECT * FROM _emdash_cron_tasks WHERE status = 'idle' ORDER BY id")
        return [_task(r) for r in rows]

    def rearm(self, moves: builtins.list[tuple[str, str, str]]) -> int:
        """Move idle tasks' next runs, in one transaction: ``(task_id, expected,
        next_run_at)`` moves a task only if its next run is still ``expected`` (a concurrent
        run or reschedule wins). Returns how many moved."""
        checked = [
            (parse_timestamp(nxt, what="next run time"), str(task_id), str(expected))
            for task_id, expected, nxt in moves
        ]
        moved = 0
        with self._db.transaction():
            for params in checked:
                moved += self._db.execute(
                    "UPDATE _emdash_cron_tasks SET next_run_at = ? "
                    "WHERE id = ? AND status = 'idle' AND next_run_at = ?",
                    params,
                )
        return moved

    def next_due_at(self) -> str | None:
        """The earliest ``nextRunAt`` of an idle enabled task (to arm the scheduler timer)."""
        value = self._db.scalar(
            "SELECT MIN(next_run_at) FROM _emdash_cron_tasks WHERE enabled = 1 AND status = 'idle'"
        )
        return None if value is None else str(value)

    def get(self, plugin_id: str, name: str) -> dict[str, Any] | None:
        """One task with its executor fields (status, enabled), for the host and tests."""
        pid = check_plugin_id(plugin_id)
        row = self._db.row(
            "SELECT * FROM _emdash_cron_tasks WHERE plugin_id = ? AND task_name = ?",
            (pid, _task_name(name)),
        )
        if row is None:
            return None
        return {
            **_task(row),
            "status": row["status"],
            "enabled": bool(row["enabled"]),
            "lockedAt": row["locked_at"],
        }


def _task(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "pluginId": r["plugin_id"],
        "name": r["task_name"],
        "schedule": r["schedule"],
        "isOneshot": bool(r["is_oneshot"]),
        "data": r["data"],
        "nextRunAt": r["next_run_at"],
        "lastRunAt": r["last_run_at"],
    }


def _task_name(name: object) -> str:
    if type(name) is not str or not 1 <= len(name) <= 128:
        got = len(name) if isinstance(name, str) else 0
        raise BridgeError(f"Invalid task name: must be 1-128 characters, got {got}")
    if not _TASK_NAME_RE.fullmatch(name):
        raise BridgeError(
            f'Invalid task name "{name}": must start with a letter and contain only letters, '
            "numbers, dashes, or underscores"
        )
    return name
