"""Content: collections and their items (ULID ids, status, soft delete, versions).

All collections share one table, ``_emdash_content``, with the item's fields in a JSON
``data`` column, so no table name is ever built from a collection name (EmDash's
``ec_<collection>`` tables are why its bridge must regex-check every name). A collection
must exist (``ensure_collection``; ``posts`` and ``pages`` exist from the start) before
items can be created in it; reads of an unknown collection just find nothing.

Item shape (EmDash's ``ContentItem``, plus the state fields the isolate shape lacks)::

    {"id", "type", "slug", "status", "data", "authorId", "locale", "version",
     "createdAt", "updatedAt", "publishedAt", "scheduledAt", "deletedAt",
     "liveRevisionId", "draftRevisionId"}

System keys (``SYSTEM_KEYS``: ``id``, ``slug``, ``status``, ``author_id``, ``version``,
``locale``, the timestamps, the revision ids) in data written by plugins are not fields:
they name the item's own columns. ``create_many`` (like the bridge's ``create``) applies
string ``slug``, ``status`` and ``author_id`` found in an item's data to the item and drops
the other system keys, as EmDash's bridge does; the bridge strips them from updates.
``create``/``update`` store the host's data as given (``rt.content`` passes what the
``content:beforeSave`` hooks returned).

Revisions: a collection declares what it supports (``ensure_collection(name,
supports=["drafts", "revisions"])``). In a collection that supports ``revisions`` an
update of a published item leaves the live columns untouched: the merged fields (and a new
slug) are staged in a draft revision (``_emdash_revisions``), the item's ``version`` goes up
and ``draftRevisionId`` points at it, and ``update`` returns the *effective draft* (the item
with the draft's data and slug). Further updates merge into that draft; publishing promotes
it to the live columns (``liveRevisionId``). ``get``/``list`` return the live item;
``get_effective`` returns the item as its pending draft would publish it.

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
from ._dialect import ORDER_KEY_MARK
from ._values import Locales, check_collection, decode_json, encode_json

__all__ = [
    "COLLECTION_SUPPORTS",
    "CONTENT_STATUSES",
    "MAX_BATCH",
    "SYSTEM_KEYS",
    "ContentItems",
    "split_system_keys",
]

CONTENT_STATUSES = ("draft", "published", "scheduled")
MAX_BATCH = 100
# What a collection may declare it supports (EmDash's collection ``supports`` values). Only
# "revisions" changes how the store writes; the others are recorded for the admin/host.
COLLECTION_SUPPORTS = ("drafts", "revisions", "preview", "scheduling", "search")
# EmDash's system columns: keys of these names in item data are not fields.
SYSTEM_KEYS = frozenset(
    {
        "id",
        "slug",
        "status",
        "author_id",
        "created_at",
        "updated_at",
        "published_at",
        "scheduled_at",
        "deleted_at",
        "version",
        "live_revision_id",
        "draft_revision_id",
        "locale",
        "translation_group",
    }
)
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
    "title": "json_extract(data, '$.title')" + ORDER_KEY_MARK,
}
_COLUMNS = (
    "id, collection, slug, status, data, author_id, locale, version, created_at, updated_at, "
    "published_at, scheduled_at, deleted_at, live_revision_id, draft_revision_id"
)


def item_scope(collection: str, id: str) -> str:
    """The version scope of one content item (its row and its revisions): what a get
    depends on inside an invocation. Collection names hold no ``/``, so it is unambiguous."""
    return f"ct/{collection}/{id}"


def collection_scope(collection: str) -> str:
    """The version scope of a collection's items: what a list (or a slug check) reads;
    bumped by every write to any of its items."""
    return f"ct/{collection}"


class ContentItems:
    def __init__(self, db: Db, locales: Locales) -> None:
        self._db = db
        self._locales = locales

    # -- collections -------------------------------------------------------------------

    def ensure_collection(
        self, name: str, *, label: str | None = None, supports: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Create the collection if it does not exist (a given label or supports set is
        updated). ``supports`` lists what the collection supports, from
        :data:`COLLECTION_SUPPORTS`; with ``"revisions"``, updates of published items are
        staged as draft revisions."""
        check_collection(name)
        declared = None if supports is None else encode_json(_supports(supports), what="supports")
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO _emdash_collections (name, label, created_at, supports) "
                "VALUES (?, ?, ?, COALESCE(?, '[]')) "
                "ON CONFLICT(name) DO UPDATE SET label = COALESCE(excluded.label, label), "
                "supports = COALESCE(?, supports)",
                (name, None if label is None else str(label), self._db.now(), declared, declared),
            )
        found = self.get_collection(name)
        assert found is not None
        return found

    def get_collection(self, name: str) -> dict[str, Any] | None:
        check_collection(name)
        row = self._db.row("SELECT * FROM _emdash_collections WHERE name = ?", (name,))
        if row is None:
            return None
        return _collection(row)

    def collections(self) -> builtins.list[dict[str, Any]]:
        return [
            _collection(r) for r in self._db.rows("SELECT * FROM _emdash_collections ORDER BY name")
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
        row = self._db.row(sql, (collection, id), scopes=(item_scope(collection, id),))
        return None if row is None else _item(row)

    def get_effective(self, collection: str, id: str) -> dict[str, Any] | None:
        """The item as its pending draft revision would publish it (or the live item)."""
        item = self.get(collection, id)
        return None if item is None else self._effective(item)

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
        if limit == 0:
            limit = None  # EmDash treats a limit of 0 as absent: the default page size
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
            versions=(collection_scope(collection),),
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
        """Create every item (each a data object) in one transaction, default locale.

        As in ``create`` through the bridge, string ``slug``, ``status`` and ``author_id``
        in an item's data set the item's own columns; a duplicate slug fails the batch.
        """
        self._require_collection(collection)
        _batch(items, "items")
        rows = []
        for data in items:
            if not isinstance(data, Mapping):
                raise BridgeError("Content data must be an object")
            fields, lifted = split_system_keys(data)
            rows.append(
                self._new_row(
                    collection,
                    fields,
                    lifted.get("slug"),
                    lifted.get("status", "draft"),
                    None,
                    lifted.get("author_id"),
                    None,
                )
            )
        with self._db.transaction():
            for row in rows:
                self._insert(row)
            return [self._must_get(collection, row["id"]) for row in rows]

    def update(
        self, collection: str, id: str, data: Mapping[str, Any], *, slug: str | None = None
    ) -> dict[str, Any]:
        """Merge ``data`` into the item's fields; ``version`` + 1. Missing -> NotFoundError.

        Draft-aware: when the item has a pending draft revision, or is published in a
        collection that supports revisions, the change is staged in the draft revision and
        the live columns stay untouched. Returns the effective draft.
        """
        check_collection(collection)
        if not isinstance(data, Mapping):
            raise BridgeError("Content data must be an object")
        new_slug = None if slug is None else _slug(slug)
        with self._db.transaction():
            current = self._must_get(collection, id)
            if current["draftRevisionId"] is not None or (
                current["status"] == "published" and self._supports_revisions(collection)
            ):
                return self._update_draft(current, data, new_slug)
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
        """Apply ``[{"id", "data", "slug"?}]`` updates in one transaction; any failure
        undoes all."""
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
            return [
                self.update(collection, item["id"], item["data"], slug=item.get("slug"))
                for item in items
            ]

    def soft_delete(self, collection: str, id: str) -> bool:
        """Move to trash (sets ``deletedAt``); False if missing or already deleted."""
        check_collection(collection)
        now = self._db.now()
        with self._db.transaction():
            deleted = (
                self._db.execute(
                    "UPDATE _emdash_content SET deleted_at = ?, updated_at = ? "
                    "WHERE collection = ? AND id = ? AND deleted_at IS NULL",
                    (now, now, collection, str(id)),
                )
                > 0
            )
            if deleted:  # a miss changes nothing: no version row for an unknown id
                self._touch(collection, str(id))
            return deleted

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
            revisions = self._db.execute(
                "DELETE FROM _emdash_revisions WHERE collection = ? AND entry_id = ?",
                (collection, str(id)),
            )
            deleted = (
                self._db.execute(
                    "DELETE FROM _emdash_content WHERE collection = ? AND id = ?",
                    (collection, str(id)),
                )
                > 0
            )
            if deleted or revisions:
                self._touch(collection, str(id))
            return deleted

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
        unpublishing clears ``scheduledAt``. Publishing promotes a pending draft revision to
        the live columns; in a collection that supports revisions it records the published
        fields as a revision (``liveRevisionId``).
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
            if status == "published":
                self._promote(current)
            self._touch(collection, id)
            self._db.execute(
                "UPDATE _emdash_content SET status = ?, published_at = ?, scheduled_at = ?, "
                "version = version + 1, updated_at = ? WHERE collection = ? AND id = ?",
                (status, pub, sched, self._db.now(), collection, id),
            )
            return self._must_get(collection, id)

    # -- revisions (internals) ---------------------------------------------------------

    def _supports_revisions(self, collection: str) -> bool:
        found = self.get_collection(collection)
        return found is not None and "revisions" in found["supports"]

    def _revision(self, item: dict[str, Any]) -> dict[str, Any]:
        row = self._db.row(
            "SELECT data, slug FROM _emdash_revisions WHERE id = ? AND collection = ? "
            "AND entry_id = ?",
            (item["draftRevisionId"], item["type"], item["id"]),
            # An item's revisions change only with the item (every such write touches it).
            scopes=(item_scope(item["type"], item["id"]),),
        )
        if row is None:  # a dangling pointer: the live fields are the draft
            return {"data": item["data"], "slug": item["slug"]}
        data = decode_json(row["data"])
        return {"data": data if isinstance(data, dict) else {}, "slug": row["slug"]}

    def _effective(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["draftRevisionId"] is None:
            return item
        return {**item, **self._revision(item)}

    def _check_slug_free(self, item: dict[str, Any], slug: str) -> None:
        """A draft's slug is checked now (the unique index checks it again on publish)."""
        taken = self._db.scalar(
            "SELECT 1 FROM _emdash_content WHERE collection = ? AND locale = ? AND slug = ? "
            "AND id != ? AND deleted_at IS NULL",
            (item["type"], item["locale"], slug, item["id"]),
            scopes=(collection_scope(item["type"]),),
        )
        if taken:
            raise BridgeError(
                f'Slug "{slug}" is already used in collection "{item["type"]}" '
                f"(locale {item['locale']}). Choose another slug."
            )

    def _update_draft(
        self, current: dict[str, Any], data: Mapping[str, Any], new_slug: str | None
    ) -> dict[str, Any]:
        collection, id = current["type"], current["id"]
        base = self._effective(current)
        text = encode_json({**base["data"], **data}, what="Content data")
        slug = base["slug"] if new_slug is None else new_slug
        if new_slug is not None:
            self._check_slug_free(current, new_slug)
        now = self._db.now()
        self._touch(collection, id)
        rev_id = current["draftRevisionId"]
        if rev_id is None or not self._db.execute(
            "UPDATE _emdash_revisions SET data = ?, slug = ?, created_at = ? "
            "WHERE id = ? AND collection = ? AND entry_id = ?",
            (text, slug, now, rev_id, collection, id),
        ):
            rev_id = self._new_revision(current, text, slug)
        self._db.execute(
            "UPDATE _emdash_content SET draft_revision_id = ?, version = version + 1, "
            "updated_at = ? WHERE collection = ? AND id = ?",
            (rev_id, now, collection, id),
        )
        effective = self.get_effective(collection, id)
        assert effective is not None
        return effective

    def _new_revision(self, item: dict[str, Any], text: str, slug: str | None) -> str:
        rev_id = self._db.new_id()
        self._db.execute(
            "INSERT INTO _emdash_revisions (id, collection, entry_id, data, slug, author_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rev_id, item["type"], item["id"], text, slug, item["authorId"], self._db.now()),
        )
        return rev_id

    def _promote(self, current: dict[str, Any]) -> None:
        """On publish: a pending draft becomes the live data (or the live data is recorded
        as a revision in a revisions collection)."""
        collection, id = current["type"], current["id"]
        if current["draftRevisionId"] is not None:
            draft = self._revision(current)
            self._write_row(
                collection,
                id,
                current["locale"],
                "UPDATE _emdash_content SET data = ?, slug = ?, live_revision_id = ?, "
                "draft_revision_id = NULL WHERE collection = ? AND id = ?",
                (
                    encode_json(draft["data"], what="Content data"),
                    draft["slug"],
                    current["draftRevisionId"],
                    collection,
                    id,
                ),
                slug=draft["slug"],
            )
        elif self._supports_revisions(collection):
            self._touch(collection, id)
            text = encode_json(current["data"], what="Content data")
            self._db.execute(
                "UPDATE _emdash_content SET live_revision_id = ? WHERE collection = ? AND id = ?",
                (self._new_revision(current, text, current["slug"]), collection, id),
            )

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
        # The id's own millisecond: never earlier than an item made before (the default
        # order is createdAt), even after the wall clock was set back.
        ident, now = self._db.new_id_at()
        return {
            "id": ident,
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
        self._touch(collection, id)
        try:
            self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if "slug" in str(exc) or "idx_emdash_content_slug" in str(exc):
                raise BridgeError(
                    f'Slug "{slug}" is already used in collection "{collection}" '
                    f"(locale {locale}). Choose another slug."
                ) from None
            raise

    def _touch(self, collection: str, id: str) -> None:
        """Every write to an item (its row or its revisions) bumps the item's scope and its
        collection's (what a list reads) in the same transaction. Readers that name these
        scopes rely on it: a write path that skipped this would be a missed conflict."""
        self._db.touch(item_scope(collection, id), collection_scope(collection))

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
        "liveRevisionId": row["live_revision_id"],
        "draftRevisionId": row["draft_revision_id"],
    }


def _collection(row: dict[str, Any]) -> dict[str, Any]:
    supports = decode_json(row["supports"])
    return {
        "name": row["name"],
        "label": row["label"] or row["name"],
        "supports": [s for s in supports if type(s) is str] if isinstance(supports, list) else [],
        "createdAt": row["created_at"],
    }


def _supports(value: object) -> builtins.list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        raise BridgeError('supports must be a list of strings, e.g. ["drafts", "revisions"]')
    for entry in value:
        if entry not in COLLECTION_SUPPORTS or type(entry) is not str:
            raise BridgeError(
                f'Unknown collection support "{str(entry)[:64]}": use any of '
                + ", ".join(COLLECTION_SUPPORTS)
            )
    return sorted(set(value))


def split_system_keys(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Item data -> (its fields, the string ``slug``/``status``/``author_id`` in it).

    Every system key is removed from the fields; only those three, and only as strings,
    are returned for the item's own columns (EmDash's bridge rule; others are dropped).
    """
    fields = {k: v for k, v in data.items() if k not in SYSTEM_KEYS}
    lifted = {k: data[k] for k in ("slug", "status", "author_id") if type(data.get(k)) is str}
    return fields, lifted


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
