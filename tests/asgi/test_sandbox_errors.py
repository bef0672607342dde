"""Sandbox refusals and limit errors reach HTTP clients as 400 ROUTE_ERROR (docs/plugin-reference.md, responses and errors)."""

from __future__ import annotations

import logging
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


def test_a_backed_off_plugin_answers_503_with_retry_after_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = (
        "from emdash import define_plugin, RouteConfig\n"
        "def spin(route_ctx, ctx):\n"
        "    while True:\n"
        "        pass\n"
        "plugin = define_plugin(routes={'spin': RouteConfig(spin, public=True)})\n"
    )
    with Runtime(":memory:") as rt:
        rt.add_plugin({"id": "spinner"}, source={"plugin.py": source})
        app = create_app(rt, token=TOKEN)
        # Every call is killed by its CPU limit; after the free allowance the sandbox backs
        # off and refuses at once (no new worker), which HTTP clients see as a 503.
        statuses = []
        with caplog.at_level(logging.ERROR, logger="emdash.asgi"):
            for _ in range(12):
                r = call(app, "GET", f"{API}/spinner/spin", token=None)
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert r.json()["error"]["code"] == "SANDBOX_UNAVAILABLE"
                    assert int(r.headers["retry-after"]) >= 1
        assert statuses[0] == 400  # the first kills are ordinary limit errors
        assert statuses.count(503) >= 3, statuses
        unavailable = [m for m in caplog.messages if "sandbox unavailable" in m]
        assert len(unavailable) == 1  # once per plugin per minute, not once per refusal
