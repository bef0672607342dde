"""Plugin forms read back on the server, over HTTP against a real runtime in both modes:
offered choices enforced before the plugin sees a value, field conditions evaluated on
submit, repeaters without JavaScript, custom charts drawn as a table and SVG."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from emdash._asgi._admin_forms import NOT_OFFERED, condition_holds, read_form
from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

from .admin_client import AdminClient, form_keys

TOKEN = "admin-token-0123456789abcdef"
PID = "forms-probe"
PAGE = "plugins/forms-probe/pages/"
HOSTILE = '"><script>alert(1)</script>'

SOURCE = """
from emdash import blocks as bk, define_plugin

PLANS = [bk.option("Free", "free"), bk.option("Pro", "pro")]
SIZES = [bk.option("Small", "s"), bk.option("Large", "l")]
TAGS = [bk.option("Alpha", "a"), bk.option("Beta", "b")]
KINDS = [bk.option("Web", "web"), bk.option("Doc", "doc")]
HOSTILE = '"><script>alert(1)</script>'


def form_page():
    return [
        bk.form(
            "signup",
            [
                bk.select("plan", "Plan", PLANS, initial_value="free"),
                bk.radio("size", "Size", SIZES),
                bk.checkbox("tags", "Tags", TAGS),
                bk.text_input("company", "Company", condition=bk.condition("plan", eq="pro")),
                bk.toggle("notify", "Notify me"),
                bk.text_input("email", "Email", condition=bk.condition("notify", eq=True)),
                bk.repeater(
                    "links",
                    "Links",
                    [bk.text_input("url", "Address"), bk.select("kind", "Kind", KINDS)],
                    item_label="Link",
                    max_items=3,
                ),
            ],
            submit="Sign up",
        )
    ]


def chart_page():
    bars = {
        "title": {"text": "Visits " + HOSTILE},
        "xAxis": {"type": "category", "data": ["Mon", "Tue", HOSTILE]},
        "yAxis": {"type": "value"},
        "tooltip": {"formatter": "function(){alert(1)}"},
        "series": [
            {"name": "Views", "type": "bar", "data": [120, 200, -15]},
            {"name": "Visitors " + HOSTILE, "type": "line", "data": [80, 90, 100]},
        ],
    }
    pie = {
        "series": [
            {
                "name": "Share",
                "type": "pie",
                "data": [{"name": "Search", "value": 3}, {"name": HOSTILE, "value": 1}],
            }
        ]
    }
    return [
        {"type": "chart", "config": {"chart_type": "custom", "options": bars}},
        {"type": "chart", "config": {"chart_type": "custom", "options": pie}},
        {"type": "chart", "config": {"chart_type": "custom", "options": {"legend": {}}}},
    ]


def admin(route_ctx, ctx):
    i = route_ctx["input"]
    if i["type"] == "page_load":
        return bk.response(chart_page() if i["page"] == "/chart" else form_page())
    ctx.kv.set("submits", (ctx.kv.get("submits") or 0) + 1)
    ctx.kv.set("last", i.get("values"))
    return bk.response([bk.section("Received")] + form_page(), toast=bk.toast("Signed up"))


plugin = define_plugin(routes={"admin": admin})
"""

DESCRIPTOR: dict[str, Any] = {
    "id": PID,
    "version": "1.0.0",
    "name": "Forms probe",
    "admin": {"pages": [{"path": "/form", "label": "Form"}, {"path": "/chart", "label": "Chart"}]},
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


def submits(runtime: Runtime) -> int:
    count = runtime.store.kv_entries.get(PID, "submits")
    return int(count or 0)


def last(runtime: Runtime) -> Any:
    return runtime.store.kv_entries.get(PID, "last")


def post(client: AdminClient, fields: dict[str, Any]) -> str:
    html = client.get(PAGE + "form").text
    r = client.post(PAGE + "form", {"_key": form_keys(html)[0], **fields})
    assert r.status_code == 200
    return r.text


BASE = {"f.plan": "free", "f.size": "s"}


@pytest.mark.parametrize(
    ("field", "forged"),
    [("f.plan", "enterprise"), ("f.size", "xl"), ("f.tags", "z"), ("f.links.0.kind", "ftp")],
)
def test_a_value_that_was_not_offered_never_reaches_the_plugin(
    client: AdminClient, runtime: Runtime, field: str, forged: str
) -> None:
    before = submits(runtime)
    extra = {"f.links.0.url": "https://a.example"} if field.startswith("f.links") else {}
    html = post(client, {**BASE, **extra, field: forged})
    assert submits(runtime) == before  # the plugin was not called
    assert NOT_OFFERED in html and 'aria-invalid="true"' in html
    assert f"Not sent to {PID}: 1 field needs attention." in html
    assert 'class="toast toast-error"' in html
    assert f'value="{forged}"' not in html  # the forged value is not shown back
    # The form is shown again, ready for a corrected submit that does reach the plugin.
    html = post(client, BASE)
    assert submits(runtime) == before + 1 and "Signed up" in html


def test_offered_values_reach_the_plugin_and_conditions_drop_what_does_not_apply(
    client: AdminClient, runtime: Runtime
) -> None:
    post(client, {**BASE, "f.tags": ["a", "b"], "f.company": "ACME", "f.email": "x@y.z"})
    values = last(runtime)
    assert values["plan"] == "free" and values["size"] == "s" and values["tags"] == ["a", "b"]
    assert "company" not in values  # applies when plan is pro
    assert "email" not in values  # applies when notify is on
    post(client, {**BASE, "f.plan": "pro", "f.company": "ACME", "f.notify": "true", "f.email": "x"})
    values = last(runtime)
    assert values["company"] == "ACME" and values["notify"] is True and values["email"] == "x"


def test_conditional_fields_stay_visible_with_a_note(client: AdminClient) -> None:
    html = client.get(PAGE + "form").text
    note = re.search(r"Applies when &quot;Plan&quot; is &quot;Pro&quot;\.([^<]*)<", html)
    assert note is not None and "Not with the values shown now" in note.group(1)
    assert 'name="f.company"' in html  # visible without JavaScript
    assert "Applies when &quot;Notify me&quot; is &quot;on&quot;." in html
    # The note is the field's description for assistive technology.
    company = re.search(
        r'<input type="text" id="([^"]+)" name="f.company" aria-describedby="([^"]+)"', html
    )
    assert company is not None and f'id="{company.group(2)}"' in html


def test_update_form_re_evaluates_conditions_without_calling_the_plugin(
    client: AdminClient, runtime: Runtime
) -> None:
    before = submits(runtime)
    html = post(client, {**BASE, "f.plan": "pro", "f.company": "ACME", "_refresh": "1"})
    assert submits(runtime) == before
    assert '<option value="pro" selected>' in html and 'value="ACME"' in html
    note = re.search(r"Applies when &quot;Plan&quot; is &quot;Pro&quot;\.([^<]*)<", html)
    assert note is not None and "Not with the values shown now" not in note.group(1)
    assert "toast-error" not in html
    # Back to free: the company no longer applies, but what was typed is kept on screen.
    html = post(client, {**BASE, "f.company": "Kept Inc", "_refresh": "1"})
    assert 'value="Kept Inc"' in html and submits(runtime) == before


def test_a_repeater_grows_without_javascript_and_sends_its_items(
    client: AdminClient, runtime: Runtime
) -> None:
    html = client.get(PAGE + "form").text
    assert "<legend>Link 1</legend>" in html and "<legend>Link 2</legend>" not in html
    assert 'name="f.links.0.url"' in html and "Add another Link" in html
    row = {"f.links.0.url": "https://a.example", "f.links.0.kind": "doc"}
    grown = post(client, {**BASE, **row, "_refresh": "add:links"})
    # The filled row, a blank one, and the one asked for: max_items (3) is reached.
    assert "<legend>Link 3</legend>" in grown and "Add another Link" not in grown
    assert 'value="https://a.example"' in grown
    before = submits(runtime)
    key = form_keys(grown)[0]
    sent = {
        **BASE,
        **row,
        "f.links.2.url": "https://c.example",
        "f.links.2.kind": "web",
        "f.links.7.url": "https://not-a-row.example",  # a row the form never showed
        "_key": key,
    }
    client.post(PAGE + "form", sent)
    assert submits(runtime) == before + 1
    assert last(runtime)["links"] == [
        {"url": "https://a.example", "kind": "doc"},
        {"url": "https://c.example", "kind": "web"},
    ]


def test_refresh_of_a_page_no_longer_remembered_is_refused(
    client: AdminClient, app: EmDashASGI, runtime: Runtime
) -> None:
    html = client.get(PAGE + "form").text
    for session in list(app.admin.sessions._rows.values()):
        session.pages.clear()
    before = submits(runtime)
    r = client.post(PAGE + "form", {"_key": form_keys(html)[0], **BASE, "f.plan": "gold"})
    assert "no longer known" in r.text and submits(runtime) == before


def test_custom_charts_are_a_table_and_an_svg_without_script(client: AdminClient) -> None:
    html = client.get(PAGE + "chart").text
    assert "<script" not in html and "alert(1)" not in html.replace("&lt;script&gt;alert(1)", "")
    assert "function(){" not in html
    assert html.count('class="bk-chart bk-chart-custom"') == 2
    # Categories as row headers, series as columns, the numbers as text.
    assert '<th scope="row">Mon</th><td class="num">120</td><td class="num">80</td>' in html
    assert '<td class="num">-15</td>' in html
    assert "<rect " in html and "<polyline " in html
    figure = re.search(r'<svg [^>]*aria-labelledby="([^"]+)" aria-describedby="([^"]+)"', html)
    assert figure is not None and f'<table class="bk-table" id="{figure.group(2)}">' in html
    # The pie: one slice per item, the share as text.
    assert '<td class="num">75.0%</td>' in html and html.count("<path d=") == 2
    assert "This chart has no data this admin can draw." in html


def test_read_form_alone() -> None:
    spec: dict[str, Any] = {
        "fields": {"on": "toggle", "n": "number_input", "pick": "select", "x": "text_input"},
        "choices": {"pick": ["a", "b"]},
        "conditions": {"x": {"field": "n", "eq": 1}, "pick": {"field": "on", "neq": True}},
    }
    values, errors = read_form(spec, {"f.n": ["1"], "f.pick": ["zz"], "f.on": ["true"]})
    # pick does not apply (on is true): its forged value is neither sent nor an error.
    assert values == {"on": True, "n": 1, "x": ""} and errors == {}
    values, errors = read_form(spec, {"f.n": ["2"], "f.pick": ["zz"]})
    assert "x" not in values and errors == {"pick": NOT_OFFERED}
    # A toggle's True is not the number 1, nor is 1 True.
    assert not condition_holds({"field": "on", "eq": 1}, {"on": True})
    assert condition_holds({"field": "tags", "eq": "a"}, {"tags": ["a", "b"]})
    assert not condition_holds({"field": "missing", "eq": "a"}, {})


def test_a_select_sent_blank_was_not_offered(client: AdminClient, runtime: Runtime) -> None:
    # A select always sends one of its options; a blank one came from a crafted POST.
    before = submits(runtime)
    html = post(client, {"f.plan": "", "f.size": "s"})
    assert submits(runtime) == before and NOT_OFFERED in html
    # A radio group or checkboxes with nothing chosen send nothing: that is allowed.
    post(client, {"f.plan": "free"})
    assert submits(runtime) == before + 1
    assert last(runtime)["size"] == "" and last(runtime)["tags"] == []


def test_a_form_from_a_page_shown_again_since_cannot_refresh(
    client: AdminClient, runtime: Runtime
) -> None:
    # Two tabs: the form numbers of the first render mean nothing in the second one.
    old_key = form_keys(client.get(PAGE + "form").text)[0]
    client.get(PAGE + "form")
    before = submits(runtime)
    r = client.post(PAGE + "form", {"_key": old_key, **BASE, "_refresh": "1"})
    assert "no longer known" in r.text and submits(runtime) == before
    # A plain submit of that older form still reaches the plugin: its key is still known.
    client.post(PAGE + "form", {"_key": old_key, **BASE})
    assert submits(runtime) == before + 1
