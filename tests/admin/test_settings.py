"""Settings from ``admin.settingsSchema``: the generated page, validated all-or-nothing
saves, secrets never echoed, and the plugin reading its values through ctx.kv in both
modes (real sandbox workers for the sandboxed runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import AdminInteractionError

READER = """
from emdash import define_plugin

def read(route_ctx, ctx):
    return {key: ctx.kv.get("settings:" + key) for key in ("title", "limit", "on", "mode", "token")}

plugin = define_plugin(routes={"read": read})
"""

SCHEMA: dict[str, Any] = {
    "title": {"type": "string", "label": "Title", "default": "Hello", "required": True},
    "limit": {"type": "number", "label": "Limit", "min": 1, "max": 50, "default": 10},
    "on": {"type": "boolean", "label": "Enabled", "description": "Turn it on"},
    "mode": {
        "type": "select",
        "label": "Mode",
        "options": [{"value": "fast", "label": "Fast"}, {"value": "safe", "label": "Safe"}],
        "default": "safe",
    },
    "token": {"type": "secret", "label": "API token"},
    "site": {"type": "url", "label": "Site", "placeholder": "https://..."},
    "contact": {"type": "email", "label": "Contact"},
    "notes": {"type": "string", "label": "Notes", "multiline": True},
}
SECRET = "s3cr3t-value-never-shown"
MODES = pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "native"])


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[emdash.Runtime]:
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        yield runtime


def add(rt: emdash.Runtime, trusted: bool = True) -> None:
    rt.add_plugin(
        {"id": "tuned", "name": "Tuned", "admin": {"settingsSchema": SCHEMA}},
        source={"plugin.py": READER},
        trusted=trusted,
    )


def inputs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    form = next(b for b in answer["blocks"] if b["type"] == "form")
    assert form["block_id"] == "emdash-settings"
    assert form["submit"] == {"label": "Save settings", "action_id": "emdash:save_settings"}
    return {field["action_id"]: field for field in form["fields"]}


def test_the_page_has_one_input_per_field_with_defaults(rt: emdash.Runtime) -> None:
    add(rt)
    page = rt.admin.settings_page("tuned")
    assert page["toast"] is None and page["errors"] == {}
    assert page["blocks"][0] == {"type": "header", "text": "Tuned settings"}
    fields = inputs(page)
    assert list(fields) == list(SCHEMA)
    assert fields["title"] == {
        "type": "text_input",
        "action_id": "title",
        "label": "Title",
        "initial_value": "Hello",
    }
    assert fields["limit"]["type"] == "number_input"
    assert (fields["limit"]["min"], fields["limit"]["max"], fields["limit"]["initial_value"]) == (
        1,
        50,
        10,
    )
    assert fields["on"] == {
        "type": "toggle",
        "action_id": "on",
        "label": "Enabled",
        "initial_value": False,
        "description": "Turn it on",
    }
    assert fields["mode"]["initial_value"] == "safe"
    assert [o["value"] for o in fields["mode"]["options"]] == ["fast", "safe"]
    assert fields["token"] == {
        "type": "secret_input",
        "action_id": "token",
        "label": "API token",
        "placeholder": "not set",
        "has_value": False,
    }
    assert fields["site"]["placeholder"] == "https://..."
    assert fields["notes"]["multiline"] is True


@MODES
def test_saved_settings_are_what_the_plugin_reads(rt: emdash.Runtime, trusted: bool) -> None:
    add(rt, trusted)
    answer = rt.admin.save_settings(
        "tuned",
        # As an HTML form posts them: strings for numbers and booleans.
        {"title": "Mine", "limit": "25", "on": "on", "mode": "fast", "token": SECRET},
    )
    assert answer["toast"] == {"message": "Settings saved", "type": "success"}
    assert answer["errors"] == {}
    assert rt.invoke_route("tuned", "read") == {
        "title": "Mine",
        "limit": 25,
        "on": True,
        "mode": "fast",
        "token": SECRET,
    }
    assert rt.store.kv_entries.get("tuned", "settings:limit") == 25


def test_secrets_are_never_echoed_and_an_empty_one_keeps_its_value(rt: emdash.Runtime) -> None:
    add(rt)
    saved = rt.admin.save_settings("tuned", {"token": SECRET})
    assert SECRET not in json.dumps(saved)
    page = rt.admin.settings_page("tuned")
    assert SECRET not in json.dumps(page)
    token = inputs(page)["token"]
    assert token["has_value"] is True and token["placeholder"] == "set (leave empty to keep)"
    listed = rt.admin.settings("tuned")
    assert SECRET not in json.dumps(listed)
    assert listed["secretsSet"] == ["token"] and "token" not in listed["values"]

    rt.admin.save_settings("tuned", {"token": "", "title": "New"})
    assert rt.store.kv_entries.get("tuned", "settings:token") == SECRET
    # A refused save does not echo a submitted secret either.
    refused = rt.admin.save_settings("tuned", {"token": "other-secret", "limit": 500})
    assert "other-secret" not in json.dumps(refused) and refused["errors"]
    assert rt.store.kv_entries.get("tuned", "settings:token") == SECRET
    # None removes a value (secrets included).
    rt.admin.save_settings("tuned", {"token": None})
    assert rt.store.kv_entries.get("tuned", "settings:token") is None
    assert rt.admin.settings("tuned")["secretsSet"] == []


def test_user_mistakes_come_back_as_field_errors_and_nothing_is_written(
    rt: emdash.Runtime,
) -> None:
    add(rt)
    answer = rt.admin.save_settings(
        "tuned",
        {
            "title": "Kept?",
            "limit": "500",
            "on": "maybe",
            "mode": "turbo",
            "site": "javascript:alert(1)",
            "contact": "nobody",
            "bogus": 1,
        },
    )
    assert answer["errors"] == {
        "limit": "must be at most 50",
        "on": "must be true or false",
        "mode": "is not one of the options",
        "site": "must be an http:// or https:// URL",
        "contact": "must be an email address",
        "bogus": 'Unknown setting "bogus" for plugin "tuned"',
    }
    assert answer["toast"] == {
        "message": "Settings not saved: 6 fields need attention",
        "type": "error",
    }
    # All-or-nothing: the valid title was not written either.
    assert rt.store.kv_entries.get("tuned", "settings:title") is None
    # The form comes back refilled with what was typed, and a banner lists the problems.
    assert inputs(answer)["title"]["initial_value"] == "Kept?"
    banner = next(b for b in answer["blocks"] if b["type"] == "banner")
    assert banner["variant"] == "error" and "Limit: must be at most 50" in banner["description"]

    assert rt.admin.save_settings("tuned", {"limit": 0.5})["errors"] == {
        "limit": "must be at least 1"
    }
    assert rt.admin.save_settings("tuned", {"limit": "ten"})["errors"] == {
        "limit": "must be a number"
    }
    assert rt.admin.save_settings("tuned", {"title": "a\x00b"})["errors"] == {
        "title": "contains control characters"
    }
    assert rt.admin.save_settings("tuned", {"title": "x" * 5000})["errors"] == {
        "title": "is longer than 4000 characters"
    }


def test_required_fields_may_not_be_left_empty(rt: emdash.Runtime) -> None:
    add(rt)
    # Unset, its default applies: saving other fields is fine.
    assert rt.admin.save_settings("tuned", {"limit": 3})["errors"] == {}
    one = rt.admin.save_settings("tuned", {"title": "  "})
    assert one["errors"] == {"title": "is required"}
    assert one["toast"]["message"] == "Settings not saved: 1 field needs attention"
    assert rt.admin.save_settings("tuned", {"title": None})["errors"] == {"title": "is required"}


def test_form_strings_are_coerced(rt: emdash.Runtime) -> None:
    add(rt)
    rt.admin.save_settings("tuned", {"on": "true", "limit": " 7 ", "notes": "line 1\nline 2"})
    kv = rt.store.kv_entries
    assert (kv.get("tuned", "settings:on"), kv.get("tuned", "settings:limit")) == (True, 7)
    assert kv.get("tuned", "settings:notes") == "line 1\nline 2"
    rt.admin.save_settings("tuned", {"on": "false", "limit": "2.5"})
    assert (kv.get("tuned", "settings:on"), kv.get("tuned", "settings:limit")) == (False, 2.5)
    rt.admin.save_settings("tuned", {"limit": ""})  # an emptied number input: unset
    assert kv.get("tuned", "settings:limit") is None
    # A single-line string refuses newlines (a multiline one accepts them, above).
    assert rt.admin.save_settings("tuned", {"title": "a\nb"})["errors"] == {
        "title": "contains control characters"
    }


def test_values_the_plugin_wrote_itself_are_shown_only_if_the_schema_accepts_them(
    rt: emdash.Runtime,
) -> None:
    add(rt)
    kv = rt.store.kv_entries
    kv.set("tuned", "settings:limit", 9999)
    kv.set("tuned", "settings:mode", "<script>")
    kv.set("tuned", "settings:title", "x" * 9000)
    fields = inputs(rt.admin.settings_page("tuned"))
    assert fields["limit"]["initial_value"] == 10
    assert fields["mode"]["initial_value"] == "safe"
    assert fields["title"]["initial_value"] == "Hello"


def test_bad_calls_are_the_callers_errors(rt: emdash.Runtime) -> None:
    add(rt)
    with pytest.raises(AdminInteractionError, match="values must be a mapping"):
        rt.admin.save_settings("tuned", ["title"])  # type: ignore[arg-type]


def test_a_full_quota_is_an_error_toast_and_nothing_is_written(tmp_path: Path) -> None:
    quotas = {"tuned": emdash.Quotas(stored_rows=1)}
    with emdash.Runtime(tmp_path / "q.db", plugin_quotas=quotas) as rt:
        add(rt)
        answer = rt.admin.save_settings("tuned", {"title": "One", "limit": 2})
        assert answer["toast"]["type"] == "error" and "quota" in answer["toast"]["message"].lower()
        # All-or-nothing across the transaction: the first row was rolled back too.
        assert rt.store.kv_entries.get("tuned", "settings:title") is None


def test_a_number_is_written_the_way_a_number_input_writes_it(rt: emdash.Runtime) -> None:
    # float() also takes "1_0", other scripts' digits and "inf": text the admin's number
    # input never sends must be refused, not stored as some number it happens to parse to.
    add(rt)
    for sent in ("1_0", "١٢", "0x10", "1e", "--1", "inf", "nan", "1.5.2", "２"):
        answer = rt.admin.save_settings("tuned", {"limit": sent})
        assert answer["errors"] == {"limit": "must be a number"}, sent
    assert rt.store.kv_entries.get("tuned", "settings:limit") is None
    for sent, stored in (
        (" +12 ", 12),
        ("1.5e1", 15.0),
        ("2.50", 2.5),
        ("1E1", 10.0),
        (".5e1", 5.0),
    ):
        assert rt.admin.save_settings("tuned", {"limit": sent})["errors"] == {}, sent
        assert rt.store.kv_entries.get("tuned", "settings:limit") == stored


def test_an_integer_past_int64_is_a_field_error_not_a_crash(rt: emdash.Runtime) -> None:
    # math.isfinite(10**400) raises OverflowError, which escaped save_settings (outside
    # EmDashError; the admin page said the plugin "could not answer").
    add(rt)
    for sent in (10**400, 2**63, -(2**63) - 1):
        answer = rt.admin.save_settings("tuned", {"limit": sent})
        assert answer["errors"] == {"limit": "is too large a number"}
    assert rt.store.kv_entries.get("tuned", "settings:limit") is None


def test_a_save_is_audited_with_the_changed_keys_never_a_value(rt: emdash.Runtime) -> None:
    add(rt)
    ok = rt.admin.save_settings("tuned", {"title": "Hi", "token": SECRET, "mode": "safe"})
    assert ok["toast"]["type"] == "success"
    again = rt.admin.save_settings("tuned", {"title": "Hi", "token": ""})  # nothing changes
    assert again["toast"]["type"] == "success"
    refused = rt.admin.save_settings("tuned", {"limit": "500", "title": SECRET})
    assert refused["errors"]
    entries = [r for r in rt.audit_log(plugin_id="tuned") if r["kind"] == "admin"]
    # Newest first. "mode" was saved as its default but nothing was stored: it changed too.
    assert [(r["name"], r["outcome"]) for r in entries] == [
        ("settings: none", "error"),
        ("settings: no change", "ok"),
        ("settings: title, mode, token", "ok"),
    ]
    assert entries[0]["error"] == "refused: 1 field(s) did not validate"
    assert entries[2]["logs"] == [
        {
            "level": "info",
            "message": "changed settings: title, mode, token (secret, value not recorded: token)",
        }
    ]
    assert SECRET not in json.dumps(rt.audit_log(limit=1000))
    # The store's own query and the CLI's --kind take the new kind.
    page = rt.audit_query(plugin_id="tuned", kind="admin")
    assert page.total == 3
