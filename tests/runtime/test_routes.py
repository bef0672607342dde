"""Plugin routes: lookup, host-side input validation, the sanitised routeCtx, errors, audit."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from emdash import ManifestError, PluginError, PluginRouteError, RouteConfig
from emdash._runtime._runtime import Runtime

from .conftest import AddPlugin

SCHEMA = {
    "type": "object",
    "properties": {"email": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
    "required": ["email"],
    "additionalProperties": False,
}


def echo(route_ctx: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return route_ctx


def test_route_returns_the_handler_data_with_a_working_ctx(rt: Runtime, add: AddPlugin) -> None:
    def count(route_ctx: dict[str, Any], ctx: Any) -> dict[str, Any]:
        ctx.kv.set("hits", (ctx.kv.get("hits") or 0) + 1)
        return {"hits": ctx.kv.get("hits"), "input": route_ctx["input"]}

    add("counter", routes={"hit": count})
    assert rt.invoke_route("counter", "hit", input={"a": 1}) == {"hits": 1, "input": {"a": 1}}
    assert rt.invoke_route("counter", "hit")["hits"] == 2


def test_unknown_plugin_route_or_disabled_plugin_is_not_found(rt: Runtime, add: AddPlugin) -> None:
    add("here", routes={"status": echo})
    rt.add_plugin({"id": "off"}, source={"routes": {"status": echo}}, trusted=True, enabled=False)
    expected = {
        ("nobody", "status"): 'Plugin route not found: "nobody/status": no plugin with that id '
        "is added to this site (added plugins: here, off)",
        ("here", "missing"): 'Plugin route not found: "here/missing": plugin here has no route '
        "of that name (its routes: status)",
        ("off", "status"): 'Plugin route not found: "off/status": plugin off is disabled; '
        "enable it to call its routes",
    }
    for (pid, route), message in expected.items():
        with pytest.raises(PluginRouteError) as info:
            rt.invoke_route(pid, route)
        assert (info.value.code, info.value.message, info.value.status) == (
            "NOT_FOUND",
            message,
            404,
        )


def test_json_schema_input_is_validated_on_the_host(rt: Runtime, add: AddPlugin) -> None:
    calls: list[Any] = []
    add(
        "forms",
        routes={"submit": RouteConfig(lambda r, ctx: calls.append(r["input"]), input=SCHEMA)},
    )
    rt.invoke_route("forms", "submit", input={"email": "a@b.c", "count": 2})
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("forms", "submit", input={"count": 0, "extra": True})
    err = info.value
    assert (err.code, err.message, err.status) == ("VALIDATION_ERROR", "Invalid request body", 400)
    assert err.details == [
        {"path": [], "message": "'email' is a required property"},
        {"path": [], "message": "Additional properties are not allowed ('extra' was unexpected)"},
        {"path": ["count"], "message": "0 is less than the minimum of 1"},
    ]
    assert calls == [{"email": "a@b.c", "count": 2}]


def test_invalid_json_schema_is_refused_at_load(rt: Runtime, add: AddPlugin) -> None:
    with pytest.raises(ManifestError) as info:
        add("broken", routes={"x": RouteConfig(echo, input={"type": "nonsense"})})
    assert str(info.value).startswith(
        "Plugin broken route 'x' declares an invalid JSON Schema input: "
    )
    assert rt.plugins() == []
    with pytest.raises(ManifestError) as info:
        add("odd", routes={"x": RouteConfig(echo, input=5)})
    assert str(info.value) == (
        "Plugin odd route 'x' has an input of type int; use a JSON Schema dict, a pydantic "
        "model or a callable"
    )


class Signup(BaseModel):
    email: str
    age: int


def test_pydantic_input_for_native_plugins(rt: Runtime, add: AddPlugin) -> None:
    def submit(route_ctx: dict[str, Any], ctx: Any) -> dict[str, Any]:
        model = route_ctx["input"]
        assert isinstance(model, Signup)
        return {"email": model.email, "next": model.age + 1}

    add("typed", routes={"signup": RouteConfig(submit, input=Signup)})
    assert rt.invoke_route("typed", "signup", input={"email": "x@y.z", "age": "41"}) == {
        "email": "x@y.z",
        "next": 42,
    }
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("typed", "signup", input={"email": "x@y.z", "age": "old"})
    assert info.value.code == "VALIDATION_ERROR"
    assert info.value.details == [
        {
            "path": ["age"],
            "message": "Input should be a valid integer, unable to parse string as an integer",
        }
    ]


def test_callable_input_validator(rt: Runtime, add: AddPlugin) -> None:
    def positive(value: Any) -> int:
        number = int(value)
        if number <= 0:
            raise ValueError("must be positive")
        return number

    add("calc", routes={"double": RouteConfig(lambda r, ctx: r["input"] * 2, input=positive)})
    assert rt.invoke_route("calc", "double", input="21") == 42
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("calc", "double", input="-1")
    assert info.value.details == [{"path": [], "message": "must be positive"}]


def test_route_ctx_is_sanitised(rt: Runtime, add: AddPlugin) -> None:
    add("echo", routes={"private": echo, "public": RouteConfig(echo, public=True)})
    request = {
        "url": "https://site.test/_emdash/api/plugins/echo/private?x=1",
        "method": "get",
        "headers": {
            "Cookie": "session=secret",
            "Set-Cookie": "a=b",
            "Authorization": "Bearer t",
            "Proxy-Authorization": "Basic x",
            "CF-Access-JWT-Assertion": "jwt",
            "cf-access-client-secret": "s",
            "X-EmDash-Request": "1",
            # Credential-shaped custom headers, stripped by pattern (the ASGI app's rule).
            "X-Api-Key": "k",
            "X-Auth-Token": "t",
            "X-CSRF-Token": "c",
            "X-Amz-Security-Token": "a",
            "User-Agent": "tests/1.0",
            "Referer": "https://site.test/",
            "X-Custom": "kept",
        },
        "ip": "203.0.113.9",
    }
    user = {"id": "u1", "role": 50}
    ctx = rt.invoke_route("echo", "private", input={"q": 1}, request=request, user=user)
    assert ctx == {
        "input": {"q": 1},
        "request": {
            "url": "https://site.test/_emdash/api/plugins/echo/private?x=1",
            "method": "GET",
            "headers": {
                "user-agent": "tests/1.0",
                "referer": "https://site.test/",
                "x-custom": "kept",
            },
        },
        "requestMeta": {
            "ip": "203.0.113.9",
            "userAgent": "tests/1.0",
            "referer": "https://site.test/",
            "geo": None,
        },
        "user": user,
    }
    public = rt.invoke_route("echo", "public", request=request, user=user)
    assert public["user"] is None  # only private routes see the user


def test_route_ctx_defaults_without_a_request(rt: Runtime, add: AddPlugin) -> None:
    add("echo", routes={"status": echo})
    assert rt.invoke_route("echo", "status") == {
        "input": None,
        "request": {
            "url": "http://localhost/_emdash/api/plugins/echo/status",
            "method": "POST",
            "headers": {},
        },
        "requestMeta": {"ip": None, "userAgent": None, "referer": None, "geo": None},
        "user": None,
    }


def test_bad_client_ip_is_dropped(rt: Runtime, add: AddPlugin) -> None:
    add("echo", routes={"status": echo})
    ctx = rt.invoke_route("echo", "status", request={"ip": "1.2.3.4; DROP"})
    assert ctx["requestMeta"]["ip"] is None


def test_route_errors_propagate_and_are_audited(rt: Runtime, add: AddPlugin) -> None:
    def conflict(route_ctx: dict[str, Any], ctx: Any) -> None:
        raise PluginRouteError.conflict("Already subscribed", {"email": "a@b.c"})

    def crash(route_ctx: dict[str, Any], ctx: Any) -> None:
        raise ZeroDivisionError("division by zero")

    add("api", routes={"ok": lambda r, ctx: "fine", "conflict": conflict, "crash": crash})
    assert rt.invoke_route("api", "ok") == "fine"
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("api", "conflict")
    assert (info.value.code, info.value.status, info.value.details) == (
        "CONFLICT",
        409,
        {"email": "a@b.c"},
    )
    with pytest.raises(PluginError) as crashed:
        rt.invoke_route("api", "crash")
    assert (
        crashed.value.message
        == "Plugin api raised ZeroDivisionError during route:crash: division by zero"
    )
    assert (crashed.value.route, crashed.value.hook) == ("crash", None)
    rows = [(r["kind"], r["name"], r["outcome"]) for r in reversed(rt.audit_log(plugin_id="api"))]
    assert rows == [
        ("route", "ok", "ok"),
        ("route", "conflict", "error"),
        ("route", "crash", "error"),
    ]


def test_failed_route_rolls_back_its_writes(rt: Runtime, add: AddPlugin) -> None:
    def half(route_ctx: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("written", True)
        raise PluginRouteError.bad_request("no")

    add("half", routes={"go": half})
    with pytest.raises(PluginRouteError):
        rt.invoke_route("half", "go")
    assert rt.store.kv_entries.get("half", "written") is None
