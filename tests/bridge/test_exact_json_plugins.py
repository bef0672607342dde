"""Integrity at the JSON boundary, as a plugin sees it (issue rows 9 and 11), both modes.

- ``kv.set(k, 2**64 + 1)`` read back ``1.8446744073709552e+19``: now refused with a clear
  error; int64 edges read back exactly.
- a result ``{1: .., "1": ..}`` became a duplicate JSON key (first value silently lost):
  now refused, never half-delivered.
- a route name assigned straight into ``definition.routes`` with a newline/ESC reached the
  host log and the audit row raw: now refused at load, like ``add_route`` refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emdash import EmDashError, ManifestError
from emdash._runtime._runtime import Runtime
from emdash.asgi import create_app
from tests.asgi.conftest import API, call

SOURCE = """
from emdash import BridgeError, RouteConfig, define_plugin


def set_get(route_ctx, ctx):
    value = route_ctx["input"]["value"]
    big = route_ctx["input"].get("big")
    if big:
        value = 2 ** 64 + 1
    if route_ctx["input"].get("colliding"):
        value = {1: "first", "1": "second"}
    try:
        ctx.kv.set("n", value)
    except BridgeError as exc:
        return {"refused": str(exc)}
    got = ctx.kv.get("n")
    return {"got": got, "is_int": isinstance(got, int) and not isinstance(got, float)}


def colliding(route_ctx, ctx):
    return {1: "first", "1": "second"}


def huge(route_ctx, ctx):
    return {"n": 2 ** 64 + 1}


plugin = define_plugin(routes={
    "set-get": set_get,
    "colliding": RouteConfig(colliding, public=True),
    "huge": RouteConfig(huge, public=True),
})
"""


@pytest.fixture(scope="module", params=["sandboxed", "trusted"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def runtime(mode: str) -> Iterator[Runtime]:
    with Runtime(":memory:", site={"name": "T", "url": "https://site.example"}) as rt:
        rt.add_plugin({"id": "exact", "version": "1.0.0"}, source=SOURCE, trusted=mode == "trusted")
        yield rt


def test_kv_set_of_an_integer_beyond_int64_is_refused_not_turned_into_a_float(
    runtime: Runtime,
) -> None:
    out = runtime.invoke_route("exact", "set-get", input={"value": 0, "big": True})
    assert "refused" in out, out
    assert "outside the exact range" in out["refused"]
    assert "kv/set" in out["refused"]


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**53 + 1])
def test_int64_edges_read_back_exactly(runtime: Runtime, value: int) -> None:
    out = runtime.invoke_route("exact", "set-get", input={"value": value})
    assert out == {"got": value, "is_int": True}


def test_kv_set_with_colliding_keys_is_refused(runtime: Runtime) -> None:
    out = runtime.invoke_route("exact", "set-get", input={"value": 0, "colliding": True})
    assert "object key 1 at $.value is not a string" in out["refused"]


def test_a_sandboxed_result_with_colliding_keys_is_refused(runtime: Runtime, mode: str) -> None:
    if mode == "trusted":
        # Trusted code is not a boundary: its Python result reaches its Python caller
        # unchanged (nothing was encoded yet). Over HTTP the app refuses it (next test).
        assert runtime.invoke_route("exact", "colliding") == {1: "first", "1": "second"}
        assert runtime.invoke_route("exact", "huge") == {"n": 2**64 + 1}
        return
    for route, problem in [
        ("colliding", "object key 1 at $ is not a string"),
        ("huge", "outside the exact range"),
    ]:
        with pytest.raises(EmDashError) as info:
            runtime.invoke_route("exact", route)
        assert problem in str(info.value)
        assert "exact" in str(info.value)  # names the plugin


def test_over_http_no_duplicate_key_and_no_float_ever_leaves(runtime: Runtime) -> None:
    app = create_app(runtime, token=None)
    for route in ("colliding", "huge"):
        response = call(app, "GET", f"{API}/exact/{route}", token=None)
        # Sandboxed: the worker refuses it (SandboxViolation, 400 ROUTE_ERROR like any
        # non-JSON result); trusted: the app refuses to encode it (500, masked).
        assert (response.status_code, response.json()["error"]["code"]) in (
            (400, "ROUTE_ERROR"),
            (500, "INTERNAL_ERROR"),
        ), response.text
        assert '"1"' not in response.text and "e+19" not in response.text


ROUTE_SOURCE = """
from emdash import RouteConfig, define_plugin


def ok(route_ctx, ctx):
    return 1


plugin = define_plugin(routes={"ok": ok})
plugin.routes[NAME] = RouteConfig(ok, public=True)
"""


@pytest.mark.parametrize("mode", ["sandboxed", "trusted"])
@pytest.mark.parametrize(
    "name",
    [
        "x\\nCRITICAL emdash.auth admin login from 203.0.113.9",
        "x\\x1b[31mred",
        "",
        "a" * 129,
        "/leading-slash",
        "caf\\u00e9",
    ],
)
def test_a_route_name_assigned_directly_is_checked_at_load(mode: str, name: str) -> None:
    source = ROUTE_SOURCE.replace("NAME", repr(name))
    with Runtime(":memory:", site={"name": "T", "url": "https://site.example"}) as rt:
        with pytest.raises(ManifestError) as info:
            rt.add_plugin(
                {"id": "router", "version": "1.0.0"}, source=source, trusted=mode == "trusted"
            )
        message = str(info.value)
        assert "Invalid route name" in message
        # Shown escaped: no raw control character reaches a log line or an error text.
        assert "\n" not in message and "\x1b" not in message
