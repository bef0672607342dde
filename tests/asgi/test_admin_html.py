"""The Block Kit renderer on its own, fed what the host's validator would refuse: the
renderer must stay safe even if a response got past validation (defence in depth)."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from emdash._asgi._admin_html import MAX_BLOCKS, MAX_DEPTH, BlockRenderer, esc, layout, safe_url

SCRIPT = "<script>alert(1)</script>"


def render(blocks: Any) -> tuple[str, list[dict[str, Any]]]:
    remembered: list[dict[str, Any]] = []

    def remember(spec: dict[str, Any]) -> str:
        remembered.append(spec)
        return f"k{len(remembered)}"

    renderer = BlockRenderer(
        csrf="tok",
        action="/_emdash/admin/x",
        remember=remember,
        context={"plugin": "p", "page": "/x"},
        heading=2,
    )
    return renderer.render(blocks), remembered


def test_unknown_block_and_element_types_render_no_content() -> None:
    html, _ = render(
        [
            {"type": "script", "text": SCRIPT},
            {"type": "html", "html": SCRIPT},
            {"type": "__proto__"},
            {"text": SCRIPT},
            SCRIPT,
            ["nested", SCRIPT],
            {
                "type": "actions",
                "elements": [{"type": "iframe", "action_id": "a", "label": SCRIPT}],
            },
            {
                "type": "form",
                "fields": [{"type": "raw_html", "action_id": "a", "label": SCRIPT}],
                "submit": {"label": "Go", "action_id": "go"},
            },
        ]
    )
    assert "alert(1)" not in html and "script" not in html.lower()
    assert html.count('class="bk-notice"') == 8


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x.png",
        "\\\\evil.example\\x",
        "https://user:pw@evil.example/",
        "vbscript:x",
        "",
    ],
)
def test_only_http_urls_and_site_paths_are_used(url: str) -> None:
    assert safe_url(url) is None
    html, _ = render([{"type": "image", "url": url, "alt": "A"}])
    assert "href" not in html and "src=" not in html


def test_urls_and_alt_text_are_escaped() -> None:
    html, _ = render(
        [
            {"type": "image", "url": 'https://x.example/a?"><script>', "alt": SCRIPT},
            {"type": "image", "url": "/media/a.png", "alt": '" onerror="alert(1)'},
        ]
    )
    assert safe_url("https://x.example/a") == "https://x.example/a"
    assert "<script" not in html
    assert 'href="https://x.example/a?&quot;&gt;&lt;script&gt;"' in html
    assert '<img src="/media/a.png" alt="&quot; onerror=&quot;alert(1)">' in html


def test_oversized_block_lists_are_cut_with_a_notice() -> None:
    html, _ = render([{"type": "section", "text": f"row {n}"} for n in range(5000)])
    assert html.count('class="bk-section"') == MAX_BLOCKS
    assert f"row {MAX_BLOCKS - 1}<" in html and f"row {MAX_BLOCKS}<" not in html
    assert f"{5000 - MAX_BLOCKS} more blocks were not shown" in html


def test_deep_nesting_stops() -> None:
    block: dict[str, Any] = {"type": "section", "text": "deepest"}
    for _ in range(50):
        block = {"type": "accordion", "label": "a", "blocks": [block]}
    html, _ = render([block])
    assert html.count("<details") == MAX_DEPTH
    assert "deepest" not in html and "more blocks were not shown" in html


def test_non_scalar_text_is_not_stringified() -> None:
    html, _ = render(
        [{"type": "header", "text": {"__html": SCRIPT}}, {"type": "section", "text": [SCRIPT]}]
    )
    assert "alert" not in html
    assert esc(None) == "" and esc(True) == "true" and esc(3) == "3"


def test_chart_colours_and_names_from_plugins_are_checked() -> None:
    html, _ = render(
        [
            {
                "type": "chart",
                "config": {
                    "chart_type": "timeseries",
                    "series": [
                        {"name": SCRIPT, "data": [[0, 1], [1, 2]], "color": 'red" onload="x'},
                        {
                            "name": "b",
                            "data": [[0, 3], [1, float("nan")], ["x", 1]],
                            "color": "#abc",
                        },
                    ],
                },
            },
            {"type": "chart", "config": {"chart_type": "custom", "options": {"x": SCRIPT}}},
        ]
    )
    assert "onload" not in html and "<script" not in html
    assert 'stroke="#abc"' in html and "<svg" in html
    assert "This chart has no data this admin can draw." in html


def test_forms_label_every_input_and_remember_their_types() -> None:
    html, remembered = render(
        [
            {
                "type": "form",
                "block_id": "b1",
                "fields": [
                    {
                        "type": "text_input",
                        "action_id": "name",
                        "label": "Name",
                        "initial_value": SCRIPT,
                    },
                    {"type": "secret_input", "action_id": "key", "label": "Key", "has_value": True},
                    {
                        "type": "checkbox",
                        "action_id": "tags",
                        "label": "Tags",
                        "options": [{"label": "A", "value": "a"}],
                        "initial_value": ["a"],
                    },
                ],
                "submit": {"label": "Save", "action_id": "save"},
            }
        ]
    )
    assert remembered == [
        {
            "plugin": "p",
            "page": "/x",
            "kind": "form_submit",
            "action_id": "save",
            "block_id": "b1",
            "form": 0,
            "fields": {"name": "text_input", "key": "secret_input", "tags": "checkbox"},
            "choices": {"tags": ["a"]},
            "conditions": {},
            "repeaters": {},
        }
    ]
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "<legend>Tags</legend>" in html and " checked>" in html
    assert 'type="password" autocomplete="off"' in html
    assert 'name="_csrf" value="tok"' in html and 'name="_key" value="k1"' in html
    for ident in __import__("re").findall(r' id="(bk-[^"]+)"', html):
        assert f'for="{ident}"' in html


def _every_block() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every block and input type, built by the builder and passed by the host."""
    from emdash import blocks as bk
    from emdash._admin._blockkit import validate_response

    opts = [bk.option("One", "1"), bk.option("Two", "2")]
    inputs = [
        bk.text_input("t", "Text", multiline=True),
        bk.number_input("n", "Number", min=0, max=9),
        bk.select("s", "Select", opts, initial_value="2"),
        bk.radio("r", "Radio", opts),
        bk.combobox("c", "Combo", opts),
        bk.checkbox("x", "Check", opts, initial_value=["1"]),
        bk.toggle("g", "Toggle", description="Helps"),
        bk.secret_input("k", "Secret"),
        bk.date_input("d", "Date"),
        bk.media_picker("m", "Media"),
    ]
    response = validate_response(
        "p",
        bk.response(
            [
                bk.header("H"),
                bk.section("S", accessory=bk.button("b", "B", value={"x": 1})),
                bk.divider(),
                bk.fields([bk.field("L", "V")]),
                bk.table(
                    [
                        bk.column("a", "A", sortable=True),
                        bk.column("t", "T", format="relative_time"),
                    ],
                    [{"a": "1", "t": "2026-01-01T00:00:00Z"}],
                    page_action_id="page",
                    next_cursor="c2",
                ),
                bk.actions(
                    [
                        bk.button(
                            "go",
                            "Go",
                            style="danger",
                            confirm=bk.confirm("Sure?", "Really", confirm="Yes", deny="No"),
                        )
                    ]
                ),
                bk.stats([bk.stat("Visits", 3)]),
                bk.form("f", inputs, submit="Save"),
                bk.image("/media/x.png", "X"),
                bk.context("C"),
                bk.columns([bk.context("left")], [bk.context("right")]),
                bk.chart([bk.series("s", [[0, 1], [1, 3]])], style="bar"),
                bk.banner("Title", "Desc", variant="alert"),
                bk.meter("Used", 3, max=10),
                bk.code("print(1)", language="bash"),
                bk.empty("Nothing", description="D", command_line="emdash x"),
                bk.accordion("More", [bk.context("inside")], default_open=True),
                bk.tab([bk.panel("P1", [bk.context("p1")]), bk.panel("P2", [bk.context("p2")])]),
            ]
        ),
    )
    return response["blocks"], inputs


def test_every_block_and_input_type_of_the_builder_renders() -> None:
    blocks, inputs = _every_block()
    html, remembered = render(blocks)
    assert "bk-notice" not in html
    for text in ("inside", "p2", "right", "Visits", 'list="', "<datalist", "<time datetime="):
        assert text in html, text
    kinds = {spec["kind"] for spec in remembered}
    assert kinds == {"form_submit", "block_action"}
    form = next(spec for spec in remembered if spec["kind"] == "form_submit")
    assert sorted(form["fields"]) == sorted(e["action_id"] for e in inputs)
    sorts = [s["value"] for s in remembered if s.get("action_id") == "page"]
    assert {"cursor": "c2"} in sorts and {"sort": {"key": "a", "dir": "desc"}} in sorts


@pytest.mark.parametrize(
    "url",
    [
        "/_emdash/admin/plugins/other/pages/x",
        "/admin/plugins/other/pages/x",
        "/blog/_emdash/admin/",  # the site mounted under a prefix
        "/_EMDASH/api/plugins/other/route",
        "/%5Femdash/admin/",  # the server decodes the path before routing
        "/media/../_emdash/admin/",  # the browser removes dot segments before requesting
        "/media/%2e%2e/admin",
        "/media/./x.png",
    ],
)
def test_an_image_never_loads_an_admin_or_api_path(url: str) -> None:
    # Same origin: the browser would send the admin's cookie with the image request, so a
    # plugin could make every admin who opens its page run another plugin's page_load.
    html, _ = render([{"type": "image", "url": url, "alt": "A"}])
    assert "<img" not in html and "href" not in html
    assert "image address not shown" in html


def test_an_image_on_an_ordinary_site_path_is_shown() -> None:
    html, _ = render([{"type": "image", "url": "/media/admins.png?v=2", "alt": "A"}])
    assert '<img src="/media/admins.png?v=2" alt="A">' in html


def test_text_that_utf8_cannot_carry_does_not_break_the_page() -> None:
    # A native plugin's exception text reaches the page as an error banner; a lone
    # surrogate in it made encoding the page raise (a 500 without the security headers).
    error = "boom \udfff <b>"
    page = layout(
        base="/a/",
        title="t\ud800",
        body="<p>" + esc(error) + "</p>",
        csrf=None,
        notice=("error", "x\ud83d"),
    )
    assert "boom \ufffd &lt;b&gt;" in page
    page.encode("utf-8")


HOSTILE_TEXTS = (
    '"><script>alert(1)</script>',
    "' onmouseover='alert(1)",
    "</textarea><svg onload=alert(1)>",
    "</title></style><img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    " \x01JaVaScRiPt:alert(1)",
    "&#106;avascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
)


def _strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "type":
                yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))
    elif isinstance(value, str):
        yield path


def _replaced(value: Any, path: tuple[Any, ...], text: str) -> Any:
    if not path:
        return text
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], text)
    return copy


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((name, value or "") for name, value in attrs)


def test_hostile_text_in_any_string_field_stays_text() -> None:
    # Every string the builder puts anywhere in any block (labels, values, ids, option
    # values, URLs, chart names...), replaced in turn by each hostile text: the renderer
    # must produce the same elements and no script-capable attribute or URL.
    blocks, _ = _every_block()
    baseline = _Markup()
    baseline.feed(render(blocks)[0])
    allowed_tags = set(baseline.tags) | {"polyline"}  # the chart drawn as lines, not bars
    paths = list(_strings(blocks))
    assert len(paths) > 60
    for path in paths:
        for text in HOSTILE_TEXTS:
            markup = _Markup()
            markup.feed(render(_replaced(blocks, path, text))[0])
            assert set(markup.tags) <= allowed_tags, (path, text)
            for name, value in markup.attrs:
                assert not name.startswith("on") and name != "style", (path, text, name)
                if name in ("href", "src", "action", "formaction"):
                    link = value.strip().lower()
                    assert link.startswith(("/", "https://", "http://")), (path, text, value)
