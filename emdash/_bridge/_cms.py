"""Bridge methods over CMS data: content, media, users and taxonomies.

Capabilities are declared in :data:`METHODS` and checked by ``Bridge.dispatch`` before any
function here runs. Content writes through the bridge run **no hooks** (as in EmDash: a
plugin writing content must not re-enter the pipeline). Batches are capped at 100 items
and each runs in one transaction (all or nothing).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._store._content import split_system_keys
from ._params import Params

if TYPE_CHECKING:
    from .._model._descriptor import PluginDescriptor
    from ._budget import CallBudget
    from ._dispatch import Bridge

__all__ = ["MAX_UPLOAD_BYTES", "METHODS"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024

_COLLECTION_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# type/subtype tokens only: no parameters, no spaces, nothing that could smuggle a header.
_MIME_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_ALLOWED_MEDIA_PREFIXES = ("image/", "video/", "audio/")

Handler = Callable[["Bridge", "PluginDescriptor", Params, "CallBudget | None"], Any]


def _content_collection(p: Params) -> str:
    name = p.req_str("collection")
    if not _COLLECTION_RE.fullmatch(name):
        raise p.error(f"Invalid collection name: {name[:200]}")
    return name


def _fenced_collection(b: Bridge, plugin: PluginDescriptor, p: Params, method: str) -> str:
    """The collection of a content write, once the host's write fence allowed it."""
    collection = _content_collection(p)
    b.check_content_write(plugin, method, collection, p)
    return collection


# --- content --------------------------------------------------------------------------------


def _content_get(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.content_items.get(_content_collection(p), p.req_str("id"))


def _content_list(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.content_items.list(
        _content_collection(p), limit=p.limit(), cursor=p.opt_str("cursor")
    )


def _content_create(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    collection = _fenced_collection(b, plugin, p, "content/create")
    data = p.req_obj("data")
    options = p.opt_obj("options") or {}
    locale = options.get("locale")
    if locale is not None and type(locale) is not str:
        raise p.error("Invalid locale code: expected a string")
    # As EmDash's bridge does: string "slug" / "status" / "author_id" in data set the item's
    # own columns, and the other system keys (id, version, locale, ...) are dropped.
    fields, lifted = split_system_keys(data)
    return b.store.content_items.create(
        collection,
        fields,
        slug=lifted.get("slug"),
        status=lifted.get("status", "draft"),
        locale=locale,
        author_id=lifted.get("author_id"),
    )


def _content_update(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    collection = _fenced_collection(b, plugin, p, "content/update")
    # A string "slug" renames the item (staged in the draft in a revisions collection); the
    # other system keys are not fields. Status changes are host operations (rt.content).
    fields, lifted = split_system_keys(p.req_obj("data"))
    return b.store.content_items.update(
        collection, p.req_str("id"), fields, slug=lifted.get("slug")
    )


def _content_delete(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> bool:
    collection = _fenced_collection(b, plugin, p, "content/delete")
    return bool(b.store.content_items.soft_delete(collection, p.req_str("id")))


def _content_create_many(
    b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None
) -> Any:
    collection = _fenced_collection(b, plugin, p, "content/createMany")
    return b.store.content_items.create_many(collection, p.obj_list("items", batch=True))


def _content_update_many(
    b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None
) -> Any:
    collection = _fenced_collection(b, plugin, p, "content/updateMany")
    message = "Parameter items must be an array of { id: string, data: object } items"
    items = p.id_data_list("items", message, batch=True)
    if not all(type(item["data"]) is dict for item in items):
        raise p.error(message)
    staged = []
    for item in items:
        fields, lifted = split_system_keys(item["data"])
        staged.append({"id": item["id"], "data": fields, "slug": lifted.get("slug")})
    return b.store.content_items.update_many(collection, staged)


def _content_delete_many(
    b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None
) -> int:
    collection = _fenced_collection(b, plugin, p, "content/deleteMany")
    return int(b.store.content_items.delete_many(collection, p.str_list("ids", batch=True)))


# --- taxonomies -----------------------------------------------------------------------------


def _tax_list(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.taxonomies.get_all(locale=p.opt_str("locale"))


def _tax_terms(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.taxonomies.get_terms(p.req_str("taxonomy"), locale=p.opt_str("locale"))


def _tax_entry_terms(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.taxonomies.get_entry_terms(
        _content_collection(p),
        p.req_str("entryId"),
        taxonomy=p.opt_str("taxonomy"),
        locale=p.opt_str("locale"),
    )


# --- media ----------------------------------------------------------------------------------


def _media_get(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.media_items.get(p.req_str("id"))


def _media_list(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.media_items.list(
        limit=p.limit(), cursor=p.opt_str("cursor"), mime_type=p.opt_str("mimeType")
    )


def _upload_bytes(p: Params) -> bytes:
    raw = p.value("bytes")
    if type(raw) is str:
        if p.value("encoding") != "base64":
            raise p.error(
                "media/upload: bytes must be a base64-encoded string or an array of bytes"
            )
        if len(raw) > (MAX_UPLOAD_BYTES // 3 + 1) * 4:
            raise _too_big(p, len(raw) * 3 // 4)
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise p.error("media/upload: bytes is not valid base64") from None
    if type(raw) is list and all(type(n) is int and 0 <= n <= 255 for n in raw):
        return bytes(raw)
    raise p.error("Parameter bytes must be a string or array of numbers")


def _too_big(p: Params, size: int) -> Exception:
    return p.error(
        f"media/upload: file of {size} bytes exceeds the upload limit of {MAX_UPLOAD_BYTES} bytes"
    )


def _media_upload(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    filename = p.req_str("filename")
    content_type = p.req_str("contentType")
    lowered = content_type.lower()
    if not _MIME_RE.fullmatch(content_type) or not (
        lowered.startswith(_ALLOWED_MEDIA_PREFIXES) or lowered == "application/pdf"
    ):
        raise p.error(
            f"Unsupported content type: {content_type[:100]}. "
            "Allowed: image/*, video/*, audio/*, application/pdf"
        )
    data = _upload_bytes(p)
    if len(data) > MAX_UPLOAD_BYTES:
        raise _too_big(p, len(data))
    # The store writes the bytes, then the row, and removes the bytes again if the row (or
    # the invocation around it) is rolled back. The storage key is a fresh ULID plus the
    # basename's lower-cased extension: nothing of the filename reaches a path.
    return b.store.media_items.upload(filename, lowered, data)


def _media_delete(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> bool:
    # The row goes now; the file once that deletion has committed.
    return bool(b.store.media_items.delete(p.req_str("id")))


# --- users ----------------------------------------------------------------------------------


def _users_get(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.user_accounts.get(p.req_str("id"))


def _users_get_by_email(
    b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None
) -> Any:
    return b.store.user_accounts.get_by_email(p.req_str("email").lower())


def _users_list(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    role = p.value("role")
    if role is not None and type(role) is not int:
        raise p.error("Parameter role must be a number when provided")
    return b.store.user_accounts.list(role=role, limit=p.limit(), cursor=p.opt_str("cursor"))


METHODS: dict[str, tuple[str | None, Handler]] = {
    "content/get": ("content:read", _content_get),
    "content/list": ("content:read", _content_list),
    "content/create": ("content:write", _content_create),
    "content/update": ("content:write", _content_update),
    "content/delete": ("content:write", _content_delete),
    "content/createMany": ("content:write", _content_create_many),
    "content/updateMany": ("content:write", _content_update_many),
    "content/deleteMany": ("content:write", _content_delete_many),
    "taxonomy/list": ("taxonomies:read", _tax_list),
    "taxonomy/terms": ("taxonomies:read", _tax_terms),
    "taxonomy/entryTerms": ("taxonomies:read", _tax_entry_terms),
    "media/get": ("media:read", _media_get),
    "media/list": ("media:read", _media_list),
    "media/upload": ("media:write", _media_upload),
    "media/delete": ("media:write", _media_delete),
    "users/get": ("users:read", _users_get),
    "users/getByEmail": ("users:read", _users_get_by_email),
    "users/list": ("users:read", _users_list),
}
