"""Comments on content items, stored with their moderation status and metadata.

The stored shape is EmDash's ``StoredComment`` (docs/plugin-reference.md, events in detail)::

    {"id", "collection", "contentId", "parentId", "authorName", "authorEmail",
     "authorUserId", "body", "status", "moderationMetadata", "createdAt", "updatedAt"}

``ipHash`` and ``userAgent`` are kept for moderation but never part of that shape, so
hooks that receive stored comments do not see them. ``count_approved_by_email`` (the
``priorApprovedCount`` of ``comment:moderate``) compares emails case-insensitively.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from .._shared._errors import BridgeError, NotFoundError
from ._db import Db
from ._values import check_collection, decode_json, encode_json

__all__ = ["COMMENT_STATUSES", "CommentRecords"]

COMMENT_STATUSES = ("pending", "approved", "spam", "trash")
MAX_BODY = 50_000
_TEXT_LIMITS = {"authorName": 200, "authorEmail": 320, "ipHash": 200, "userAgent": 1000}


class CommentRecords:
    def __init__(self, db: Db) -> None:
        self._db = db

    def create(
        self,
        comment: Mapping[str, Any],
        *,
        status: str,
        moderation_metadata: Any = None,
    ) -> dict[str, Any]:
        """Store ``{collection, contentId, parentId, authorName, authorEmail, authorUserId,
        body, ipHash, userAgent}`` with a moderation ``status``; returns the stored comment."""
        if not isinstance(comment, Mapping):
            raise BridgeError("Comment must be an object")
        collection = check_collection(comment.get("collection"))
        content_id = _text(comment, "contentId", required=True, limit=64)
        parent_id = _text(comment, "parentId", limit=64)
        author_name = _text(comment, "authorName", required=True, limit=_TEXT_LIMITS["authorName"])
        author_email = _text(comment, "authorEmail", limit=_TEXT_LIMITS["authorEmail"])
        author_user_id = _text(comment, "authorUserId", limit=64)
        body = _text(comment, "body", required=True, limit=MAX_BODY)
        ip_hash = _text(comment, "ipHash", limit=_TEXT_LIMITS["ipHash"])
        user_agent = comment.get("userAgent")
        if user_agent is not None:
            if type(user_agent) is not str:
                raise BridgeError("Comment field userAgent must be a string")
            user_agent = user_agent[: _TEXT_LIMITS["userAgent"]]
        status = _status(status)
        meta = (
            None
            if moderation_metadata is None
            else encode_json(moderation_metadata, what="Comment moderation metadata")
        )
        # Listed by creation time: a time that never goes back, like the id (see Db).
        comment_id, now = self._db.new_id_at()
        with self._db.transaction():
            if parent_id is not None:
                parent = self._db.row(
                    "SELECT collection, content_id FROM _emdash_comments WHERE id = ?", (parent_id,)
                )
                if parent is None or (parent["collection"], parent["content_id"]) != (
                    collection,
                    content_id,
                ):
                    raise BridgeError(
                        f'Parent comment "{parent_id}" not found on this content item'
                    )
            self._db.execute(
                "INSERT INTO _emdash_comments (id, collection, content_id, parent_id, "
                "author_name, author_email, author_email_norm, author_user_id, body, ip_hash, "
                "user_agent, status, moderation_metadata, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    comment_id,
                    collection,
                    content_id,
                    parent_id,
                    author_name,
                    author_email,
                    None if author_email is None else author_email.lower(),
                    author_user_id,
                    body,
                    ip_hash,
                    user_agent,
                    status,
                    meta,
                    now,
                    now,
                ),
            )
            return self._must_get(comment_id)

    def get(self, id: str) -> dict[str, Any] | None:
        if type(id) is not str:
            raise BridgeError("Missing required string parameter: id")
        row = self._db.row("SELECT * FROM _emdash_comments WHERE id = ?", (id,))
        return None if row is None else _stored(row)

    def set_status(self, id: str, status: str) -> dict[str, Any]:
        status = _status(status)
        with self._db.transaction():
            changed = self._db.execute(
                "UPDATE _emdash_comments SET status = ?, updated_at = ? WHERE id = ?",
                (status, self._db.now(), str(id)),
            )
            if not changed:
                raise NotFoundError(f'Comment not found: "{str(id)[:64]}"')
            return self._must_get(id)

    def count_approved_by_email(self, email: str) -> int:
        if type(email) is not str:
            raise BridgeError("Missing required string parameter: email")
        return int(
            self._db.scalar(
                "SELECT COUNT(*) FROM _emdash_comments WHERE author_email_norm = ? "
                "AND status = 'approved'",
                (email.lower(),),
            )
        )

    def list(
        self,
        *,
        collection: str | None = None,
        content_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Comments matching every filter given, oldest first."""
        where = ["1"]
        params: builtins.list[Any] = []
        if collection is not None:
            where.append("collection = ?")
            params.append(check_collection(collection))
        if content_id is not None:
            where.append("content_id = ?")
            params.append(str(content_id))
        if status is not None:
            where.append("status = ?")
            params.append(_status(status))
        sql = f"SELECT * FROM _emdash_comments WHERE {' AND '.join(where)} ORDER BY created_at, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(1, int(limit)))
        return [_stored(r) for r in self._db.rows(sql, params)]

    def _must_get(self, id: str) -> dict[str, Any]:
        found = self.get(id)
        if found is None:
            raise NotFoundError(f'Comment not found: "{str(id)[:64]}"')
        return found


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "collection": row["collection"],
        "contentId": row["content_id"],
        "parentId": row["parent_id"],
        "authorName": row["author_name"],
        "authorEmail": row["author_email"],
        "authorUserId": row["author_user_id"],
        "body": row["body"],
        "status": row["status"],
        "moderationMetadata": decode_json(row["moderation_metadata"]),
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def _text(
    comment: Mapping[str, Any], key: str, *, limit: int, required: bool = False
) -> str | None:
    value = comment.get(key)
    if value is None:
        if required:
            raise BridgeError(f"Comment field {key} is required")
        return None
    if type(value) is not str:
        raise BridgeError(f"Comment field {key} must be a string")
    if required and not value.strip():
        raise BridgeError(f"Comment field {key} must not be empty")
    if len(value) > limit:
        raise BridgeError(f"Comment field {key} is too long (at most {limit} characters)")
    return value


def _status(value: object) -> str:
    if value not in COMMENT_STATUSES or type(value) is not str:
        raise BridgeError(
            f'Invalid comment status "{str(value)[:32]}": must be one of '
            + ", ".join(COMMENT_STATUSES)
        )
    return value
