"""The Block Kit schema on the host: every block validates, hostile output is refused with
the plugin's name and the exact path of the offending value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from emdash import AdminResponseError, EmDashError
from emdash import blocks as bk
from emdash._admin import _blockkit
from emdash._admin._blockkit import (
    BLOCK_TYPES,
    MAX_BLOCKS,
    MAX_RESPONSE_BYTES,
    check_url,
    validate_blocks,
    validate_response,
)


def refused(data: Any) -> AdminResponseError:
    with pytest.raises(AdminResponseError) as info:
        validate_response("acme", data)
    err = info.value
    assert isinstance(err, EmDashError)
    assert err.plugin_id == "acme"
    assert 'Plugin "acme"' in str(err) and "fix the plugin's admin route" in str(err)
    return err


def every_block() -> list[dict[str, Any]]:
    """One of each block type, built with the builders, with every element type inside."""
    options = [bk.option("One", "1"), bk.option("Two", "2")]
    inputs = [
        bk.text_input("t", "Text", placeholder="p", initial_value="x", multiline=True),
        bk.number_input("n", "Number", initial_value=3, min=0, max=10),
        bk.select("s", "Select", options, initial_value="1"),
        bk.toggle("g", "Toggle", description="d", initial_value=True),
        bk.secret_input("k", "Key", has_value=True),
        bk.checkbox("c", "Checks", options, initial_value=["1", "2"]),
        bk.date_input("d", "Date", initial_value="2026-12-07"),
        bk.combobox("cb", "Combo", options),
        bk.radio("r", "Radio", options, initial_value="2", condition=bk.condition("g", eq=True)),
        bk.repeater("rp", "Items", [bk.text_input("name", "Name")], min_items=0, max_items=5),
        bk.media_picker("m", "Image", mime_type_filter="image/*", initial_value="/media/a.png"),
    ]
    return [
        bk.header("Title", block_id="h"),
        bk.section("Text", accessory=bk.button("more", "More", style="primary", value={"id": 1})),
        bk.divider(),
        bk.fields([bk.field("Status", "ok"), bk.field("Count", "3")]),
        bk.table(
            [bk.column("name", "Name", sortable=True), bk.column("n", "N", format="number")],
            [{"name": "a", "n": 1}, {"name": "b", "n": 2.5}],
            page_action_id="page",
            next_cursor="c1",
            empty_text="Nothing",
        ),
        bk.actions(
            [
                bk.button(
                    "del",
                    "Delete",
                    style="danger",
                    confirm=bk.confirm("Sure?", "It goes away", style="danger"),
                )
            ]
        ),
        bk.stats([bk.stat("Visits", 12, trend="up", description="this week")]),
        bk.form("f", inputs, submit="Save", action_id="save"),
        bk.image("https://example.com/a.png", "A picture", title="A"),
        bk.context("small print"),
        bk.columns([bk.header("L")], [bk.header("R")]),
        bk.chart(
            [bk.series("hits", [[1_700_000_000_000, 3], [1_700_000_060_000, 5]], color="#3366ff")],
            style="bar",
            height=200,
        ),
        bk.banner("Heads up", "Something", variant="alert"),
        bk.meter("Quota", 30, max=100, min=0, custom_value="30%"),
        bk.code("echo hi", language="bash"),
        bk.empty("Nothing yet", description="Add one", actions=[bk.button("add", "Add")]),
        bk.accordion("More", [bk.context("inside")], default_open=True),
        bk.tab([bk.panel("A", [bk.context("a")]), bk.panel("B", [])], default_tab=1),
    ]


def test_every_block_and_element_type_built_by_the_builders_validates() -> None:
    blocks = every_block()
    assert {b["type"] for b in blocks} == set(BLOCK_TYPES)
    result = validate_response("acme", bk.response(blocks, toast=bk.toast("Saved", "info")))
    assert result == {"blocks": blocks, "toast": {"message": "Saved", "type": "info"}}
    assert validate_response("acme", {"blocks": []}) == {"blocks": [], "toast": None}


def test_the_result_is_a_private_copy() -> None:
    blocks = [bk.header("Hi")]
    result = validate_response("acme", {"blocks": blocks})
    blocks[0]["text"] = "changed later by the plugin"
    assert result["blocks"][0]["text"] == "Hi"


def test_script_in_a_label_is_kept_as_inert_text() -> None:
    # Escaping is the renderer's job; the schema keeps text exactly as text (never HTML).
    label = "<script>alert(1)</script>"
    result = validate_response("acme", bk.response([bk.header(label)]))
    assert result["blocks"][0]["text"] == label


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "data:image/png;base64,iVBORw0KGgo=",
        "vbscript:x",
        "//evil.example/x",
        "/\\evil.example",
        "https://",
        "relative/path",
        "file:///etc/passwd",
        "",
    ],
)
def test_dangerous_urls_are_refused_in_images_and_media(url: str) -> None:
    assert check_url(url) is not None
    err = refused(bk.response([bk.header("x"), bk.image(url, "alt")]))
    assert err.path == "blocks[1].url"
    picker = bk.media_picker("m", "M", initial_value=url)
    err = refused(bk.response([bk.form("f", [bk.text_input("a", "A"), picker])]))
    assert err.path == "blocks[0].fields[1].initial_value"


@pytest.mark.parametrize("url", ["https://example.com/a.png", "http://x.test/", "/media/a.png"])
def test_http_and_site_urls_are_accepted(url: str) -> None:
    assert check_url(url) is None


def test_unknown_block_and_element_types_are_refused_with_their_path() -> None:
    err = refused({"blocks": [bk.header("a"), bk.divider(), bk.divider(), {"type": "iframe"}]})
    assert err.path == "blocks[3].type"
    assert "unknown block type 'iframe'" in str(err)
    err = refused(
        {"blocks": [bk.actions([bk.button("a", "A"), {"type": "html", "action_id": "x"}])]}
    )
    assert err.path == "blocks[0].elements[1].type"
    # A button may not sit among a form's inputs; only text/number/select/toggle in repeaters.
    err = refused({"blocks": [bk.form("f", [bk.button("b", "B")])]})
    assert err.path == "blocks[0].fields[0].type"
    rep = bk.repeater("r", "R", [bk.secret_input("s", "S")])
    err = refused({"blocks": [bk.form("f", [rep])]})
    assert err.path == "blocks[0].fields[0].fields[0].type"


def test_unknown_fields_are_refused_not_ignored() -> None:
    err = refused({"blocks": [{"type": "header", "text": "a", "html": "<b>x</b>"}]})
    assert err.path == "blocks[0]" and "unknown field 'html'" in str(err)
    err = refused({"blocks": [], "script": "x"})
    assert "unknown field 'script'" in str(err)
    # EmDash's sloppy first-party shapes (text on buttons, banner{style, text}) are refused.
    err = refused({"blocks": [bk.actions([{"type": "button", "action_id": "a", "text": "A"}])]})
    assert err.path == "blocks[0].elements[0]"
    err = refused({"blocks": [{"type": "banner", "style": "info", "text": "x"}]})
    assert err.path == "blocks[0]"


def test_missing_required_fields_name_the_field() -> None:
    err = refused({"blocks": [{"type": "section"}]})
    assert err.path == "blocks[0]" and '"text" is required' in str(err)
    err = refused({"blocks": [bk.actions([{"type": "button", "label": "A"}])]})
    assert '"action_id" is required' in str(err)


def test_oversized_lists_are_refused() -> None:
    err = refused({"blocks": [bk.divider() for _ in range(MAX_BLOCKS + 1)]})
    assert err.path == "blocks" and f"at most {MAX_BLOCKS}" in str(err)
    many = [bk.button(f"b{i}", "B") for i in range(_blockkit.MAX_ELEMENTS + 1)]
    assert refused({"blocks": [bk.actions(many)]}).path == "blocks[0].elements"
    rows = [{"a": i} for i in range(_blockkit.MAX_TABLE_ROWS + 1)]
    table = bk.table([bk.column("a", "A")], rows, page_action_id="p")
    assert refused({"blocks": [table]}).path == "blocks[0].rows"
    options = [bk.option(str(i), str(i)) for i in range(_blockkit.MAX_OPTIONS + 1)]
    err = refused({"blocks": [bk.form("f", [bk.select("s", "S", options)])]})
    assert err.path == "blocks[0].fields[0].options"


def test_nested_blocks_count_towards_the_total_and_nesting_is_bounded() -> None:
    half = MAX_BLOCKS // 2
    acc = bk.accordion("x", [bk.divider() for _ in range(half)])
    err = refused({"blocks": [acc, bk.accordion("y", [bk.divider() for _ in range(half)])]})
    assert "more than" in str(err) and err.path.startswith("blocks[1].blocks[")
    deep: dict[str, Any] = bk.divider()
    for _ in range(_blockkit.MAX_DEPTH + 1):
        deep = bk.accordion("level", [deep])
    err = refused({"blocks": [deep]})
    assert "nest deeper" in str(err)
    assert refused({"blocks": [bk.columns([bk.divider()])]}).path == "blocks[0].columns"


def test_over_long_and_control_character_text_is_refused() -> None:
    err = refused({"blocks": [bk.header("x" * (_blockkit.MAX_LABEL + 1))]})
    assert err.path == "blocks[0].text" and "characters long" in str(err)
    err = refused({"blocks": [bk.section("y" * (_blockkit.MAX_TEXT + 1))]})
    assert err.path == "blocks[0].text"
    for text in ("a\x00b", "a\x1bb", "evil\u202etxt.exe", "\u2066x"):
        err = refused({"blocks": [bk.context(text)]})
        assert err.path == "blocks[0].text" and "control" in str(err)
    # Newlines and tabs are text.
    assert validate_response("acme", {"blocks": [bk.context("a\nb\tc")]})["blocks"]


def test_the_whole_response_is_bounded_in_bytes() -> None:
    big = [bk.code("x" * (_blockkit.MAX_CODE - 10)) for _ in range(20)]
    err = refused({"blocks": big})
    assert f"at most {MAX_RESPONSE_BYTES}" in str(err)


def test_non_json_output_is_refused() -> None:
    cyclic: dict[str, Any] = {"blocks": []}
    cyclic["blocks"].append(cyclic)
    for bad in (
        cyclic,
        {"blocks": [bk.meter("m", math.nan)]},
        {"blocks": [bk.header("x")], "toast": {"message": object(), "type": "info"}},
        {"blocks": ({"type": "divider"},)},  # a tuple is serialised as a list: accepted
    ):
        if isinstance(bad["blocks"], tuple):
            assert validate_response("acme", bad)["blocks"] == [{"type": "divider"}]
            continue
        assert "is not JSON data" in str(refused(bad))
    assert "must be an object" in str(refused([bk.header("x")]))
    assert "must be an object" in str(refused(None))


def test_ids_styles_and_choices_are_checked() -> None:
    assert refused({"blocks": [bk.header("x", block_id="a b")]}).path == "blocks[0].block_id"
    err = refused({"blocks": [bk.actions([bk.button('x"><img src=x>', "B")])]})
    assert err.path == "blocks[0].elements[0].action_id"
    err = refused({"blocks": [bk.actions([bk.button("b", "B", style="evil")])]})
    assert err.path == "blocks[0].elements[0].style"
    options = [bk.option("A", "a"), bk.option("B", "a")]
    err = refused({"blocks": [bk.form("f", [bk.select("s", "S", options)])]})
    assert err.path == "blocks[0].fields[0].options[1].value"
    options = [bk.option("A", "a")]
    err = refused({"blocks": [bk.form("f", [bk.select("s", "S", options, initial_value="z")])]})
    assert err.path == "blocks[0].fields[0].initial_value"
    twice = bk.form("f", [bk.text_input("a", "A"), bk.text_input("a", "B")])
    assert refused({"blocks": [twice]}).path == "blocks[0].fields[1].action_id"
    style = bk.series("s", [[1, 2]], color="red;background:url(x)")
    assert refused({"blocks": [bk.chart([style])]}).path == "blocks[0].config.series[0].color"
    pie = {"type": "chart", "config": {"chart_type": "pie", "options": {}}}
    assert refused({"blocks": [pie]}).path == "blocks[0].config.chart_type"
    listed = {"type": "chart", "config": {"chart_type": "custom", "options": []}}
    assert refused({"blocks": [listed]}).path == "blocks[0].config.options"
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(12):
        node["x"] = {}
        node = node["x"]
    nested = {"type": "chart", "config": {"chart_type": "custom", "options": deep}}
    assert "nests deeper" in refused({"blocks": [nested]}).problem
    extra = {"type": "chart", "config": {"chart_type": "custom", "options": {}, "js": "x"}}
    assert refused({"blocks": [extra]}).path == "blocks[0].config"
    assert refused({"blocks": [], "toast": {"message": "x", "type": "html"}}).path == "toast.type"
    assert refused({"blocks": [bk.tab([bk.panel("A", [])], default_tab=1)]}).path == (
        "blocks[0].default_tab"
    )
    assert refused({"blocks": [bk.meter("m", 1, min=5, max=1)]}).path == "blocks[0].min"


def test_validate_blocks_checks_a_bare_list() -> None:
    assert validate_blocks("acme", [bk.divider()]) == [{"type": "divider"}]
    with pytest.raises(AdminResponseError) as info:
        validate_blocks("acme", [{"type": "nope"}])
    assert info.value.path == "blocks[0].type"


def test_deeply_nested_output_is_refused_not_a_crash() -> None:
    value: Any = "x"
    for _ in range(5000):
        value = [value]
    err = refused({"blocks": [bk.actions([bk.button("b", "B", value=value)])]})
    assert "is not JSON data" in str(err)
    value = [1]
    for _ in range(20):
        value = [value]
    err = refused({"blocks": [bk.actions([bk.button("b", "B", value=value)])]})
    assert err.path == "blocks[0].elements[0].value" + "[0]" * 9
    assert "nests deeper" in str(err)


def test_answers_break_no_exact_json_rule() -> None:
    # A native handler's dict is Python data: json.dumps would turn the key 1 into "1"
    # (and write {1: .., "1": ..} with a duplicate key), and a lone surrogate made the
    # size check raise UnicodeEncodeError, an error outside EmDashError naming nobody.
    row = {"type": "table", "columns": [bk.column("a", "A")], "page_action_id": "p"}
    for bad, where in (
        ({"blocks": [bk.header("a\ud800b")]}, "$.blocks[0].text"),
        ({"blocks": [], "toast": {"message": "\udfff", "type": "info"}}, "$.toast.message"),
        ({"blocks": [{**row, "rows": [{1: "x"}]}]}, "$.blocks[0].rows[0]"),
        ({"blocks": [{**row, "rows": [{1: "x", "1": "y"}]}]}, "$.blocks[0].rows[0]"),
        ({"blocks": [bk.meter("m", 2**70)]}, "$.blocks[0].value"),
    ):
        err = refused(bad)
        assert "is not JSON data" in str(err) and where in str(err), str(err)
    with pytest.raises(AdminResponseError, match="lone surrogate"):
        validate_blocks("acme", [bk.section("\ud800")])


def test_an_oversized_answer_is_refused_before_it_is_copied() -> None:
    # The size is measured on the encoding alone: a bad value deep inside a huge answer
    # is not even looked at (nor a second copy of the answer made).
    big = {"blocks": [bk.code("x" * (_blockkit.MAX_CODE - 10)) for _ in range(20)]}
    big["blocks"].append({"type": "table", "rows": [{1: "\ud800"}]})
    err = refused(big)
    assert f"at most {MAX_RESPONSE_BYTES}" in str(err) and "surrogate" not in str(err)
