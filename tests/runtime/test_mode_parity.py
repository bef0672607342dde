"""The same plugin source behaves the same natively and sandboxed (docs/plugin-reference.md, differences between the two modes).

Each test adds one plugin from source text twice — once trusted (in-process), once
untrusted (forked, seccomp-confined worker) — into separate runtimes on real SQLite files,
and compares what the host observes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash

SOURCE = """
from emdash import define_plugin, PluginRouteError

def mutate_only(event, ctx):
    event["content"]["title"] = "mutated in place"

def denied(route_ctx, ctx):
    return ctx.media.list()

def failing(route_ctx, ctx):
    raise PluginRouteError.conflict("already there", {"field": "slug"})

def boom(route_ctx, ctx):
    raise ValueError("bad things")

plugin = define_plugin(
    hooks={"content:beforeSave": mutate_only},
    routes={"denied": denied, "failing": failing, "boom": boom},
)
"""

SECOND = """
from emdash import define_plugin

def replace(event, ctx):
    data = dict(event["content"])
    data["slug"] = "from-" + ctx.plugin.id
    ctx.kv.set("seen", data["title"])
    return data

plugin = define_plugin(hooks={"content:beforeSave": replace})
"""


@pytest.fixture(params=["native", "sandboxed"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[emdash.Runtime, bool]]:
    trusted = request.param == "native"
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        runtime.add_plugin(
            {"id": "first", "capabilities": ["content:write"]},
            source={"plugin.py": SOURCE},
            trusted=trusted,
        )
        runtime.add_plugin(
            {"id": "second", "capabilities": ["content:write"]},
            source={"plugin.py": SECOND},
            trusted=trusted,
        )
        yield runtime, trusted


def test_in_place_mutation_is_not_seen_only_returned_values_count(
    rt: tuple[emdash.Runtime, bool],
) -> None:
    runtime, _ = rt
    event: dict[str, Any] = {"content": {"title": "Hello"}, "collection": "posts", "isNew": True}
    outcome = runtime.run_hook("content:beforeSave", event)
    assert outcome.value == {"title": "Hello", "slug": "from-second"}
    assert event["content"] == {"title": "Hello"}  # the caller's dict is untouched
    assert runtime.store.kv_entries.get("second", "seen") == "Hello"


def test_capability_errors_have_the_same_class_and_text(rt: tuple[emdash.Runtime, bool]) -> None:
    runtime, _ = rt
    with pytest.raises(emdash.CapabilityError) as info:
        runtime.invoke_route("first", "denied")
    assert str(info.value).startswith("Missing capability: media:read")
    assert info.value.plugin_id == "first"


def test_content_write_implies_read_in_both_modes(tmp_path: Path) -> None:
    # "writer" declares content:write; the descriptor adds content:read, so a list works.
    for trusted in (True, False):
        with emdash.Runtime(tmp_path / f"{trusted}.db") as runtime:
            runtime.add_plugin(
                {"id": "writer", "capabilities": ["content:write"]},
                source={
                    "plugin.py": "from emdash import define_plugin\n"
                    "def lst(r, ctx):\n    return ctx.content.list('posts')['items']\n"
                    "plugin = define_plugin(routes={'lst': lst})\n"
                },
                trusted=trusted,
            )
            assert runtime.invoke_route("writer", "lst") == []


def test_route_errors_cross_the_boundary_unchanged(rt: tuple[emdash.Runtime, bool]) -> None:
    runtime, _ = rt
    with pytest.raises(emdash.PluginRouteError) as info:
        runtime.invoke_route("first", "failing")
    assert (info.value.code, info.value.status, str(info.value), info.value.details) == (
        "CONFLICT",
        409,
        "already there",
        {"field": "slug"},
    )
    with pytest.raises(emdash.PluginError) as err:
        runtime.invoke_route("first", "boom")
    assert err.value.error_type == "ValueError"
    assert err.value.plugin_id == "first"
    assert "bad things" in str(err.value)


ANNOTATED = """
from emdash import JSON, Context, HookName, define_plugin

HOOK: HookName = "content:beforeSave"

def stamp(event: JSON, ctx: Context) -> JSON:
    data = dict(event["content"])
    data["slug"] = "annotated"
    return data

plugin = define_plugin(hooks={HOOK: stamp})
"""


@pytest.mark.parametrize("trusted", [True, False], ids=["native", "sandboxed"])
def test_plugin_facing_type_names_import_in_both_modes(tmp_path: Path, trusted: bool) -> None:
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        runtime.add_plugin(
            {"id": "typed", "capabilities": ["content:write"]},
            source={"plugin.py": ANNOTATED},
            trusted=trusted,
        )
        outcome = runtime.run_hook(
            "content:beforeSave", {"content": {"title": "t"}, "collection": "posts", "isNew": True}
        )
        assert outcome.value == {"title": "t", "slug": "annotated"}
