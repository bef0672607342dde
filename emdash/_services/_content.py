"""Content operations that fire the ``content:*`` hooks (docs/plugin-reference.md, events in detail): ``rt.content``.

These are the host's CMS operations (an admin saving a post, the scheduler publishing one),
as opposed to ``ctx.content`` calls made *by* plugins, which never fire hooks (docs/plugin-reference.md, ctx.content).

Order of every operation: validate the input and check the item exists (so a bad call
runs no plugin and writes nothing), run the *before* hook, write in one store transaction,
then run the *after* hook **after the commit**. After-hooks are EmDash's deferred hooks:
they see the committed item (a handler that reads it back through ``ctx.content`` finds
it), and their errors are logged and never fail an operation that already happened.

Before-hook semantics:

- ``content:beforeSave`` chains: each handler gets ``{content, collection, isNew}`` where
  ``content`` is the *submitted field map* (on update, only the changed fields), and may
  return a replacement dict. An ``abort``-policy failure propagates and nothing is written.
- ``content:beforeDelete`` vetoes: any handler returning ``False`` blocks the soft delete
  (every handler still runs), and :class:`DeleteBlockedError` names all the vetoers.
  Permanent deletes do not run it (EmDash's rule).

The hook gets a deep JSON copy of the caller's data, so a handler mutating its event never
changes the caller's dict, and non-JSON data is refused before any plugin runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._shared._errors import (
    BridgeError,
    DeleteBlockedError,
    EmDashError,
    NotFoundError,
    PluginError,
)
from .._store import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from .._store import Store
    from ._hook_runner import HookRunner

__all__ = ["CREATE_STATUSES", "ContentService", "DeleteBlockedError"]

log = logging.getLogger("emdash.content")

CREATE_STATUSES = ("draft", "published")


class ContentService:
    """Create, update, delete and change the state of content items, firing the hooks."""

    def __init__(self, store: Store, hooks: HookRunner) -> None:
        self._store = store
        self._hooks = hooks

    # -- saves --------------------------------------------------------------------------

    def create(
        self,
        collection: str,
        data: Mapping[str, Any],
        *,
        slug: str | None = None,
        status: str = "draft",
        locale: str | None = None,
        author_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an item; fires ``content:beforeSave`` (``isNew`` true) and ``afterSave``.

        ``status`` is ``draft`` (default) or ``published``; use :meth:`schedule` to
        schedule an item. Returns the stored item.
        """
        if status not in CREATE_STATUSES or type(status) is not str:
            raise BridgeError(
                f'Invalid status "{str(status)[:64]}": must be one of draft, published '
                "(use rt.content.schedule() to schedule an item)"
            )
        self._require_collection(collection)
        fields = self._before_save(collection, data, is_new=True)
        with self._store.transaction():
            item: dict[str, Any] = self._store.content_items.create(
                collection, fields, slug=slug, status=status, locale=locale, author_id=author_id
            )
        self._after("content:afterSave", {"content": item, "collection": collection, "isNew": True})
        return item

    def update(
        self,
        collection: str,
        id: str,
        data: Mapping[str, Any],
        *,
        slug: str | None = None,
    ) -> dict[str, Any]:
        """Merge ``data`` into an item's fields; fires ``beforeSave`` (``isNew`` false) and
        ``afterSave``. The hook's ``content`` holds only the submitted fields.

        Draft-aware: in a collection that supports ``revisions`` an update of a published
        item is staged as a draft revision (the live item is untouched until
        :meth:`publish`); the effective draft is returned and given to ``afterSave``."""
        self._require_item(collection, id)
        fields = self._before_save(collection, data, is_new=False)
        with self._store.transaction():
            item: dict[str, Any] = self._store.content_items.update(
                collection, id, fields, slug=slug
            )
        self._after(
            "content:afterSave", {"content": item, "collection": collection, "isNew": False}
        )
        return item

    def _before_save(
        self, collection: str, data: Mapping[str, Any], *, is_new: bool
    ) -> dict[str, Any]:
        content = _json_copy(data, "Content data")
        if type(content) is not dict:
            raise BridgeError(
                f"Content data must be an object (a dict of fields), got {type(data).__name__}"
            )
        outcome = self._hooks.run_hook(
            "content:beforeSave", {"content": content, "collection": collection, "isNew": is_new}
        )
        final = outcome.value
        if type(final) is not dict or not all(type(k) is str for k in final):
            changer = _last_success(outcome)
            raise PluginError(
                f"Plugin {changer or '?'} returned {type(final).__name__} from "
                "content:beforeSave; return a dict of fields to replace the content, or None "
                "to keep it. Nothing was saved.",
                plugin_id=changer,
                hook="content:beforeSave",
                error_type="TypeError",
            )
        result: dict[str, Any] = final
        return result

    # -- deletes ------------------------------------------------------------------------

    def delete(self, collection: str, id: str) -> bool:
        """Move an item to the trash; ``content:beforeDelete`` may veto, then ``afterDelete``.

        Raises :class:`DeleteBlockedError` when a plugin vetoes (nothing is deleted).
        """
        self._require_item(collection, id)
        outcome = self._hooks.run_hook(
            "content:beforeDelete", {"id": id, "collection": collection, "permanent": False}
        )
        if outcome.cancelled_by is not None:
            vetoers = [r.plugin_id for r in outcome.results if r.success and r.value is False]
            raise DeleteBlockedError(vetoers or [outcome.cancelled_by])
        with self._store.transaction():
            deleted = bool(self._store.content_items.soft_delete(collection, id))
        if deleted:
            self._after(
                "content:afterDelete", {"id": id, "collection": collection, "permanent": False}
            )
        return deleted

    def delete_permanently(self, collection: str, id: str) -> bool:
        """Delete an item for good (live or in the trash); fires ``afterDelete`` with
        ``permanent`` true. ``beforeDelete`` does not run (EmDash's rule)."""
        self._require_item(collection, id, include_deleted=True)
        with self._store.transaction():
            deleted = bool(self._store.content_items.delete_permanently(collection, id))
        if deleted:
            self._after(
                "content:afterDelete", {"id": id, "collection": collection, "permanent": True}
            )
        return deleted

    def restore(self, collection: str, id: str) -> dict[str, Any]:
        """Bring an item back from the trash; fires ``afterRestore``.

        An item that is not in the trash is returned unchanged and fires nothing.
        """
        current = self._require_item(collection, id, include_deleted=True)
        with self._store.transaction():
            item: dict[str, Any] = self._store.content_items.restore(collection, id)
        if current["deletedAt"] is not None:
            self._after("content:afterRestore", {"content": item, "collection": collection})
        return item

    # -- state changes ------------------------------------------------------------------

    def publish(
        self, collection: str, id: str, *, published_at: str | datetime | None = None
    ) -> dict[str, Any]:
        """Publish an item (keeps an earlier ``publishedAt`` unless one is given), promoting
        a pending draft revision; fires ``afterPublish``."""
        self._require_item(collection, id)
        with self._store.transaction():
            item: dict[str, Any] = self._store.content_items.set_status(
                collection, id, "published", published_at=_iso_arg(published_at)
            )
        self._after("content:afterPublish", {"content": item, "collection": collection})
        return item

    def unpublish(self, collection: str, id: str) -> dict[str, Any]:
        """Revert a published item to draft; fires ``afterUnpublish``."""
        return self._back_to_draft(collection, id, "published", "unpublished", "afterUnpublish")

    def schedule(self, collection: str, id: str, at: str | datetime) -> dict[str, Any]:
        """Schedule an item for publication at ``at`` (ISO 8601, must be in the future);
        fires ``afterSchedule``. :meth:`publish_due` (run by the cron tick) publishes it."""
        self._require_item(collection, id)
        when = parse_timestamp(_iso_arg(at), what="scheduledAt")
        now = self._store.now()
        if when <= now:
            raise BridgeError(
                f"Invalid scheduledAt {when}: it must be in the future (now is {now}); "
                "publish the item instead"
            )
        with self._store.transaction():
            item: dict[str, Any] = self._store.content_items.set_status(
                collection, id, "scheduled", scheduled_at=when
            )
        self._after("content:afterSchedule", {"content": item, "collection": collection})
        return item

    def unschedule(self, collection: str, id: str) -> dict[str, Any]:
        """Return a scheduled item to draft; fires ``afterUnschedule``."""
        return self._back_to_draft(collection, id, "scheduled", "unscheduled", "afterUnschedule")

    def _back_to_draft(
        self, collection: str, id: str, status: str, verb: str, hook: str
    ) -> dict[str, Any]:
        """Move an item that is in ``status`` back to draft, then fire ``content:<hook>``."""
        current = self._require_item(collection, id)
        if current["status"] != status:
            raise BridgeError(
                f'Content "{id}" in "{collection}" is {current["status"]}, not {status}; '
                f"only a {status} item can be {verb}"
            )
        with self._store.transaction():
            item: dict[str, Any] = self._store.content_items.set_status(collection, id, "draft")
        self._after(f"content:{hook}", {"content": item, "collection": collection})
        return item

    def publish_due(self, now: str | datetime | None = None) -> list[dict[str, Any]]:
        """Publish every scheduled item whose time has come (``afterPublish`` for each).

        Returns the published items. One item failing is logged and does not stop the
        others; the sweep handles at most 100 items per call.
        """
        now_iso = self._store.now() if now is None else _iso_arg(now)
        published: list[dict[str, Any]] = []
        for item in self._store.content_items.due_scheduled(now_iso):
            collection = item["type"]
            try:
                with self._store.transaction():
                    done: dict[str, Any] = self._store.content_items.set_status(
                        collection, item["id"], "published", published_at=item["scheduledAt"]
                    )
            except EmDashError as exc:
                log.error(
                    "[scheduled-publish] Failed to publish %s/%s: %s", collection, item["id"], exc
                )
                continue
            published.append(done)
            self._after("content:afterPublish", {"content": done, "collection": collection})
        return published

    # -- helpers ------------------------------------------------------------------------

    def _require_collection(self, collection: str) -> None:
        if self._store.content_items.get_collection(collection) is None:
            raise NotFoundError(
                f'Collection "{collection}" does not exist. Create it first '
                f'(rt.store.content_items.ensure_collection("{collection}")).'
            )

    def _require_item(
        self, collection: str, id: str, *, include_deleted: bool = False
    ) -> dict[str, Any]:
        item: dict[str, Any] | None = self._store.content_items.get(
            collection, id, include_deleted=include_deleted
        )
        if item is None:
            where = "" if include_deleted else " (or it is in the trash)"
            raise NotFoundError(
                f'Content not found: no item "{str(id)[:64]}" in collection "{collection}"{where}'
            )
        return item

    def _after(self, hook: str, event: dict[str, Any]) -> None:
        """Run a deferred after-hook; its errors are logged, never raised."""
        try:
            self._hooks.run_hook(hook, event)
        except EmDashError as exc:
            log.error("EmDash %s hook error: %s", hook.split(":", 1)[1], exc)


def _json_copy(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise BridgeError(
            f"{what} must be JSON data (objects, arrays, strings, finite numbers, booleans, "
            f"null): {exc}"
        ) from None


def _iso_arg(value: str | datetime | None) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return format_timestamp(value)
    return value


def _last_success(outcome: Any) -> str | None:
    for result in reversed(outcome.results):
        if result.success:
            return str(result.plugin_id)
    return None
