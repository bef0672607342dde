"""rt.admin: interactions reach the plugin's private ``admin`` route in both modes (real
forked, seccomp-confined workers for the sandboxed runs), and only validated Block Kit
comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import AdminInteractionError, AdminResponseError, ManifestError, NotFoundError

ADMIN_PLUGIN = """
from emdash import blocks as bk, define_plugin, PluginRouteError

def admin(route_ctx, ctx):
    i = route_ctx["input"]
    ctx.kv.set("seen", (ctx.kv.get("seen") or []) + [i])
    if i["type"] == "page_load":
        n = ctx.kv.get("saved") or "nothing"
        return bk.response([
            bk.header("Page " + i["page"]),
            bk.section("Saved: " + n),
            bk.form("note", [bk.text_input("text", "Note")], submit="Save", action_id="save"),
        ])
    if i["type"] == "form_submit":
        ctx.kv.set("saved", i["values"]["text"])
        return bk.response([bk.context("ok")], toast=bk.toast("Saved " + i["values"]["text"]))
    action = i["action_id"]
    if action == "whoami":
        user = route_ctx["user"]
        return bk.response([bk.context(user["email"] if user else "nobody")])
    if action == "echo":
        return bk.response([bk.code(repr(i.get("value")))])
    if action == "script":
        return bk.response([bk.header("<script>alert(1)</script>")],
                           toast=bk.toast("<img src=x onerror=alert(1)>", "info"))
    if action == "js_url":
        return bk.response([bk.header("x"), bk.image("javascript:alert(1)", "pic")])
    if action == "data_url":
        return bk.response([bk.actions([bk.button("a", "A")]),
                            bk.form("f", [bk.media_picker("m", "M", initial_value="data:text/html,x")])])
    if action == "unknown":
        return {"blocks": [bk.divider(), {"type": "iframe", "src": "https://evil.test"}]}
    if action == "flood":
        return bk.response([bk.divider() for _ in range(5000)])
    if action == "long":
        return bk.response([bk.section("x" * 100000)])
    if action == "not_blocks":
        return "<h1>hi</h1>"
    if action == "fail":
        raise PluginRouteError.bad_request("Nope: " + action)
    return bk.response([])

plugin = define_plugin(routes={"admin": admin})
"""

DESCRIPTOR: dict[str, Any] = {
    "id": "acme",
    "name": "Acme",
    "admin": {
        "pages": [{"path": "/main", "label": "Main", "icon": "star"}],
        "widgets": [{"id": "summary", "title": "Summary", "size": "half"}],
    },
}

MODES = pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "native"])


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[emdash.Runtime]:
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        yield runtime


def add(rt: emdash.Runtime, trusted: bool, source: str = ADMIN_PLUGIN, **over: Any) -> None:
    rt.add_plugin({**DESCRIPTOR, **over}, source={"plugin.py": source}, trusted=trusted)


@MODES
def test_interactions_reach_the_private_admin_route(rt: emdash.Runtime, trusted: bool) -> None:
    add(rt, trusted)
    page = rt.admin.interact("acme", {"type": "page_load", "page": "/main"})
    assert page["toast"] is None
    assert page["blocks"][:2] == [
        {"type": "header", "text": "Page /main"},
        {"type": "section", "text": "Saved: nothing"},
    ]
    widget = rt.admin.interact("acme", {"type": "page_load", "page": "widget:summary"})
    assert widget["blocks"][0]["text"] == "Page widget:summary"

    saved = rt.admin.interact(
        "acme",
        {"type": "form_submit", "action_id": "save", "block_id": "note", "values": {"text": "Hi"}},
    )
    assert saved == {
        "blocks": [{"type": "context", "text": "ok"}],
        "toast": {"message": "Saved Hi", "type": "success"},
    }
    assert rt.store.kv_entries.get("acme", "saved") == "Hi"
    again = rt.admin.interact("acme", {"type": "page_load", "page": "/main"})
    assert again["blocks"][1]["text"] == "Saved: Hi"

    echoed = rt.admin.interact(
        "acme", {"type": "block_action", "action_id": "echo", "value": {"n": [1, 2]}}
    )
    assert echoed["blocks"] == [{"type": "code", "code": "{'n': [1, 2]}"}]
    who = rt.admin.interact(
        "acme", {"type": "block_action", "action_id": "whoami"}, user={"email": "ada@example.com"}
    )
    assert who["blocks"][0]["text"] == "ada@example.com"
    anon = rt.admin.interact("acme", {"type": "block_action", "action_id": "whoami"})
    assert anon["blocks"][0]["text"] == "nobody"

    # The plugin saw exactly the validated shape, and every call is audited as the route.
    seen = rt.store.kv_entries.get("acme", "seen")
    assert seen[0] == {"type": "page_load", "page": "/main"}
    assert seen[2] == {
        "type": "form_submit",
        "action_id": "save",
        "block_id": "note",
        "values": {"text": "Hi"},
    }
    audit = [e for e in rt.audit_log(plugin_id="acme") if e["kind"] == "route"]
    assert len(audit) == 7 and {e["name"] for e in audit} == {"admin"}


@MODES
def test_hostile_answers_are_refused_with_the_offending_path(
    rt: emdash.Runtime, trusted: bool
) -> None:
    add(rt, trusted)

    def action(name: str) -> dict[str, Any]:
        return rt.admin.interact("acme", {"type": "block_action", "action_id": name})

    # Script in text stays text: the renderer escapes it; nothing here interprets it.
    script = action("script")
    assert script["blocks"][0]["text"] == "<script>alert(1)</script>"
    assert script["toast"] == {"message": "<img src=x onerror=alert(1)>", "type": "info"}

    expected = {
        "js_url": "blocks[1].url",
        "data_url": "blocks[1].fields[0].initial_value",
        "unknown": "blocks[1].type",
        "flood": "blocks",
        "long": "blocks[0].text",
        "not_blocks": "",
    }
    for name, path in expected.items():
        with pytest.raises(AdminResponseError) as info:
            action(name)
        assert info.value.path == path, name
        assert info.value.plugin_id == "acme"
        assert str(info.value).startswith('Plugin "acme" returned an invalid admin response')


@MODES
def test_the_plugins_own_errors_propagate(rt: emdash.Runtime, trusted: bool) -> None:
    add(rt, trusted)
    with pytest.raises(emdash.EmDashError) as info:
        rt.admin.interact("acme", {"type": "block_action", "action_id": "fail"})
    assert "Nope: fail" in str(info.value)
    assert not isinstance(info.value, AdminResponseError)


def test_malformed_interactions_are_refused_before_the_plugin_runs(rt: emdash.Runtime) -> None:
    add(rt, True)
    bad: list[Any] = [
        None,
        ["page_load"],
        {"type": "page_load", "page": "/other"},  # not a declared page
        {"type": "page_load", "page": "widget:other"},
        {"type": "page_load"},
        {"type": "submit", "action_id": "x"},
        {"type": "form_submit", "action_id": "save"},  # no values
        {"type": "form_submit", "action_id": "save", "values": ["x"]},
        {"type": "form_submit", "action_id": "save", "values": {"a": object()}},
        {"type": "form_submit", "action_id": "save", "values": {"a": "x" * 70_000}},
        {"type": "block_action", "action_id": ""},
        {"type": "block_action", "action_id": "a" * 200},
        {"type": "block_action", "action_id": "echo", "extra": 1},
        {"type": "block_action", "action_id": "echo", "value": float("nan")},
    ]
    for interaction in bad:
        with pytest.raises(AdminInteractionError) as info:
            rt.admin.interact("acme", interaction)
        assert 'plugin "acme"' in str(info.value)
    assert rt.store.kv_entries.get("acme", "seen") is None
    assert not [e for e in rt.audit_log(plugin_id="acme") if e["kind"] == "route"]


def test_unknown_disabled_and_surfaceless_plugins_are_not_found(rt: emdash.Runtime) -> None:
    add(rt, True)
    rt.add_plugin({"id": "plain"}, source={"plugin.py": "plugin = {}"}, trusted=True)
    page = {"type": "page_load", "page": "/main"}
    with pytest.raises(NotFoundError, match='No plugin "ghost"'):
        rt.admin.interact("ghost", page)
    with pytest.raises(NotFoundError, match='"plain" has no admin pages'):
        rt.admin.interact("plain", page)
    with pytest.raises(NotFoundError, match='"plain" has no settings'):
        rt.admin.settings_page("plain")
    rt.disable_plugin("acme")
    with pytest.raises(NotFoundError, match='"acme" is disabled; enable it'):
        rt.admin.interact("acme", page)
    assert rt.admin.catalog() == []


def test_catalog_lists_enabled_plugins_with_an_admin_surface(rt: emdash.Runtime) -> None:
    add(rt, True)
    rt.add_plugin({"id": "plain"}, source={"plugin.py": "plugin = {}"}, trusted=True)
    rt.add_plugin(
        {"id": "tuned", "admin": {"settingsSchema": {"on": {"type": "boolean", "label": "On"}}}},
        source={"plugin.py": "plugin = {}"},
        trusted=True,
    )
    assert rt.admin.catalog() == [
        {
            "plugin_id": "acme",
            "name": "Acme",
            "mode": "trusted",
            "pages": [{"path": "/main", "label": "Main", "icon": "star"}],
            "widgets": [{"id": "summary", "title": "Summary", "size": "half"}],
            "has_settings": False,
        },
        {
            "plugin_id": "tuned",
            "name": "tuned",
            "mode": "trusted",
            "pages": [],
            "widgets": [],
            "has_settings": True,
        },
    ]


@MODES
def test_pages_without_an_admin_route_are_a_load_error(rt: emdash.Runtime, trusted: bool) -> None:
    source = "from emdash import define_plugin\nplugin = define_plugin(routes={'other': lambda r, c: 1})\n"
    with pytest.raises(ManifestError) as info:
        add(rt, trusted, source)
    message = str(info.value)
    assert 'Plugin "acme" declares admin pages or widgets (/main, widget:summary)' in message
    assert 'add routes={"admin": handler}' in message
    assert info.value.plugin_id == "acme"
    assert rt.plugins() == []


@MODES
def test_a_public_admin_route_is_a_load_error(rt: emdash.Runtime, trusted: bool) -> None:
    source = (
        "from emdash import define_plugin, RouteConfig\n"
        "plugin = define_plugin(routes={'admin': RouteConfig(lambda r, c: {}, public=True)})\n"
    )
    with pytest.raises(ManifestError, match='"admin" route public.*drop public=True'):
        add(rt, trusted, source)


def test_the_admin_route_url_needs_the_api_token() -> None:
    from emdash.testing import PluginHarness

    with PluginHarness(DESCRIPTOR, source={"plugin.py": ADMIN_PLUGIN}, sandbox=False) as h:
        body = {"type": "page_load", "page": "/main"}
        url = "admin"  # the harness's clients are based at /_emdash/api/plugins/acme/
        # Private: an anonymous caller is refused before the plugin runs.
        assert h.client(authenticated=False).post(url, json=body).status_code == 401
        assert h.runtime.store.kv_entries.get("acme", "seen") is None
        # The API token is the site admin's credential, as in EmDash.
        assert h.client().post(url, json=body).status_code == 200


def test_sandboxed_code_reaches_only_the_builders_through_bk(rt: emdash.Runtime) -> None:
    probe = """
from emdash import blocks as bk, define_plugin

def attempt(fn):
    try:
        fn()
        return "reached"
    except Exception:
        return "refused"

def assign():
    bk.header = None

def admin(route_ctx, ctx):
    found = [name + ": " + attempt(lambda: getattr(bk, name))
             for name in ("__class__", "__dict__", "_data")]
    found.append("globals: " + attempt(lambda: getattr(bk.header, "__globals__")))
    found.append("assign: " + attempt(assign))
    return bk.response([bk.context(", ".join(found))])

plugin = define_plugin(routes={"admin": admin})
"""
    add(rt, False, probe)
    answer = rt.admin.interact("acme", {"type": "page_load", "page": "/main"})
    assert answer["blocks"][0]["text"] == (
        "__class__: refused, __dict__: refused, _data: refused, globals: refused, assign: refused"
    )


def test_a_builder_function_leads_nowhere_in_the_sandbox(rt: emdash.Runtime) -> None:
    # The builders are host functions handed to plugin code: their globals hold the
    # module's builtins, so every way to a function's insides must be closed, including
    # the indirect ones (format strings, getattr with a default, mutation).
    probe = """
from emdash import blocks as bk, define_plugin

def attempt(label, fn):
    try:
        fn()
        return label + " reached"
    except Exception:
        return label + " refused"

def admin(route_ctx, ctx):
    fn = bk.response
    found = [attempt(name, lambda: getattr(fn, name))
             for name in ("__globals__", "__self__", "__closure__", "__code__", "__defaults__",
                          "__kwdefaults__", "__wrapped__", "__module__", "__builtins__")]
    found.append(attempt("format", lambda: "{0.__globals__}".format(fn)))
    found.append(attempt("format_map", lambda: "{f.__globals__}".format_map({"f": fn})))
    found.append(attempt("default", lambda: getattr(bk, "__class__", None)))
    found.append(attempt("setattr", lambda: setattr(fn, "x", 1)))
    found.append(attempt("delattr", lambda: delattr(bk, "header")))
    found.append(attempt("private", lambda: getattr(bk, "BUILDER_NAMES")))
    return bk.response([bk.context(", ".join(found))])

plugin = define_plugin(routes={"admin": admin})
"""
    add(rt, False, probe)
    answer = rt.admin.interact("acme", {"type": "page_load", "page": "/main"})
    results = answer["blocks"][0]["text"].split(", ")
    assert len(results) == 15
    assert [r for r in results if not r.endswith(" refused")] == []
