"""Exclusive hooks: the 5-step resolution, persistence, dispatch and broadcast filtering."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from emdash import (
    BridgeError,
    HookConfig,
    HookTimeoutError,
    NotFoundError,
    PluginError,
    define_plugin,
)
from emdash._runtime._runtime import Runtime

from .conftest import AddPlugin

MOD = "comment:moderate"
KEY = "emdash:exclusive_hook:comment:moderate"
USERS = ["users:read"]
EVENT = {
    "comment": {"body": "hi"},
    "metadata": {},
    "collectionSettings": {},
    "priorApprovedCount": 0,
}


def moderator(status: str) -> Any:
    return HookConfig(lambda event, ctx: {"status": status, "by": ctx.plugin.id}, exclusive=True)


def add_mod(add: AddPlugin, pid: str, status: str = "approved", **desc: Any) -> None:
    add(pid, hooks={MOD: moderator(status)}, capabilities=USERS, **desc)


def test_single_provider_is_auto_selected_and_persisted(rt: Runtime, add: AddPlugin) -> None:
    add_mod(add, "mod-a")
    assert rt.selected_provider(MOD) == "mod-a"
    assert rt.store.options.get(KEY) == "mod-a"
    outcome = rt.invoke_exclusive(MOD, EVENT)
    assert outcome is not None
    assert (outcome.plugin_id, outcome.result, outcome.error) == (
        "mod-a",
        {"status": "approved", "by": "mod-a"},
        None,
    )
    assert outcome.ok


def test_no_provider_means_no_outcome(rt: Runtime) -> None:
    assert rt.invoke_exclusive(MOD, EVENT) is None
    assert rt.exclusive_hooks() == {}


def test_keeps_auto_selected_provider_when_a_second_provider_activates(
    rt: Runtime, add: AddPlugin
) -> None:
    add_mod(add, "builtin")
    add_mod(add, "ai-mod", preferred=[MOD])
    assert rt.selected_provider(MOD) == "builtin"
    assert rt.exclusive_hooks() == {
        MOD: {"providers": ["builtin", "ai-mod"], "selected": "builtin"}
    }
    outcome = rt.invoke_exclusive(MOD, EVENT)
    assert outcome is not None and outcome.plugin_id == "builtin"


def test_admin_selection_survives_restart(db_path: Path) -> None:
    plugins = {pid: define_plugin(hooks={MOD: moderator(pid)}) for pid in ("mod-a", "mod-b")}

    def boot(rt: Runtime) -> None:
        for pid, definition in plugins.items():  # one by one, as a site boots
            rt.add_plugin({"id": pid, "capabilities": USERS}, source=definition, trusted=True)

    with Runtime(db_path) as rt:
        boot(rt)
        assert rt.selected_provider(MOD) == "mod-a"
        rt.select_provider(MOD, "mod-b")
    with Runtime(db_path) as rt:
        boot(rt)
        assert rt.selected_provider(MOD) == "mod-b"
        assert rt.store.options.get(KEY) == "mod-b"
        outcome = rt.invoke_exclusive(MOD, EVENT)
        assert outcome is not None and outcome.result["status"] == "mod-b"


def test_stale_selection_is_replaced_by_the_remaining_provider(rt: Runtime, add: AddPlugin) -> None:
    add_mod(add, "mod-a")
    add_mod(add, "mod-b")
    rt.remove_plugin("mod-a")
    assert rt.selected_provider(MOD) == "mod-b"
    assert rt.store.options.get(KEY) == "mod-b"


def test_preferred_hint_picks_among_several(rt: Runtime, add: AddPlugin) -> None:
    add_mod(add, "mod-a")
    add_mod(add, "mod-b")
    add_mod(add, "mod-c", preferred=[MOD])
    rt.remove_plugin("mod-a")
    assert rt.selected_provider(MOD) == "mod-c"
    assert rt.store.options.get(KEY) == "mod-c"


def test_without_hints_the_selection_is_cleared(rt: Runtime, add: AddPlugin) -> None:
    add_mod(add, "mod-a")
    add_mod(add, "mod-b")
    add_mod(add, "mod-c")
    rt.disable_plugin("mod-a")
    assert rt.selected_provider(MOD) is None
    assert rt.store.options.get(KEY) is None
    assert rt.invoke_exclusive(MOD, EVENT) is None
    assert rt.exclusive_hooks()[MOD] == {"providers": ["mod-b", "mod-c"], "selected": None}


def test_select_provider_checks_hook_and_plugin(rt: Runtime, add: AddPlugin) -> None:
    add_mod(add, "mod-a")
    add("bystander", capabilities=USERS)
    with pytest.raises(NotFoundError) as info:
        rt.select_provider("email:deliver", "mod-a")
    assert str(info.value) == (
        '"email:deliver" is not an exclusive hook of any enabled plugin. Exclusive hooks now: '
        "comment:moderate"
    )
    with pytest.raises(BridgeError) as err:
        rt.select_provider(MOD, "bystander")
    assert str(err.value) == (
        'Plugin "bystander" does not provide the exclusive hook "comment:moderate". '
        "Choose one of: mod-a"
    )
    rt.select_provider(MOD, None)
    assert rt.selected_provider(MOD) is None
    assert rt.store.options.get(KEY) is None


def test_exclusive_handlers_leave_the_broadcast_while_selected(rt: Runtime, add: AddPlugin) -> None:
    ran: list[str] = []
    add(
        "solo",
        hooks={"content:afterSave": HookConfig(lambda e, ctx: ran.append("solo"), exclusive=True)},
        capabilities=["content:read"],
    )
    add(
        "plain",
        hooks={"content:afterSave": lambda e, ctx: ran.append("plain")},
        capabilities=["content:read"],
    )
    event = {"content": {"id": "c"}, "collection": "posts", "isNew": True}
    assert rt.selected_provider("content:afterSave") == "solo"
    rt.run_hook("content:afterSave", event)
    assert ran == ["plain"]
    ran.clear()
    rt.invoke_exclusive("content:afterSave", event)
    assert ran == ["solo"]
    ran.clear()
    rt.select_provider("content:afterSave", None)  # no selection: it broadcasts again
    rt.run_hook("content:afterSave", event)
    assert ran == ["solo", "plain"]


def test_handler_of_an_exclusive_family_hook_is_a_provider_without_the_flag(
    rt: Runtime, add: AddPlugin
) -> None:
    add("plain-mod", hooks={MOD: lambda e, ctx: {"status": "spam"}}, capabilities=USERS)
    outcome = rt.invoke_exclusive(MOD, EVENT)
    assert outcome is not None and outcome.result == {"status": "spam"}


def test_provider_failures_are_returned_not_raised(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise ValueError("model offline")

    add("broken", hooks={MOD: HookConfig(boom, exclusive=True)}, capabilities=USERS)
    outcome = rt.invoke_exclusive(MOD, EVENT)
    assert outcome is not None
    assert outcome.result is None and not outcome.ok
    assert isinstance(outcome.error, PluginError)
    assert (
        outcome.error.message
        == "Plugin broken raised ValueError during hook:comment:moderate: model offline"
    )


def test_provider_timeout_is_returned_not_raised(rt: Runtime, add: AddPlugin) -> None:
    def slow(event: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.1)

    add("slow", hooks={MOD: HookConfig(slow, exclusive=True, timeout_ms=20)}, capabilities=USERS)
    outcome = rt.invoke_exclusive(MOD, EVENT)
    assert outcome is not None
    assert isinstance(outcome.error, HookTimeoutError)


def test_run_hook_on_an_exclusive_hook_runs_the_selected_provider(
    rt: Runtime, add: AddPlugin
) -> None:
    add_mod(add, "mod-a", status="pending")
    outcome = rt.run_hook(MOD, EVENT)
    assert outcome.value == {"status": "pending", "by": "mod-a"}
    assert [(r.plugin_id, r.success) for r in outcome.results] == [("mod-a", True)]
    assert rt.run_hook("email:deliver", {"message": {}, "source": "admin"}).results == []
