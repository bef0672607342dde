"""The ``ctx`` object handed to plugin handlers (a shared module: host and worker run it).

:func:`make_context` builds it around one primitive, ``call(method, params) -> JSON``:
natively that is ``bridge.dispatch`` for the plugin, in a sandbox worker it is the RPC to the
host. The ctx decides nothing about security: every member always exists, and a call the
plugin may not make fails in the host-side bridge (``CapabilityError``...). What the ctx
*does* own is hygiene, because in a worker this object is handed to hostile code:

- every class has ``__slots__``; the only private state (the ``call`` primitive, declared
  collection names, response bytes) lives in ``_``-prefixed slots, which restricted code
  cannot name;
- no ``__getattr__`` forwards to a hidden object (``AttributeError.obj`` would leak it) and
  no ``functools.partial`` (``.func`` unwraps it): methods are plain methods;
- ``__repr__`` is opaque and nothing is iterable, so nothing enumerates internals;
- every argument is coerced to exact builtin types before it is sent
  (``sandbox._jsonrule.exact_copy``, which reads ``str``/``int``/``list`` subclasses
  through their C-level data, not their methods), so a ``str`` subclass with a lying
  ``__eq__`` arrives at the bridge as a plain ``str``;
- bytes cross as base64 text.

This module imports only the standard library, ``sandbox._jsonrule`` and ``._errors``: it is
loaded as source into sandbox workers.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from sandbox._jsonrule import INT_MAX as _INT_MAX
from sandbox._jsonrule import INT_MIN as _INT_MIN
from sandbox._jsonrule import NotExactJSON, exact_copy

from ._errors import BridgeError

__all__ = ["Context", "HttpResponse", "ResponseHeaders", "make_context"]

Call = Callable[[str, dict[str, Any]], Any]

_NOT_DECLARED = (
    "Storage collection not declared: {name} (declare it under [storage] in the plugin descriptor)"
)


# --- coercion ------------------------------------------------------------------------------


# Values that are already plain JSON when their type is exactly one of these.
_FLAT = (str, int, bool, type(None))


def _plain(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Turn ``params`` into plain JSON data (exact builtin types), or raise a clear error.

    :func:`sandbox._jsonrule.exact_copy` reads ``str``/``int``/``float``/``list``/``dict``
    subclasses through the builtin types' C methods (never a method the plugin defined), and
    holds the value to the exact-JSON rule every boundary uses: string keys only, no two
    keys equal as strings (``json`` would write ``{1: .., "1": ..}`` with a duplicate key and
    drop one value), integers within int64 (orjson on the host would turn ``2**64 + 1`` into
    a float), at most 64 levels, no NaN or lone surrogate. So a plugin learns here, with a
    clear message, what would otherwise be changed silently on the way.

    Fast path, same result: when every key is an exact ``str`` and every value an exact
    ``str``/``int`` within int64/``bool``/``None`` (``kv.get("k")``,
    ``storage[...].get(id)``...), the copy is a shallow copy (surrogates in such strings
    are refused by the encoder that sends them, and by the store).
    """
    if type(params) is dict and all(
        type(k) is str and (type(v) in _FLAT and (type(v) is not int or _INT_MIN <= v <= _INT_MAX))
        for k, v in params.items()
    ):
        return dict(params)
    try:
        out = exact_copy(params)
    except NotExactJSON as exc:
        raise BridgeError(
            f"{method}: arguments must be JSON data (dict with distinct str keys, list, str, "
            f"int within int64, finite float, bool, None): {exc}"
        ) from None
    if type(out) is not dict:  # pragma: no cover - params is always built as a dict here
        raise BridgeError("Bridge request body must be a JSON object")
    return out


def _exact_str(value: Any, what: str) -> str:
    """An exact ``str`` copy of ``value`` (a ``str`` subclass loses its methods)."""
    if not isinstance(value, str):
        raise BridgeError(f"{what} must be a string, got {type(value).__name__}")
    # str.join copies the characters of a subclass instance without calling its methods.
    return "".join([value])


def _b64(data: Any, what: str) -> str:
    """Base64 text of a bytes-like object (read through the buffer protocol)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BridgeError(f"{what} must be bytes, got {type(data).__name__}")
    try:
        return base64.b64encode(data).decode("ascii")
    except (TypeError, ValueError, BufferError) as exc:
        raise BridgeError(f"{what} must be contiguous bytes: {exc}") from None


def _opts(**kwargs: Any) -> dict[str, Any]:
    """Keyword options, dropping the ones left at ``None`` (absent on the wire)."""
    return {k: v for k, v in kwargs.items() if v is not None}


class _Member:
    """Base of the ctx members that talk to the host: holds the ``call`` primitive only."""

    __slots__ = ("_call",)
    _label = "ctx member"

    def __init__(self, call: Call) -> None:
        self._call = call

    def __repr__(self) -> str:
        return f"<{self._label}>"

    def _send(self, method: str, params: dict[str, Any]) -> Any:
        return self._call(method, _plain(method, params))


# --- members -----------------------------------------------------------------------------


class PluginInfo:
    """``ctx.plugin``: the plugin's id and version."""

    __slots__ = ("id", "version")

    def __init__(self, plugin_id: str, version: str) -> None:
        self.id = plugin_id
        self.version = version

    def __repr__(self) -> str:
        return f"<ctx.plugin {self.id}@{self.version}>"


class SiteInfo:
    """``ctx.site``: name, url (no trailing slash), locale and trailing-slash policy."""

    __slots__ = ("locale", "name", "trailing_slash", "url")

    def __init__(self, name: str, url: str, locale: str, trailing_slash: str) -> None:
        self.name = name
        self.url = url
        self.locale = locale
        self.trailing_slash = trailing_slash

    def __repr__(self) -> str:
        return "<ctx.site>"


class KV(_Member):
    """``ctx.kv``: this plugin's key/value store (no capability needed)."""

    __slots__ = ()
    _label = "ctx.kv"

    def get(self, key: str) -> Any:
        """The stored value, or ``None``."""
        return self._send("kv/get", {"key": key})

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (any JSON data) under ``key``."""
        self._send("kv/set", {"key": key, "value": value})

    def delete(self, key: str) -> bool:
        """Remove ``key``; true if it existed."""
        return bool(self._send("kv/delete", {"key": key}))

    def increment(self, key: str, by: Any = 1) -> Any:
        """Add ``by`` (a number) to the number under ``key`` (absent: 0); returns the new
        value as this invocation sees it. Concurrent increments never conflict: the
        addition is applied at commit, so use this for counters instead of get + set."""
        return self._send("kv/increment", {"key": key, "by": by})

    def compare_and_set(self, key: str, expected: Any, new: Any) -> bool:
        """Store ``new`` under ``key`` only if it holds ``expected`` (exact JSON equality;
        ``None`` expected: the key is absent; ``None`` new: delete it); returns whether it
        did."""
        return bool(self._send("kv/compareAndSet", {"key": key, "expected": expected, "new": new}))

    def list(self, prefix: str = "", *, limit: Any = None, cursor: Any = None) -> Any:
        """``[{"key", "value"}]`` for this plugin's keys starting with ``prefix`` (literally).

        One answer carries at most 4 MiB of values; beyond that this raises and says to page:
        with ``limit`` and/or ``cursor`` the answer is one page, ``{"items": [{"key",
        "value"}], "hasMore": bool, "cursor": str}`` (``cursor`` only when ``hasMore``), and
        the next page is ``list(prefix, limit=..., cursor=page["cursor"])``.
        """
        return self._send("kv/list", {"prefix": prefix, **_opts(limit=limit, cursor=cursor)})


class StorageCollection(_Member):
    """One declared document collection: ``ctx.storage["events"]``."""

    __slots__ = ("_name",)
    _label = "ctx.storage collection"

    def __init__(self, call: Call, name: str) -> None:
        super().__init__(call)
        self._name = name

    def __repr__(self) -> str:
        return f"<ctx.storage[{self._name!r}]>"

    def _op(self, op: str, params: dict[str, Any]) -> Any:
        return self._send(f"storage/{op}", {"collection": self._name, **params})

    def get(self, id: str) -> Any:
        """The document's data, or ``None``."""
        return self._op("get", {"id": id})

    def put(self, id: str, data: Any) -> None:
        """Insert or replace the document ``id``."""
        self._op("put", {"id": id, "data": data})

    def delete(self, id: str) -> bool:
        """Delete ``id``; true if it existed."""
        return bool(self._op("delete", {"id": id}))

    def exists(self, id: str) -> bool:
        """Whether a document ``id`` exists."""
        return bool(self._op("exists", {"id": id}))

    def get_many(self, ids: Any) -> dict[str, Any]:
        """``{id: data}`` for those of ``ids`` that exist."""
        pairs = self._op("getMany", {"ids": ids})
        return {pair[0]: pair[1] for pair in pairs}

    def put_many(self, items: Any) -> None:
        """Upsert ``[{"id", "data"}, ...]`` in one transaction."""
        self._op("putMany", {"items": items})

    def delete_many(self, ids: Any) -> int:
        """Delete ``ids``; the number deleted."""
        return int(self._op("deleteMany", {"ids": ids}))

    def query(
        self,
        *,
        where: Any = None,
        order_by: Any = None,
        limit: Any = None,
        cursor: Any = None,
    ) -> Any:
        """``{"items": [{"id", "data"}], "hasMore", "cursor"?}`` over indexed fields."""
        return self._op("query", _opts(where=where, orderBy=order_by, limit=limit, cursor=cursor))

    def count(self, where: Any = None) -> int:
        """How many documents match ``where`` (all when ``None``)."""
        return int(self._op("count", _opts(where=where)))


class Storage(_Member):
    """``ctx.storage``: the plugin's declared collections, by item or attribute."""

    __slots__ = ("_names",)
    _label = "ctx.storage"
    # Not iterable: __getitem__ would otherwise make iter() probe it with 0, 1, 2...
    __iter__ = None

    def __init__(self, call: Call, names: tuple[str, ...]) -> None:
        super().__init__(call)
        self._names = names

    def __getitem__(self, name: Any) -> StorageCollection:
        name = _exact_str(name, "A storage collection name")
        if name not in self._names:
            # Friendly and early; the host re-checks every call regardless.
            raise BridgeError(_NOT_DECLARED.format(name=name))
        return StorageCollection(self._call, name)

    def __getattr__(self, name: str) -> StorageCollection:
        # Only ever builds a collection accessor or raises a *fresh* error: nothing hidden
        # is attached to the exception (AttributeError.obj stays None).
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


class Content(_Member):
    """``ctx.content``: CMS content (``content:read`` / ``content:write``; no hooks run)."""

    __slots__ = ()
    _label = "ctx.content"

    def get(self, collection: str, id: str) -> Any:
        """The item (with its fields under ``data``), or ``None``."""
        return self._send("content/get", {"collection": collection, "id": id})

    def list(self, collection: str, *, limit: Any = None, cursor: Any = None) -> Any:
        """``{"items", "hasMore", "cursor"?}``, newest first."""
        return self._send(
            "content/list", {"collection": collection, **_opts(limit=limit, cursor=cursor)}
        )

    def create(self, collection: str, data: Any, *, locale: Any = None) -> Any:
        """Create an item from ``data`` (its fields); the created item."""
        params: dict[str, Any] = {"collection": collection, "data": data}
        if locale is not None:
            params["options"] = {"locale": locale}
        return self._send("content/create", params)

    def update(self, collection: str, id: str, data: Any) -> Any:
        """Merge ``data`` into the item's fields (a string ``slug`` renames it); the item."""
        return self._send("content/update", {"collection": collection, "id": id, "data": data})

    def delete(self, collection: str, id: str) -> bool:
        """Soft-delete the item (to the trash); true if it existed."""
        return bool(self._send("content/delete", {"collection": collection, "id": id}))

    def create_many(self, collection: str, items: Any) -> Any:
        """Create up to 100 items (each a data dict) in one transaction."""
        return self._send("content/createMany", {"collection": collection, "items": items})

    def update_many(self, collection: str, items: Any) -> Any:
        """Update up to 100 ``{"id", "data"}`` items in one transaction."""
        return self._send("content/updateMany", {"collection": collection, "items": items})

    def delete_many(self, collection: str, ids: Any) -> int:
        """Soft-delete up to 100 ids; the number deleted."""
        return int(self._send("content/deleteMany", {"collection": collection, "ids": ids}))


class Media(_Member):
    """``ctx.media``: the media library (``media:read`` / ``media:write``)."""

    __slots__ = ()
    _label = "ctx.media"

    def get(self, id: str) -> Any:
        """The media item, or ``None``."""
        return self._send("media/get", {"id": id})

    def list(self, *, limit: Any = None, cursor: Any = None, mime_type: Any = None) -> Any:
        """``{"items", "hasMore", "cursor"?}``, newest first; ``mime_type`` is a prefix
        such as ``"image/"``."""
        return self._send("media/list", _opts(limit=limit, cursor=cursor, mimeType=mime_type))

    def upload(self, filename: str, content_type: str, data: Any) -> Any:
        """Store ``data`` (bytes); ``{"mediaId", "storageKey", "url"}``."""
        return self._send(
            "media/upload",
            {
                "filename": filename,
                "contentType": content_type,
                "bytes": _b64(data, "media.upload: data"),
                "encoding": "base64",
            },
        )

    def delete(self, id: str) -> bool:
        """Delete the media item and its bytes; true if it existed."""
        return bool(self._send("media/delete", {"id": id}))

    def get_upload_url(self, *args: Any, **kwargs: Any) -> Any:
        """Always raises: there are no signed upload URLs; use ``upload``."""
        raise BridgeError(
            "getUploadUrl is not available in sandbox mode. Use media.upload(filename, "
            "contentType, bytes) instead (in Python: ctx.media.upload(filename, content_type, "
            "data); emdash issues no signed upload URLs in any mode)."
        )


class ResponseHeaders:
    """Response headers: case-insensitive, repeated names kept (``get_all``)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def __repr__(self) -> str:
        return f"<ResponseHeaders ({len(self._items)})>"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name`` (repeated values joined with ``", "``), or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        key = _exact_str(name, "A header name").lower()
        return [v for k, v in self._items if k == key]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in order; names lower-case."""
        return list(self._items)

    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for k, _ in self._items))

    def __iter__(self) -> Any:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


class HttpResponse:
    """What ``ctx.http.fetch`` returns: status, headers and the body as bytes."""

    __slots__ = ("_content", "_headers", "_status", "_status_text")

    def __init__(
        self, status: int, status_text: str, headers: ResponseHeaders, content: bytes
    ) -> None:
        self._status = status
        self._status_text = status_text
        self._headers = headers
        self._content = content

    def __repr__(self) -> str:
        return f"<HttpResponse {self._status}>"

    @property
    def status(self) -> int:
        return self._status

    @property
    def status_text(self) -> str:
        return self._status_text

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self._status <= 299

    @property
    def headers(self) -> ResponseHeaders:
        return self._headers

    @property
    def content(self) -> bytes:
        return self._content

    def text(self) -> str:
        """The body decoded with the response's charset (UTF-8 by default)."""
        return self._content.decode(_charset(self._headers.get("content-type")), "replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self._content)


def _charset(content_type: str | None) -> str:
    if content_type:
        for part in content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset":
                name = value.strip().strip('"')
                try:
                    return codecs.lookup(name).name
                except LookupError:
                    break
    return "utf-8"


class Http(_Member):
    """``ctx.http``: outbound HTTP (``network:request``; hosts limited by ``allowed_hosts``)."""

    __slots__ = ()
    _label = "ctx.http"

    def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Any = None,
        body: Any = None,
        json: Any = None,
        data: Any = None,
    ) -> HttpResponse:
        """Fetch ``url``; ``body`` is ``str`` or bytes, or pass ``json=`` data, or ``data=``
        form fields (a dict or ``[(name, value), ...]`` of strings, sent URL-encoded)."""
        pairs = _header_pairs(headers)
        init: dict[str, Any] = {"method": method, "headers": pairs}
        if sum(x is not None for x in (body, json, data)) > 1:
            raise BridgeError("ctx.http.fetch: pass only one of body=, json= and data=")
        if data is not None:
            # EmDash's wrapper sends URLSearchParams as text plus this one content-type,
            # appended only when the caller set none.
            init["bodyType"] = "string"
            init["body"] = _form_text(data)
            if not any(k.lower() == "content-type" for k, _ in pairs):
                pairs.append(["content-type", "application/x-www-form-urlencoded"])
        elif json is not None:
            init["bodyType"] = "string"
            init["body"] = _json_text(json)
            if not any(k.lower() == "content-type" for k, _ in pairs):
                pairs.append(["content-type", "application/json"])
        elif isinstance(body, str):
            init["bodyType"] = "string"
            init["body"] = body
        elif body is not None:
            init["bodyType"] = "base64"
            init["body"] = _b64(body, "ctx.http.fetch: body")
        result = self._send("http/fetch", {"url": url, "init": init})
        return _response(result)


def _form_text(data: Any) -> str:
    """``data=`` as ``application/x-www-form-urlencoded`` text (repeated names kept)."""
    if isinstance(data, dict):
        source = list(data.items())
    elif isinstance(data, (list, tuple)):
        source = list(data)
    else:
        raise BridgeError(
            "ctx.http.fetch: data= must be a dict or a list of (name, value) pairs of strings"
        )
    fields: list[tuple[str, str]] = []
    for pair in source:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise BridgeError("ctx.http.fetch: data= must be a list of (name, value) pairs")
        fields.append(
            (_exact_str(pair[0], "A form field name"), _exact_str(pair[1], "A form field value"))
        )
    return urllib.parse.urlencode(fields)


def _json_text(data: Any) -> str:
    try:
        return json.dumps(data, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BridgeError(f"ctx.http.fetch: json= must be JSON data: {exc}") from None


def _header_pairs(headers: Any) -> list[list[Any]]:
    """Headers given as a dict or as ``[(name, value), ...]`` (repeats kept), as pairs."""
    if headers is None:
        return []
    if isinstance(headers, dict):
        source = list(headers.items())
    elif isinstance(headers, (list, tuple)):
        source = list(headers)
    else:
        raise BridgeError("ctx.http.fetch: headers must be a dict or a list of (name, value) pairs")
    pairs: list[list[Any]] = []
    for pair in source:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise BridgeError("http/fetch: init.headers must be an array of [name, value] pairs")
        pairs.append([_exact_str(pair[0], "A header name"), _exact_str(pair[1], "A header value")])
    return pairs


def _response(result: Any) -> HttpResponse:
    """Rebuild the response from the bridge's ``{status, statusText, headers, bodyBase64}``."""
    if type(result) is not dict:
        raise BridgeError("http/fetch: malformed response from the host")
    status, text, raw_headers, body = (
        result.get("status"),
        result.get("statusText", ""),
        result.get("headers", []),
        result.get("bodyBase64", ""),
    )
    if type(status) is not int or type(text) is not str or type(body) is not str:
        raise BridgeError("http/fetch: malformed response from the host")
    if type(raw_headers) is not list or not all(
        type(p) is list and len(p) == 2 and type(p[0]) is str and type(p[1]) is str
        for p in raw_headers
    ):
        raise BridgeError("http/fetch: malformed response headers from the host")
    try:
        content = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BridgeError("http/fetch: malformed response body from the host") from None
    headers = ResponseHeaders([(k.lower(), v) for k, v in raw_headers])
    return HttpResponse(status, text, headers, content)


class Users(_Member):
    """``ctx.users`` (``users:read``): id, email, name, role, createdAt; nothing else."""

    __slots__ = ()
    _label = "ctx.users"

    def get(self, id: str) -> Any:
        """The user, or ``None``."""
        return self._send("users/get", {"id": id})

    def get_by_email(self, email: str) -> Any:
        """The user with this email address, or ``None``."""
        return self._send("users/getByEmail", {"email": email})

    def list(self, *, role: Any = None, limit: Any = None, cursor: Any = None) -> Any:
        """``{"items", "nextCursor"?}``."""
        return self._send("users/list", _opts(role=role, limit=limit, cursor=cursor))


class Taxonomies(_Member):
    """``ctx.taxonomies`` (``taxonomies:read``; read-only)."""

    __slots__ = ()
    _label = "ctx.taxonomies"

    def get_all(self, *, locale: Any = None) -> Any:
        """Every taxonomy definition of the site."""
        return self._send("taxonomy/list", _opts(locale=locale))

    def get_terms(self, taxonomy: str, *, locale: Any = None) -> Any:
        """The terms of one taxonomy."""
        return self._send("taxonomy/terms", {"taxonomy": taxonomy, **_opts(locale=locale)})

    def get_entry_terms(
        self, collection: str, entry_id: str, *, taxonomy: Any = None, locale: Any = None
    ) -> Any:
        """The terms attached to one content item (of one taxonomy, or all)."""
        return self._send(
            "taxonomy/entryTerms",
            {
                "collection": collection,
                "entryId": entry_id,
                **_opts(taxonomy=taxonomy, locale=locale),
            },
        )


class Cron(_Member):
    """``ctx.cron``: this plugin's scheduled tasks (delivered to its ``cron`` hook)."""

    __slots__ = ()
    _label = "ctx.cron"

    def schedule(self, name: str, schedule: Any, data: Any = None) -> None:
        """Create or replace task ``name`` (a cron expression or an ISO-8601 UTC time).

        EmDash's form, ``schedule(name, {"schedule": ..., "data": ...})``, works too, so a
        ported plugin runs unchanged."""
        if type(schedule) is dict and data is None:
            extra = sorted(str(k)[:40] for k in schedule if k not in ("schedule", "data"))
            if extra:
                raise TypeError(
                    f"ctx.cron.schedule options take only schedule and data, not {extra}"
                )
            schedule, data = schedule.get("schedule"), schedule.get("data")
        self._send("cron/schedule", {"name": name, "schedule": schedule, **_opts(data=data)})

    def cancel(self, name: str) -> None:
        """Delete task ``name`` (nothing happens if there is none)."""
        self._send("cron/cancel", {"name": name})

    def list(self) -> Any:
        """``[{"name", "schedule", "nextRunAt", "lastRunAt"}]``."""
        return self._send("cron/list", {})


class Email(_Member):
    """``ctx.email`` (``email:send``)."""

    __slots__ = ()
    _label = "ctx.email"

    def send(self, message: Any) -> None:
        """Send ``{"to", "subject", "text", "html"?}`` through the site's email pipeline."""
        self._send("email/send", {"message": message})


def _loggable(text: Any) -> Any:
    """A log text with its lone surrogates escaped (``\\udfff``), as the host escapes them
    in a trusted plugin's lines: such a string has no UTF-8 form, so a sandboxed plugin's
    line could not cross to the host at all, and a log line is no reason to fail a call."""
    if type(text) is not str or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Log(_Member):
    """``ctx.log``: lines go to the host logger ``emdash.plugins.<id>``."""

    __slots__ = ()
    _label = "ctx.log"

    def _log(self, level: str, msg: Any, data: Any) -> None:
        self._send("log", {"level": level, "msg": _loggable(msg), **_opts(data=_loggable(data))})

    def debug(self, msg: str, data: Any = None) -> None:
        """Log ``msg`` (and optional JSON ``data``) at debug level."""
        self._log("debug", msg, data)

    def info(self, msg: str, data: Any = None) -> None:
        """Log at info level."""
        self._log("info", msg, data)

    def warn(self, msg: str, data: Any = None) -> None:
        """Log at warning level."""
        self._log("warn", msg, data)

    warning = warn

    def error(self, msg: str, data: Any = None) -> None:
        """Log at error level."""
        self._log("error", msg, data)


class Context:
    """The ``ctx`` given to every hook and route handler (a fresh one per invocation).

    Members are built on first use (most handlers touch one or two of them, and building
    all twelve was a measurable part of a no-op invocation); each is then kept for the rest
    of the invocation, so ``ctx.kv is ctx.kv``. They live in ``_``-prefixed slots, which
    restricted code cannot name, and the public names are read-only properties.
    """

    __slots__ = (
        "_call",
        "_content",
        "_cron",
        "_email",
        "_http",
        "_info",
        "_kv",
        "_log",
        "_media",
        "_plugin",
        "_site",
        "_storage",
        "_taxonomies",
        "_users",
    )

    def __init__(self, call: Call, info: dict[str, Any]) -> None:
        self._call = call
        self._info = info
        self._plugin: PluginInfo | None = None
        self._site: SiteInfo | None = None
        self._storage: Storage | None = None
        self._kv: KV | None = None
        self._content: Content | None = None
        self._media: Media | None = None
        self._http: Http | None = None
        self._users: Users | None = None
        self._taxonomies: Taxonomies | None = None
        self._cron: Cron | None = None
        self._email: Email | None = None
        self._log: Log | None = None

    @property
    def plugin(self) -> PluginInfo:
        if self._plugin is None:
            plugin = self._info.get("plugin") or {}
            self._plugin = PluginInfo(
                _info_str(plugin.get("id"), ""), _info_str(plugin.get("version"), "0.0.0")
            )
        return self._plugin

    @property
    def site(self) -> SiteInfo:
        if self._site is None:
            site = self._info.get("site") or {}
            self._site = SiteInfo(
                _info_str(site.get("name"), ""),
                _info_str(site.get("url"), "").removesuffix("/"),
                _info_str(site.get("locale"), "en"),
                _info_str(site.get("trailingSlash"), "ignore"),
            )
        return self._site

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            names = self._info.get("storage") or []
            self._storage = Storage(self._call, tuple(n for n in names if type(n) is str))
        return self._storage

    @property
    def kv(self) -> KV:
        if self._kv is None:
            self._kv = KV(self._call)
        return self._kv

    @property
    def content(self) -> Content:
        if self._content is None:
            self._content = Content(self._call)
        return self._content

    @property
    def media(self) -> Media:
        if self._media is None:
            self._media = Media(self._call)
        return self._media

    @property
    def http(self) -> Http:
        if self._http is None:
            self._http = Http(self._call)
        return self._http

    @property
    def users(self) -> Users:
        if self._users is None:
            self._users = Users(self._call)
        return self._users

    @property
    def taxonomies(self) -> Taxonomies:
        if self._taxonomies is None:
            self._taxonomies = Taxonomies(self._call)
        return self._taxonomies

    @property
    def cron(self) -> Cron:
        if self._cron is None:
            self._cron = Cron(self._call)
        return self._cron

    @property
    def email(self) -> Email:
        if self._email is None:
            self._email = Email(self._call)
        return self._email

    @property
    def log(self) -> Log:
        if self._log is None:
            self._log = Log(self._call)
        return self._log

    def __repr__(self) -> str:
        return f"<ctx of plugin {self.plugin.id}>"

    def url(self, path: str) -> str:
        """The site URL followed by ``path`` (which must start with one ``/``); with no
        site URL configured (the default) that is ``path`` itself, as in EmDash."""
        path = _exact_str(path, "ctx.url: path")
        if not path.startswith("/"):
            raise BridgeError(f'URL path must start with "/", got: "{path}"')
        if path.startswith("//"):
            raise BridgeError(f'URL path must not be protocol-relative, got: "{path}"')
        return self.site.url + path


def _info_str(value: Any, default: str) -> str:
    return value if type(value) is str else default


def make_context(call: Call, info: dict[str, Any]) -> Context:
    """Build a ``ctx`` whose every service call goes through ``call(method, params)``."""
    return Context(call, info)
