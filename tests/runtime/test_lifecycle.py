"""Lifecycle hooks fire exactly once per transition, remembered by the database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from emdash import ManifestError, NotFoundError, PluginDefinition, define_plugin
from emdash._runtime._runtime import Runtime

LIFECYCLE = ("plugin:install", "plugin:activate", "plugin:deactivate", "plugin:uninstall")
SAVE = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}


def recording(calls: list[tuple[str, Any]]) -> PluginDefinition:
    def make(name: str) -> Any:
        return lambda event, ctx: calls.append((name.removeprefix("plugin:"), event))

    hooks: dict[str, Any] = {name: make(name) for name in LIFECYCLE}
    hooks["content:afterSave"] = lambda event, ctx: calls.append(("save", None))
    return define_plugin(hooks=hooks)


def add(rt: Runtime, definition: PluginDefinition, pid: str = "life", **kw: Any) -> None:
    rt.add_plugin(
        {"id": pid, "capabilities": ["content:read"], "storage": {"notes": {"indexes": ["n"]}}},
        source=definition,
        trusted=True,
        **kw,
    )


def names(calls: list[tuple[str, Any]]) -> list[str]:
    return [c[0] for c in calls]


def test_first_sight_installs_then_activates_once(db_path: Path) -> None:
    calls: list[tuple[str, Any]] = []
    with Runtime(db_path) as rt:
        add(rt, recording(calls))
        assert calls == [("install", {}), ("activate", {})]
        rt.run_hook("content:afterSave", SAVE)
        assert names(calls)[-1] == "save"
    calls.clear()
    with Runtime(db_path) as rt:  # a later boot: already installed and enabled
        add(rt, recording(calls))
        assert calls == []
        assert rt.store.plugin_registry.get("life") is not None


def test_disable_and_enable_fire_once_per_transition(db_path: Path) -> None:
    calls: list[tuple[str, Any]] = []
    with Runtime(db_path) as rt:
        add(rt, recording(calls))
        calls.clear()
        rt.disable_plugin("life")
        rt.disable_plugin("life")
        assert names(calls) == ["deactivate"]
        rt.run_hook("content:afterSave", SAVE)
        assert names(calls) == ["deactivate"]  # a disabled plugin is not in the pipeline
        rt.enable_plugin("life")
        rt.enable_plugin("life")
        assert names(calls) == ["deactivate", "activate"]
        rt.run_hook("content:afterSave", SAVE)
        assert names(calls) == ["deactivate", "activate", "save"]


def test_disabled_state_is_remembered_across_restarts(db_path: Path) -> None:
    calls: list[tuple[str, Any]] = []
    with Runtime(db_path) as rt:
        add(rt, recording(calls))
        rt.disable_plugin("life")
    calls.clear()
    with Runtime(db_path) as rt:
        add(rt, recording(calls))  # enabled=None: keep what the database says
        assert calls == []
        assert rt.get_plugin("life").enabled is False
        assert rt.run_hook("content:afterSave", SAVE).results == []
    with Runtime(db_path) as rt:
        add(rt, recording(calls), enabled=True)  # the site config says enabled: a transition
        assert names(calls) == ["activate"]
        record = rt.store.plugin_registry.get("life")
        assert record is not None and record["enabled"] is True


def test_adding_disabled_installs_without_activating(rt: Runtime) -> None:
    calls: list[tuple[str, Any]] = []
    add(rt, recording(calls), enabled=False)
    assert names(calls) == ["install"]
    assert rt.pipeline.plugin_ids == []
    assert rt.get_plugin("life")["enabled"] is False


def test_remove_deactivates_then_uninstalls_and_keeps_data(rt: Runtime) -> None:
    calls: list[tuple[str, Any]] = []
    add(rt, recording(calls))
    rt.store.kv_entries.set("life", "k", 1)
    rt.store.plugin_documents.put("life", "notes", "n1", {"n": 1})
    calls.clear()
    rt.remove_plugin("life")
    assert calls == [("deactivate", {}), ("uninstall", {"deleteData": False})]
    assert rt.store.kv_entries.get("life", "k") == 1
    assert rt.store.plugin_documents.get("life", "notes", "n1") == {"n": 1}
    assert rt.store.plugin_registry.get("life") is None
    with pytest.raises(NotFoundError):
        rt.get_plugin("life")
    calls.clear()
    add(rt, recording(calls))  # forgotten: it is new again
    assert names(calls) == ["install", "activate"]


def test_remove_of_a_disabled_plugin_only_uninstalls(rt: Runtime) -> None:
    calls: list[tuple[str, Any]] = []
    add(rt, recording(calls), enabled=False)
    calls.clear()
    rt.remove_plugin("life")
    assert names(calls) == ["uninstall"]


def test_remove_with_delete_data_deletes_kv_storage_and_indexes(rt: Runtime) -> None:
    calls: list[tuple[str, Any]] = []
    add(rt, recording(calls))
    add(rt, define_plugin(), pid="neighbour")
    for pid in ("life", "neighbour"):
        rt.store.kv_entries.set(pid, "k", pid)
        rt.store.plugin_documents.put(pid, "notes", "n1", {"n": 1})
    assert rt.store.plugin_documents.indexes("life") != []
    rt.remove_plugin("life", delete_data=True)
    assert calls[-1] == ("uninstall", {"deleteData": True})
    assert rt.store.kv_entries.get("life", "k") is None
    assert rt.store.plugin_documents.get("life", "notes", "n1") is None
    assert rt.store.plugin_documents.indexes("life") == []
    assert rt.store.kv_entries.get("neighbour", "k") == "neighbour"
    assert rt.store.plugin_documents.get("neighbour", "notes", "n1") == {"n": 1}


def test_cron_tasks_follow_the_plugin_state(rt: Runtime) -> None:
    add(rt, define_plugin(hooks={"cron": lambda e, ctx: None}), pid="sched")
    rt.store.cron_tasks.upsert(
        "sched", "weekly", "@weekly", is_oneshot=False, next_run_at="2030-01-01T00:00:00.000Z"
    )
    assert [t["name"] for t in rt.store.cron_tasks.list("sched")] == ["weekly"]
    rt.disable_plugin("sched")
    assert rt.store.cron_tasks.list("sched") == []
    rt.enable_plugin("sched")
    assert [t["name"] for t in rt.store.cron_tasks.list("sched")] == ["weekly"]
    rt.remove_plugin("sched")
    rt.store.plugin_registry.upsert("sched", version="0.0.0", enabled=True, trusted=True)
    rt.store.cron_tasks.set_enabled("sched", True)
    assert rt.store.cron_tasks.list("sched") == []


def test_lifecycle_failure_does_not_undo_the_transition(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("half", True)
        raise RuntimeError("cannot set up")

    with caplog.at_level(logging.ERROR):
        rt.add_plugin(
            {"id": "fragile"}, source=define_plugin(hooks={"plugin:install": boom}), trusted=True
        )
    assert rt.get_plugin("fragile").enabled
    assert rt.store.kv_entries.get("fragile", "half") is None  # the failed invocation rolled back
    assert (
        "Plugin fragile: plugin:install failed: Plugin fragile raised RuntimeError during "
        "hook:plugin:install: cannot set up (the plugin's state changed anyway)"
    ) in caplog.messages
    [row] = [r for r in rt.audit_log() if r["pluginId"] == "fragile"]
    assert (row["kind"], row["name"], row["outcome"]) == ("lifecycle", "plugin:install", "error")


def test_lifecycle_handlers_get_a_working_ctx(rt: Runtime, tmp_path: Path) -> None:
    code = tmp_path / "setup_plugin"
    code.mkdir()
    (code / "plugin.py").write_text(
        "from emdash import define_plugin\n"
        "def install(event, ctx):\n"
        "    ctx.kv.set('installed-by', ctx.plugin.id)\n"
        "def uninstall(event, ctx):\n"
        "    ctx.log.info('bye', {'deleteData': event['deleteData']})\n"
        "plugin = define_plugin(hooks={'plugin:install': install, 'plugin:uninstall': uninstall})\n"
    )
    rt.add_plugin({"id": "setup", "entrypoint": str(code)}, trusted=True)
    assert rt.store.kv_entries.get("setup", "installed-by") == "setup"
    rt.remove_plugin("setup")
    rows = [(r["name"], r["outcome"]) for r in reversed(rt.audit_log()) if r["pluginId"] == "setup"]
    assert rows == [("plugin:install", "ok"), ("plugin:uninstall", "ok")]


def test_adding_twice_is_refused(rt: Runtime) -> None:
    add(rt, define_plugin())
    with pytest.raises(ManifestError) as info:
        add(rt, define_plugin())
    assert str(info.value) == (
        'Plugin "life" is already added; remove_plugin("life") first to replace it'
    )


def test_unknown_plugin_ids_are_named(rt: Runtime) -> None:
    add(rt, define_plugin())
    for call in (rt.get_plugin, rt.enable_plugin, rt.disable_plugin, rt.remove_plugin):
        with pytest.raises(NotFoundError) as info:
            call("ghost")
        assert str(info.value) == 'No plugin "ghost" in this runtime. Added plugins: life'
