"""Low-level HTTP plumbing for :mod:`emdash.asgi`: bodies, query strings, headers, replies.

Plain ASGI 3 with no framework, so any host (Starlette, FastAPI, Django, uvicorn alone) can
mount the app. Everything that arrives here is attacker-controlled: bodies are read with a
hard cap, decoding never raises, and nothing but plain JSON reaches the runtime.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from sandbox._jsonrule import NotExactJSON, check_decoded

from .._bridge._ssrf import is_credential_header

__all__ = [
    "SENSITIVE_HEADERS",
    "BadInput",
    "BodyTooLarge",
    "Receive",
    "Scope",
    "Send",
    "header",
    "parse_json_body",
    "parse_query",
    "read_body",
    "request_headers",
    "send_json",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Credentials never reach plugin code, trusted or not (EmDash strips a few names, and only for
# isolates; here both modes). The names below are always stripped; on top, every header
# shaped like a credential (x-api-key, x-auth-token, x-csrf-token, x-amz-security-token,
# *-signature...: the one rule of is_credential_header, also used for outgoing redirects).
SENSITIVE_HEADERS = frozenset(
    {
        "cookie",
        "set-cookie",
        "authorization",
        "proxy-authorization",
        "cf-access-jwt-assertion",
        "cf-access-client-id",
        "cf-access-client-secret",
        "x-emdash-request",
    }
)


class BodyTooLarge(Exception):
    """The request body is larger than the configured cap."""


class BadInput(Exception):
    """The request is JSON, or text, that the exact-JSON rule refuses (the message says why).

    Raised before any plugin runs: such input could not reach a plugin unchanged (orjson
    refuses integers beyond 64 bits, lone surrogates, nesting past 255 levels; every
    boundary holds values to ``sandbox._jsonrule``), and it is the client's mistake, not
    the plugin's, so it is answered 400 without an audit row or an error log line.
    """


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase bytes), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def request_headers(scope: Scope) -> dict[str, str]:
    """Headers as a dict with lowercase keys, credentials removed, repeats joined by ", "."""
    out: dict[str, str] = {}
    for raw_key, raw_value in scope.get("headers", ()):
        key = bytes(raw_key).decode("latin-1").lower()
        if key in SENSITIVE_HEADERS or is_credential_header(key):
            continue
        value = bytes(raw_value).decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the whole body, refusing (before and while reading) anything over ``limit``."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def parse_json_body(body: bytes) -> Any:
    """The JSON value of ``body``; an empty or invalid body is ``None`` (EmDash: undefined).

    Valid JSON that breaks the exact-JSON rule (an integer beyond int64 or with thousands of
    digits, nesting past 64 levels, a ``\\ud800`` escape standing alone, ``NaN``) raises
    :class:`BadInput`: it is not "no input", and it must not reach a plugin.
    """
    if not body.strip():
        return None
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    except RecursionError:
        raise BadInput("The request body is nested too deeply") from None
    except ValueError as exc:  # an integer with more digits than int() converts
        raise BadInput(f"The request body is not usable JSON: {exc}") from None
    check_input(value, "The request body")
    return value


def check_input(value: Any, what: str) -> None:
    """:class:`BadInput` unless ``value`` (decoded JSON or plain request data) obeys the
    exact-JSON rule."""
    try:
        check_decoded(value)
    except NotExactJSON as exc:
        raise BadInput(f"{what} cannot be passed to a plugin: {exc}") from None


def parse_query(query_string: bytes) -> dict[str, str | list[str]]:
    """Query string to a dict: a repeated key becomes a list, a single key stays a string."""
    out: dict[str, str | list[str]] = {}
    text = query_string.decode("latin-1")
    for key, value in parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"):
        if key in out:
            current = out[key]
            out[key] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            out[key] = value
    return out


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    include_body: bool = True,
) -> None:
    """Send one complete JSON response (``include_body=False`` for HEAD)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    all_headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body if include_body else b""})
