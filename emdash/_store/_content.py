"""Content: collections and their items (ULID ids, status, soft delete, versions).

All collections share one table, ``_emdash_content``, with the item's fields in a JSON
``data`` column, so no table name is ever built from a collection name (EmDash's
``ec_<collection>`` tables are why its bridge must regex-check every name). A collection
must exist (``ensure_collection``; ``posts`` and ``pages`` exist from the start) before
items can be created in it; reads of an unknown collection just find nothing.

Item shape (plugin-api §4.4, plus the state fields the isolate shape lacks)::

    {"id", "type", "slug", "status", "data", "authorId", "locale", "version",
     "createdAt", "updatedAt", "publishedAt", "scheduledAt", "deletedAt"}

``list`` pages with a real keyset cursor over the requested order (see ``_cursor``); the
default order is ``createdAt desc`` with the id as tie-break. Batches (``create_many``,
``update_many``, ``delete_many``) take at most 100 items and are all-or-nothing.
"""

from __future__ import annotations

import builtins
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .._shared._errors import BridgeError, NotFoundError
from ._cursor import Keyset, OrderKey, fetch_page
from ._db import Db, parse_timestamp
from ._values import Locales, check_collection, decode_json, encode_json

__all__ = ["CONTENT_STATUSES", "MAX_BATCH", "ContentItems"]

CONTENT_STATUSES = ("draft", "published", "scheduled")
MAX_BATCH = 100
_SLUG_RE = re.compile(r"[^\s/?#\\]{1,256}")
_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")

# Public order names -> SQL expressions (all fixed text; nothing from callers).
_ORDER_FIELDS = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "publishedAt": "published_at",
    "scheduledAt": "scheduled_at",
    "slug": "slug",
    "status": "status",
    "locale": "locale",
    "title": "json_extract(data, '$.title')",
}
_COLUMNS = (
    "id, collection, slug, status, data, author_id, locale, version, created_at, updated_at, "
    "published_at, scheduled_at, deleted_at"
)


class ContentItems:
    def __init__(self, db: Db, locales: Locales) -> None:
        self._db = db
        self._locales = locales

    # -- collections -------------------------------------------------------------------

    def ensure_collection(self, name: str, *, label: str | None = None) -> dict[str, Any]:
        """Create the collection if it does not exist (a given label is updated)."""
        check_collection(name)
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO _emdash_collections (name, label, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET label = COALESCE(excluded.label, label)",
                (name, None if label is None else str(label), self._db.now()),
            )
        found = self.get_collection(name)
        assert found is not None
        return found

    def get_collection(self, name: str) -> dict[str, Any] | None:
        check_collection(name)
        row = self._db.row("SELECT * FROM _emdash_collections WHERE name = ?", (name,))
        if row is None:
            return None
        return {
            "name": row["name"],
            "label": row["label"] or row["name"],
            "createdAt": row["created_at"],
        }

    def collections(self) -> builtins.list[dict[str, Any]]:
        return [
            {"name": r["name"], "label": r["label"] or r["name"], "createdAt": r["created_at"]}
            for r in self._db.rows("SELECT * FROM _emdash_collections ORDER BY name")
        ]

    # -- reads -------------------------------------------------------------------------

    def get(
        self, collection: str, id: str, *, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        check_collection(collection)
        if type(id) is not str:
            raise BridgeError("Missing required string parameter: id")
        sql = f"SELECT {_COLUMNS} FROM _emdash_content WHERE collection = ? AND id = ?"
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        row = self._db.row(sql, (collection, id))
        return None if row is None else _item(row)

    def list(
        self,
        collection: str,
        *,
        limit: object = 50,
        cursor: object = None,
        order_by: object = None,
        where: object = None,
        include_deleted: bool = False,
    ) -> dict[str, Any]:
        """``{"items", "hasMore", "cursor"?}``; limit defaults to 50, clamped to [1, 100]."""
        check_collection(collection)
        filters = ["1"] if include_deleted else ["deleted_at IS NULL"]
        params: builtins.list[Any] = []
        if where is not None:
            if not isinstance(where, Mapping):
                raise BridgeError("Parameter where must be an object when provided")
            for key, value in where.items():
                if key == "status":
                    filters.append("status = ?")
                    params.append(_status(value))
                elif key == "locale":
                    filters.append("locale = ?")
                    params.append(self._locales.match(value))
                else:
                    raise BridgeError(
                        f"Unsupported where key: {str(key)[:64]}. Content lists can be "
                        "filtered by status and locale."
                    )
        keyset = Keyset(f"content:{collection}", _order_keys(order_by))
        page = fetch_page(
            self._db,
            keyset,
            columns=_COLUMNS,
            table="_emdash_content",
            scope=("collection = ?", (collection,)),
            filters=(" AND ".join(filters), params),
            limit=limit,
            cursor=cursor,
            # Bounded in bytes too (100 items of up to 1 MiB each would be 100 MiB): the
            # page ends early, with a cursor. 320 covers the other columns of a row.
            size_expr="length(CAST(data AS BLOB)) + length(CAST(COALESCE(slug, '') AS BLOB)) + 320",
            what=f"content.list({collection})",
        )
        out: dict[str, Any] = {"items": [_item(r) for r in page.rows], "hasMore": page.has_more}
        if page.cursor is not None:
            out["cursor"] = page.cursor
        return out

    def due_scheduled(self, now_iso: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Scheduled, not deleted items whose ``scheduledAt`` is at or before ``now_iso``."""
        rows = self._db.rows(
            f"SELECT {_COLUMNS} FROM _emdash_content WHERE status = 'scheduled' "
            "AND deleted_at IS NULL AND scheduled_at <= ? ORDER BY scheduled_at, id LIMIT ?",
            (parse_timestamp(now_iso, what="time"), max(1, int(limit))),
        )
        return [_item(r) for r in rows]

    # -- writes ------------------------------------------------------------------------

    def create(
        self,
        collection: str,
        data: Mapping[str, Any],
        *,
        slug: str | None = None,
        status: str = "draft",
        locale: str | None = None,
        author_id: str | None = None,
        scheduled_at: str | None = None,
    ) -> dict[str, Any]:
        """Create an item (status ``draft`` unless told; ``scheduled`` needs ``scheduled_at``)."""
        self._require_collection(collection)
        row = self._new_row(collection, data, slug, status, locale, author_id, scheduled_at)
        with self._db.transaction():
            self._insert(row)
        return self._must_get(collection, row["id"])

    def create_many(
        self, collection: str, items: Sequence[Mapping[str, Any]]
    ) -> builtins.list[dict[str, Any]]:
        """Create every item (each a data object) in one transaction, default locale."""
        self._require_collection(collection)
        _batch(items, "items")
        rows = [self._new_row(collection, d, None, "draft", None, None, None) for d in items]
        with self._db.transaction():
            for row in rows:
                self._insert(row)
            return [self._must_get(collection, row["id"]) for row in rows]

    def update(
        self, collection: str, id: str, data: Mapping[str, Any], *, slug: str | None = None
    ) -> dict[str, Any]:
        """Merge ``data`` into the item's fields; ``version`` + 1. Missing -> NotFoundError."""
        check_collection(collection)
        if not isinstance(data, Mapping):
            raise BridgeError("Content data must be an object")
        new_slug = None if slug is None else _slug(slug)
        with self._db.transaction():
            current = self._must_get(collection, id)
            merged = {**current["data"], **data}
            text = encode_json(merged, what="Content data")
            self._write_row(
                collection,
                id,
                current["locale"],
                "UPDATE _emdash_content SET data = ?, slug = COALESCE(?, slug), "
                "version = version + 1, updated_at = ? WHERE collection = ? AND id = ?",
                (text, new_slug, self._db.now(), collection, id),
                slug=new_slug,
            )
            return self._must_get(collection, id)

    def update_many(
        self, collection: str, items: Sequence[Mapping[str, Any]]
    ) -> builtins.list[dict[str, Any]]:
        """Apply ``[{"id", "data"}]`` updates in one transaction; any failure undoes all."""
        check_collection(collection)
        _batch(items, "items")
        for item in items:
            if (
                not isinstance(item, Mapping)
                or type(item.get("id")) is not str
                or not isinstance(item.get("data"), Mapping)
            ):
                raise BridgeError(
                    "Parameter items must be an array of { id: string, data: object } items"
                )
        with self._db.transaction():
            return [self.update(collection, item["id"], item["data"]) for item in items]

    def soft_delete(self, collection: str, id: str) -> bool:
        """Move to trash (sets ``deletedAt``); False if missing or already deleted."""
        check_collection(collection)
        now = self._db.now()
        with self._db.transaction():
            return (
                self._db.execute(
                    "UPDATE _emdash_content SET deleted_at = ?, updated_at = ? "
                    "WHERE collection = ? AND id = ? AND deleted_at IS NULL",
                    (now, now, collection, str(id)),
                )
                > 0
            )

    def delete_many(self, collection: str, ids: Sequence[str]) -> int:
        """Soft-delete every id in one transaction; returns how many were deleted."""
        check_collection(collection)
        _batch(ids, "ids")
        if not all(type(i) is str for i in ids):
            raise BridgeError("Parameter ids must be an array of strings")
        with self._db.transaction():
            return sum(self.soft_delete(collection, i) for i in dict.fromkeys(ids))

    def restore(self, collection: str, id: str) -> dict[str, Any]:
        """Bring an item back from the trash (a live item is returned unchanged)."""
        check_collection(collection)
        with self._db.transaction():
            item = self.get(collection, id, include_deleted=True)
            if item is None:
                raise _not_found(collection, id)
            if item["deletedAt"] is not None:
                self._write_row(
                    collection,
                    id,
                    item["locale"],
                    "UPDATE _emdash_content SET deleted_at = NULL, updated_at = ? "
                    "WHERE collection = ? AND id = ?",
                    (self._db.now(), collection, id),
                    slug=item["slug"],
                )
            return self._must_get(collection, id)

    def delete_permanently(self, collection: str, id: str) -> bool:
        check_collection(collection)
        with self._db.transaction():
            return (
                self._db.execute(
                    "DELETE FROM _emdash_content WHERE collection = ? AND id = ?",
                    (collection, str(id)),
                )
                > 0
            )

    def set_status(
        self,
        collection: str,
        id: str,
        status: str,
        *,
        published_at: str | None = None,
        scheduled_at: str | None = None,
    ) -> dict[str, Any]:
        """Publish, schedule (needs ``scheduled_at``) or revert to draft; ``version`` + 1.

        Publishing keeps an earlier ``publishedAt`` unless one is given; publishing or
        unpublishing clears ``scheduledAt``.
        """
        check_collection(collection)
        status = _status(status)
        with self._db.transaction():
            current = self._must_get(collection, id)
            pub = current["publishedAt"]
            sched = None
            if status == "published":
                if published_at is not None:
                    pub = parse_timestamp(published_at, what="publishedAt")
                elif pub is None:
                    pub = self._db.now()
            elif status == "scheduled":
                if scheduled_at is None:
                    raise BridgeError("Scheduling needs scheduled_at (an ISO 8601 datetime)")
                sched = parse_timestamp(scheduled_at, what="scheduledAt")
            self._db.execute(
                "UPDATE _emdash_content SET status = ?, published_at = ?, scheduled_at = ?, "
                "version = version + 1, updated_at = ? WHERE collection = ? AND id = ?",
                (status, pub, sched, self._db.now(), collection, id),
            )
            return self._must_get(collection, id)

    # -- internals ---------------------------------------------------------------------

    def _require_collection(self, collection: str) -> None:
        check_collection(collection)
        if (
            self._db.scalar("SELECT 1 FROM _emdash_collections WHERE name = ?", (collection,))
            is None
        ):
            raise NotFoundError(
                f'Collection "{collection}" does not exist. Create it first '
                f'(store.content_items.ensure_collection("{collection}")).'
            )

    def _new_row(
        self,
        collection: str,
        data: Any,
        slug: Any,
        status: Any,
        locale: Any,
        author_id: Any,
        scheduled_at: Any,
    ) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise BridgeError("Content data must be an object")
        status = _status(status)
        if status == "scheduled" and scheduled_at is None:
            raise BridgeError("Scheduling needs scheduled_at (an ISO 8601 datetime)")
        if author_id is not None and (
            type(author_id) is not str or not _ID_RE.fullmatch(author_id)
        ):
            raise BridgeError("Invalid author id: expected a user id string")
        now = self._db.now()
        return {
            "id": self._db.new_id(),
            "collection": collection,
            "slug": None if slug is None else _slug(slug),
            "status": status,
            "data": encode_json(dict(data), what="Content data"),
            "author_id": author_id,
            "locale": self._locales.resolve(locale),
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "published_at": now if status == "published" else None,
            "scheduled_at": (
                parse_timestamp(scheduled_at, what="scheduledAt") if status == "scheduled" else None
            ),
            "deleted_at": None,
        }

    def _insert(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        self._write_row(
            row["collection"],
            row["id"],
            row["locale"],
            f"INSERT INTO _emdash_content ({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
            slug=row["slug"],
        )

    def _write_row(
        self,
        collection: str,
        id: str,
        locale: str,
        sql: str,
        params: Sequence[Any],
        *,
        slug: str | None,
    ) -> None:
        try:
            self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if "slug" in str(exc) or "idx_emdash_content_slug" in str(exc):
                raise BridgeError(
                    f'Slug "{slug}" is already used in collection "{collection}" '
                    f"(locale {locale}). Choose another slug."
                ) from None
            raise

    def _must_get(self, collection: str, id: str) -> dict[str, Any]:
        item = self.get(collection, id)
        if item is None:
            raise _not_found(collection, id)
        return item


def _order_keys(order_by: object) -> builtins.list[OrderKey]:
    if order_by is None:
        order_by = {"createdAt": "desc"}
    if not isinstance(order_by, Mapping) or not order_by:
        raise BridgeError('Parameter orderBy must be an object mapping field to "asc"|"desc"')
    keys: builtins.list[OrderKey] = []
    for name, direction in order_by.items():
        if name not in _ORDER_FIELDS or type(name) is not str:
            raise BridgeError(
                f"Invalid order field: {str(name)[:64]}. Custom fields must be indexed "
                "before sorting."
            )
        if direction not in ("asc", "desc") or type(direction) is not str:
            raise BridgeError('Parameter orderBy must be an object mapping field to "asc"|"desc"')
        keys.append(OrderKey(name, _ORDER_FIELDS[name], direction == "desc"))
    keys.append(OrderKey("id", "id", keys[-1].desc))
    return keys


def _item(row: dict[str, Any]) -> dict[str, Any]:
    data = decode_json(row["data"])
    return {
        "id": row["id"],
        "type": row["collection"],
        "slug": row["slug"],
        "status": row["status"],
        "data": data if isinstance(data, dict) else {},
        "authorId": row["author_id"],
        "locale": row["locale"],
        "version": row["version"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "publishedAt": row["published_at"],
        "scheduledAt": row["scheduled_at"],
        "deletedAt": row["deleted_at"],
    }


def _status(value: object) -> str:
    if value not in CONTENT_STATUSES or type(value) is not str:
        raise BridgeError(
            f'Invalid status "{str(value)[:64]}": must be one of draft, published, scheduled'
        )
    return value


def _slug(value: object) -> str:
    if type(value) is not str or not _SLUG_RE.fullmatch(value):
        raise BridgeError(
            f'Invalid slug "{str(value)[:64]}": use 1-256 characters without spaces, '
            "'/', '?', '#' or '\\'"
        )
    return value


def _batch(items: object, name: str) -> None:
    if not isinstance(items, list | tuple):
        kind = "strings" if name == "ids" else "objects"
        raise BridgeError(f"Parameter {name} must be an array of {kind}")
    if len(items) > MAX_BATCH:
        raise BridgeError(f"Batch size {len(items)} exceeds maximum of {MAX_BATCH}")


def _not_found(collection: str, id: object) -> NotFoundError:
    return NotFoundError(
        f'Content not found: no item "{str(id)[:64]}" in collection "{collection}"'
    )
