"""Site options (``_emdash_options``) and the plugin KV store built on them.

KV is *one* store for both plugin modes (EmDash keeps isolate KV in a different table, so a
plugin moved between modes lost its data). A KV key ``k`` of plugin ``p`` is the
option row ``plugin:p:k``. Plugin ids cannot contain ``:`` (checked on every call), so the
prefix ``plugin:p:`` can never match a row of another plugin, whatever the key or list
prefix looks like: ``other:key`` is stored as ``plugin:p:other:key``.

Prefix listing is a literal prefix match, done as a half-open range on the primary key
(``%``, ``_`` and ``\\`` are ordinary characters, and upper/lower case differ).

A KV listing is bounded in bytes before it is built: each row's stored size is computed by
SQLite (``length(CAST(value AS BLOB))``) and rows are read one at a time until the next one
would pass ``MAX_RESULT_BYTES``. ``kv.list(prefix)`` (EmDash's shape, a bare list) then
refuses with an error that says how to page; ``kv.list(prefix, limit=, cursor=)`` answers
``{items, hasMore, cursor?}`` pages, the cursor being the last key returned.

A KV write is checked against the plugin's stored-data quotas (:mod:`._quotas`) inside its
transaction, before the row changes; the counters themselves are kept by triggers.
"""

from __future__ import annotations

import builtins
import json
import math
import sqlite3
from typing import Any

from .._shared._errors import BridgeError, EmDashError
from ._cursor import bounded_rows, clamp_limit
from ._db import Db, storage_error
from ._quotas import QuotaPolicy, StoredQuota, utf8_len
from ._values import (
    MAX_KEY_CHARS,
    MAX_OPTION_NAME_CHARS,
    MAX_RESULT_BYTES,
    check_key,
    check_plugin_id,
    decode_json,
    encode_json,
    prefix_bounds,
)

__all__ = ["KVEntries", "Options", "option_scopes", "point_scope"]


def point_scope(name: str) -> str:
    """The version scope of one option row: ``kv/<plugin>/<key>`` for a plugin's KV key,
    ``opt/<name>`` for a site option."""
    if name.startswith("plugin:"):
        plugin, _, key = name[7:].partition(":")
        return f"kv/{plugin}/{key}"
    return f"opt/{name}"


def option_scopes(name: str) -> tuple[str, str]:
    """The scopes a write of one option row changes: its point and its namespace
    (``kv/<plugin>``, what a kv.list reads; ``opt`` for site options)."""
    if name.startswith("plugin:"):
        plugin, _, key = name[7:].partition(":")
        return f"kv/{plugin}/{key}", f"kv/{plugin}"
    return f"opt/{name}", "opt"


def _canonical(value: Any) -> str:
    # Exact JSON equality: 1 and 1.0, true and 1 differ; key order does not matter.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# One row by its key: an upsert of strings into NOT NULL columns, with no constraint a
# replay could break (the usage triggers only add to counters). So a kv.set that is the
# first write of its invocation can be logged without a speculative run (KVEntries.set).
_UPSERT = (
    "INSERT INTO _emdash_options (name, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
    "updated_at = excluded.updated_at"
)
# The stored size of one KV row and its plugin's usage, from one snapshot (one statement).
_SIZE_AND_USAGE = (
    "SELECT (SELECT length(CAST(value AS BLOB)) FROM _emdash_options WHERE name = ?), "
    "(SELECT bytes FROM _emdash_plugin_usage WHERE plugin_id = ?), "
    "(SELECT rows FROM _emdash_plugin_usage WHERE plugin_id = ?)"
)


class Options:
    """Named JSON values: site settings, exclusive-hook selections, plugin KV rows."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, name: str, default: Any = None) -> Any:
        name = check_key(name, what="name", limit=MAX_OPTION_NAME_CHARS)
        # scalar(), not row(): no dict per row on this hot path (every ctx.kv.get). The
        # column is NOT NULL, so None means "no such row".
        text = self._db.scalar(
            "SELECT value FROM _emdash_options WHERE name = ?", (name,), scopes=(point_scope(name),)
        )
        return default if text is None else decode_json(text)

    def set(self, name: str, value: Any) -> None:
        name = check_key(name, what="name", limit=MAX_OPTION_NAME_CHARS)
        self._put(name, encode_json(value, what=f'Option "{name}"'))

    def _put(self, name: str, text: str) -> None:
        with self._db.transaction():
            self._upsert(name, text)

    def _upsert(self, name: str, text: str) -> None:
        """The write itself; the caller holds a transaction."""
        self._db.touch(*option_scopes(name))
        self._db.execute(_UPSERT, (name, text, self._db.now()))

    def delete(self, name: str) -> bool:
        name = check_key(name, what="name", limit=MAX_OPTION_NAME_CHARS)
        with self._db.transaction():
            self._db.touch(*option_scopes(name))
            return self._db.execute("DELETE FROM _emdash_options WHERE name = ?", (name,)) > 0

    def list(self, prefix: str = "") -> dict[str, Any]:
        """Every option whose name starts with ``prefix`` (literally), sorted by name."""
        return {row["name"]: decode_json(row["value"]) for row in self._prefixed(prefix)}

    def _prefixed(self, prefix: str) -> builtins.list[dict[str, Any]]:
        if type(prefix) is not str:
            raise BridgeError("Parameter prefix must be a string when provided")
        low, high = prefix_bounds(prefix)
        if high is None:
            return self._db.rows(
                "SELECT name, value FROM _emdash_options WHERE name >= ? ORDER BY name", (low,)
            )
        return self._db.rows(
            "SELECT name, value FROM _emdash_options WHERE name >= ? AND name < ? ORDER BY name",
            (low, high),
        )


class KVEntries:
    """Per-plugin key/value store: option rows named ``plugin:<pluginId>:<key>``."""

    def __init__(self, options: Options, quota: StoredQuota | None = None) -> None:
        self._options = options
        self._quota = quota or StoredQuota(options._db, QuotaPolicy())

    @staticmethod
    def _name(plugin_id: str, key: object) -> str:
        check_plugin_id(plugin_id)
        return f"plugin:{plugin_id}:{check_key(key, plugin_id=plugin_id)}"

    def get(self, plugin_id: str, key: str) -> Any:
        return self._options.get(self._name(plugin_id, key))

    def set(self, plugin_id: str, key: str, value: Any) -> None:
        name = self._name(plugin_id, key)
        text = encode_json(value, what=f'KV value for key "{key}"', plugin_id=plugin_id)
        db = self._options._db
        size = utf8_len(text)
        if db.can_log_blind_write():
            # The invocation's first write: what it sees is the committed data, so the
            # quota is checked against that (one statement, one snapshot) and the upsert
            # is logged for the commit without a speculative transaction (see
            # Db.log_blind_write for why this is the same outcome). Not recorded as a read:
            # a blind kv.set must not conflict with other writes of the key.
            with db.lock:
                if db.closed:
                    raise EmDashError("the store is closed")
                cur = db.conn.execute(_SIZE_AND_USAGE, (name, plugin_id, plugin_id))
                try:
                    old, used_bytes, used_rows = cur.fetchone()
                except sqlite3.Error as exc:
                    raise storage_error(exc, db.path) from exc
            grow, rows = self._growth(plugin_id, name, size, old)
            self._quota.check_against(
                plugin_id, grow, rows, int(used_bytes or 0), int(used_rows or 0), what="this kv.set"
            )
            db.log_blind_write(_UPSERT, (name, text, db.now()), option_scopes(name))
            return
        with db.transaction():
            # Inside the transaction (write lock held): nothing moves between check and
            # write. In an invocation that is its speculative transaction; the quota is
            # checked again at its commit (see StoredQuota.check).
            # On the connection itself, not recorded as a read: a blind kv.set must not
            # conflict with other writes of the key; the size is for the quota only.
            found = db.conn.execute(
                "SELECT length(CAST(value AS BLOB)) FROM _emdash_options WHERE name = ?",
                (name,),
            ).fetchone()
            grow, rows = self._growth(plugin_id, name, size, None if found is None else found[0])
            self._quota.check(plugin_id, grow, rows, what="this kv.set")
            self._options._upsert(name, text)

    @staticmethod
    def _growth(plugin_id: str, name: str, size: int, old: Any) -> tuple[int, int]:
        """(bytes, rows) a kv.set of ``size`` bytes adds, given the stored length (or None)."""
        if old is None:
            return utf8_len(name) - len(f"plugin:{plugin_id}:") + size, 1
        return size - int(old), 0

    def delete(self, plugin_id: str, key: str) -> bool:
        return self._options.delete(self._name(plugin_id, key))

    def list(self, plugin_id: str, prefix: str | None = "") -> builtins.list[dict[str, Any]]:
        """``[{"key", "value"}]`` for this plugin's keys starting with ``prefix``, by key.

        The whole answer is bounded (:data:`MAX_RESULT_BYTES` of stored JSON, counted in SQL
        before rows are read): past it, a ``BridgeError`` says to page with :meth:`page`.
        """
        scope, low, high = self._range(plugin_id, prefix)
        rows, cut = self._rows(plugin_id, low, high, None, None, "kv.list")
        if cut:
            raise BridgeError(
                f"kv.list: the keys of plugin {plugin_id} under prefix {ascii(prefix)[:80]} "
                f"hold more than {MAX_RESULT_BYTES} bytes of data, more than one answer "
                "carries; page through them with ctx.kv.list(prefix, limit=..., cursor=...)",
                plugin_id=plugin_id,
            )
        return [{"key": r["name"][len(scope) :], "value": decode_json(r["value"])} for r in rows]

    def page(
        self,
        plugin_id: str,
        prefix: str | None = "",
        *,
        limit: object = None,
        cursor: object = None,
    ) -> dict[str, Any]:
        """One page of :meth:`list`: ``{"items": [{"key", "value"}], "hasMore", "cursor"?}``.

        At most ``limit`` items (default 100, at most 1000) and :data:`MAX_RESULT_BYTES`
        bytes; the cursor is the last key returned (the next page starts after it), so any
        key of the plugin's own may be passed.
        """
        scope, low, high = self._range(plugin_id, prefix)
        after: str | None = None
        if cursor is not None:
            after = scope + check_key(
                cursor, what="cursor", plugin_id=plugin_id, limit=MAX_KEY_CHARS
            )
        size = clamp_limit(limit, default=100, maximum=1000)
        rows, cut = self._rows(plugin_id, low, high, after, size + 1, "kv.list")
        has_more = cut or len(rows) > size
        rows = rows[:size]
        out: dict[str, Any] = {
            "items": [
                {"key": r["name"][len(scope) :], "value": decode_json(r["value"])} for r in rows
            ],
            "hasMore": has_more,
        }
        if has_more and rows:
            out["cursor"] = rows[-1]["name"][len(scope) :]
        return out

    def _range(self, plugin_id: str, prefix: object) -> tuple[str, str, str | None]:
        check_plugin_id(plugin_id)
        if prefix is None:
            prefix = ""
        if type(prefix) is not str:
            raise BridgeError(
                "Parameter prefix must be a string when provided", plugin_id=plugin_id
            )
        scope = f"plugin:{plugin_id}:"
        low, high = prefix_bounds(scope + prefix)
        return scope, low, high

    def _rows(
        self,
        plugin_id: str,
        low: str,
        high: str | None,
        after: str | None,
        limit: int | None,
        what: str,
    ) -> tuple[builtins.list[dict[str, Any]], bool]:
        # The size is the stored text's UTF-8 length (CAST AS BLOB: length() of TEXT counts
        # characters), computed by SQLite, so rows beyond the budget are never read.
        sql = (
            "SELECT name, value, length(CAST(name AS BLOB)) + length(CAST(value AS BLOB)) "
            "AS _size FROM _emdash_options WHERE name >= ?"
        )
        params: builtins.list[Any] = [low]
        if high is not None:
            sql += " AND name < ?"
            params.append(high)
        if after is not None:
            sql += " AND name > ?"
            params.append(after)
        sql += " ORDER BY name"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return bounded_rows(
            self._options._db,
            sql,
            params,
            budget=None,
            what=what,
            plugin_id=plugin_id,
            scopes=(f"kv/{plugin_id}",),
        )

    def delete_all(self, plugin_id: str) -> int:
        """Remove every KV row of the plugin (uninstall with deleteData)."""
        check_plugin_id(plugin_id)
        low, high = prefix_bounds(f"plugin:{plugin_id}:")
        db = self._options._db
        with db.transaction():
            # Every deleted key's own scope changes too (a reader of one key must see it).
            for row in db.rows(
                "SELECT name FROM _emdash_options WHERE name >= ? AND name < ?",
                (low, high),
                scopes=(f"kv/{plugin_id}",),
            ):
                db.touch(point_scope(row["name"]))
            db.touch(f"kv/{plugin_id}")
            return db.execute(
                "DELETE FROM _emdash_options WHERE name >= ? AND name < ?", (low, high)
            )

    def increment(self, plugin_id: str, key: str, by: object = 1) -> int | float:
        """Add ``by`` to the number stored under ``key`` (absent counts as 0) and return
        the new value as this invocation sees it.

        Inside an invocation the addition is logged as a delta and applied at commit
        (``value = value + by``) without putting the key in the invocation's read set, so
        concurrent increments never conflict with each other; a value that is no longer a
        number at commit is a conflict. ``by`` is a finite int or float (not a bool).
        """
        name = self._name(plugin_id, key)
        if type(by) not in (int, float) or not math.isfinite(by):  # type: ignore[arg-type]
            raise BridgeError(
                f"kv.increment: by must be a finite number (int or float), got {type(by).__name__}",
                plugin_id=plugin_id,
            )
        text = encode_json(by, what=f'kv.increment amount for key "{key}"', plugin_id=plugin_id)
        db = self._options._db
        with db.transaction():
            # Read on the connection itself: the increment's point is not to depend on
            # (and so not to be validated against) the value it adds to.
            cur = db.conn.execute(
                "SELECT value, json_type(value) FROM _emdash_options WHERE name = ?", (name,)
            )
            old = cur.fetchone()
            if old is not None and old[1] not in ("integer", "real"):
                raise BridgeError(
                    f'kv.increment: key "{key}" of plugin {plugin_id} holds {old[1]}, not a '
                    "number; set it to a number (or delete it) first",
                    plugin_id=plugin_id,
                )
            db.touch(*option_scopes(name))
            db.execute(
                "INSERT INTO _emdash_options (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = _emdash_options.value + excluded.value, "
                "updated_at = excluded.updated_at "
                "WHERE json_type(_emdash_options.value) IN ('integer', 'real')",
                (name, text, db.now()),
                expect=1,
            )
            new = db.conn.execute(
                "SELECT value FROM _emdash_options WHERE name = ?", (name,)
            ).fetchone()[0]
            value = decode_json(new) if isinstance(new, str) else new
            if type(value) not in (int, float) or not math.isfinite(value):
                raise BridgeError(
                    f'kv.increment: key "{key}" of plugin {plugin_id} would leave the range '
                    "of numbers it can hold; nothing was changed",
                    plugin_id=plugin_id,
                )
            if old is None:
                grow, rows = utf8_len(name) - len(f"plugin:{plugin_id}:") + utf8_len(str(new)), 1
            else:
                grow, rows = utf8_len(str(new)) - utf8_len(str(old[0])), 0
            self._quota.check(plugin_id, grow, rows, what="this kv.increment")
            return value  # type: ignore[no-any-return]

    def compare_and_set(self, plugin_id: str, key: str, expected: Any, new: Any) -> bool:
        """Set ``key`` to ``new`` only if it holds ``expected`` (exact JSON equality;
        ``None`` expected = the key is absent; ``None`` new = delete the key); returns
        whether it did. Atomic: inside an invocation the read is validated at commit."""
        name = self._name(plugin_id, key)
        db = self._options._db
        with db.transaction():
            text = db.scalar(
                "SELECT value FROM _emdash_options WHERE name = ?",
                (name,),
                scopes=(point_scope(name),),
            )
            if expected is None:
                same = text is None
            else:
                same = text is not None and _canonical(decode_json(text)) == _canonical(expected)
            if not same:
                return False
            if new is None:
                self._options.delete(name)
            else:
                self.set(plugin_id, key, new)
            return True
