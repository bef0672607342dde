"""Plugin Block Kit pages, widgets and settings in the admin UI, over HTTP, against a real
runtime in both modes (the plugin's admin route runs in a sandbox worker when sandboxed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

from .admin_client import AdminClient, form_keys

TOKEN = "admin-token-0123456789abcdef"
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"

SOURCE = """
from emdash import blocks as bk, define_plugin

HOSTILE = __HOSTILE__


def admin(route_ctx, ctx):
    i = route_ctx["input"]
    kind = i["type"]
    if kind == "page_load":
        page = i["page"]
        if page == "/hostile":
            return bk.response(
                [
                    bk.header(HOSTILE),
                    bk.section(HOSTILE),
                    bk.image("https://evil.example/x.png?a=%22%3E", HOSTILE, title=HOSTILE),
                    bk.fields([bk.field(HOSTILE, HOSTILE)]),
                    bk.actions([bk.button("go", HOSTILE, value=HOSTILE)]),
                ],
                toast=bk.toast(HOSTILE, "info"),
            )
        if page == "/unknown-type":
            return {"blocks": [{"type": "script", "text": "<script>alert(3)</script>"}]}
        if page == "/bad-url":
            return {"blocks": [{"type": "image", "url": "javascript:alert(4)", "alt": "x"}]}
        if page == "/oversized":
            return {"blocks": [bk.section("row " + str(n)) for n in range(1000)]}
        if page == "widget:status":
            return bk.response([bk.stats([bk.stat("Greetings", str(ctx.kv.get("count") or 0))])])
        return bk.response(
            [
                bk.header("Greeting"),
                bk.section("Current: " + str(ctx.kv.get("greeting"))),
                bk.form(
                    "greet",
                    [
                        bk.text_input("greeting", "Greeting"),
                        bk.number_input("times", "Times", min=1, max=5),
                        bk.toggle("loud", "Loud"),
                    ],
                    submit="Save greeting",
                    action_id="save",
                ),
                bk.actions([bk.button("ping", "Ping", value="pong")]),
            ]
        )
    if kind == "form_submit":
        values = i["values"]
        ctx.kv.set("greeting", values["greeting"])
        ctx.kv.set("count", (ctx.kv.get("count") or 0) + 1)
        return bk.response(
            [bk.section("Stored " + repr(values) + " from " + i["action_id"] + "/" + i["block_id"])],
            toast=bk.toast("Saved " + values["greeting"]),
        )
    return bk.response(
        [bk.section("Action " + i["action_id"] + " value " + repr(i.get("value")))],
        toast=bk.toast("Clicked", "info"),
    )


plugin = define_plugin(routes={"admin": admin})
""".replace("__HOSTILE__", repr(HOSTILE))

PAGES = ["/hostile", "/unknown-type", "/bad-url", "/oversized", "/greet"]
DESCRIPTOR: dict[str, Any] = {
    "id": "bk-probe",
    "version": "1.0.0",
    "name": "Block Kit probe",
    "admin": {
        "pages": [{"path": p, "label": p.strip("/").title()} for p in PAGES],
        "widgets": [{"id": "status", "title": "Greeting status", "size": "half"}],
        "settingsSchema": {
            "motto": {"type": "string", "label": "Motto"},
            "limit": {"type": "number", "label": "Limit", "min": 1, "max": 10},
            "enabled": {"type": "boolean", "label": "Enabled"},
            "api_key": {"type": "secret", "label": "API key"},
        },
    },
}


@pytest.fixture(scope="module", params=["trusted", "sandboxed"])
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    with Runtime(":memory:", site={"name": "T", "url": "https://site.example"}) as rt:
        rt.add_plugin(DESCRIPTOR, source=SOURCE, trusted=request.param == "trusted")
        yield rt


@pytest.fixture(scope="module")
def app(runtime: Runtime) -> EmDashASGI:
    return create_app(runtime, token=TOKEN)


@pytest.fixture
def client(app: EmDashASGI) -> AdminClient:
    c = AdminClient(app)
    assert c.sign_in(TOKEN).status_code == 303
    return c


def page(client: AdminClient, path: str) -> str:
    r = client.get("plugins/bk-probe/pages/" + path)
    assert r.status_code == 200
    return r.text


def test_hostile_text_is_escaped_everywhere(client: AdminClient) -> None:
    html = page(client, "hostile")
    assert "<script" not in html
    assert "<img src=x" not in html and "onerror=alert" not in html.replace(
        "onerror=alert(2)&gt;", ""
    )
    escaped = (
        "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&gt;&lt;img src=x onerror=alert(2)&gt;"
    )
    assert f'<h2 class="bk-header">{escaped}</h2>' in html
    assert f'<p class="bk-text">{escaped}</p>' in html
    assert f"<dt>{escaped}</dt><dd>{escaped}</dd>" in html
    assert '<div class="toast toast-info" role="status" id="toast">' in html
    assert escaped in html.split('id="toast">', 1)[1].split("</div>", 1)[0]
    # Another site's image is a link (the CSP would block it), its URL escaped.
    assert 'href="https://evil.example/x.png?a=%22%3E"' in html and "<img" not in html


def test_a_button_value_stays_on_the_server(client: AdminClient) -> None:
    html = page(client, "hostile")
    assert "alert(1)</script>" not in html
    keys = form_keys(html)
    r = client.post("plugins/bk-probe/pages/hostile", {"_key": keys[-1]})
    assert r.status_code == 200
    assert "Action go value " in r.text and "Clicked" in r.text
    assert "<script" not in r.text


@pytest.mark.parametrize("path", ["unknown-type", "bad-url", "oversized"])
def test_invalid_responses_are_never_rendered(client: AdminClient, path: str) -> None:
    html = page(client, path)
    assert "bk-probe" in html and 'role="alert"' in html  # the error names the plugin
    for leaked in ("alert(3)", "javascript:", "row 999", "row 1</p>"):
        assert leaked not in html


def test_form_submit_reaches_the_plugin_typed(client: AdminClient, runtime: Runtime) -> None:
    html = page(client, "greet")
    assert '<label for="' in html and 'name="f.greeting"' in html
    assert re.search(r'<label for="([^"]+)">Greeting</label><input type="text" id="\1"', html)
    assert 'type="number" step="any"' in html and 'min="1" max="5"' in html
    form_key = form_keys(html)[0]
    r = client.post(
        "plugins/bk-probe/pages/greet",
        {"_key": form_key, "f.greeting": "Hello <b>", "f.times": "3", "f.loud": "true"},
    )
    assert r.status_code == 200
    assert "Saved Hello &lt;b&gt;" in r.text and 'class="toast toast-success"' in r.text
    assert "&#x27;greeting&#x27;: &#x27;Hello &lt;b&gt;&#x27;" in r.text
    assert "&#x27;times&#x27;: 3" in r.text and "&#x27;loud&#x27;: True" in r.text
    assert "from save/greet" in r.text
    assert "Current: Hello &lt;b&gt;" in page(client, "greet")


def test_forged_or_stale_form_keys_are_refused(client: AdminClient) -> None:
    greet_key = form_keys(page(client, "greet"))[0]
    for key, where in (("nope", "greet"), ("", "greet"), (greet_key, "hostile")):
        r = client.post("plugins/bk-probe/pages/" + where, {"_key": key, "f.greeting": "x"})
        assert r.status_code == 200
        assert "no longer known" in r.text
        assert "Saved x" not in r.text
    # Another session cannot use this session's keys.
    other = AdminClient(client.app)
    other.sign_in(TOKEN)
    other.get("plugins")
    r = other.post("plugins/bk-probe/pages/greet", {"_key": greet_key, "f.greeting": "x"})
    assert "no longer known" in r.text


def test_dashboard_renders_widgets(client: AdminClient) -> None:
    html = client.get("").text
    assert 'class="widget widget-half"' in html
    assert "Greeting status" in html and '<dl class="bk-stats">' in html


def test_settings_page_saves_and_never_echoes_secrets(
    client: AdminClient, runtime: Runtime
) -> None:
    html = client.get("plugins/bk-probe/settings").text
    assert "Motto" in html and 'type="password"' in html
    key = form_keys(html)[0]
    r = client.post(
        "plugins/bk-probe/settings",
        {
            "_key": key,
            "f.motto": "Carpe <diem>",
            "f.limit": "4",
            "f.enabled": "true",
            "f.api_key": "s3cret-value",
        },
    )
    assert r.status_code == 200 and "Settings saved" in r.text
    assert "s3cret-value" not in r.text
    stored = runtime.admin.settings("bk-probe")
    assert stored["values"]["motto"] == "Carpe <diem>"
    assert stored["values"]["limit"] == 4 and stored["values"]["enabled"] is True
    assert "api_key" in stored["secretsSet"]
    html = client.get("plugins/bk-probe/settings").text
    assert "Carpe &lt;diem&gt;" in html and "s3cret-value" not in html
    # A value out of range is refused by the schema, nothing is written.
    key = form_keys(html)[0]
    r = client.post("plugins/bk-probe/settings", {"_key": key, "f.limit": "99", "f.api_key": ""})
    assert "toast-error" in r.text
    assert runtime.admin.settings("bk-probe")["values"]["limit"] == 4
    assert "api_key" in runtime.admin.settings("bk-probe")["secretsSet"]
    # Both saves are in the audit log (kind admin): the keys, never a value.
    audit = client.get("audit?plugin=bk-probe&kind=admin&since=all").text
    assert "<code>settings: motto, limit, enabled, api_key</code>" in audit
    assert "<code>settings: none</code>" in audit and "s3cret-value" not in audit


def _admin_calls(runtime: Runtime) -> int:
    return sum(
        1 for r in runtime.audit_log(limit=10_000, plugin_id="bk-probe") if r["name"] == "admin"
    )


@pytest.mark.parametrize(
    "fetch",
    [
        # A plugin's <img src="/_emdash/admin/plugins/other/pages/x">: same origin, so the
        # SameSite=Strict cookie goes along; it must not run the other plugin's page_load.
        {"sec-fetch-site": "same-origin", "sec-fetch-dest": "image", "sec-fetch-mode": "no-cors"},
        # A link from a sibling subdomain (same site, another origin) also carries the cookie.
        {"sec-fetch-site": "same-site", "sec-fetch-dest": "document", "sec-fetch-mode": "navigate"},
        {"sec-fetch-site": "cross-site", "sec-fetch-dest": "document"},
    ],
    ids=["same-origin-image", "same-site-link", "cross-site-link"],
)
def test_plugin_code_runs_only_for_a_top_level_page_of_this_origin(
    client: AdminClient, runtime: Runtime, fetch: dict[str, str]
) -> None:
    before = _admin_calls(runtime)
    for path in ("plugins/bk-probe/pages/greet", ""):  # a page, and the dashboard's widgets
        r = client.request("GET", "/_emdash/admin/" + path, headers=fetch)
        assert r.status_code == 403, path
        assert r.headers["x-frame-options"] == "DENY"
        assert "Greeting" not in r.text and 'name="_csrf"' not in r.text
    assert _admin_calls(runtime) == before
    # The page opened from the admin itself, or typed in the address bar, is served.
    for site in ("same-origin", "none"):
        headers = {"sec-fetch-site": site, "sec-fetch-dest": "document"}
        r = client.request("GET", "/_emdash/admin/plugins/bk-probe/pages/greet", headers=headers)
        assert r.status_code == 200 and "Save greeting" in r.text
    assert _admin_calls(runtime) == before + 2


def test_a_number_field_sends_a_number_the_plugin_can_receive(
    client: AdminClient, runtime: Runtime
) -> None:
    # int("1" * 4000) is a 4000-digit integer: a settings save crashed on it (OverflowError)
    # and a sandboxed plugin could not even be sent it. A plugin's number field sends an
    # integer (int64), a finite float or None; a settings field sends the text as typed,
    # for the schema to check.
    before = runtime.admin.settings("bk-probe")["values"]["limit"]
    for sent in ("1" * 4000, "abc"):
        html = client.get("plugins/bk-probe/settings").text
        form = {"_key": form_keys(html)[0], "f.limit": sent}
        r = client.post("plugins/bk-probe/settings", form)
        assert "Settings not saved" in r.text and "could not answer" not in r.text, sent
    assert runtime.admin.settings("bk-probe")["values"]["limit"] == before  # not unset
    for sent, seen in (("1" * 4000, "None"), ("١٢", "None"), ("1_0", "None"), (" -7 ", "-7")):
        html = page(client, "greet")
        form = {"_key": form_keys(html)[0], "f.greeting": "n", "f.times": sent}
        r = client.post("plugins/bk-probe/pages/greet", form)
        assert f"&#x27;times&#x27;: {seen}," in r.text, sent
