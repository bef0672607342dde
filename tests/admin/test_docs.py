"""docs/admin.md stays the reference: every block, element, builder and limit is in it."""

from __future__ import annotations

from pathlib import Path

import emdash.blocks
from emdash._admin import _blockkit
from emdash._shared import _blocks

DOC = (Path(__file__).resolve().parents[2] / "docs" / "admin.md").read_text()


def test_every_block_and_element_type_is_documented() -> None:
    for kind in (*_blockkit.BLOCK_TYPES, *_blockkit.ELEMENT_TYPES):
        assert f"| `{kind}` |" in DOC, kind


def test_every_builder_is_documented_and_public() -> None:
    assert sorted(emdash.blocks.__all__) == sorted(_blocks.BUILDER_NAMES)
    for name in _blocks.BUILDER_NAMES:
        assert f"`bk.{name}`" in DOC, name


def test_the_documented_limits_are_the_enforced_ones() -> None:
    expected = [
        f"| the whole answer, as JSON | {_blockkit.MAX_RESPONSE_BYTES} bytes",
        f"nested ones included | {_blockkit.MAX_BLOCKS} |",
        f"inside each other | {_blockkit.MAX_DEPTH} levels |",
        f"`empty` block's `actions` | {_blockkit.MAX_ELEMENTS} |",
        f"inputs of a form or of a repeater | {_blockkit.MAX_FORM_FIELDS} |",
        f"options of an element | {_blockkit.MAX_OPTIONS} |",
        f"| {_blockkit.MAX_TABLE_COLUMNS} / {_blockkit.MAX_TABLE_ROWS} / {_blockkit.MAX_ROW_KEYS} |",
        f"`fields` pairs | {_blockkit.MAX_ITEMS} |",
        f"tab panels | {_blockkit.MAX_PANELS} |",
        f"| {_blockkit.MAX_SERIES} / {_blockkit.MAX_POINTS} |",
        f"1-{_blockkit.MAX_ID} of",
        f"option labels | {_blockkit.MAX_LABEL} characters |",
        f"descriptions | {_blockkit.MAX_TEXT} characters |",
        f"field values | {_blockkit.MAX_CELL} characters |",
        f"| code | {_blockkit.MAX_CODE} characters |",
        f"| URLs | {_blockkit.MAX_URL} characters |",
        f"| {_blockkit.MAX_VALUE_DEPTH} levels deep |",
        f"| toast message | {_blockkit.MAX_TOAST} characters |",
    ]
    for line in expected:
        assert line in DOC, line


def test_the_route_example_runs_in_both_modes(tmp_path: Path) -> None:
    import emdash

    section = DOC.split("## The `admin` route", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    descriptor = {"id": "notes", "admin": {"pages": [{"path": "/notes", "label": "Notes"}]}}
    for trusted in (False, True):
        with emdash.Runtime(tmp_path / f"{trusted}.db") as rt:
            rt.add_plugin(descriptor, source={"plugin.py": source}, trusted=trusted)
            saved = rt.admin.interact(
                "notes", {"type": "form_submit", "action_id": "save", "values": {"note": "hi"}}
            )
            assert saved["toast"] == {"message": "Saved", "type": "success"}
            assert saved["blocks"][1] == {"type": "section", "text": "Current note: hi"}
