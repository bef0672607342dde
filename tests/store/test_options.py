"""Options and plugin KV: JSON values, literal prefixes, and per-plugin scoping."""

from __future__ import annotations

import pytest

from emdash._shared._errors import BridgeError
from emdash._store import Store


def test_options_roundtrip_json_values(store: Store) -> None:
    values = {"s": "text", "i": 3, "f": 2.5, "b": True, "n": None, "l": [1, "x"], "o": {"a": {}}}
    for name, value in values.items():
        store.options.set(name, value)
    for name, value in values.items():
        assert store.options.get(name) == value
    assert store.options.get("missing") is None
    assert store.options.get("missing", "dflt") == "dflt"


def test_options_set_overwrites_and_delete_reports(store: Store) -> None:
    store.options.set("emdash:exclusive_hook:comment:moderate", "plugin-a")
    store.options.set("emdash:exclusive_hook:comment:moderate", "plugin-b")
    assert store.options.get("emdash:exclusive_hook:comment:moderate") == "plugin-b"
    assert store.options.delete("emdash:exclusive_hook:comment:moderate") is True
    assert store.options.delete("emdash:exclusive_hook:comment:moderate") is False


def test_options_list_is_a_literal_sorted_prefix_match(store: Store) -> None:
    for name in ["a_b", "axb", "a%c", "a%", "A_b", "a_", "b", "a\\x", "a\\"]:
        store.options.set(name, name)
    assert list(store.options.list("a_")) == ["a_", "a_b"]
    assert list(store.options.list("a%")) == ["a%", "a%c"]
    assert list(store.options.list("a\\")) == ["a\\", "a\\x"]
    assert list(store.options.list("")) == sorted(
        ["a_b", "axb", "a%c", "a%", "A_b", "a_", "b", "a\\x", "a\\"]
    )


def test_options_list_prefix_at_top_of_unicode(store: Store) -> None:
    top = "\U0010ffff"
    store.options.set(f"z{top}", 1)
    store.options.set(f"z{top}{top}", 2)
    store.options.set("\ud7ffa", 3)
    store.options.set("\ue000", 4)
    assert store.options.list(f"z{top}") == {f"z{top}": 1, f"z{top}{top}": 2}
    assert store.options.list("\ud7ff") == {"\ud7ffa": 3}


def test_options_raw_text_that_is_not_json_is_returned_as_is(store: Store) -> None:
    with store.transaction():
        store._db.execute("INSERT INTO _emdash_options (name, value) VALUES ('legacy', 'not json')")
    assert store.options.get("legacy") == "not json"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "Out of range float values are not JSON compliant"),
        ({1j}, "set is not JSON data"),
        (object(), "object is not JSON data"),
    ],
)
def test_options_refuse_non_json(store: Store, value: object, problem: str) -> None:
    with pytest.raises(BridgeError) as info:
        store.options.set("bad", value)
    assert str(info.value).startswith('Option "bad" must be JSON data')
    assert problem in str(info.value)
    assert store.options.get("bad") is None


def test_kv_basic_operations(store: Store) -> None:
    assert store.kv_entries.get("plugin-a", "settings:color") is None
    store.kv_entries.set("plugin-a", "settings:color", "blue")
    assert store.kv_entries.get("plugin-a", "settings:color") == "blue"
    # One backing store for both modes: the row is an option named plugin:<id>:<key>.
    assert store.options.get("plugin:plugin-a:settings:color") == "blue"
    store.kv_entries.set("plugin-a", "settings:color", {"r": 0})
    assert store.kv_entries.get("plugin-a", "settings:color") == {"r": 0}
    assert store.kv_entries.delete("plugin-a", "settings:color") is True
    assert store.kv_entries.delete("plugin-a", "settings:color") is False


def test_kv_list_strips_prefix_and_sorts(store: Store) -> None:
    for key in ["state:b", "settings:y", "state:a", "settings:x", "cache:z"]:
        store.kv_entries.set("p", key, key.upper())
    assert store.kv_entries.list("p", "state:") == [
        {"key": "state:a", "value": "STATE:A"},
        {"key": "state:b", "value": "STATE:B"},
    ]
    assert [e["key"] for e in store.kv_entries.list("p")] == [
        "cache:z",
        "settings:x",
        "settings:y",
        "state:a",
        "state:b",
    ]


@pytest.mark.parametrize("prefix", ["%", "_", "\\", "st_te", "STATE", "s%"])
def test_kv_list_prefix_is_literal(store: Store, prefix: str) -> None:
    store.kv_entries.set("p", "state:a", 1)
    store.kv_entries.set("p", "State:b", 2)
    assert store.kv_entries.list("p", prefix) == []


def test_kv_list_prefix_with_wildcard_characters_matches_them_literally(store: Store) -> None:
    store.kv_entries.set("p", "100%", 1)
    store.kv_entries.set("p", "100x", 2)
    store.kv_entries.set("p", "a_b", 3)
    store.kv_entries.set("p", "aXb", 4)
    assert store.kv_entries.list("p", "100%") == [{"key": "100%", "value": 1}]
    assert store.kv_entries.list("p", "a_") == [{"key": "a_b", "value": 3}]


@pytest.mark.parametrize(
    "key", ["other:key", "plugin:other:x", "../x", "../other/x", "%", "_", "x"]
)
def test_kv_another_plugins_data_is_unreachable(store: Store, key: str) -> None:
    store.kv_entries.set("other", key, "secret")
    store.kv_entries.set("other", "x", "secret")
    store.options.set("plugin:other:x", "secret")
    assert store.kv_entries.get("mine", key) is None
    assert store.kv_entries.delete("mine", key) is False
    for prefix in ["", key, "other", "other:", "plugin:", "plugin:other:", "../", "%", "_"]:
        assert store.kv_entries.list("mine", prefix) == []
    store.kv_entries.set("mine", key, "mine")
    assert store.kv_entries.get("other", key) == "secret"
    assert store.kv_entries.list("mine") == [{"key": key, "value": "mine"}]


def test_kv_plugin_ids_that_prefix_each_other_stay_apart(store: Store) -> None:
    store.kv_entries.set("ab", "k", "ab")
    store.kv_entries.set("a", "b:k", "a")
    assert store.kv_entries.list("a") == [{"key": "b:k", "value": "a"}]
    assert store.kv_entries.list("ab") == [{"key": "k", "value": "ab"}]


@pytest.mark.parametrize("plugin_id", ["", "Other", "a:b", "a\n", "plugin:x", "x" * 65, None])
def test_kv_rejects_invalid_plugin_ids(store: Store, plugin_id: object) -> None:
    with pytest.raises(BridgeError, match="^Invalid plugin id"):
        store.kv_entries.get(plugin_id, "k")  # type: ignore[arg-type]
    with pytest.raises(BridgeError, match="^Invalid plugin id"):
        store.kv_entries.list(plugin_id)  # type: ignore[arg-type]


def test_kv_key_validation(store: Store) -> None:
    with pytest.raises(BridgeError) as info:
        store.kv_entries.get("p", 5)  # type: ignore[arg-type]
    assert str(info.value) == "Missing required string parameter: key"
    with pytest.raises(BridgeError) as info:
        store.kv_entries.set("p", "", 1)
    assert str(info.value) == (
        "Parameter key must be a non-empty string of at most 1024 characters"
    )
    with pytest.raises(BridgeError, match="lone surrogate"):
        store.kv_entries.set("p", "\ud800", 1)
    with pytest.raises(BridgeError) as info:
        store.kv_entries.list("p", 3)  # type: ignore[arg-type]
    assert str(info.value) == "Parameter prefix must be a string when provided"
    assert store.kv_entries.list("p", None) == []


def test_kv_value_errors_name_the_plugin_and_write_nothing(store: Store) -> None:
    with pytest.raises(BridgeError) as info:
        store.kv_entries.set("p", "k", {"when": float("inf")})
    assert str(info.value).startswith('KV value for key "k" must be JSON data')
    assert info.value.plugin_id == "p"
    with pytest.raises(BridgeError, match=r'^KV value for key "big" is too large: \d+ bytes'):
        store.kv_entries.set("p", "big", "x" * (1024 * 1024))
    assert store.kv_entries.list("p") == []


def test_kv_delete_all_only_touches_that_plugin(store: Store) -> None:
    store.kv_entries.set("a", "k1", 1)
    store.kv_entries.set("a", "k2", 1)
    store.kv_entries.set("ab", "k", 1)
    store.options.set("site", 1)
    assert store.kv_entries.delete_all("a") == 2
    assert store.kv_entries.list("a") == []
    assert store.kv_entries.get("ab", "k") == 1
    assert store.options.get("site") == 1


def test_kv_accepts_keys_up_to_the_limit(store: Store) -> None:
    key = "k" * 1024
    store.kv_entries.set("a" * 64, key, 1)
    assert store.kv_entries.get("a" * 64, key) == 1
    assert store.kv_entries.list("a" * 64, "k" * 1000) == [{"key": key, "value": 1}]
    with pytest.raises(BridgeError, match="at most 1024 characters"):
        store.kv_entries.set("p", key + "k", 1)
