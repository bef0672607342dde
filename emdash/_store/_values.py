"""Validation of the names and values the store accepts, and strict JSON encoding.

Everything a plugin hands to the store has crossed a trust boundary (a worker frame, or a
native plugin's own objects), so every identifier is checked with ``fullmatch`` (a ``$``
anchor would accept a trailing newline) before it is used, and every value is encoded to
plain JSON text here, once, with a size cap. Identifiers that end up *inside* SQL text
(index names, JSON paths, partial-index predicates) are only ever ones that passed these
checks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from sandbox._jsonrule import NotExactJSON, exact_copy

from .._shared._errors import BridgeError

__all__ = [
    "COLLECTION_RE",
    "FIELD_RE",
    "LOCALE_RE",
    "MAX_DOC_BYTES",
    "MAX_RESULT_BYTES",
    "PLUGIN_ID_RE",
    "Locales",
    "check_collection",
    "check_doc_id",
    "check_key",
    "check_locale",
    "check_plugin_id",
    "decode_json",
    "encode_json",
    "prefix_bounds",
]

PLUGIN_ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
COLLECTION_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
FIELD_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,127}")
LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")

#: Largest JSON text stored for one document, KV value, option or content item (UTF-8 bytes).
MAX_DOC_BYTES = 1024 * 1024
#: Largest list-shaped result (kv.list, storage getMany/query) in bytes of stored JSON text,
#: counted in SQL before the rows are read. Half the 8 MiB worker frame cap: the answer is
#: re-encoded into one frame, and keys, ids and punctuation need room next to the values.
MAX_RESULT_BYTES = 4 * 1024 * 1024
MAX_KEY_CHARS = 1024
#: Option names hold KV rows (``plugin:<id>:<key>``), so they may be longer than a key.
MAX_OPTION_NAME_CHARS = 2048


def check_plugin_id(plugin_id: object) -> str:
    """The plugin id scopes every row; it comes from the host, but is checked anyway."""
    if type(plugin_id) is not str or not PLUGIN_ID_RE.fullmatch(plugin_id):
        raise BridgeError(
            f"Invalid plugin id {_show(plugin_id)}: must match ^[a-z][a-z0-9_-]*$ "
            "(at most 64 characters)"
        )
    return plugin_id


def check_collection(collection: object, *, plugin_id: str | None = None) -> str:
    if type(collection) is not str or not COLLECTION_RE.fullmatch(collection):
        raise BridgeError(f"Invalid collection name: {_show(collection)}", plugin_id=plugin_id)
    return collection


def check_key(
    key: object, *, what: str = "key", plugin_id: str | None = None, limit: int = MAX_KEY_CHARS
) -> str:
    """A KV key or document id: a non-empty string of at most ``limit`` UTF-8-encodable chars."""
    if type(key) is not str:
        if isinstance(key, str):
            key = str.__str__(key)  # a str subclass becomes a plain str
        else:
            raise BridgeError(f"Missing required string parameter: {what}", plugin_id=plugin_id)
    assert isinstance(key, str)
    if not key or len(key) > limit:
        raise BridgeError(
            f"Parameter {what} must be a non-empty string of at most {limit} characters",
            plugin_id=plugin_id,
        )
    _utf8(key, what, plugin_id)
    return key


def check_locale(value: object) -> str:
    """A BCP-47-shaped locale code (``en``, ``zh-TW``); EmDash's texts on failure."""
    if type(value) is not str:
        raise BridgeError("Invalid locale code: expected a string")
    if not LOCALE_RE.fullmatch(value):
        raise BridgeError(f'Invalid locale code: "{value[:64]}"')
    return value


class Locales:
    """The site's locales: its default content locale and, optionally, the configured list.

    Without a list (EmDash without i18n) any well-formed code is accepted as spelled. With
    one, a locale entering the store is matched case-insensitively and comes back in the
    configured spelling (``zh-tw`` -> ``zh-TW``); a write in any other locale is refused.
    """

    __slots__ = ("configured", "default")

    def __init__(self, default: str = "en", configured: Sequence[str] | None = None) -> None:
        self.configured: tuple[str, ...] | None = None
        if configured is not None:
            listed = tuple(check_locale(c) for c in configured)
            if not listed:
                raise BridgeError("The site's locales list is empty; name at least one locale")
            self.configured = listed
        self.default = self.resolve(check_locale(default))

    def match(self, value: object) -> str:
        """A well-formed code in its configured spelling when one matches, else as given.

        For filters: an unconfigured locale is not an error there, it just finds nothing.
        """
        code = check_locale(value)
        for known in self.configured or ():
            if known.lower() == code.lower():
                return known
        return code

    def resolve(self, value: object) -> str:
        """The locale a write uses: the default when ``None``, else a configured one."""
        if value is None:
            return self.default
        code = self.match(value)
        if self.configured is not None and code not in self.configured:
            raise BridgeError(f'Locale "{code[:64]}" is not configured for this site')
        return code


def check_doc_id(doc_id: object, *, plugin_id: str | None = None) -> str:
    """A storage document id, same rules as a key."""
    return check_key(doc_id, what="id", plugin_id=plugin_id)


def encode_json(value: Any, *, what: str, plugin_id: str | None = None) -> str:
    """Encode ``value`` as compact JSON text, or raise ``BridgeError`` saying why not.

    Only exact JSON data is accepted (``sandbox._jsonrule``): dicts with string keys (no
    two equal), lists, str, int within int64, finite floats, bool and None (tuples are
    encoded as lists), at most 64 levels deep. NaN and infinities are refused rather than
    written as invalid JSON that SQLite's json functions would choke on later; integers
    beyond int64 rather than read back as floats (by orjson, and by SQLite's json_extract).
    """
    try:
        value = exact_copy(value)
    except NotExactJSON as exc:
        raise BridgeError(
            f"{what} must be JSON data (objects with distinct string keys, arrays, strings, "
            f"integers within int64, finite numbers, booleans, null): {exc}",
            plugin_id=plugin_id,
        ) from None
    try:
        text = json.dumps(
            value,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            default=_refuse,
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise BridgeError(
            f"{what} must be JSON data (objects, arrays, strings, finite numbers, "
            f"booleans, null): {exc}",
            plugin_id=plugin_id,
        ) from None
    size = len(_utf8(text, what, plugin_id))
    if size > MAX_DOC_BYTES:
        raise BridgeError(
            f"{what} is too large: {size} bytes of JSON (the limit is {MAX_DOC_BYTES}); "
            "store less data per item",
            plugin_id=plugin_id,
        )
    return text


def decode_json(text: str | None) -> Any:
    """Parse stored JSON text; text that is not JSON (written by someone else) is returned raw."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``[low, high)`` such that ``low <= s < high`` iff ``s`` starts with ``prefix``.

    SQLite compares TEXT with memcmp on UTF-8, which orders like code points, so the
    half-open range is exact (and can use an index, unlike ``LIKE`` which also folds ASCII
    case and treats ``%``/``_`` as wildcards). ``high`` is None when no upper bound exists.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        nxt = last + 1
        if 0xD800 <= nxt <= 0xDFFF:
            nxt = 0xE000  # surrogates cannot be stored; skip to the next scalar value
        if nxt <= 0x10FFFF:
            return prefix, "".join(chars) + chr(nxt)
    return prefix, None


def _utf8(text: str, what: str, plugin_id: str | None) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BridgeError(
            f"{what} contains a lone surrogate character and cannot be stored as UTF-8 text",
            plugin_id=plugin_id,
        ) from None


def _refuse(obj: object) -> NoReturn:
    raise TypeError(f"{type(obj).__name__} is not JSON data")


def _show(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:80]


def finite_number(value: object) -> bool:
    """True for int/float (not bool) that are finite."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)
