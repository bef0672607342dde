"""The Runtime object: plugin listing, services, sandbox selection, lifetime."""

from __future__ import annotations

import json
import threading
import typing
from pathlib import Path
from typing import Any

import pytest

from emdash import EmDashError, HookConfig, ManifestError, define_plugin
from emdash._runtime._live_pipeline import LivePipeline
from emdash._runtime._runtime import Runtime
from emdash._services._comments import CommentService
from emdash._services._content import ContentService
from emdash._services._cron import CronService
from emdash._services._email import EmailPipeline
from emdash._services._media import MediaService
from emdash._services._page import PageService

from .conftest import AddPlugin


def test_plugins_lists_info_in_add_order(rt: Runtime, add: AddPlugin) -> None:
    add(
        "second-added",
        hooks={"content:afterSave": lambda e, c: None},
        capabilities=["content:write"],
        version="1.2.0",
    )
    add("first", routes={"b": lambda r, c: None, "a": lambda r, c: None}, enabled=False)
    infos = rt.plugins()
    assert [i.plugin_id for i in infos] == ["second-added", "first"]
    assert dict(infos[0]) == {
        "id": "second-added",
        "version": "1.2.0",
        "mode": "trusted",
        "trusted": True,
        "enabled": True,
        "capabilities": ["content:write", "content:read"],
        "hooks": ["content:afterSave"],
        "routes": [],
    }
    assert json.loads(json.dumps(dict(infos[1])))["routes"] == ["a", "b"]
    assert infos[1].enabled is False and infos[1].sandboxed is False
    assert rt.get_plugin("first") is infos[1]
    assert infos[0].definition_meta["hooks"]["content:afterSave"] == {
        "priority": 100,
        "timeout_ms": 5000,
        "dependencies": [],
        "error_policy": "abort",
        "exclusive": False,
    }


def test_descriptor_can_be_a_toml_file_with_its_code(rt: Runtime, tmp_path: Path) -> None:
    (tmp_path / "emdash-plugin.toml").write_text(
        'id = "from-file"\nversion = "2.0.0"\nentrypoint = "plugin.py"\n'
        'capabilities = ["content:read"]\n'
    )
    (tmp_path / "plugin.py").write_text(
        "from emdash import define_plugin\n"
        "plugin = define_plugin(routes={'hello': lambda r, ctx: 'hello from ' + ctx.plugin.id})\n"
    )
    info = rt.add_plugin(tmp_path / "emdash-plugin.toml", trusted=True)
    assert info.descriptor.version == "2.0.0"
    assert rt.invoke_route("from-file", "hello") == "hello from from-file"


SERVICES = {
    "content": ContentService,
    "media": MediaService,
    "comments": CommentService,
    "email": EmailPipeline,
    "cron": CronService,
    "page": PageService,
}


def test_services_exist_from_construction_as_their_classes(db_path: Path) -> None:
    with Runtime(db_path) as rt:
        built = {name: vars(rt)[f"_{name}"] for name in SERVICES}
        for name, cls in SERVICES.items():
            assert type(built[name]) is cls
            assert getattr(rt, name) is built[name]  # the same object on every access
        # The bridge answers ctx.cron / ctx.email with these very services.
        assert rt.bridge.cron is rt.cron and rt.bridge.email is rt.email


def test_service_attributes_are_annotated_with_the_concrete_classes() -> None:
    # What mypy reads: rt.content.create(...) etc. are checked against the real classes.
    for name, cls in SERVICES.items():
        prop = vars(Runtime)[name]
        assert isinstance(prop, property) and prop.fget is not None
        assert typing.get_type_hints(prop.fget)["return"] is cls
    with Runtime() as rt:
        typing.assert_type(rt.content, ContentService)
        typing.assert_type(rt.cron, CronService)


def test_services_do_not_hold_the_runtime(rt: Runtime) -> None:
    for name in SERVICES:
        service = getattr(rt, name)
        held = list(vars(service).values()) if hasattr(service, "__dict__") else []
        assert held and not any(isinstance(value, Runtime) for value in held), name
    # They share one HookRunner: the live pipeline, which follows plugin-set changes.
    hooks = rt.content._hooks
    assert isinstance(hooks, LivePipeline)
    assert all(getattr(rt, name)._hooks is hooks for name in SERVICES)
    assert hooks.pipeline is rt.pipeline
    rt.add_plugin({"id": "later"}, source=define_plugin(), trusted=True)
    assert hooks.pipeline is rt.pipeline and rt.pipeline.plugin_ids == ["later"]


def test_site_info_reaches_the_ctx(db_path: Path) -> None:
    site = {"name": "Blog", "url": "https://blog.test/", "locale": "fr", "trailing_slash": "always"}
    definition = define_plugin(routes={"site": lambda r, ctx: [ctx.site.name, ctx.url("/a")]})
    with Runtime(db_path, site=site) as rt:
        rt.add_plugin({"id": "s"}, source=definition, trusted=True)
        assert rt.site == {
            "name": "Blog",
            "url": "https://blog.test",  # one trailing slash dropped, as EmDash does
            "locale": "fr",
            "trailingSlash": "always",
        }
        assert rt.invoke_route("s", "site") == ["Blog", "https://blog.test/a"]


def test_untrusted_plugin_source_must_be_code_for_the_sandbox(rt: Runtime) -> None:
    with pytest.raises(ManifestError) as info:
        rt.add_plugin({"id": "obj"}, source=define_plugin())
    assert str(info.value) == (
        "Plugin obj: a ready-made plugin definition can only run trusted; give the sandbox "
        "source code (a path, a module path, source text or a {path: source} dict)"
    )


def test_closed_runtime_refuses_new_plugins(db_path: Path) -> None:
    rt = Runtime(db_path)
    rt.add_plugin({"id": "p"}, source=define_plugin(), trusted=True)
    rt.close()
    rt.close()  # idempotent
    with pytest.raises(EmDashError, match="^This Runtime is closed; create a new one$"):
        rt.add_plugin({"id": "q"}, source=define_plugin(), trusted=True)


def test_removed_plugin_host_refuses_to_run(rt: Runtime, add: AddPlugin) -> None:
    info = add(
        "gone",
        hooks={"content:afterSave": HookConfig(lambda e, c: None)},
        capabilities=["content:read"],
    )
    rt.remove_plugin("gone")
    with pytest.raises(
        EmDashError, match="^Plugin gone was removed; it cannot run hook:content:afterSave$"
    ):
        info.host.invoke_hook("content:afterSave", {}, timeout_ms=100)


def test_memory_database_is_the_default() -> None:
    with Runtime() as rt:
        rt.add_plugin(
            {"id": "mem"}, source=define_plugin(routes={"x": lambda r, c: 1}), trusted=True
        )
        assert rt.invoke_route("mem", "x") == 1


def test_lifecycle_handlers_may_use_services_while_the_plugin_set_changes(rt: Runtime) -> None:
    # plugin:activate runs on a pool thread while add_plugin holds the runtime's lock; the
    # services it reaches (ctx.cron -> rt.cron, rt.content...) must not wait for that lock.
    seen: list[object] = []

    def activate(event: object, ctx: Any) -> None:
        ctx.cron.schedule("nightly", "@daily")
        seen.append(rt.content.publish_due())

    definition = define_plugin(
        hooks={
            "plugin:activate": HookConfig(activate, timeout_ms=2000),
            "cron": lambda e, c: None,
        }
    )
    rt.add_plugin({"id": "svc"}, source=definition, trusted=True)
    assert seen == [[]]
    assert [t["name"] for t in rt.cron.list("svc")] == ["nightly"]
    [row] = rt.audit_log(plugin_id="svc")
    assert (row["name"], row["outcome"]) == ("plugin:activate", "ok")


def test_cron_scheduler_starts_on_demand_and_close_stops_it(db_path: Path) -> None:
    rt = Runtime(db_path)

    def scheduler_thread() -> threading.Thread | None:
        return rt.cron._thread

    assert scheduler_thread() is None  # constructing a runtime starts no thread
    rt.cron.start()
    thread = scheduler_thread()
    assert thread is not None and thread.is_alive()
    rt.close()
    rt.close()  # idempotent
    assert scheduler_thread() is None
    thread.join(timeout=30)  # stopped, not abandoned: it does not sleep out its 60 s delay
    assert not thread.is_alive()
