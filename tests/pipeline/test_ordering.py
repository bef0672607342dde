"""Handler order: dependencies first, then priority ascending, then registration order."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from emdash import HookConfig
from emdash._runtime._runtime import Runtime

from .conftest import AddPlugin

HOOK = "content:afterSave"
EVENT = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}


def recorder(calls: list[str], name: str) -> Any:
    def handler(event: dict[str, Any], ctx: Any) -> None:
        calls.append(name)

    return handler


def add_all(add: AddPlugin, calls: list[str], specs: list[tuple[str, float, list[str]]]) -> None:
    for pid, priority, deps in specs:
        add(
            pid,
            hooks={HOOK: HookConfig(recorder(calls, pid), priority=priority, dependencies=deps)},
            capabilities=["content:read"],
        )


def test_lower_priority_runs_first(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    add_all(add, calls, [("late", 200, []), ("early", 50, []), ("middle", 100, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["early", "middle", "late"]
    assert rt.pipeline.handlers(HOOK) == ["early", "middle", "late"]


def test_equal_priorities_keep_registration_order(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    add_all(add, calls, [("zeta", 100, []), ("alpha", 100, []), ("mid", 100, [])])
    outcome = rt.run_hook(HOOK, EVENT)
    assert calls == ["zeta", "alpha", "mid"]
    assert [r.plugin_id for r in outcome.results] == ["zeta", "alpha", "mid"]


def test_dependency_runs_first_despite_lower_priority(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    add_all(add, calls, [("dependent", 10, ["audit"]), ("audit", 200, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["audit", "dependent"]


def test_priority_chooses_among_ready_handlers(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    # b waits for a; of the ready ones (a, c) c has the lower priority.
    add_all(add, calls, [("a", 100, []), ("b", 50, ["a"]), ("c", 10, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["c", "a", "b"]


def test_cycle_falls_back_to_priority_for_all_remaining(
    rt: Runtime, add: AddPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    with caplog.at_level(logging.WARNING):
        add_all(add, calls, [("p", 20, ["q"]), ("q", 10, ["p"]), ("r", 5, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["r", "q", "p"]
    assert (
        "Hook dependency cycle or missing dependency detected among plugins: p, q "
        '(hook "content:afterSave"). Falling back to priority order.'
    ) in caplog.messages


def test_missing_dependency_affects_every_remaining_handler(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    # s needs a plugin that is not loaded; t needs s. Nothing is ready, so all remaining
    # handlers fall back to priority order: t (5) now runs before its dependency s (10).
    add_all(add, calls, [("s", 10, ["ghost"]), ("t", 5, ["s"]), ("u", 30, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["u", "t", "s"]


def test_dependency_on_disabled_plugin_counts_as_missing(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    add_all(add, calls, [("base", 100, []), ("child", 10, ["base"]), ("other", 50, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["other", "base", "child"]
    calls.clear()
    rt.disable_plugin("base")
    rt.run_hook(HOOK, EVENT)
    assert calls == ["other", "child"]


def test_fallback_sort_is_stable(rt: Runtime, add: AddPlugin) -> None:
    calls: list[str] = []
    add_all(add, calls, [("m1", 100, ["nope"]), ("m2", 100, ["nope"]), ("m3", 100, [])])
    rt.run_hook(HOOK, EVENT)
    assert calls == ["m3", "m1", "m2"]
