"""``admin`` in the descriptor: the settings schema, pages and widgets, checked at load."""

from __future__ import annotations

from typing import Any

import pytest

import emdash
from emdash import ManifestError
from emdash._model._descriptor import DescriptorError


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"a": {"type": "color", "label": "A"}}, 'setting "a": type must be one of string'),
        ({"a": {"type": "string"}}, 'setting "a": label must be a non-empty string'),
        ({"a": {"type": "secret", "label": "A", "default": "x"}}, "unknown field(s) default"),
        ({"a b": {"type": "string", "label": "A"}}, "setting key 'a b' must be"),
        ({"a": {"type": "number", "label": "A", "min": 5, "max": 1}}, "min is greater than max"),
        ({"a": {"type": "number", "label": "A", "max": 1, "default": 3}}, "default is outside"),
        ({"a": {"type": "select", "label": "A", "options": []}}, "a select needs options"),
        (
            {
                "a": {
                    "type": "select",
                    "label": "A",
                    "options": [{"value": "x", "label": "X"}],
                    "default": "y",
                }
            },
            "default must be the value of one of the options",
        ),
        (
            {
                "a": {
                    "type": "select",
                    "label": "A",
                    "options": [{"value": "x", "label": "X"}, {"value": "x", "label": "Y"}],
                }
            },
            "repeats the value 'x'",
        ),
        ({"a": {"type": "boolean", "label": "A", "default": "yes"}}, "default must be true"),
        ({"a": {"type": "string", "label": "A", "required": "yes"}}, "required must be true"),
    ],
)
def test_invalid_settings_schemas_are_refused_when_the_descriptor_loads(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ManifestError) as info:
        emdash.PluginDescriptor.from_dict({"id": "tuned", "admin": {"settingsSchema": schema}})
    assert 'Invalid plugin "tuned": admin.settingsSchema' in str(info.value)
    assert message in str(info.value)


def test_admin_pages_and_widgets_are_validated_when_the_descriptor_loads() -> None:
    def load(admin: dict[str, Any]) -> str:
        with pytest.raises(ManifestError) as info:
            emdash.PluginDescriptor.from_dict({"id": "p", "admin": admin})
        return str(info.value)

    page = {"path": "/a", "label": "A"}
    assert "admin page path declared twice: /a" in load({"pages": [page, page]})
    assert "admin widget id declared twice: w" in load({"widgets": [{"id": "w"}, {"id": "w"}]})
    assert "admin.pages.0.path" in load({"pages": [{"path": "javascript:x", "label": "A"}]})
    assert "admin.widgets.0.size" in load({"widgets": [{"id": "w", "size": "huge"}]})
    assert "admin.pages" in load({"pages": [{"path": f"/p{i}", "label": "P"} for i in range(33)]})
    assert "admin.entry" in load({"entry": "admin.js"})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        # Shown on the settings page: Block Kit refuses such text there, so the page
        # broke at every view instead of the descriptor being refused once, at load.
        ({"a": {"type": "string", "label": "A\u202eB"}}, 'setting "a": label must not contain'),
        ({"a": {"type": "string", "label": "A", "description": "x\x00"}}, "description must"),
        ({"a": {"type": "string", "label": "A", "placeholder": "\u2066"}}, "placeholder must"),
        ({"a": {"type": "url", "label": "A", "default": "https://x/\x1b"}}, "default must"),
        (
            {"a": {"type": "select", "label": "A", "options": [{"value": "x", "label": "\x7f"}]}},
            "options[0].label must",
        ),
        # math.isfinite(10**400) raised OverflowError out of the descriptor check.
        ({"a": {"type": "number", "label": "A", "max": 10**400}}, "max must be a finite number"),
        ({"a": {"type": "number", "label": "A", "default": -(2**63) - 1}}, "default must be"),
    ],
)
def test_settings_text_and_numbers_the_admin_cannot_show_are_refused_at_load(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ManifestError) as info:
        emdash.PluginDescriptor.from_dict({"id": "tuned", "admin": {"settingsSchema": schema}})
    assert message in str(info.value)


def test_every_problem_of_a_settings_schema_is_reported_with_its_path() -> None:
    schema = {
        "color": {"type": "string", "label": "", "placeholder": "\u202e"},
        "level": {"type": "number", "label": "Level", "min": 5, "max": 1},
        "mode": {
            "type": "select",
            "label": "Mode",
            "options": [{"value": "a", "label": "A"}, {"value": "a", "label": ""}],
            "default": "z",
        },
        "kind": {"type": "colour", "label": "K"},
    }
    with pytest.raises(DescriptorError) as info:
        emdash.PluginDescriptor.from_dict({"id": "tuned", "admin": {"settingsSchema": schema}})
    assert info.value.headline == 'Invalid plugin "tuned"'
    assert [p.split(":", 1)[0] for p in info.value.problems] == [
        "admin.settingsSchema.color.label",
        "admin.settingsSchema.color.placeholder",
        "admin.settingsSchema.level.min",
        "admin.settingsSchema.mode.options[1].label",
        "admin.settingsSchema.mode.options[1].value",
        "admin.settingsSchema.mode.default",
        "admin.settingsSchema.kind.type",
    ]
    # The message (what Python callers see) has every one of them too.
    assert all(p in str(info.value) for p in info.value.problems)
