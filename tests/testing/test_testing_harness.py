"""PluginHarness on real plugins, in both modes: hooks, routes, storage, KV, audit, HTTP."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from emdash import (
    CAPABILITIES,
    EmDashError,
    ManifestError,
    NotFoundError,
    PluginDescriptor,
    SandboxViolation,
    SubrequestLimitExceeded,
)
from emdash.testing import HarnessFactory, PluginHarness

from .conftest import HELLO, WritePlugin

SETTINGS_SOURCE = """
    from emdash import define_plugin


    def on_install(event, ctx):
        ctx.kv.set("installed", True)


    def on_cron(event, ctx):
        ctx.kv.set("last-cron", event["name"])


    def greet(route_ctx, ctx):
        ctx.kv.set("greeted", route_ctx["input"]["name"])
        return {"greeting": ctx.kv.get("settings:greeting"), "site": ctx.site.name}


    def echo(route_ctx, ctx):
        return {"input": route_ctx["input"], "method": route_ctx["request"]["method"]}


    plugin = define_plugin(
        hooks={"plugin:install": on_install, "cron": on_cron},
        routes={"greet": greet, "echo": echo},
    )
"""

TWO_CALLS_SOURCE = """
    from emdash import define_plugin


    def twice(route_ctx, ctx):
        ctx.kv.get("a")
        ctx.kv.get("b")
        return "done"


    plugin = define_plugin(routes={"twice": twice})
"""


def hello_event_id(event: dict[str, Any]) -> str:
    data = event["data"]
    return f"save-{data['timestamp']}-{data['contentId']}"


def test_hello_recent_returns_the_event_stored_by_a_content_save(
    plugin_harness: HarnessFactory, both_modes: str
) -> None:
    h = plugin_harness(HELLO, sandbox=both_modes)
    assert h.sandboxed is (both_modes == "sandboxed")
    assert h.runtime.get_plugin("plugin-hello").sandboxed is h.sandboxed
    assert h.runtime.get_plugin("plugin-hello").trusted is not h.sandboxed

    item = h.runtime.content.create("posts", {"title": "Hi"})
    events = h.route("recent")["events"]

    assert len(events) == 1
    (event,) = events
    assert event["data"] == {
        "timestamp": event["data"]["timestamp"],
        "collection": "posts",
        "contentId": item["id"],
    }
    assert event["id"] == hello_event_id(event)
    stored = h.storage("events")
    assert dict(stored) == {event["id"]: event["data"]}
    assert len(stored) == 1 and stored[event["id"]] == event["data"]
    assert stored.count(where={"timestamp": event["data"]["timestamp"]}) == 1
    assert stored.query(limit=5) == {"items": events, "hasMore": False}
    with pytest.raises(KeyError):
        stored["save-missing"]
    # A sandboxed plugin's load (one per worker started) is audited too, as kind "load".
    assert [(r["kind"], r["name"], r["outcome"]) for r in h.audit() if r["kind"] != "load"] == [
        ("route", "recent", "ok"),
        ("hook", "content:afterSave", "ok"),
    ]


def test_hook_runs_the_plugin_through_the_pipeline(
    plugin_harness: HarnessFactory, both_modes: str
) -> None:
    h = plugin_harness(HELLO, sandbox=both_modes)
    outcome = h.hook(
        "content:afterSave",
        {"content": {"id": "c1", "title": "T"}, "collection": "pages", "isNew": True},
    )
    assert outcome.ok and [r.plugin_id for r in outcome.results] == ["plugin-hello"]
    ((doc_id, data),) = h.storage("events").items()
    assert data["collection"] == "pages" and data["contentId"] == "c1"
    assert doc_id == "save-" + data["timestamp"] + "-c1"


def test_settings_are_prefilled_and_lifecycle_and_cron_reach_the_plugin(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    path = write_plugin("greeter", SETTINGS_SOURCE)
    h = plugin_harness(
        path,
        sandbox=both_modes,
        settings={"greeting": "hej"},
        site={"name": "Test site", "url": "https://test.example"},
    )
    # plugin:install fired while the harness was built, after the settings were written.
    assert h.kv == {"installed": True, "settings:greeting": "hej"}

    assert h.route("greet", {"name": "Ada"}) == {"greeting": "hej", "site": "Test site"}
    assert h.kv["greeted"] == "Ada"

    outcome = h.hook("cron", {"name": "nightly", "data": None, "scheduledAt": None})
    assert outcome.ok and outcome.results[0].plugin_id == "greeter"
    assert h.kv.list("last") == {"last-cron": "nightly"}
    assert "missing" not in h.kv and len(h.kv) == 4
    with pytest.raises(KeyError):
        h.kv["settings"]  # a prefix of a stored key is not a key


def test_client_serves_routes_over_the_asgi_app_with_a_token(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    h = plugin_harness(write_plugin("echoer", SETTINGS_SOURCE), sandbox=both_modes)
    client = h.client()
    response = client.post("echo", json={"a": [1, 2]})
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"input": {"a": [1, 2]}, "method": "POST"}}
    assert client.get("echo?x=1").json()["data"] == {"input": {"x": "1"}, "method": "GET"}
    assert str(response.request.url) == "http://testserver/_emdash/api/plugins/echoer/echo"

    anonymous = h.client(authenticated=False).get("echo")
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "success": False,
        "error": {"code": "UNAUTHORIZED", "message": "Authentication required"},
    }
    assert len(h.token) >= 32


def test_client_of_hello_sees_the_saved_content(plugin_harness: HarnessFactory) -> None:
    h = plugin_harness(HELLO)
    h.runtime.content.create("posts", {"title": "Hi"})
    body = h.client().get("/recent").json()
    assert body["success"] is True and body["data"] == h.route("recent")


@pytest.mark.anyio
async def test_async_client_serves_routes(write_plugin: WritePlugin) -> None:
    with PluginHarness(write_plugin("echoer", SETTINGS_SOURCE), sandbox=False) as h:
        async with h.async_client() as client:
            response = await client.put("echo", json={"k": "v"})
    assert response.json() == {"success": True, "data": {"input": {"k": "v"}, "method": "PUT"}}


def test_limits_override_applies_to_the_sandboxed_plugin(
    plugin_harness: HarnessFactory, write_plugin: WritePlugin
) -> None:
    h = plugin_harness(write_plugin("chatty", TWO_CALLS_SOURCE), limits={"subrequests": 1})
    assert h.descriptor.limits is not None and h.descriptor.limits.subrequests == 1
    with pytest.raises(SubrequestLimitExceeded) as caught:
        h.route("twice")
    assert str(caught.value) == (
        "Plugin chatty exceeded its subrequest limit of 1 calls during this invocation. Make "
        "fewer ctx calls per invocation or raise limits.subrequests in the plugin descriptor."
    )
    assert plugin_harness(write_plugin("roomy", TWO_CALLS_SOURCE)).route("twice") == "done"


def test_descriptor_and_source_can_be_given_directly() -> None:
    descriptor = PluginDescriptor.load({"id": "inline", "version": "1.0.0"})
    source = (
        "from emdash import define_plugin\n"
        "plugin = define_plugin(routes={'ping': lambda route_ctx, ctx: 'pong'})\n"
    )
    with PluginHarness(descriptor, source=source) as h:
        assert h.route("ping") == "pong"
    with PluginHarness({"id": "inline", "version": "1.0.0"}, source=source, sandbox="native") as h:
        assert h.route("ping") == "pong" and not h.sandboxed


def test_a_given_database_is_kept_and_reused(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    with PluginHarness(HELLO, database=db) as h:
        h.runtime.content.create("posts", {"title": "Hi"})
    assert db.exists()
    with PluginHarness(HELLO, database=db, sandbox=False) as h:
        assert len(h.storage("events")) == 1
        # The same database: the first harness's audit record is there.
        # (and its load: the first harness ran the plugin sandboxed)
        assert [(r["kind"], r["name"]) for r in h.audit()] == [
            ("hook", "content:afterSave"),
            ("load", "load"),
        ]


def test_close_removes_the_temporary_database_and_is_idempotent() -> None:
    h = PluginHarness(HELLO, sandbox=False)
    db = Path(h.database)
    assert db.exists()
    h.close()
    h.close()
    assert h.closed and not db.exists() and not db.parent.exists()
    assert repr(h) == "<PluginHarness 'plugin-hello' native, closed>"
    with pytest.raises(EmDashError) as caught:
        h.route("recent")
    assert str(caught.value) == (
        "The PluginHarness of plugin plugin-hello is closed; create a new one"
    )


def test_a_plugin_that_fails_to_load_leaves_nothing_behind(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    write_plugin: WritePlugin,
    descendants: Any,
    still_running: Any,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = write_plugin("escaper", "import os\nplugin = None\n")
    before = descendants()
    with pytest.raises(SandboxViolation) as caught:
        PluginHarness(path)
    assert str(caught.value).startswith(
        'Plugin escaper was refused during load: Import of "os" is not allowed in sandboxed '
        "plugins."
    )
    assert still_running({p: s for p, s in descendants().items() if p not in before}) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plugins"]


def test_usage_errors_are_clear(write_plugin: WritePlugin) -> None:
    with pytest.raises(EmDashError) as caught:
        PluginHarness(HELLO, sandbox="isolated")  # type: ignore[arg-type]
    assert str(caught.value) == (
        'sandbox must be True, False, "sandboxed" or "native", not \'isolated\''
    )
    with pytest.raises(EmDashError) as caught:
        PluginHarness(HELLO, capabilities="content:read")
    assert str(caught.value) == "capabilities must be a list of names, not one string"
    with pytest.raises(ManifestError) as caught:
        PluginHarness(HELLO, capabilities=["content:everything"])
    assert str(caught.value) == (
        'Invalid plugin "plugin-hello": Invalid capability "content:everything" (did you mean '
        '"content:write"?) in plugin "plugin-hello". Valid capabilities: ' + ", ".join(CAPABILITIES)
    )
    with PluginHarness(HELLO, sandbox=False) as h, pytest.raises(NotFoundError) as missing:
        h.storage("posts")
    assert str(missing.value) == (
        'Plugin plugin-hello declares no storage collection "posts" (declared: events)'
    )
