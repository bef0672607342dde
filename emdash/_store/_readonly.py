"""Reading a site's plugin registry, cron tasks and audit log without opening the site.

``emdash plugins list`` and ``plugins show`` are read-only: opening a :class:`Store`
creates a missing database, migrates its schema and takes the write lock, and loading
plugins into it installs them. These functions open the file with SQLite's read-only
mode instead (``mode=ro``: the database is never created or written) and read its
tables. A database that is not there, not an emdash database yet, or unreadable reads as
empty: the listing then shows the config alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._audit import _from_row
from ._plugins import _shape

__all__ = ["read_audit", "read_cron_tasks", "read_registry"]


@contextlib.contextmanager
def _connect(database: str) -> Iterator[sqlite3.Connection | None]:
    if database == ":memory:" or not Path(database).is_file():
        yield None
        return
    try:
        conn = sqlite3.connect(f"file:{quote(database)}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        yield None
        return
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def read_registry(database: str) -> dict[str, dict[str, Any]]:
    """Every registry row by plugin id (the shape of ``PluginRegistry.get``); ``{}`` when
    the database or its registry is not there."""
    with _connect(database) as conn:
        if conn is None:
            return {}
        try:
            rows = conn.execute("SELECT * FROM _emdash_plugins").fetchall()
        except sqlite3.Error:  # no such table (not an emdash site yet), locked, damaged
            return {}
        return {str(row["id"]): _shape(dict(row)) for row in rows}


def read_cron_tasks(database: str, plugin_id: str) -> list[dict[str, Any]]:
    """The plugin's enabled cron tasks, as ``CronTasks.list`` shows them."""
    with _connect(database) as conn:
        if conn is None:
            return []
        try:
            rows = conn.execute(
                "SELECT task_name, schedule, next_run_at, last_run_at FROM _emdash_cron_tasks "
                "WHERE plugin_id = ? AND enabled = 1 ORDER BY next_run_at, task_name",
                (plugin_id,),
            ).fetchall()
        except sqlite3.Error:
            return []
        return [
            {
                "name": r["task_name"],
                "schedule": r["schedule"],
                "nextRunAt": r["next_run_at"],
                "lastRunAt": r["last_run_at"],
            }
            for r in rows
        ]


def read_audit(
    database: str, *, limit: int = 100, plugin_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest audit records, as ``Runtime.audit_log`` shows them (``limit`` clamped to
    [1, 10000]); records another process still buffers are not there yet."""
    size = max(1, min(int(limit), 10_000))
    where, params = ("WHERE plugin_id = ?", [plugin_id]) if plugin_id else ("", [])
    with _connect(database) as conn:
        if conn is None:
            return []
        try:
            rows = conn.execute(
                f"SELECT * FROM _emdash_audit {where} ORDER BY id DESC LIMIT ?",
                [*params, size],
            ).fetchall()
        except sqlite3.Error:
            return []
        return [_from_row(dict(row)) for row in rows]
