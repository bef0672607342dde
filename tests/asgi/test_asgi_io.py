"""The HTTP plumbing under emdash.asgi: query strings, bodies, headers, error mapping."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from emdash import (
    BridgeError,
    CapabilityError,
    CpuLimitExceeded,
    InvalidCursorError,
    PluginError,
    PluginRouteError,
    SandboxUnavailableError,
    WallTimeExceeded,
)
from emdash._asgi._app import describe_error
from emdash._asgi._io import (
    BodyTooLarge,
    parse_json_body,
    parse_query,
    read_body,
    request_headers,
)


def test_query_single_keys_stay_strings_and_repeats_become_lists() -> None:
    assert parse_query(b"a=1&b=x&a=2&c=&a=3") == {"a": ["1", "2", "3"], "b": "x", "c": ""}
    assert parse_query(b"name=J%C3%BCrgen+M&q=a%26b") == {"name": "Jürgen M", "q": "a&b"}
    assert parse_query(b"") == {}


def test_json_body_invalid_or_missing_is_none() -> None:
    assert parse_json_body(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_json_body(b"  ") is None
    assert parse_json_body(b"") is None
    assert parse_json_body(b"{not json") is None
    assert parse_json_body(b"[" * 100_000) is None  # deep nesting: no RecursionError escapes
    assert parse_json_body(b"null") is None
    assert parse_json_body(b"3") == 3


def test_request_headers_drop_credentials_and_join_repeats() -> None:
    scope = {
        "headers": [
            (b"Host", b"example.com"),
            (b"authorization", b"Bearer secret"),
            (b"cookie", b"session=abc"),
            (b"x-emdash-request", b"1"),
            (b"proxy-authorization", b"Basic x"),
            (b"cf-access-jwt-assertion", b"jwt"),
            (b"accept", b"text/html"),
            (b"Accept", b"application/json"),
            (b"user-agent", b"test-agent"),
        ]
    }
    assert request_headers(scope) == {
        "host": "example.com",
        "accept": "text/html, application/json",
        "user-agent": "test-agent",
    }


def run_read(
    chunks: list[bytes], limit: int, headers: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return messages.pop(0)

    async def main() -> bytes:
        return await read_body({"headers": headers or []}, receive, limit)

    result = anyio.run(main)
    assert received  # the body was actually streamed through receive()
    return result


def test_read_body_streams_chunks() -> None:
    assert run_read([b"ab", b"cd", b"e"], limit=5) == b"abcde"


def test_read_body_refuses_streams_over_the_cap() -> None:
    with pytest.raises(BodyTooLarge):
        run_read([b"abc", b"def"], limit=5)


def test_read_body_refuses_a_declared_oversized_length_before_reading() -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("must not read a body declared too large")

    async def main() -> bytes:
        return await read_body({"headers": [(b"content-length", b"999")]}, receive, 10)

    with pytest.raises(BodyTooLarge):
        anyio.run(main)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PluginRouteError.conflict("Already there"), (409, "CONFLICT", "Already there")),
        (PluginRouteError("TEAPOT", "short and stout", 418), (418, "TEAPOT", "short and stout")),
        (
            PluginRouteError.internal("db password is hunter2"),
            (500, "INTERNAL_ERROR", "Plugin route error"),
        ),
        (PluginRouteError("X", "bad status", 200), (400, "X", "bad status")),
        (
            PluginError("Plugin p raised KeyError during route:r: 'secret'", plugin_id="p"),
            (500, "INTERNAL_ERROR", "Plugin route error"),
        ),
        (
            CapabilityError("content:read", plugin_id="p"),
            (
                400,
                "ROUTE_ERROR",
                'Missing capability: content:read (plugin "p" must declare "content:read" in its '
                "descriptor's capabilities to do this)",
            ),
        ),
        (
            CpuLimitExceeded("Plugin p exceeded CPU limit of 50ms during route:r."),
            (400, "ROUTE_ERROR", "Plugin p exceeded CPU limit of 50ms during route:r."),
        ),
        (
            WallTimeExceeded("Plugin p exceeded wall-time limit"),
            (400, "ROUTE_ERROR", "Plugin p exceeded wall-time limit"),
        ),
        (
            BridgeError("Storage collection not declared: events"),
            (400, "ROUTE_ERROR", "Storage collection not declared: events"),
        ),
        (
            InvalidCursorError("Invalid pagination cursor: zzz"),
            (400, "INVALID_CURSOR", "Invalid pagination cursor: zzz"),
        ),
        (
            SandboxUnavailableError("Plugin sandbox unavailable for p"),
            (503, "SANDBOX_UNAVAILABLE", "Plugin sandbox unavailable for p"),
        ),
        (RuntimeError("host bug with a secret"), (500, "INTERNAL_ERROR", "Plugin route error")),
    ],
)
def test_error_mapping(
    exc: BaseException, expected: tuple[int, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="emdash.asgi"):
        status, error = describe_error(exc, "p", "r")
    assert (status, error["code"], error["message"]) == expected
    assert "details" not in error
    if expected[1] == "INTERNAL_ERROR":
        # Masked for the client, but the operator's log has the real story.
        assert caplog.records, "a masked error must be logged"


def test_validation_details_are_kept() -> None:
    exc = PluginRouteError(
        "VALIDATION_ERROR",
        "Invalid request body",
        400,
        [{"path": ["email"], "message": "'x' does not match"}],
    )
    assert describe_error(exc, "p", "r") == (
        400,
        {
            "code": "VALIDATION_ERROR",
            "message": "Invalid request body",
            "details": [{"path": ["email"], "message": "'x' does not match"}],
        },
    )
