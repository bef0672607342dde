import json
from pathlib import Path
from typing import Any

import pytest

from emdash import Limits, ManifestError, PluginDescriptor


def test_minimal_descriptor_defaults() -> None:
    d = PluginDescriptor.load({"id": "plugin-hello"})
    assert (d.version, d.capabilities, d.allowed_hosts, d.storage, d.limits) == (
        "0.0.0",
        [],
        [],
        {},
        None,
    )


def test_capabilities_are_normalized_and_closed_under_implication() -> None:
    d = PluginDescriptor.load({"id": "x", "capabilities": ["write:content", "network:fetch:any"]})
    assert d.capabilities == [
        "content:write",
        "content:read",
        "network:request:unrestricted",
        "network:request",
    ]


def test_unknown_capability_names_plugin_and_valid_set() -> None:
    with pytest.raises(ManifestError) as info:
        PluginDescriptor.load({"id": "hello", "capabilities": ["content:delete"]})
    msg = str(info.value)
    assert (
        'Invalid capability "content:delete" (did you mean "content:write"?) in plugin "hello". '
        "Valid capabilities: network:request" in msg
    )
    assert info.value.plugin_id == "hello"


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ManifestError, match='Invalid plugin "x": hooks: unknown field'):
        PluginDescriptor.load({"id": "x", "hooks": []})


@pytest.mark.parametrize("bad", ["Hello", "1abc", "@scope/x", "a b", "", "x" * 65])
def test_id_regex(bad: str) -> None:
    with pytest.raises(ManifestError, match="Invalid plugin id"):
        PluginDescriptor.load({"id": bad})


def test_ids_with_underscores_and_dashes_are_fine() -> None:
    assert PluginDescriptor.load({"id": "my_plugin-2"}).id == "my_plugin-2"


def test_storage_indexes_and_queryable_fields() -> None:
    d = PluginDescriptor.load(
        {
            "id": "forms",
            "storage": {
                "submissions": {
                    "indexes": ["formId", ["formId", "createdAt"], "email"],
                    "uniqueIndexes": ["email"],
                }
            },
        }
    )
    coll = d.storage["submissions"]
    assert coll.queryable_fields() == {"formId", "createdAt", "email"}
    # a field set declared both ways becomes a unique index only
    assert coll.index_field_sets() == [
        (("email",), True),
        (("formId",), False),
        (("formId", "createdAt"), False),
    ]


@pytest.mark.parametrize(
    "storage",
    [{"Bad": {}}, {"ok": {"indexes": ["a-b"]}}, {"ok": {"indexes": [[]]}}],
)
def test_storage_validation(storage: dict[str, Any]) -> None:
    with pytest.raises(ManifestError):
        PluginDescriptor.load({"id": "x", "storage": storage})


def test_allowed_hosts_are_lowercased_and_validated() -> None:
    d = PluginDescriptor.load({"id": "x", "allowedHosts": ["API.Example.com.", "*.example.org"]})
    assert d.allowed_hosts == ["api.example.com", "*.example.org"]
    with pytest.raises(ManifestError, match="invalid allowed host 'https://x.com'"):
        PluginDescriptor.load({"id": "x", "allowed_hosts": ["https://x.com"]})


def test_limits() -> None:
    d = PluginDescriptor.load({"id": "x", "limits": {"cpu_ms": 200}})
    assert d.limits == Limits(cpu_ms=200)
    assert d.effective_limits(Limits()).wall_ms == 30_000
    with pytest.raises(ManifestError, match="limits.cpu_ms"):
        PluginDescriptor.load({"id": "x", "limits": {"cpu_ms": 0}})


def test_load_from_toml_resolves_entrypoint_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "emdash-plugin.toml").write_text(
        'id = "hello"\nversion = "1.2.3"\ncapabilities = ["content:read"]\n'
        'entrypoint = "plugin.py"\n[storage.events]\nindexes = ["timestamp"]\n'
    )
    d = PluginDescriptor.load(tmp_path)
    assert d.version == "1.2.3"
    assert d.entrypoint == str((tmp_path / "plugin.py").resolve())
    assert d.storage["events"].queryable_fields() == {"timestamp"}


def test_load_from_json_text_and_file(tmp_path: Path) -> None:
    data = {"id": "hello", "entrypoint": "my_pkg.entry"}
    assert PluginDescriptor.load(json.dumps(data)).entrypoint == "my_pkg.entry"
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    assert PluginDescriptor.load(path).id == "hello"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="Cannot read plugin descriptor"):
        PluginDescriptor.load(tmp_path / "missing.toml")
    bad = tmp_path / "emdash-plugin.toml"
    bad.write_text("id = ")
    with pytest.raises(ManifestError, match="is not valid"):
        PluginDescriptor.load(bad)


@pytest.mark.parametrize(
    "data",
    [
        {"id": "evil\n"},
        {"id": "x", "storage": {"events\n": {}}},
        {"id": "x", "storage": {"events": {"indexes": ["ts\n"]}}},
        {"id": "x", "allowed_hosts": ["example.com\n"]},
    ],
)
def test_trailing_newlines_are_not_identifiers(data: dict[str, Any]) -> None:
    with pytest.raises(ManifestError):
        PluginDescriptor.load(data)


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        ({"name": "N" * 101}, "name", "101 characters long; at most 100"),
        ({"name": "  "}, "name", "is empty"),
        ({"name": "two\nlines"}, "name", "U+000A"),
        ({"name": "Safe\u202etxt.exe"}, "name", "U+202E"),
        ({"description": "D" * 1001}, "description", "at most 1000"),
        ({"description": "bell\u0007"}, "description", "U+0007"),
        ({"admin": {"pages": [{"path": "/a", "label": "L" * 129}]}}, "label", "at most 128"),
        ({"admin": {"pages": [{"path": "/a", "label": "x", "icon": "i" * 65}]}}, "icon", "64"),
        ({"admin": {"widgets": [{"id": "w", "title": "T" * 129}]}}, "title", "at most 128"),
    ],
)
def test_text_the_admin_shows_is_bounded_and_shows_as_itself(
    data: dict[str, Any], where: str, problem: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        PluginDescriptor.load({"id": "shown", **data})
    message = str(caught.value)
    assert 'plugin "shown"' in message and where in message and problem in message
    assert caught.value.plugin_id == "shown"


def test_text_at_its_limits_loads() -> None:
    desc = PluginDescriptor.load(
        {
            "id": "shown",
            "name": "N" * 100,
            "description": "first line\n\tsecond line" + "d" * 900,
            "admin": {"pages": [{"path": "/a", "label": "L" * 128}]},
        }
    )
    assert desc.name == "N" * 100
