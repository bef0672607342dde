"""One invocation: timeouts, errors, atomic writes, the ctx boundary, async, nesting, audit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from emdash import (
    BridgeError,
    CapabilityError,
    HookConfig,
    HookTimeoutError,
    PluginError,
)
from emdash._runtime._runtime import Runtime

from .conftest import AddPlugin

SAVE = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}
READ = ["content:read"]
EVENTS = {"events": {"indexes": ["n"]}}


def test_timeout_with_continue_is_recorded(rt: Runtime, add: AddPlugin) -> None:
    def slow(event: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.1)

    add(
        "slow",
        hooks={"content:afterSave": HookConfig(slow, timeout_ms=30, error_policy="continue")},
        capabilities=READ,
    )
    outcome = rt.run_hook("content:afterSave", SAVE)
    [result] = outcome.results
    assert not result.success
    assert isinstance(result.error, HookTimeoutError)
    assert str(result.error) == (
        "Hook timeout after 30ms (plugin slow, hook:content:afterSave); the handler was "
        "interrupted (or returned late), its ctx calls past the deadline were refused and its "
        "writes rolled back. Raise the hook's timeout_ms if it needs longer."
    )
    assert result.error.plugin_id == "slow"


def test_timeout_with_abort_raises(rt: Runtime, add: AddPlugin) -> None:
    def slow(event: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.1)

    add(
        "slow",
        hooks={"content:beforeSave": HookConfig(slow, timeout_ms=30)},
        capabilities=["content:write"],
    )
    with pytest.raises(HookTimeoutError, match=r"^Hook timeout after 30ms \(plugin slow, "):
        rt.run_hook("content:beforeSave", SAVE)


def test_timed_out_handler_loses_its_writes_and_its_ctx(rt: Runtime, add: AddPlugin) -> None:
    # The handler runs inline on the caller's thread: a runaway loop is interrupted by the
    # watchdog, its write is rolled back, and the ctx it kept is closed for good.
    kept: list[Any] = []

    def slow(event: dict[str, Any], ctx: Any) -> None:
        kept.append(ctx)
        ctx.kv.set("before", 1)
        while True:
            pass

    add(
        "slow",
        hooks={"content:afterSave": HookConfig(slow, timeout_ms=30, error_policy="continue")},
        capabilities=READ,
    )
    outcome = rt.run_hook("content:afterSave", SAVE)
    assert isinstance(outcome.results[0].error, HookTimeoutError)
    rt.store.kv_entries.set("other", "k", 1)  # the store is free again
    assert rt.store.kv_entries.get("slow", "before") is None
    with pytest.raises(BridgeError) as info:
        kept[0].kv.set("after", 2)
    assert str(info.value) == (
        "Plugin slow made a ctx call (kv/set) after its hook:content:afterSave invocation "
        "ended (it timed out); a handler may only use ctx while it runs"
    )
    assert rt.store.kv_entries.get("slow", "after") is None


def test_failed_invocation_rolls_back_kv_and_storage(rt: Runtime, add: AddPlugin) -> None:
    def writes_then_fails(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("k", "v")
        ctx.storage["events"].put("e1", {"n": 1})
        raise ValueError("half way")

    def writes(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("k", "kept")
        ctx.storage["events"].put("e1", {"n": 2})

    add(
        "bad",
        hooks={"content:afterSave": HookConfig(writes_then_fails, error_policy="continue")},
        capabilities=READ,
        storage=EVENTS,
    )
    add("good", hooks={"content:afterSave": writes}, capabilities=READ, storage=EVENTS)
    outcome = rt.run_hook("content:afterSave", SAVE)
    assert [r.success for r in outcome.results] == [False, True]
    assert rt.store.kv_entries.get("bad", "k") is None
    assert rt.store.plugin_documents.get("bad", "events", "e1") is None
    assert rt.store.kv_entries.get("good", "k") == "kept"
    assert rt.store.plugin_documents.get("good", "events", "e1") == {"n": 2}


def test_plugin_exception_becomes_plugin_error(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise ValueError("bad value")

    add("boom", hooks={"content:afterSave": boom}, capabilities=READ)
    with pytest.raises(PluginError) as info:
        rt.run_hook("content:afterSave", SAVE)
    err = info.value
    assert err.message == "Plugin boom raised ValueError during hook:content:afterSave: bad value"
    assert (err.plugin_id, err.hook, err.route, err.error_type) == (
        "boom",
        "content:afterSave",
        None,
        "ValueError",
    )
    assert err.traceback_text is not None
    assert 'raise ValueError("bad value")' in err.traceback_text


def test_system_exit_in_a_handler_does_not_escape(rt: Runtime, add: AddPlugin) -> None:
    def leave(event: dict[str, Any], ctx: Any) -> None:
        raise SystemExit(3)

    add("quitter", hooks={"content:afterSave": leave}, capabilities=READ)
    with pytest.raises(PluginError) as info:
        rt.run_hook("content:afterSave", SAVE)
    assert info.value.error_type == "SystemExit"


def test_bridge_errors_keep_their_class(rt: Runtime, add: AddPlugin) -> None:
    def peek(event: dict[str, Any], ctx: Any) -> None:
        ctx.media.get("m1")  # needs media:read, which this plugin lacks

    add("nosy", hooks={"content:afterSave": peek}, capabilities=READ)
    with pytest.raises(CapabilityError) as info:
        rt.run_hook("content:afterSave", SAVE)
    assert info.value.capability == "media:read"
    assert str(info.value).startswith("Missing capability: media:read")


def test_ctx_is_closed_after_the_handler_returns(rt: Runtime, add: AddPlugin) -> None:
    kept: list[Any] = []
    add("keeper", hooks={"content:afterSave": lambda e, ctx: kept.append(ctx)}, capabilities=READ)
    rt.run_hook("content:afterSave", SAVE)
    with pytest.raises(BridgeError) as info:
        kept[0].kv.get("k")
    assert str(info.value) == (
        "Plugin keeper made a ctx call (kv/get) after its hook:content:afterSave invocation "
        "ended; a handler may only use ctx while it runs"
    )


def test_each_invocation_gets_a_fresh_ctx(rt: Runtime, add: AddPlugin) -> None:
    kept: list[Any] = []
    add("twice", hooks={"content:afterSave": lambda e, ctx: kept.append(ctx)}, capabilities=READ)
    rt.run_hook("content:afterSave", SAVE)
    rt.run_hook("content:afterSave", SAVE)
    assert kept[0] is not kept[1]
    assert kept[1].plugin.id == "twice"


def test_async_handlers_run_to_completion(rt: Runtime, add: AddPlugin) -> None:
    async def before(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        ctx.kv.set("async", True)
        return {**event["content"], "async": True}

    add("aio", hooks={"content:beforeSave": before}, capabilities=["content:write"])
    outcome = rt.run_hook("content:beforeSave", SAVE)
    assert outcome.value == {"id": "c1", "async": True}
    assert rt.store.kv_entries.get("aio", "async") is True


def test_async_handler_errors_become_plugin_errors(rt: Runtime, add: AddPlugin) -> None:
    async def boom(event: dict[str, Any], ctx: Any) -> None:
        await asyncio.sleep(0)
        raise LookupError("gone")

    add("aio", hooks={"content:afterSave": boom}, capabilities=READ)
    with pytest.raises(
        PluginError, match="^Plugin aio raised LookupError during hook:content:afterSave: gone$"
    ):
        rt.run_hook("content:afterSave", SAVE)


def test_nested_invocation_shares_the_outer_transaction(rt: Runtime, add: AddPlugin) -> None:
    # The outer handler writes (taking the store's write lock on its thread), then fires
    # another hook whose handler writes too: it must run inline, not wait for the lock.
    def inner(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("inner", event["media"]["id"])

    def outer(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("outer", 1)
        rt.run_hook("media:afterUpload", {"media": {"id": "m1"}})
        if event["content"]["id"] == "fail":
            raise RuntimeError("outer failed after the nested hook")

    add(
        "inner",
        hooks={"media:afterUpload": HookConfig(inner, timeout_ms=2000)},
        capabilities=["media:read"],
    )
    add(
        "outer",
        hooks={"content:afterSave": HookConfig(outer, timeout_ms=2000, error_policy="continue")},
        capabilities=READ,
    )
    ok = rt.run_hook("content:afterSave", SAVE)
    assert ok.ok
    assert rt.store.kv_entries.get("outer", "outer") == 1
    assert rt.store.kv_entries.get("inner", "inner") == "m1"

    rt.store.kv_entries.delete("outer", "outer")
    rt.store.kv_entries.delete("inner", "inner")
    failed = rt.run_hook("content:afterSave", {**SAVE, "content": {"id": "fail"}})
    assert not failed.ok
    # The nested invocation joined the outer one, so the outer failure undid both.
    assert rt.store.kv_entries.get("outer", "outer") is None
    assert rt.store.kv_entries.get("inner", "inner") is None


def test_every_invocation_is_audited(rt: Runtime, add: AddPlugin) -> None:
    def slow(event: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.1)

    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise ValueError("x")

    add("veto", hooks={"content:beforeDelete": lambda e, ctx: False}, capabilities=READ)
    add(
        "ok",
        hooks={"content:afterSave": lambda e, ctx: None, "cron": lambda e, ctx: None},
        capabilities=READ,
    )
    add(
        "err",
        hooks={"content:afterSave": HookConfig(boom, error_policy="continue")},
        capabilities=READ,
    )
    add(
        "slow",
        hooks={"content:afterSave": HookConfig(slow, timeout_ms=20, error_policy="continue")},
        capabilities=READ,
    )
    rt.run_hook("content:beforeDelete", {"id": "c1", "collection": "posts"})
    rt.run_hook("content:afterSave", SAVE)
    rt.invoke_cron("ok", {"name": "t"})
    rows = [
        (r["pluginId"], r["kind"], r["name"], r["outcome"], r["error"])
        for r in reversed(rt.audit_log(limit=10))
    ]
    assert rows == [
        ("veto", "hook", "content:beforeDelete", "vetoed", None),
        ("ok", "hook", "content:afterSave", "ok", None),
        (
            "err",
            "hook",
            "content:afterSave",
            "error",
            "Plugin err raised ValueError during hook:content:afterSave: x",
        ),
        (
            "slow",
            "hook",
            "content:afterSave",
            "timeout",
            "Hook timeout after 20ms (plugin slow, hook:content:afterSave); the handler was "
            "interrupted (or returned late), its ctx calls past the deadline were refused and its "
            "writes rolled back. Raise the hook's timeout_ms if it needs longer.",
        ),
        ("ok", "cron", "cron", "ok", None),
    ]
    assert all(r["cpuMs"] is not None for r in rt.audit_log(limit=10) if r["outcome"] == "ok")


def test_nested_handler_that_overruns_is_timed_out_on_return(rt: Runtime, add: AddPlugin) -> None:
    # A nested invocation runs inline (it cannot be interrupted); its deadline is judged
    # when it returns, and its writes are rolled back without touching the outer ones.
    def inner(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("inner", True)
        time.sleep(0.1)

    results: list[Any] = []

    def outer(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("outer", True)
        results.extend(rt.run_hook("media:afterUpload", {"media": {"id": "m"}}).results)

    add(
        "inner",
        hooks={"media:afterUpload": HookConfig(inner, timeout_ms=20)},
        capabilities=["media:read"],
    )
    add("outer", hooks={"content:afterSave": HookConfig(outer, timeout_ms=3000)}, capabilities=READ)
    assert rt.run_hook("content:afterSave", SAVE).ok
    [nested] = results
    assert isinstance(nested.error, HookTimeoutError)
    assert str(nested.error).startswith(
        "Hook timeout after 20ms (plugin inner, hook:media:afterUpload)"
    )
    assert rt.store.kv_entries.get("inner", "inner") is None
    assert rt.store.kv_entries.get("outer", "outer") is True
