"""Per-plugin quotas: what one plugin may keep in the store, and how much it may log.

The site operator sets them, never the plugin (a plugin must not be able to raise its own
quota): :class:`Quotas` holds the values, :class:`QuotaPolicy` the site default plus
per-plugin overrides (``Runtime(quotas=..., plugin_quotas=...)``, ``[quotas]`` and a
``[[plugins]]`` entry's ``quotas`` in emdash.toml).

Stored data
-----------
``stored_bytes`` and ``stored_rows`` cover a plugin's KV entries and storage documents
*together* (one budget: a plugin may move data between the two). A row's size is the UTF-8
length of what the plugin chose: the key and the JSON value for a KV entry; the collection
name, the id and the JSON data for a document. (SQLite's own overhead, indexes included,
comes on top and is not the plugin's to spend; ``stored_rows`` bounds it.)

Usage is kept in ``_emdash_plugin_usage`` by SQLite triggers on ``_emdash_options`` and
``_plugin_storage`` (migration 4), so it changes in the same transaction as the rows it
counts: a rolled-back invocation rolls its counts back too, every delete path (uninstall
included) gives room back, and no write path can forget to count. A write checks the
counters *before* it changes anything (:meth:`StoredQuota.check`, inside the write's
transaction) and raises :class:`QuotaExceededError` when it would grow the plugin past a
quota. Inside a plugin invocation that check sees the invocation's own view, so
invocations running at once could each pass it: the commit transaction checks the
plugin's stored usage again, after replaying the invocation's writes, and fails the
invocation with the same error if they grew it past a quota. The final usage never passes
a quota, whatever the concurrency. A write that
does not grow usage (an overwrite with smaller data, a delete) is always allowed, even
above a quota that was lowered after the data was stored: nothing already stored is ever
dropped or made unreadable by a quota.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .._shared._errors import QuotaExceededError
from ._db import Db, storage_error

__all__ = ["AuditRetention", "QuotaPolicy", "Quotas", "StoredQuota"]

MIB = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quotas(_Strict):
    """One plugin's quotas (the defaults are the site default unless the operator says)."""

    stored_bytes: int = Field(
        default=64 * MIB,
        ge=0,
        le=1 << 50,
        description="bytes of KV keys+values and storage collection+id+data, together",
    )
    stored_rows: int = Field(
        default=100_000, ge=0, le=1 << 40, description="KV entries plus storage documents"
    )
    log_bytes_per_minute: int = Field(
        default=1 * MIB,
        ge=0,
        le=1 << 40,
        description="ctx.log bytes per plugin per minute; past it lines are dropped",
    )


class AuditRetention(_Strict):
    """How long audit rows are kept (site-wide; see :mod:`emdash._store._audit`)."""

    max_age_days: float = Field(default=30, gt=0, le=36_500)
    max_rows: int = Field(default=1_000_000, ge=1, le=1 << 40)


class QuotaPolicy:
    """The site default :class:`Quotas` and per-plugin overrides; thread-safe.

    ``set`` replaces a plugin's quotas at any time (the next write is checked against
    them); ``None`` goes back to the default.
    """

    def __init__(
        self, default: Quotas | None = None, plugins: Mapping[str, Quotas] | None = None
    ) -> None:
        self.default = default or Quotas()
        self._plugins: dict[str, Quotas] = dict(plugins or {})
        self._lock = threading.Lock()

    def for_plugin(self, plugin_id: str) -> Quotas:
        # A dict read is atomic; the lock only orders writers.
        return self._plugins.get(plugin_id, self.default)

    def set(self, plugin_id: str, quotas: Quotas | None) -> None:
        with self._lock:
            if quotas is None:
                self._plugins.pop(plugin_id, None)
            else:
                self._plugins[plugin_id] = quotas


# The row sizes, as SQL over a row alias. Migration 4 creates the triggers with the very
# same expressions (inlined there: a shipped migration never changes); recount() uses these
# to check them.
KV_PID = "substr({r}.name, 8, instr(substr({r}.name, 8), ':') - 1)"
KV_BYTES = (
    "(length(CAST({r}.name AS BLOB)) - 7 - instr(substr({r}.name, 8), ':') "
    "+ length(CAST({r}.value AS BLOB)))"
)
KV_ROW = "({r}.name >= 'plugin:' AND {r}.name < 'plugin;' AND instr(substr({r}.name, 8), ':') > 1)"
DOC_BYTES = (
    "(length(CAST({r}.collection AS BLOB)) + length(CAST({r}.id AS BLOB)) "
    "+ length(CAST({r}.data AS BLOB)))"
)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


class StoredQuota:
    """Checks writes against ``stored_bytes``/``stored_rows``; reads usage."""

    def __init__(self, db: Db, policy: QuotaPolicy) -> None:
        self._db = db
        self.policy = policy

    def usage(self, plugin_id: str) -> dict[str, int]:
        """``{"bytes", "rows"}`` the plugin stores now (kv and storage together)."""
        row = self._db.row(
            "SELECT bytes, rows FROM _emdash_plugin_usage WHERE plugin_id = ?", (plugin_id,)
        )
        return {"bytes": int(row["bytes"]), "rows": int(row["rows"])} if row else _ZERO.copy()

    def recount(self, plugin_id: str) -> dict[str, int]:
        """Usage counted from the rows themselves, O(rows): for checks and diagnostics."""
        kv = self._db.row(
            f"SELECT COALESCE(SUM({KV_BYTES.format(r='o')}), 0) AS b, COUNT(*) AS n "
            f"FROM _emdash_options o WHERE {KV_ROW.format(r='o')} "
            f"AND {KV_PID.format(r='o')} = ?",
            (plugin_id,),
        )
        docs = self._db.row(
            f"SELECT COALESCE(SUM({DOC_BYTES.format(r='s')}), 0) AS b, COUNT(*) AS n "
            "FROM _plugin_storage s WHERE plugin_id = ?",
            (plugin_id,),
        )
        assert kv is not None and docs is not None
        return {"bytes": int(kv["b"]) + int(docs["b"]), "rows": int(kv["n"]) + int(docs["n"])}

    def check(self, plugin_id: str, add_bytes: int, add_rows: int, *, what: str) -> None:
        """Raise :class:`QuotaExceededError` if adding this much would pass a quota.

        Call inside the write's transaction. In an ordinary transaction that is exact (the
        write lock is held: the counters cannot move between this check and the write).
        Inside an invocation it sees the invocation's own view, so it is made again in the
        commit transaction (:meth:`_at_commit`). Only growth is checked: shrinking is always
        allowed, whatever the current usage.
        """
        if add_bytes <= 0 and add_rows <= 0:
            return
        cur = self._db.conn.execute(
            "SELECT bytes, rows FROM _emdash_plugin_usage WHERE plugin_id = ?", (plugin_id,)
        )
        try:
            used = cur.fetchone()
        except sqlite3.Error as exc:  # a damaged page met while reading
            raise storage_error(exc, self._db.path) from exc
        used_bytes, used_rows = (int(used[0]), int(used[1])) if used else (0, 0)
        self.check_against(plugin_id, add_bytes, add_rows, used_bytes, used_rows, what=what)

    def check_against(
        self,
        plugin_id: str,
        add_bytes: int,
        add_rows: int,
        used_bytes: int,
        used_rows: int,
        *,
        what: str,
    ) -> None:
        """:meth:`check` with the usage already read (in the same statement as the data the
        growth was computed from, so both come from one snapshot)."""
        if add_bytes <= 0 and add_rows <= 0:
            return
        quotas = self.policy.for_plugin(plugin_id)
        if add_rows > 0 and used_rows + add_rows > quotas.stored_rows:
            raise _exceeded(
                plugin_id, "stored_rows", quotas.stored_rows, used_rows, add_rows, "rows", what
            )
        if add_bytes > 0 and used_bytes + add_bytes > quotas.stored_bytes:
            raise _exceeded(
                plugin_id, "stored_bytes", quotas.stored_bytes, used_bytes, add_bytes, "bytes", what
            )
        # Inside an invocation this saw the invocation's own view: concurrent invocations
        # can each pass it, so it is made again in the commit transaction (one per plugin).
        self._db.check_at_commit(f"quota/{plugin_id}", lambda: self._at_commit(plugin_id))

    def _used(self, plugin_id: str) -> tuple[int, int]:
        cur = self._db.conn.execute(
            "SELECT bytes, rows FROM _emdash_plugin_usage WHERE plugin_id = ?", (plugin_id,)
        )
        try:
            used = cur.fetchone()
        except sqlite3.Error as exc:  # a damaged page met while reading
            raise storage_error(exc, self._db.path) from exc
        return (int(used[0]), int(used[1])) if used else (0, 0)

    def _at_commit(self, plugin_id: str) -> Callable[[], None]:
        """The commit-time check of an invocation that grew the plugin's data (see
        :meth:`Db.check_at_commit`): the usage before its writes are replayed (what every
        committed invocation left), then after. Growth past a quota fails the commit with
        the same error as at the write; shrinking stays allowed, as at the write."""
        before_bytes, before_rows = self._used(plugin_id)

        def after() -> None:
            used_bytes, used_rows = self._used(plugin_id)
            quotas = self.policy.for_plugin(plugin_id)
            what = (
                "this invocation (checked again when it committed: invocations running at "
                "the same time stored data meanwhile)"
            )
            grow_rows, grow_bytes = used_rows - before_rows, used_bytes - before_bytes
            if grow_rows > 0 and used_rows > quotas.stored_rows:
                raise _exceeded(
                    plugin_id,
                    "stored_rows",
                    quotas.stored_rows,
                    before_rows,
                    grow_rows,
                    "rows",
                    what,
                )
            if grow_bytes > 0 and used_bytes > quotas.stored_bytes:
                raise _exceeded(
                    plugin_id,
                    "stored_bytes",
                    quotas.stored_bytes,
                    before_bytes,
                    grow_bytes,
                    "bytes",
                    what,
                )

        return after


_ZERO: dict[str, Any] = {"bytes": 0, "rows": 0}


def _exceeded(
    pid: str, quota: str, limit: int, used: int, add: int, unit: str, what: str
) -> QuotaExceededError:
    return QuotaExceededError(
        f"Plugin {pid} would exceed its {quota} quota of {limit} {unit} (KV and storage "
        f"together): it stores {used} {unit} and {what} adds {add}. Nothing was written. "
        "Delete data the plugin no longer needs, or ask the site operator to raise "
        f"{quota} for this plugin (its quotas in emdash.toml, or Runtime(plugin_quotas=...)).",
        plugin_id=pid,
        quota=quota,
        limit=limit,
    )
