"""Sandbox refusals and limit errors reach HTTP clients as 400 ROUTE_ERROR (spec §10.3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

from .conftest import API, EXAMPLES, TOKEN, call


@pytest.fixture(scope="module")
def hostile_app() -> Iterator[EmDashASGI]:
    with Runtime(":memory:") as rt:
        rt.add_plugin(EXAMPLES / "malicious")  # sandboxed: never trusted
        yield create_app(rt, token=TOKEN)


def test_cpu_limit_is_a_route_error(hostile_app: EmDashASGI) -> None:
    r = call(hostile_app, "GET", f"{API}/malicious/spin")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "ROUTE_ERROR",
        "message": "Plugin malicious exceeded CPU limit of 200ms during route:spin. Do less "
        "work per invocation or raise limits.cpu_ms in the plugin descriptor.",
    }
    assert r.headers["cache-control"] == "private, no-store"


def test_subrequest_limit_is_a_route_error(hostile_app: EmDashASGI) -> None:
    r = call(hostile_app, "GET", f"{API}/malicious/flood")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ROUTE_ERROR"
    assert r.json()["error"]["message"].startswith("Plugin malicious exceeded its subrequest limit")


def test_an_undeclared_collection_is_a_route_error(hostile_app: EmDashASGI) -> None:
    r = call(hostile_app, "GET", f"{API}/malicious/other-storage")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "ROUTE_ERROR",
        "message": "Storage collection not declared: events (declare it under [storage] in "
        "the plugin descriptor)",
    }


def test_a_sandbox_violation_is_a_route_error(hostile_app: EmDashASGI) -> None:
    r = call(hostile_app, "GET", f"{API}/malicious/import-os")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "ROUTE_ERROR"
    assert error["message"].startswith(
        'Plugin malicious was refused during route:import-os: Import of "os" is not allowed '
        "in sandboxed plugins. Allowed modules: "
    )
