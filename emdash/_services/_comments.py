"""Public comments and their moderation, firing the ``comment:*`` hooks (docs/plugin-reference.md, events in detail): ``rt.comments``.

``create(...)``, in order:

1. checks: the collection exists and accepts comments (settings below), the content item
   exists and is published, comments on it are not closed, the parent (if any) belongs to
   the same item; replies to replies attach to the thread's root (EmDash's flat threads);
2. ``comment:beforeCreate`` middleware over ``{comment, metadata}``: ``False`` rejects the
   comment (:class:`CommentRejectedError`, code ``COMMENT_REJECTED``), a dict replaces the
   event; an ``abort``-policy failure propagates;
3. ``comment:moderate`` decides the initial status. It is an exclusive hook: the selected
   provider runs alone. When *no plugin* provides it, emdash's built-in moderator rules
   apply (EmDash registers that moderator as a plugin; we apply its rules directly, so
   it never appears in plugin lists). When providers exist but none is selected, the
   comment is pending with reason "No moderator configured"; a provider error gives
   "Moderation error"; a malformed decision gives "Invalid moderation result";
4. the comment is stored with that status and the decision as ``moderationMetadata``;
5. ``comment:afterCreate`` observers get ``{comment, metadata, content, contentAuthor?}``.

``moderate(comment_id, status, moderator=...)`` changes a status and fires
``comment:afterModerate``. The IP address is never stored or shown to plugins, only a salted
hash of it (``ipHash``).

Per-collection settings live in the option ``emdash:comments:<collection>``
(``commentsEnabled`` true, ``commentsModeration`` ``"first_time"``,
``commentsClosedAfterDays`` 0 = never, ``commentsAutoApproveUsers`` true by default).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._shared._errors import BridgeError, CommentRejectedError, EmDashError, NotFoundError

if TYPE_CHECKING:
    from .._store import Store
    from ._hook_runner import HookRunner

__all__ = [
    "DEFAULT_SETTINGS",
    "CommentRejectedError",
    "CommentService",
    "default_moderate",
]

log = logging.getLogger("emdash.comments")

SETTINGS_PREFIX = "emdash:comments:"
IP_SALT_OPTION = "emdash:ip_salt"
DEFAULT_SETTINGS: dict[str, Any] = {
    "commentsEnabled": True,
    "commentsModeration": "first_time",
    "commentsClosedAfterDays": 0,
    "commentsAutoApproveUsers": True,
}
MODERATION_MODES = ("all", "first_time", "none")
DECISION_STATUSES = ("approved", "pending", "spam")
MODERATOR_STATUSES = ("pending", "approved", "spam", "trash")


def default_moderate(event: dict[str, Any]) -> dict[str, Any]:
    """The built-in moderator's rules, in EmDash's order.

    1. signed-in users are approved when ``commentsAutoApproveUsers`` is set;
    2. moderation ``"none"``: approved;
    3. moderation ``"first_time"`` and the author has an approved comment: approved;
    4. otherwise pending.
    """
    settings = event.get("collectionSettings") or {}
    comment = event.get("comment") or {}
    if settings.get("commentsAutoApproveUsers") and comment.get("authorUserId"):
        return {"status": "approved", "reason": "Authenticated user"}
    mode = settings.get("commentsModeration")
    if mode == "none":
        return {"status": "approved", "reason": "Moderation disabled"}
    if mode == "first_time" and (event.get("priorApprovedCount") or 0) > 0:
        return {"status": "approved", "reason": "Returning commenter"}
    return {"status": "pending", "reason": "Held for moderation"}


def _decision_ok(value: Any) -> bool:
    return (
        type(value) is dict
        and value.get("status") in DECISION_STATUSES
        and (value.get("reason") is None or type(value.get("reason")) is str)
    )


class CommentService:
    """Comment submission and moderation; available as ``rt.comments``."""

    def __init__(self, store: Store, hooks: HookRunner) -> None:
        self._store = store
        self._hooks = hooks

    # -- settings -----------------------------------------------------------------------

    def settings(self, collection: str) -> dict[str, Any]:
        """The collection's comment settings (defaults merged with the stored option)."""
        stored = self._store.options.get(SETTINGS_PREFIX + collection)
        merged = dict(DEFAULT_SETTINGS)
        if type(stored) is dict:
            merged.update({k: v for k, v in stored.items() if k in DEFAULT_SETTINGS})
        return merged

    def configure(self, collection: str, **settings: Any) -> dict[str, Any]:
        """Change comment settings, e.g. ``configure("posts", commentsModeration="all")``."""
        if self._store.content_items.get_collection(collection) is None:
            raise NotFoundError(f'Collection "{collection}" does not exist')
        unknown = set(settings) - set(DEFAULT_SETTINGS)
        if unknown:
            raise BridgeError(
                f"Unknown comment setting(s): {', '.join(sorted(unknown))}. Valid: "
                + ", ".join(DEFAULT_SETTINGS)
            )
        merged = {**self.settings(collection), **settings}
        if (
            type(merged["commentsEnabled"]) is not bool
            or type(merged["commentsAutoApproveUsers"]) is not bool
        ):
            raise BridgeError("commentsEnabled and commentsAutoApproveUsers must be booleans")
        if merged["commentsModeration"] not in MODERATION_MODES:
            raise BridgeError('commentsModeration must be "all", "first_time" or "none"')
        days = merged["commentsClosedAfterDays"]
        if type(days) is not int or days < 0:
            raise BridgeError("commentsClosedAfterDays must be a non-negative integer (0 = never)")
        self._store.options.set(SETTINGS_PREFIX + collection, merged)
        return merged

    # -- create -------------------------------------------------------------------------

    def create(
        self,
        collection: str,
        content_id: str,
        *,
        author_name: str,
        author_email: str | None,
        body: str,
        author_user_id: str | None = None,
        parent_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict[str, Any]:
        """Submit a comment; returns the stored comment (its ``status`` says whether it is
        published). Raises :class:`CommentRejectedError` or ``NotFoundError``."""
        if self._store.content_items.get_collection(collection) is None:
            raise NotFoundError(f"Collection '{collection}' not found")
        settings = self.settings(collection)
        if not settings["commentsEnabled"]:
            raise CommentRejectedError(
                "COMMENTS_DISABLED", "Comments are not enabled for this collection"
            )
        item = self._store.content_items.get(collection, content_id)
        if item is None or item["status"] != "published":
            raise NotFoundError("Content not found")
        self._check_open(item, settings)
        for label, value in (("author_name", author_name), ("body", body)):
            if type(value) is not str or not value.strip():
                raise BridgeError(f"Comment {label} is required and must be a non-empty string")
        parent = self._resolve_parent(collection, content_id, parent_id)

        comment = {
            "collection": collection,
            "contentId": content_id,
            "parentId": parent,
            "authorName": author_name,
            "authorEmail": author_email,
            "authorUserId": author_user_id,
            "body": body,
            "ipHash": self._ip_hash(ip),
            "userAgent": user_agent,
        }
        outcome = self._hooks.run_hook("comment:beforeCreate", {"comment": comment, "metadata": {}})
        if outcome.cancelled_by is not None or outcome.value is False:
            log.info('[comments] comment rejected by plugin "%s"', outcome.cancelled_by)
            raise CommentRejectedError(plugin_id=outcome.cancelled_by)
        event = outcome.value
        if type(event) is not dict or type(event.get("comment")) is not dict:
            raise CommentRejectedError(
                "COMMENT_REJECTED",
                "Comment was rejected: a comment:beforeCreate handler returned an event "
                "without a comment object",
            )
        comment = {**comment, **event["comment"]}
        # Where the comment goes is not a plugin's call: a handler may rewrite the text,
        # never move the comment to another item or thread.
        comment.update(collection=collection, contentId=content_id, parentId=parent)
        raw_meta = event.get("metadata")
        metadata: dict[str, Any] = raw_meta if type(raw_meta) is dict else {}

        decision = self._moderate(comment, metadata, settings)
        with self._store.transaction():
            stored: dict[str, Any] = self._store.comment_records.create(
                comment, status=decision["status"], moderation_metadata=decision
            )
        after = {
            "comment": stored,
            "metadata": metadata,
            "content": {
                "id": item["id"],
                "collection": collection,
                "slug": item["slug"],
                "title": item["data"].get("title")
                if type(item["data"].get("title")) is str
                else None,
            },
        }
        author = self._content_author(item)
        if author is not None:
            after["contentAuthor"] = author
        self._observe("comment:afterCreate", after)
        return stored

    def _check_open(self, item: dict[str, Any], settings: dict[str, Any]) -> None:
        days = settings["commentsClosedAfterDays"]
        if not days or not item.get("publishedAt"):
            return
        published = datetime.fromisoformat(item["publishedAt"])
        now = datetime.fromisoformat(self._store.now())
        if now > published + timedelta(days=days):
            raise CommentRejectedError("COMMENTS_CLOSED", "Comments are closed for this content")

    def _resolve_parent(
        self, collection: str, content_id: str, parent_id: str | None
    ) -> str | None:
        if parent_id is None:
            return None
        parent = self._store.comment_records.get(parent_id) if type(parent_id) is str else None
        if parent is None:
            raise BridgeError("Parent comment not found")
        if parent["collection"] != collection or parent["contentId"] != content_id:
            raise BridgeError("Parent comment belongs to different content")
        root: str = parent["parentId"] or parent["id"]
        return root

    def _moderate(
        self, comment: dict[str, Any], metadata: dict[str, Any], settings: dict[str, Any]
    ) -> dict[str, Any]:
        email = comment.get("authorEmail")
        prior = (
            self._store.comment_records.count_approved_by_email(email) if type(email) is str else 0
        )
        event = {
            "comment": dict(comment),
            "metadata": metadata,
            "collectionSettings": dict(settings),
            "priorApprovedCount": prior,
        }
        result = self._hooks.invoke_exclusive("comment:moderate", event)
        if result is None:
            if self._hooks.exclusive_providers("comment:moderate"):
                return {"status": "pending", "reason": "No moderator configured"}
            return default_moderate(event)
        if result.error is not None:
            log.error("[comments] Moderation error (%s): %s", result.plugin_id, result.error)
            return {"status": "pending", "reason": "Moderation error"}
        if not _decision_ok(result.result):
            log.error(
                '[comments] plugin "%s" returned an invalid moderation decision', result.plugin_id
            )
            return {"status": "pending", "reason": "Invalid moderation result"}
        decision = {"status": result.result["status"]}
        if result.result.get("reason") is not None:
            decision["reason"] = result.result["reason"]
        return decision

    def _content_author(self, item: dict[str, Any]) -> dict[str, Any] | None:
        author_id = item.get("authorId")
        if not author_id:
            return None
        try:
            user = self._store.user_accounts.get(author_id)
        except EmDashError:
            return None
        # EmDash only names the author when their email is verified; users created in
        # emdash's store are ours, so a verified flag (when the store keeps one) is honoured.
        if user is None or user.get("emailVerified") is False:
            return None
        return {"id": user["id"], "name": user.get("name"), "email": user["email"]}

    def _ip_hash(self, ip: str | None) -> str | None:
        if ip is None:
            return None
        if type(ip) is not str:
            raise BridgeError("Comment ip must be a string")
        salt = self._store.options.get(IP_SALT_OPTION)
        if type(salt) is not str:
            salt = secrets.token_hex(16)
            self._store.options.set(IP_SALT_OPTION, salt)
        return hashlib.sha256(f"{salt}:{ip}".encode()).hexdigest()[:32]

    # -- moderation ---------------------------------------------------------------------

    def moderate(
        self, comment_id: str, status: str, *, moderator: dict[str, Any]
    ) -> dict[str, Any]:
        """Set a comment's status (``pending``, ``approved``, ``spam``, ``trash``) on behalf of
        ``moderator`` (``{"id", "name"}``); fires ``comment:afterModerate``."""
        if status not in MODERATOR_STATUSES or type(status) is not str:
            raise BridgeError(
                f'Invalid comment status "{str(status)[:32]}": must be one of '
                + ", ".join(MODERATOR_STATUSES)
            )
        if type(moderator) is not dict or type(moderator.get("id")) is not str:
            raise BridgeError('moderator must be {"id": str, "name": str | None}')
        current = self._store.comment_records.get(comment_id)
        if current is None:
            raise NotFoundError(f'Comment not found: "{str(comment_id)[:64]}"')
        with self._store.transaction():
            stored: dict[str, Any] = self._store.comment_records.set_status(comment_id, status)
        self._observe(
            "comment:afterModerate",
            {
                "comment": stored,
                "previousStatus": current["status"],
                "newStatus": status,
                "moderator": {"id": moderator["id"], "name": moderator.get("name")},
            },
        )
        return stored

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored comments (filters: ``collection``, ``content_id``, ``status``, ``limit``)."""
        found: list[dict[str, Any]] = self._store.comment_records.list(**filters)
        return found

    def _observe(self, hook: str, event: dict[str, Any]) -> None:
        try:
            self._hooks.run_hook(hook, event)
        except EmDashError as exc:
            log.error("[comments] %s error: %s", hook, exc)
