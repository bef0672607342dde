"""Plugin document storage: ``_plugin_storage`` rows and the indexes plugins declare.

Every method takes the plugin id first; it comes from the host (the bridge), never from
the plugin, and it is part of every statement's WHERE clause, so no id, collection name or
filter a plugin sends can reach another plugin's rows.

Declared indexes are *partial* expression indexes::

    CREATE [UNIQUE] INDEX "idx_plugin_<pid>_<coll>_<f1_f2>" ON _plugin_storage
        (json_extract(data, '$.f1'), json_extract(data, '$.f2'))
        WHERE plugin_id = '<pid>' AND collection = '<coll>'

EmDash indexes ``(plugin_id, collection, json_extract(...))`` over the whole table, so a
unique index declared by one plugin also makes that field unique in every other plugin's
collections. The partial form scopes uniqueness to the declaring collection, and keeps
each index small. Queries spell ``plugin_id``/``collection`` as literals (validated
identifiers only) so SQLite can match them against the partial-index predicate.

Index names follow EmDash (``idx_``/``uidx_``, cut to 128 chars), except that a name that
would be truncated, or that is already used by another index (SQLite names are
case-insensitive, and ``a``+``b_c`` and ``a_b``+``c`` spell the same name), gets a hash
suffix. What exists is tracked in ``_plugin_indexes``; sync creates what is missing and
drops what is no longer declared. Failures are logged, never raised (a missing index costs
speed, not correctness), except that sync cannot create a unique index over data that
already violates it: that one is logged and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .._model._descriptor import StorageCollection
from .._shared._errors import BridgeError, StorageError
from ._cursor import ROW_OVERHEAD_BYTES, Keyset, OrderKey, bounded_rows, fetch_page
from ._db import Db
from ._quotas import QuotaPolicy, StoredQuota, utf8_len
from ._storage_query import compile_order, compile_where, field_expr
from ._values import (
    MAX_RESULT_BYTES,
    check_collection,
    check_doc_id,
    check_plugin_id,
    decode_json,
    encode_json,
)

__all__ = ["PluginDocuments"]

log = logging.getLogger("emdash.store")

_INDEX_NAME_RE = re.compile(r"u?idx_plugin_[A-Za-z0-9_-]{1,200}")
_CHUNK = 500

IndexKey = tuple[str, tuple[str, ...], bool]


class PluginDocuments:
    """Document collections of plugins, with the storage query language."""

    def __init__(self, db: Db, quota: StoredQuota | None = None) -> None:
        self._db = db
        self._quota = quota or StoredQuota(db, QuotaPolicy())

    # -- single documents --------------------------------------------------------------

    def get(self, plugin_id: str, collection: str, id: str) -> Any:
        pid, coll = _scope(plugin_id, collection)
        doc_id = check_doc_id(id, plugin_id=pid)
        row = self._db.row(
            "SELECT data FROM _plugin_storage WHERE plugin_id = ? AND collection = ? AND id = ?",
            (pid, coll, doc_id),
            scopes=(_point(pid, coll, doc_id),),
        )
        return None if row is None else decode_json(row["data"])

    def put(self, plugin_id: str, collection: str, id: str, data: Any) -> None:
        """Upsert; ``created_at`` is kept on conflict, ``updated_at`` refreshed."""
        pid, coll = _scope(plugin_id, collection)
        rows = [(check_doc_id(id, plugin_id=pid), _encode_doc(data, pid, coll))]
        self._write(pid, coll, rows)

    def delete(self, plugin_id: str, collection: str, id: str) -> bool:
        pid, coll = _scope(plugin_id, collection)
        doc_id = check_doc_id(id, plugin_id=pid)
        with self._db.transaction():
            self._db.touch(_point(pid, coll, doc_id), _namespace(pid, coll))
            return (
                self._db.execute(
                    "DELETE FROM _plugin_storage WHERE plugin_id = ? AND collection = ? AND id = ?",
                    (pid, coll, doc_id),
                )
                > 0
            )

    def exists(self, plugin_id: str, collection: str, id: str) -> bool:
        pid, coll = _scope(plugin_id, collection)
        doc_id = check_doc_id(id, plugin_id=pid)
        return bool(
            self._db.scalar(
                "SELECT 1 FROM _plugin_storage WHERE plugin_id = ? AND collection = ? AND id = ?",
                (pid, coll, doc_id),
                scopes=(_point(pid, coll, doc_id),),
            )
        )

    # -- batches -----------------------------------------------------------------------

    def get_many(self, plugin_id: str, collection: str, ids: Sequence[str]) -> dict[str, Any]:
        """``{id: data}`` for the ids that exist (in the order asked).

        Bounded like every list-shaped answer: past :data:`MAX_RESULT_BYTES` of stored JSON
        (sizes counted in SQL, rows read one at a time) a ``BridgeError`` says to ask for
        fewer ids; nothing beyond the budget is ever read.
        """
        pid, coll = _scope(plugin_id, collection)
        wanted = list(dict.fromkeys(_ids(ids, pid)))
        found: dict[str, Any] = {}
        used = 0
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows, cut = bounded_rows(
                self._db,
                "SELECT id, data, length(CAST(id AS BLOB)) + length(CAST(data AS BLOB)) AS _size "
                "FROM _plugin_storage WHERE plugin_id = ? AND collection = ? "
                f"AND id IN ({', '.join('?' * len(chunk))})",
                (pid, coll, *chunk),
                budget=None,
                what=f"storage.{coll}.getMany",
                plugin_id=pid,
                used=used,
                scopes=[_point(pid, coll, i) for i in chunk],
            )
            if cut:
                raise BridgeError(
                    f"storage.{coll}.getMany: the {len(wanted)} requested documents of plugin "
                    f"{pid} hold more than {MAX_RESULT_BYTES} bytes of data, more than one "
                    "answer carries; ask for fewer ids per call (or page with query)",
                    plugin_id=pid,
                )
            for r in rows:
                used += int(r["_size"] or 0) + ROW_OVERHEAD_BYTES
                found[r["id"]] = r["data"]
        return {i: decode_json(found[i]) for i in wanted if i in found}

    def put_many(self, plugin_id: str, collection: str, items: Sequence[Mapping[str, Any]]) -> None:
        """Upsert every ``{"id", "data"}`` item in one transaction with one timestamp.

        Every item is validated before anything is written; any failure writes nothing.
        """
        pid, coll = _scope(plugin_id, collection)
        if not isinstance(items, list | tuple):
            raise BridgeError(
                "Parameter items must be an array of { id: string, data } items", plugin_id=pid
            )
        rows: list[tuple[str, str]] = []
        for item in items:
            if not isinstance(item, Mapping) or "id" not in item or "data" not in item:
                raise BridgeError(
                    "Parameter items must be an array of { id: string, data } items",
                    plugin_id=pid,
                )
            rows.append(
                (check_doc_id(item["id"], plugin_id=pid), _encode_doc(item["data"], pid, coll))
            )
        if rows:
            self._write(pid, coll, rows)

    def delete_many(self, plugin_id: str, collection: str, ids: Sequence[str]) -> int:
        pid, coll = _scope(plugin_id, collection)
        wanted = list(dict.fromkeys(_ids(ids, pid)))
        deleted = 0
        with self._db.transaction():
            self._db.touch(_namespace(pid, coll), *(_point(pid, coll, i) for i in wanted))
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                deleted += self._db.execute(
                    "DELETE FROM _plugin_storage WHERE plugin_id = ? AND collection = ? "
                    f"AND id IN ({', '.join('?' * len(chunk))})",
                    (pid, coll, *chunk),
                )
        return deleted

    def _write(self, pid: str, coll: str, rows: list[tuple[str, str]]) -> None:
        now = self._db.now()
        try:
            with self._db.transaction():
                self._db.touch(_namespace(pid, coll), *(_point(pid, coll, i) for i, _ in rows))
                self._check_quota(pid, coll, rows)
                self._db.executemany(
                    "INSERT INTO _plugin_storage "
                    "(plugin_id, collection, id, data, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(plugin_id, collection, id) DO UPDATE SET "
                    "data = excluded.data, updated_at = excluded.updated_at",
                    [(pid, coll, doc_id, text, now, now) for doc_id, text in rows],
                )
        except sqlite3.IntegrityError as exc:
            raise self._unique_violation(exc, pid, coll) from None

    def _check_quota(self, pid: str, coll: str, rows: list[tuple[str, str]]) -> None:
        """Refuse the batch, before anything is written, if it would pass a stored quota.

        Counted on the final state: a repeated id counts once, with its last data (what
        the upserts leave behind).
        """
        final = dict(rows)
        old: dict[str, int] = {}
        ids = list(final)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for r in self._db.rows(
                "SELECT id, length(CAST(data AS BLOB)) AS n FROM _plugin_storage "
                f"WHERE plugin_id = ? AND collection = ? AND id IN ({', '.join('?' * len(chunk))})",
                (pid, coll, *chunk),
                # For the quota only: a blind put must not depend on (conflict over) the
                # documents it replaces.
                scopes=(),
            ):
                old[r["id"]] = int(r["n"])
        grow = new_rows = 0
        coll_len = utf8_len(coll)
        for doc_id, text in final.items():
            if doc_id in old:
                grow += utf8_len(text) - old[doc_id]
            else:
                grow += coll_len + utf8_len(doc_id) + utf8_len(text)
                new_rows += 1
        what = "this storage.put" if len(rows) == 1 else f"this putMany of {len(final)} documents"
        self._quota.check(pid, grow, new_rows, what=what)

    def _unique_violation(self, exc: sqlite3.IntegrityError, pid: str, coll: str) -> BridgeError:
        match = re.search(r"index '([^']+)'", str(exc))
        fields: list[str] = []
        if match:
            row = self._db.row(
                "SELECT fields FROM _plugin_indexes WHERE plugin_id = ? AND index_name = ?",
                (pid, match.group(1)),
            )
            if row is not None:
                fields = json.loads(row["fields"])
        what = f"({', '.join(fields)})" if fields else "a unique index"
        return BridgeError(
            f"Storage collection '{coll}' of plugin '{pid}' already has a document with the "
            f"same value of unique index {what}: change the value or update that document "
            "instead. Nothing was written.",
            plugin_id=pid,
        )

    # -- queries -----------------------------------------------------------------------

    def count(
        self, plugin_id: str, collection: str, spec: StorageCollection, where: object = None
    ) -> int:
        pid, coll = _scope(plugin_id, collection)
        where_sql, params = compile_where(
            where, queryable=spec.queryable_fields(), plugin_id=pid, collection=coll
        )
        return int(
            self._db.scalar(
                f"SELECT COUNT(*) FROM _plugin_storage WHERE {_scope_sql(pid, coll)} "
                f"AND ({where_sql})",
                params,
                scopes=(_namespace(pid, coll),),
            )
        )

    def query(
        self,
        plugin_id: str,
        collection: str,
        spec: StorageCollection,
        *,
        where: object = None,
        order_by: object = None,
        limit: object = None,
        cursor: object = None,
    ) -> dict[str, Any]:
        """``{"items": [{"id", "data"}], "hasMore", "cursor"?}`` (plugin-api §5)."""
        pid, coll = _scope(plugin_id, collection)
        queryable = spec.queryable_fields()
        where_sql, params = compile_where(
            where, queryable=queryable, plugin_id=pid, collection=coll
        )
        keys = compile_order(order_by, queryable=queryable, plugin_id=pid, collection=coll)
        if not keys:
            keys = [OrderKey("$createdAt", "created_at")]
        keyset = Keyset(f"storage:{coll}", [*keys, OrderKey("id", "id", keys[-1].desc)])
        page = fetch_page(
            self._db,
            keyset,
            columns="id, data",
            table="_plugin_storage",
            scope=(_scope_sql(pid, coll), ()),
            filters=(where_sql, params),
            limit=limit,
            cursor=cursor,
            size_expr="length(CAST(id AS BLOB)) + length(CAST(data AS BLOB))",
            what=f"storage.{coll}.query",
            plugin_id=pid,
            versions=(_namespace(pid, coll),),
        )
        out: dict[str, Any] = {
            "items": [{"id": r["id"], "data": decode_json(r["data"])} for r in page.rows],
            "hasMore": page.has_more,
        }
        if page.cursor is not None:
            out["cursor"] = page.cursor
        return out

    # -- declared indexes --------------------------------------------------------------

    def sync_indexes(self, plugin_id: str, storage: Mapping[str, StorageCollection]) -> None:
        """Create the indexes ``storage`` declares and drop the plugin's undeclared ones."""
        pid = check_plugin_id(plugin_id)
        desired: set[IndexKey] = set()
        for coll, spec in storage.items():
            check_collection(coll, plugin_id=pid)
            for fields, unique in spec.index_field_sets():
                desired.add((coll, tuple(fields), unique))
        with self._db.transaction():
            existing = self._existing(pid)
            for key, name in existing.items():
                present = self._index_present(name)
                if key not in desired or not present:
                    self._drop(pid, name)
            current = {k: n for k, n in self._existing(pid).items()}
            for key in sorted(desired - current.keys()):
                self._create(pid, key)

    def drop_indexes(self, plugin_id: str) -> None:
        pid = check_plugin_id(plugin_id)
        with self._db.transaction():
            for name in self._existing(pid).values():
                self._drop(pid, name)

    def delete_plugin_data(self, plugin_id: str) -> int:
        """Delete every stored document of the plugin (its KV is ``kv.delete_all``)."""
        pid = check_plugin_id(plugin_id)
        with self._db.transaction():
            return self._db.execute("DELETE FROM _plugin_storage WHERE plugin_id = ?", (pid,))

    def indexes(self, plugin_id: str) -> list[dict[str, Any]]:
        """The indexes currently tracked for the plugin (for diagnostics and tests)."""
        pid = check_plugin_id(plugin_id)
        return [
            {
                "name": r["index_name"],
                "collection": r["collection"],
                "fields": json.loads(r["fields"]),
                "unique": bool(r["is_unique"]),
            }
            for r in self._db.rows(
                "SELECT * FROM _plugin_indexes WHERE plugin_id = ? ORDER BY index_name", (pid,)
            )
        ]

    def _existing(self, pid: str) -> dict[IndexKey, str]:
        rows = self._db.rows(
            "SELECT collection, index_name, fields, is_unique FROM _plugin_indexes "
            "WHERE plugin_id = ?",
            (pid,),
        )
        return {
            (r["collection"], tuple(json.loads(r["fields"])), bool(r["is_unique"])): r["index_name"]
            for r in rows
        }

    def _index_present(self, name: str) -> bool:
        return bool(
            self._db.scalar(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            )
        )

    def _name_for(self, pid: str, key: IndexKey) -> str:
        coll, fields, unique = key
        base = f"{'uidx' if unique else 'idx'}_plugin_{pid}_{coll}_{'_'.join(fields)}"
        taken = self._db.scalar(
            "SELECT 1 FROM sqlite_master WHERE lower(name) = lower(?)", (base[:128],)
        )
        if len(base) <= 128 and not taken:
            return base
        digest = hashlib.sha256(json.dumps([pid, coll, list(fields), unique]).encode()).hexdigest()[
            :8
        ]
        return f"{base[:119]}_{digest}"

    def _create(self, pid: str, key: IndexKey) -> None:
        coll, fields, unique = key
        name = self._name_for(pid, key)
        if not _INDEX_NAME_RE.fullmatch(name):
            log.warning("plugin %s: not creating index with unexpected name %r", pid, name)
            return
        columns = ", ".join(field_expr(f) for f in fields)
        sql = (
            f'CREATE {"UNIQUE " if unique else ""}INDEX IF NOT EXISTS "{name}" '
            f"ON _plugin_storage ({columns}) WHERE {_scope_sql(pid, coll)}"
        )
        try:
            with self._db.transaction():  # a savepoint: one failure spoils nothing else
                self._db.execute(sql)
                self._db.execute(
                    "INSERT INTO _plugin_indexes "
                    "(plugin_id, collection, index_name, fields, is_unique, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (pid, coll, name, json.dumps(list(fields)), int(unique), self._db.now()),
                )
        except (sqlite3.Error, StorageError) as exc:
            log.warning(
                "plugin %s: could not create %sindex on storage.%s (%s): %s",
                pid,
                "unique " if unique else "",
                coll,
                ", ".join(fields),
                exc,
            )

    def _drop(self, pid: str, name: str) -> None:
        if _INDEX_NAME_RE.fullmatch(name):
            try:
                with self._db.transaction():
                    self._db.execute(f'DROP INDEX IF EXISTS "{name}"')
            except (sqlite3.Error, StorageError) as exc:
                log.warning("plugin %s: could not drop index %s: %s", pid, name, exc)
        self._db.execute(
            "DELETE FROM _plugin_indexes WHERE plugin_id = ? AND index_name = ?", (pid, name)
        )


def _point(pid: str, coll: str, doc_id: str) -> str:
    """The version scope of one document (see emdash._store._db)."""
    return f"st/{pid}/{coll}/{doc_id}"


def _namespace(pid: str, coll: str) -> str:
    """The version scope of a collection: what queries and counts read."""
    return f"st/{pid}/{coll}"


def _scope(plugin_id: str, collection: str) -> tuple[str, str]:
    pid = check_plugin_id(plugin_id)
    return pid, check_collection(collection, plugin_id=pid)


def _scope_sql(pid: str, coll: str) -> str:
    # Literals, not parameters, so the planner can use the partial indexes. Both values
    # have passed check_plugin_id / check_collection (no quotes possible); re-check here
    # because this is the one place values become SQL text.
    check_plugin_id(pid)
    check_collection(coll)
    return f"plugin_id = '{pid}' AND collection = '{coll}'"


def _ids(ids: object, pid: str) -> list[str]:
    if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
        raise BridgeError("Parameter ids must be an array of strings", plugin_id=pid)
    return [check_doc_id(i, plugin_id=pid) for i in ids]


def _encode_doc(data: Any, pid: str, coll: str) -> str:
    return encode_json(data, what=f"Document data for storage.{coll}", plugin_id=pid)
