"""Media uploads that fire ``media:beforeUpload`` / ``media:afterUpload`` (docs/plugin-reference.md, events in detail): ``rt.media``.

``upload(filename, content_type, data)``:

1. the input is checked (a filename, a MIME type, bytes) before any plugin runs;
2. ``media:beforeUpload`` chains over ``{file: {name, type, size}}``: a handler may return
   a replacement ``{name, type, size}`` (an ``abort``-policy failure cancels the upload).
   The result is validated: ``name`` and ``type`` must still be a valid filename and MIME
   type. The stored ``size`` is always the real byte count, whatever a handler claims:
   it describes bytes we hold, not an opinion;
3. the bytes are stored, then the row inserted in one transaction; if the insert fails
   the bytes are deleted again (the store also removes them if the transaction rolls back);
4. ``media:afterUpload`` observers get ``{media: item}``; their errors are logged.

``ctx.media.upload`` called *by a plugin* does not come here and fires no hooks (docs/plugin-reference.md, ctx.media).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._shared._errors import BridgeError, EmDashError, PluginError

if TYPE_CHECKING:
    from .._store import Store
    from ._hook_runner import HookRunner

__all__ = ["MAX_UPLOAD_BYTES", "MediaService"]

log = logging.getLogger("emdash.media")

MAX_UPLOAD_BYTES = 256 * 1024 * 1024


class MediaService:
    """Host media operations; available as ``rt.media``."""

    def __init__(self, store: Store, hooks: HookRunner) -> None:
        self._store = store
        self._hooks = hooks

    def upload(self, filename: str, content_type: str, data: bytes) -> dict[str, Any]:
        """Store an uploaded file; returns the media item
        ``{id, filename, mimeType, size, url, storageKey, status, createdAt}``."""
        from .._store._media import _filename, _mime, storage_extension

        if not isinstance(data, bytes | bytearray | memoryview):
            raise BridgeError(f"Media data must be bytes, got {type(data).__name__}")
        payload = bytes(data)
        if len(payload) > MAX_UPLOAD_BYTES:
            raise BridgeError(
                f"Media file too large: {len(payload)} bytes (the limit is {MAX_UPLOAD_BYTES})"
            )
        _filename(filename)
        _mime(content_type)

        outcome = self._hooks.run_hook(
            "media:beforeUpload",
            {"file": {"name": filename, "type": content_type, "size": len(payload)}},
        )
        final = outcome.value
        changer = _last_success(outcome)
        try:
            if type(final) is not dict:
                raise BridgeError("expected a dict {name, type, size}")
            name, mime = _filename(final.get("name")), _mime(final.get("type"))
            size = final.get("size")
            if type(size) is not int or size < 0:
                raise BridgeError("size must be a non-negative integer")
        except BridgeError as exc:
            raise PluginError(
                f"Plugin {changer or '?'} returned an invalid file from media:beforeUpload "
                f"({exc}); return {{name, type, size}} or None. Nothing was uploaded.",
                plugin_id=changer,
                hook="media:beforeUpload",
                error_type="TypeError",
            ) from None

        store = self._store
        key = store.new_id() + storage_extension(name)
        store.media_files.put(key, payload)
        # No orphan bytes without a row: the file follows the row's transaction.
        item: dict[str, Any] = store.media_items.adopt(key, name, mime, len(payload))
        try:
            self._hooks.run_hook("media:afterUpload", {"media": item})
        except EmDashError as exc:  # observers never fail a finished upload
            log.error("[media] media:afterUpload failed: %s", exc)
        return item

    def get(self, media_id: str) -> dict[str, Any] | None:
        """The media item, or ``None``."""
        item: dict[str, Any] | None = self._store.media_items.get(media_id)
        return item

    def read(self, media_id: str) -> bytes:
        """The stored bytes of a media item (``NotFoundError`` when missing)."""
        from .._shared._errors import NotFoundError

        item = self.get(media_id)
        if item is None:
            raise NotFoundError(f'Media not found: "{str(media_id)[:64]}"')
        content: bytes = self._store.media_files.get(item["storageKey"])
        return content

    def delete(self, media_id: str) -> bool:
        """Delete the row (the bytes go once that has committed); no hooks fire."""
        return bool(self._store.media_items.delete(media_id))


def _last_success(outcome: Any) -> str | None:
    for result in reversed(outcome.results):
        if result.success:
            return str(result.plugin_id)
    return None
