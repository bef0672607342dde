"""KV and storage through the bridge on a real SQLite store: behaviour, texts, and scoping."""

from __future__ import annotations

from typing import Any

import pytest

from emdash._bridge._dispatch import Bridge
from emdash._shared._errors import BridgeError, InvalidCursorError, StorageQueryError

NOT_DECLARED = (
    "Storage collection not declared: {} (declare it under [storage] in the plugin descriptor)"
)


def call(bridge: Bridge, pid: str, method: str, **params: Any) -> Any:
    return bridge.dispatch(pid, method, params)


# --- KV ----------------------------------------------------------------------------------


def test_kv_round_trip(bridge: Bridge) -> None:
    assert call(bridge, "alpha", "kv/get", key="k") is None
    assert call(bridge, "alpha", "kv/set", key="k", value={"a": [1, 2]}) is None
    assert call(bridge, "alpha", "kv/get", key="k") == {"a": [1, 2]}
    call(bridge, "alpha", "kv/set", key="k", value="replaced")
    assert call(bridge, "alpha", "kv/get", key="k") == "replaced"
    assert call(bridge, "alpha", "kv/delete", key="k") is True
    assert call(bridge, "alpha", "kv/delete", key="k") is False


def test_kv_list_prefix_is_literal(bridge: Bridge) -> None:
    for key in ("settings:a", "settings:b", "settingsXa", "state:x", "a%b", "a_b", "axb"):
        call(bridge, "alpha", "kv/set", key=key, value=key)
    listed = call(bridge, "alpha", "kv/list", prefix="settings:")
    assert sorted(e["key"] for e in listed) == ["settings:a", "settings:b"]
    assert [e["key"] for e in call(bridge, "alpha", "kv/list", prefix="a%")] == ["a%b"]
    assert [e["key"] for e in call(bridge, "alpha", "kv/list", prefix="a_")] == ["a_b"]
    assert len(call(bridge, "alpha", "kv/list")) == 7


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("kv/get", {}, "Missing required string parameter: key"),
        ("kv/get", {"key": 5}, "Missing required string parameter: key"),
        ("kv/set", {"value": 1}, "Missing required string parameter: key"),
        ("kv/delete", {"key": None}, "Missing required string parameter: key"),
        ("kv/list", {"prefix": 1}, "Parameter prefix must be a string when provided"),
    ],
)
def test_kv_param_texts(bridge: Bridge, method: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", method, params)
    assert str(info.value) == message


# --- scoping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "alpha:secret",
        "plugin:alpha:secret",
        "../alpha/secret",
        "%",
        "secret\x00",
        "SECRET",
    ],
)
def test_another_plugins_kv_is_unreachable_whatever_the_key(
    bridge: Bridge, store: Any, key: str
) -> None:
    call(bridge, "alpha", "kv/set", key="secret", value="alpha's")
    assert call(bridge, "beta", "kv/get", key=key) is None
    assert call(bridge, "beta", "kv/delete", key=key) is False
    assert call(bridge, "beta", "kv/list", prefix="") == []
    assert call(bridge, "beta", "kv/list", prefix="plugin:alpha") == []
    assert store.kv_entries.get("alpha", "secret") == "alpha's"


def test_plugin_id_inside_params_is_ignored(bridge: Bridge, store: Any) -> None:
    call(bridge, "beta", "kv/set", key="k", value="beta's", pluginId="alpha", plugin_id="alpha")
    call(
        bridge, "beta", "storage/put", collection="events", id="e", data={"x": 1}, pluginId="alpha"
    )
    assert store.kv_entries.get("alpha", "k") is None
    assert store.kv_entries.get("beta", "k") == "beta's"
    assert store.plugin_documents.get("alpha", "events", "e") is None
    assert store.plugin_documents.get("beta", "events", "e") == {"x": 1}


def test_another_plugins_storage_is_unreachable(bridge: Bridge, store: Any) -> None:
    # Both plugins declare a collection named "events": same name, separate data.
    call(
        bridge,
        "alpha",
        "storage/put",
        collection="events",
        id="e1",
        data={"type": "a", "ref": "r1"},
    )
    assert call(bridge, "beta", "storage/get", collection="events", id="e1") is None
    assert call(bridge, "beta", "storage/exists", collection="events", id="e1") is False
    assert call(bridge, "beta", "storage/getMany", collection="events", ids=["e1"]) == []
    assert call(bridge, "beta", "storage/count", collection="events") == 0
    assert call(bridge, "beta", "storage/query", collection="events") == {
        "items": [],
        "hasMore": False,
    }
    assert (
        call(bridge, "beta", "storage/query", collection="events", where={"type": "a"})["items"]
        == []
    )
    assert call(bridge, "beta", "storage/delete", collection="events", id="e1") is False
    assert call(bridge, "beta", "storage/deleteMany", collection="events", ids=["e1"]) == 0
    # A unique index of alpha's does not constrain beta (and beta's write lands in beta's rows).
    call(
        bridge, "beta", "storage/put", collection="events", id="e1", data={"type": "b", "ref": "r1"}
    )
    assert call(bridge, "alpha", "storage/get", collection="events", id="e1") == {
        "type": "a",
        "ref": "r1",
    }
    assert call(bridge, "beta", "storage/get", collection="events", id="e1") == {
        "type": "b",
        "ref": "r1",
    }
    # A collection only alpha declared is refused for beta before the store is touched.
    with pytest.raises(BridgeError) as info:
        call(bridge, "beta", "storage/get", collection="notes", id="x")
    assert str(info.value) == NOT_DECLARED.format("notes")


# --- storage behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "storage/get",
        "storage/put",
        "storage/delete",
        "storage/exists",
        "storage/query",
        "storage/count",
        "storage/getMany",
        "storage/putMany",
        "storage/deleteMany",
    ],
)
def test_every_storage_method_requires_a_declared_collection(bridge: Bridge, method: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch(
            "alpha", method, {"collection": "secrets", "id": "x", "ids": [], "items": []}
        )
    assert str(info.value) == NOT_DECLARED.format("secrets")
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("bare", method, {"collection": "events"})
    assert str(info.value) == NOT_DECLARED.format("events")
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", method, {"id": "x"})
    assert str(info.value) == "Missing required string parameter: collection"


def test_storage_documents(bridge: Bridge) -> None:
    assert (
        call(
            bridge,
            "alpha",
            "storage/put",
            collection="events",
            id="e1",
            data={"type": "x", "timestamp": 1},
        )
        is None
    )
    assert call(bridge, "alpha", "storage/get", collection="events", id="e1") == {
        "type": "x",
        "timestamp": 1,
    }
    assert call(bridge, "alpha", "storage/exists", collection="events", id="e1") is True
    assert call(bridge, "alpha", "storage/exists", collection="events", id="e2") is False
    assert call(bridge, "alpha", "storage/delete", collection="events", id="e1") is True
    assert call(bridge, "alpha", "storage/get", collection="events", id="e1") is None


def test_storage_batches(bridge: Bridge) -> None:
    items = [
        {"id": i, "data": {"type": "t", "timestamp": n}}
        for n, i in enumerate(["a", "__proto__", "c"])
    ]
    assert call(bridge, "alpha", "storage/putMany", collection="events", items=items) is None
    pairs = call(
        bridge, "alpha", "storage/getMany", collection="events", ids=["__proto__", "missing", "a"]
    )
    assert pairs == [
        ["__proto__", {"type": "t", "timestamp": 1}],
        ["a", {"type": "t", "timestamp": 0}],
    ]
    assert call(bridge, "alpha", "storage/getMany", collection="events", ids=[]) == []
    assert (
        call(bridge, "alpha", "storage/deleteMany", collection="events", ids=["a", "c", "zzz"]) == 2
    )
    assert call(bridge, "alpha", "storage/deleteMany", collection="events", ids=[]) == 0
    assert call(bridge, "alpha", "storage/putMany", collection="events", items=[]) is None


def test_storage_query_and_count(bridge: Bridge) -> None:
    for n in range(5):
        call(
            bridge,
            "alpha",
            "storage/put",
            collection="events",
            id=f"e{n}",
            data={"type": "even" if n % 2 == 0 else "odd", "timestamp": n},
        )
    assert call(bridge, "alpha", "storage/count", collection="events") == 5
    assert call(bridge, "alpha", "storage/count", collection="events", where={"type": "even"}) == 3
    page = call(
        bridge,
        "alpha",
        "storage/query",
        collection="events",
        orderBy={"timestamp": "desc"},
        limit=2,
    )
    assert [i["id"] for i in page["items"]] == ["e4", "e3"] and page["hasMore"] is True
    rest = call(
        bridge,
        "alpha",
        "storage/query",
        collection="events",
        orderBy={"timestamp": "desc"},
        limit=10,
        cursor=page["cursor"],
    )
    assert [i["id"] for i in rest["items"]] == ["e2", "e1", "e0"] and rest["hasMore"] is False
    ranged = call(
        bridge, "alpha", "storage/query", collection="events", where={"timestamp": {"gte": 3}}
    )
    assert [i["id"] for i in ranged["items"]] == ["e3", "e4"]
    # A non-number limit is treated as absent (EmDash), not an error.
    assert len(call(bridge, "alpha", "storage/query", collection="events", limit="2")["items"]) == 5


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"where": {"secret": 1}},
            StorageQueryError,
            "Cannot query on non-indexed field 'secret'.",
        ),
        (
            {"orderBy": {"secret": "asc"}},
            StorageQueryError,
            "Cannot order by non-indexed field 'secret'.",
        ),
        (
            {"orderBy": {"type": "up"}},
            BridgeError,
            'Parameter orderBy must be an object mapping field to "asc"|"desc"',
        ),
        (
            {"orderBy": ["type"]},
            BridgeError,
            'Parameter orderBy must be an object mapping field to "asc"|"desc"',
        ),
        ({"where": ["type"]}, BridgeError, "Parameter where must be an object when provided"),
        ({"cursor": 5}, BridgeError, "Parameter cursor must be a string when provided"),
        (
            {"cursor": "not-a-cursor"},
            InvalidCursorError,
            "Invalid pagination cursor: not-a-cursor...",
        ),
    ],
)
def test_storage_query_errors(
    bridge: Bridge, params: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        bridge.dispatch("alpha", "storage/query", {"collection": "events", **params})
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("storage/get", {}, "Missing required string parameter: id"),
        ("storage/put", {"id": 3, "data": {}}, "Missing required string parameter: id"),
        ("storage/getMany", {"ids": "a"}, "Parameter ids must be an array of strings"),
        ("storage/getMany", {"ids": ["a", 1]}, "Parameter ids must be an array of strings"),
        ("storage/deleteMany", {}, "Parameter ids must be an array of strings"),
        (
            "storage/putMany",
            {"items": [{"id": "a"}]},
            "Parameter items must be an array of { id: string, data } items",
        ),
        (
            "storage/putMany",
            {"items": [{"id": 1, "data": {}}]},
            "Parameter items must be an array of { id: string, data } items",
        ),
        (
            "storage/putMany",
            {"items": {"id": "a", "data": {}}},
            "Parameter items must be an array of { id: string, data } items",
        ),
        ("storage/count", {"where": 5}, "Parameter where must be an object when provided"),
    ],
)
def test_storage_param_texts(
    bridge: Bridge, method: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", method, {"collection": "events", **params})
    assert str(info.value) == message


def test_failed_put_many_writes_nothing(bridge: Bridge, store: Any) -> None:
    call(bridge, "alpha", "storage/put", collection="events", id="taken", data={"ref": "r"})
    items = [{"id": "n1", "data": {"ref": "new"}}, {"id": "n2", "data": {"ref": "r"}}]
    with pytest.raises(BridgeError, match="already has a document with the same value"):
        call(bridge, "alpha", "storage/putMany", collection="events", items=items)
    assert call(bridge, "alpha", "storage/exists", collection="events", id="n1") is False
