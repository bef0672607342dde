"""The plugin route ASGI app against a real runtime, natively and sandboxed (docs/plugin-reference.md, routes)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

from .conftest import API, TOKEN, call

NO_STORE = "private, no-store"


def envelope_error(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message}}


# -- auth -------------------------------------------------------------------------------------


def test_private_route_needs_the_token(app: EmDashASGI) -> None:
    for token in (None, "wrong-token-0123456789abcdef", TOKEN + "x", TOKEN[:-1]):
        r = call(app, "GET", f"{API}/probe/echo", token=token)
        assert r.status_code == 401
        assert r.json() == envelope_error("UNAUTHORIZED", "Authentication required")
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["cache-control"] == NO_STORE
    r = call(
        app, "GET", f"{API}/probe/echo", token=None, headers={"authorization": f"Basic {TOKEN}"}
    )
    assert r.status_code == 401


def test_without_a_configured_token_private_routes_are_unreachable(runtime: Runtime) -> None:
    app = create_app(runtime, token=None)
    r = call(app, "GET", f"{API}/probe/echo", token="")
    assert r.status_code == 401
    # Public routes still work.
    assert call(app, "GET", f"{API}/probe/public-echo", token=None).status_code == 200


def test_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        create_app(object(), token="short")  # type: ignore[arg-type]


def test_authorised_get_sees_query_input_and_sanitised_request(app: EmDashASGI) -> None:
    r = call(
        app,
        "GET",
        f"{API}/probe/echo?a=1&b=x&a=2",
        headers={"cookie": "session=abc", "user-agent": "probe-test", "x-emdash-request": "1"},
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == NO_STORE
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert data["input"] == {"a": ["1", "2"], "b": "x"}
    assert data["method"] == "GET"
    assert data["url"] == "https://site.example/_emdash/api/plugins/probe/echo?a=1&b=x&a=2"
    # A machine token has no user; credentials never reach plugin code.
    assert data["user"] is None
    assert "authorization" not in data["headers"]
    assert "cookie" not in data["headers"]
    assert "x-emdash-request" not in data["headers"]
    assert data["headers"]["user-agent"] == "probe-test"
    assert data["ip"] == "127.0.0.1"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_methods_take_json_input(app: EmDashASGI, method: str) -> None:
    r = call(app, method, f"{API}/probe/echo?ignored=1", json={"x": [1, 2], "y": None})
    assert r.status_code == 200
    assert r.json()["data"]["input"] == {"x": [1, 2], "y": None}
    assert r.json()["data"]["method"] == method


def test_invalid_or_missing_json_body_is_none(app: EmDashASGI) -> None:
    assert call(app, "POST", f"{API}/probe/echo", content=b"{nope").json()["data"]["input"] is None
    assert call(app, "POST", f"{API}/probe/echo").json()["data"]["input"] is None


def test_delete_takes_query_input(app: EmDashASGI) -> None:
    r = call(app, "DELETE", f"{API}/probe/echo?id=7")
    assert r.json()["data"]["input"] == {"id": "7"}


def test_head_answers_like_get_without_a_body(app: EmDashASGI) -> None:
    r = call(app, "HEAD", f"{API}/probe/cached", token=None)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["cache-control"] == "public, max-age=60"
    # Content-Length is what GET would send.
    assert r.headers["content-length"] == str(len(b'{"success":true,"data":{"cached":true}}'))


def test_route_names_may_contain_slashes(app: EmDashASGI) -> None:
    r = call(app, "GET", f"{API}/probe/deep/nested/route?q=1")
    assert r.status_code == 200
    assert r.json()["data"]["input"] == {"q": "1"}


# -- public routes and caching ---------------------------------------------------------------


def test_public_route_needs_no_token_and_has_no_user(app: EmDashASGI) -> None:
    r = call(app, "POST", f"{API}/probe/public-echo", token=None, json={"k": "v"})
    assert r.status_code == 200
    assert r.json()["data"]["input"] == {"k": "v"}
    assert r.json()["data"]["user"] is None
    assert r.headers["cache-control"] == NO_STORE


def test_cache_control_only_on_public_get(app: EmDashASGI) -> None:
    assert call(app, "GET", f"{API}/probe/cached", token=None).headers["cache-control"] == (
        "public, max-age=60"
    )
    assert call(app, "POST", f"{API}/probe/cached", token=None).headers["cache-control"] == NO_STORE
    # cache_control on a private route is ignored.
    assert call(app, "GET", f"{API}/probe/private-cached").headers["cache-control"] == NO_STORE


def test_a_plugin_cannot_inject_headers_through_cache_control(app: EmDashASGI) -> None:
    r = call(app, "GET", f"{API}/probe/evil-cache", token=None)
    assert r.status_code == 200
    assert r.headers["cache-control"] == NO_STORE
    assert "set-cookie" not in r.headers


# -- errors ------------------------------------------------------------------------------------


def test_plugin_route_error_passes_through(app: EmDashASGI) -> None:
    r = call(app, "GET", f"{API}/probe/teapot")
    assert r.status_code == 418
    assert r.json() == envelope_error("TEAPOT", "short and stout")
    assert r.headers["cache-control"] == NO_STORE


def test_internal_errors_are_masked_and_logged(
    app: EmDashASGI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="emdash"):
        r = call(app, "GET", f"{API}/probe/internal")
        assert r.status_code == 500
        assert r.json() == envelope_error("INTERNAL_ERROR", "Plugin route error")
        assert "hunter2" not in r.text
        r = call(app, "GET", f"{API}/probe/crash")
        assert r.status_code == 500
        assert r.json() == envelope_error("INTERNAL_ERROR", "Plugin route error")
        assert "secret-key-material" not in r.text
    # In the plugin's own log (where its ctx.log lines go), naming it and the route.
    own = [r.getMessage() for r in caplog.records if r.name == "emdash.plugins.probe"]
    assert any(m.startswith("[plugin:probe] route internal:") and "hunter2" in m for m in own)
    assert any(m.startswith("[plugin:probe] route crash raised:") for m in own)
    assert "secret-key-material" in "\n".join(own)


def test_other_emdash_errors_are_route_errors(app: EmDashASGI) -> None:
    r = call(app, "GET", f"{API}/probe/no-capability")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ROUTE_ERROR"
    assert r.json()["error"]["message"].startswith("Missing capability: content:read")


def test_schema_validation_happens_before_the_handler(app: EmDashASGI) -> None:
    r = call(
        app, "POST", f"{API}/forms/submit", token=None, json={"form": "contact", "email": "nope"}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == "Invalid request body"
    assert {"path": [], "message": "'message' is a required property"} in error["details"]
    ok = call(
        app,
        "POST",
        f"{API}/forms/submit",
        token=None,
        json={"form": "contact", "email": "a@example.com", "message": "hi there"},
    )
    assert ok.status_code == 200
    assert ok.json()["data"]["received"] is True
    again = call(
        app,
        "POST",
        f"{API}/forms/submit",
        token=None,
        json={"form": "contact", "email": "A@EXAMPLE.com", "message": "Hi  there"},
    )
    assert again.status_code == 409
    assert again.json() == envelope_error("CONFLICT", "This message was already received")
    listed = call(app, "GET", f"{API}/forms/submissions/list?form=contact")
    assert [s["email"] for s in listed.json()["data"]["submissions"]] == ["a@example.com"]


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/nope/echo",  # unknown plugin
        f"{API}/probe/nope",  # unknown route
        f"{API}/probe/echo/",  # a trailing slash is another route name
        f"{API}/Probe/echo",  # not a valid plugin id
    ],
)
def test_unknown_routes_are_404(app: EmDashASGI, path: str) -> None:
    r = call(app, "GET", path)
    assert r.status_code == 404
    # The plugin and route the client asked for, nothing about what the site has.
    asked = path.removeprefix(f"{API}/")
    assert r.json() == envelope_error("NOT_FOUND", f'Plugin route not found: "{asked}"')


def test_not_found_echoes_hostile_paths_safely(app: EmDashASGI) -> None:
    r = call(app, "GET", f"{API}/nope/a%0Ab%ED%A0%80")
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert message.startswith('Plugin route not found: "nope/a\\x0ab')
    assert "\n" not in message


@pytest.mark.parametrize("path", ["/", "/_emdash/api/plugins/", f"{API}/probe", "/other"])
def test_paths_outside_the_api_are_404(app: EmDashASGI, path: str) -> None:
    r = call(app, "GET", path)
    assert r.status_code == 404
    assert r.json() == envelope_error("NOT_FOUND", "Not found")


def test_disabled_plugin_routes_are_404(runtime: Runtime, app: EmDashASGI) -> None:
    runtime.disable_plugin("plugin-hello")
    try:
        r = call(app, "GET", f"{API}/plugin-hello/recent")
        assert r.status_code == 404
        assert r.json() == envelope_error(
            "NOT_FOUND", 'Plugin route not found: "plugin-hello/recent"'
        )
    finally:
        runtime.enable_plugin("plugin-hello")
    assert call(app, "GET", f"{API}/plugin-hello/recent").json() == {
        "success": True,
        "data": {"events": []},
    }


def test_other_methods_are_405(app: EmDashASGI) -> None:
    r = call(app, "OPTIONS", f"{API}/probe/echo")
    assert r.status_code == 405
    assert r.json() == envelope_error("METHOD_NOT_ALLOWED", "Method OPTIONS not allowed")
    assert r.headers["allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE"


def test_oversized_bodies_are_refused(app: EmDashASGI) -> None:
    r = call(app, "POST", f"{API}/probe/echo", content=b"x" * 5000)
    assert r.status_code == 413
    assert r.json() == envelope_error(
        "PAYLOAD_TOO_LARGE", "Request body too large (limit 4096 bytes)"
    )


# -- mounting and the ASGI protocol --------------------------------------------------------


def raw_asgi(
    app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent


def http_scope(path: str, root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"h")],
        "client": ("10.0.0.9", 5000),
        "server": ("h", 80),
    }


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/_emdash/api/plugins/probe/cached", ""),  # mounted at /
        ("/_emdash/api/plugins/probe/cached", "/_emdash"),  # Starlette Mount keeps the path
        ("/api/plugins/probe/cached", "/_emdash"),  # servers that strip the mount
    ],
)
def test_mounting_under_emdash(app: EmDashASGI, path: str, root: str) -> None:
    sent = raw_asgi(app, http_scope(path, root), [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"success":true,"data":{"cached":true}}'


def test_lifespan_is_acknowledged(app: EmDashASGI) -> None:
    sent = raw_asgi(
        app, {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_websockets_are_closed(app: EmDashASGI) -> None:
    sent = raw_asgi(app, {"type": "websocket", "path": "/x"}, [])
    assert sent == [{"type": "websocket.close", "code": 1000}]
