"""Hook registration is gated by capabilities, and page fragments by trust."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emdash import define_plugin
from emdash._runtime._runtime import Runtime
from emdash._shared._errors import ManifestError

from .conftest import AddPlugin

SAVE = {"content": {"title": "x"}, "collection": "posts", "isNew": True}


def test_hook_without_its_capability_is_refused_at_add(
    rt: Runtime, add: AddPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused with what to add, not "added" and then silently skipped at every rebuild."""
    with caplog.at_level(logging.WARNING), pytest.raises(ManifestError) as info:
        add(
            "reader",
            hooks={"content:beforeSave": lambda e, ctx: None},
            capabilities=["content:read"],
        )
    assert info.value.message == (
        'Plugin reader cannot be added: hook content:beforeSave needs capability "content:write": '
        "add it to capabilities in emdash-plugin.toml, or remove the hook"
    )
    assert info.value.plugin_id == "reader"
    assert [p["id"] for p in rt.plugins()] == []
    assert caplog.messages == []


@pytest.mark.parametrize(
    ("hook", "capability"),
    [
        ("content:afterSave", "content:read"),
        ("media:beforeUpload", "media:write"),
        ("media:afterUpload", "media:read"),
        ("comment:afterCreate", "users:read"),
        ("email:beforeSend", "hooks.email-events:register"),
        ("email:deliver", "hooks.email-transport:register"),
        ("page:fragments", "hooks.page-fragments:register"),
    ],
)
def test_each_gated_hook_names_its_capability(
    rt: Runtime, add: AddPlugin, hook: str, capability: str
) -> None:
    with pytest.raises(ManifestError, match=f'hook {hook} needs capability "{capability}"'):
        add("bare", hooks={hook: lambda e, ctx: None})


def test_every_missing_capability_is_named_in_one_error(rt: Runtime, add: AddPlugin) -> None:
    with pytest.raises(ManifestError) as info:
        add(
            "many",
            hooks={
                "content:beforeSave": lambda e, ctx: None,
                "media:afterUpload": lambda e, ctx: None,
            },
        )
    assert '"content:write"' in info.value.message and '"media:read"' in info.value.message


def test_the_pipeline_still_skips_a_hook_without_its_capability(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Defence in depth: a host built past add_plugin's check is still gated by the pipeline."""
    from emdash._hosting._loader import locate
    from emdash._model._descriptor import PluginDescriptor
    from emdash._runtime._pipeline import HookPipeline

    desc = PluginDescriptor.load({"id": "reader", "capabilities": ["content:read"]})
    definition = define_plugin(hooks={"content:beforeSave": lambda e, ctx: None})
    host, _ = rt._make_host(desc, locate(desc, definition), True)
    try:
        with caplog.at_level(logging.WARNING):
            pipeline = HookPipeline([host], options=None)
        assert pipeline.handlers("content:beforeSave") == []
        assert "without content:write capability — skipping" in caplog.text
    finally:
        host.close()


def test_write_implies_read_for_the_gate(rt: Runtime, add: AddPlugin) -> None:
    add("writer", hooks={"content:afterSave": lambda e, ctx: None}, capabilities=["content:write"])
    assert rt.pipeline.handlers("content:afterSave") == ["writer"]


def test_ungated_hooks_need_no_capability(rt: Runtime, add: AddPlugin) -> None:
    add(
        "free",
        hooks={
            "cron": lambda e, ctx: None,
            "page:metadata": lambda e, ctx: None,
            "plugin:activate": lambda e, ctx: None,
        },
    )
    assert rt.pipeline.handlers("page:metadata") == ["free"]
    assert rt.invoke_cron("free", {"name": "t"}).success


@pytest.fixture
def bypass(db_path: Path) -> Iterator[Runtime]:
    with Runtime(db_path, sandbox=False) as runtime:
        yield runtime


def test_sandbox_bypass_runs_untrusted_code_natively_and_says_so(
    bypass: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    definition = define_plugin(hooks={"content:afterSave": lambda e, ctx: "ran"})
    with caplog.at_level(logging.WARNING):
        info = bypass.add_plugin(
            {"id": "stranger", "capabilities": ["content:read"]}, source=definition
        )
    assert (
        "SANDBOX BYPASS: untrusted plugin stranger runs IN-PROCESS without isolation or limits "
        "because the runtime was created with sandbox=False. Never do this with code you do "
        "not trust."
    ) in caplog.messages
    assert (info["mode"], info.trusted, info.sandboxed) == ("unsandboxed", False, False)
    assert bypass.run_hook("content:afterSave", SAVE).results[0].value == "ran"


def test_page_fragments_only_from_trusted_plugins(
    bypass: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    def fragment(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"kind": "html", "placement": "head", "html": "<meta name=x>"}

    caps = {"capabilities": ["hooks.page-fragments:register"]}
    with caplog.at_level(logging.WARNING):
        bypass.add_plugin(
            {"id": "untrusted", **caps}, source=define_plugin(hooks={"page:fragments": fragment})
        )
    bypass.add_plugin(
        {"id": "trusted", **caps},
        source=define_plugin(hooks={"page:fragments": fragment}),
        trusted=True,
    )
    assert (
        '[hooks] Plugin "untrusted" declares page:fragments hook but is not trusted — page '
        "fragments are injected unescaped, so only trusted plugins may add them; skipping"
    ) in caplog.messages
    outcome = bypass.run_hook("page:fragments", {"page": {"url": "/"}})
    assert [r.plugin_id for r in outcome.results] == ["trusted"]
