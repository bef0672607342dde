"""Sandboxed and native plugins share one pipeline: same ordering, family rules and audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emdash import (
    CpuLimitExceeded,
    HookConfig,
    HookTimeoutError,
    Limits,
    MemoryLimitExceeded,
    PluginError,
    SubrequestLimitExceeded,
    WallTimeExceeded,
    define_plugin,
)
from emdash._runtime._pipeline import classify_error
from emdash._runtime._runtime import Runtime

SANDBOXED_TAGGER = """
from emdash import define_plugin, HookConfig

def tag(event, ctx):
    content = dict(event["content"])
    content["tags"] = list(content.get("tags", [])) + ["sandboxed"]
    return content

def spin(event, ctx):
    while True:
        pass

def slow(event, ctx):
    n = 0
    while True:
        n += 1

plugin = define_plugin(
    hooks={
        "content:beforeSave": HookConfig(tag, priority=20),
        "content:afterSave": HookConfig(slow, timeout_ms=100, error_policy="continue"),
    },
    routes={"spin": spin},
)
"""


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    limits = Limits(cpu_ms=200, memory_mb=128, wall_ms=5000, subrequests=10)
    with Runtime(tmp_path / "site.db", limits=limits, worker_pool_size=1) as runtime:
        yield runtime


def native_tagger(name: str) -> Any:
    def tag(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {**event["content"], "tags": [*event["content"].get("tags", []), name]}

    return tag


def test_sandboxed_and_native_handlers_chain_in_priority_order(rt: Runtime) -> None:
    rt.add_plugin(
        {"id": "first", "capabilities": ["content:write"]},
        trusted=True,
        source=define_plugin(
            hooks={"content:beforeSave": HookConfig(native_tagger("first"), priority=10)}
        ),
    )
    rt.add_plugin({"id": "boxed", "capabilities": ["content:write"]}, source=SANDBOXED_TAGGER)
    rt.add_plugin(
        {"id": "last", "capabilities": ["content:write"]},
        trusted=True,
        source=define_plugin(
            hooks={"content:beforeSave": HookConfig(native_tagger("last"), priority=30)}
        ),
    )
    assert rt.get_plugin("boxed").sandboxed
    outcome = rt.run_hook(
        "content:beforeSave", {"content": {"title": "t"}, "collection": "posts", "isNew": True}
    )
    assert outcome.value == {"title": "t", "tags": ["first", "sandboxed", "last"]}
    boxed = outcome.results[1]
    assert boxed.plugin_id == "boxed" and boxed.cpu_ms is not None


def test_sandboxed_timeout_and_cpu_limit_are_audited(rt: Runtime) -> None:
    rt.add_plugin({"id": "boxed", "capabilities": ["content:write"]}, source=SANDBOXED_TAGGER)
    outcome = rt.run_hook(
        "content:afterSave", {"content": {"id": "c"}, "collection": "posts", "isNew": True}
    )
    [result] = outcome.results
    # CPU time cannot run ahead of wall time, so the 100 ms hook timeout comes first.
    assert isinstance(result.error, HookTimeoutError)
    assert str(result.error).startswith(
        "Hook timeout after 100ms (plugin boxed, hook:content:afterSave)"
    )
    with pytest.raises(CpuLimitExceeded) as info:
        rt.invoke_route("boxed", "spin")
    assert str(info.value).startswith("Plugin boxed exceeded CPU limit of 200ms during route:spin.")
    newest = rt.audit_log(limit=1)[0]
    assert (newest["kind"], newest["name"], newest["outcome"], newest["limit"]) == (
        "route",
        "spin",
        "limit",
        "cpu_ms",
    )


def test_classify_error_names_each_limit() -> None:
    assert classify_error(HookTimeoutError("t")) == ("timeout", None)
    assert classify_error(CpuLimitExceeded("c")) == ("limit", "cpu_ms")
    assert classify_error(MemoryLimitExceeded("m")) == ("limit", "memory_mb")
    assert classify_error(WallTimeExceeded("w")) == ("limit", "wall_ms")
    assert classify_error(SubrequestLimitExceeded("s")) == ("limit", "subrequests")
    assert classify_error(PluginError("p")) == ("error", None)
