"""The storage query language (docs/plugin-reference.md, queries): indexed-field rule, operators, limits."""

from __future__ import annotations

from typing import Any

import pytest

from emdash._model._descriptor import StorageCollection
from emdash._shared._errors import BridgeError, StorageQueryError
from emdash._store import Store
from tests.store.conftest import sqlite_only

SPEC = StorageCollection(indexes=["v", ["formId", "status"]], uniqueIndexes=["email"])

VALUES: dict[str, Any] = {
    "s_abc": "abc",
    "s_abd": "abd",
    "s_ABC": "ABC",
    "s_pct": "a%c",
    "s_und": "a_c",
    "s_bsl": "a\\c",
    "s_5": "5",
    "n_5": 5,
    "n_5f": 5.0,
    "n_10": 10,
    "n_1": 1,
    "n_0": 0,
    "n_neg": -2.5,
    "b_t": True,
    "b_f": False,
    "null": None,
    "obj": {"x": 1},
    "arr": [1],
}


@pytest.fixture
def loaded(store: Store) -> Store:
    store.plugin_documents.sync_indexes("p", {"items": SPEC})
    for doc_id, value in VALUES.items():
        store.plugin_documents.put("p", "items", doc_id, {"v": value})
    store.plugin_documents.put("p", "items", "missing", {"other": 1})
    return store


def ids(store: Store, where: Any) -> list[str]:
    page = store.plugin_documents.query("p", "items", SPEC, where=where, limit=100)
    return sorted(item["id"] for item in page["items"])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"v": "abc"}, ["s_abc"]),
        ({"v": "5"}, ["s_5"]),
        ({"v": 5}, ["n_5", "n_5f"]),
        ({"v": 5.0}, ["n_5", "n_5f"]),
        ({"v": 1}, ["n_1"]),
        ({"v": True}, ["b_t"]),
        ({"v": False}, ["b_f"]),
        ({"v": None}, ["missing", "null"]),
        ({"v": {"in": ["abc", 5, None]}}, ["missing", "n_5", "n_5f", "null", "s_abc"]),
        ({"v": {"in": [1, 10]}}, ["n_1", "n_10"]),
        ({"v": {"in": [True]}}, ["b_t"]),
        ({"v": {"in": []}}, []),
        ({"v": {"startsWith": "a"}}, ["s_abc", "s_abd", "s_bsl", "s_pct", "s_und"]),
        ({"v": {"startsWith": "ab"}}, ["s_abc", "s_abd"]),
        ({"v": {"startsWith": "A"}}, ["s_ABC"]),
        ({"v": {"startsWith": "a%"}}, ["s_pct"]),
        ({"v": {"startsWith": "a_"}}, ["s_und"]),
        ({"v": {"startsWith": "a\\"}}, ["s_bsl"]),
        ({"v": {"startsWith": "%"}}, []),
        ({"v": {"gt": 1, "lte": 10}}, ["n_10", "n_5", "n_5f"]),
        ({"v": {"gte": 0, "lt": 5}}, ["n_0", "n_1"]),
        ({"v": {"lt": 0}}, ["n_neg"]),
        ({"v": {"gte": "abc", "lt": "abd"}}, ["s_abc"]),
        ({"v": {"lt": "A"}}, ["s_5"]),
        ({"v": {"gt": "a"}}, ["s_abc", "s_abd", "s_bsl", "s_pct", "s_und"]),
    ],
)
def test_where_operators(loaded: Store, where: Any, expected: list[str]) -> None:
    assert ids(loaded, where) == expected
    assert loaded.plugin_documents.count("p", "items", SPEC, where) == len(expected)


def test_conditions_on_several_keys_are_anded(store: Store) -> None:
    ps = store.plugin_documents
    ps.put("p", "items", "a", {"formId": "f1", "status": "new"})
    ps.put("p", "items", "b", {"formId": "f1", "status": "done"})
    ps.put("p", "items", "c", {"formId": "f2", "status": "new"})
    page = ps.query("p", "items", SPEC, where={"formId": "f1", "status": "new"})
    assert page == {
        "items": [{"id": "a", "data": {"formId": "f1", "status": "new"}}],
        "hasMore": False,
    }


@pytest.mark.parametrize(
    "value",
    [
        {"foo": 1},
        {},
        {"in": [1], "gt": 0},
        {"startsWith": "a", "lt": "b"},
        {"in": "abc"},
        {"in": [{"a": 1}]},
        {"in": [[1]]},
        {"startsWith": 5},
        {"gt": None},
        {"gt": True},
        {"lt": [1]},
        {"gt": float("nan")},
        [1, 2],
        {"a": 1, "gt": 1},
    ],
)
def test_unknown_filter_types(loaded: Store, value: Any) -> None:
    with pytest.raises(StorageQueryError) as info:
        loaded.plugin_documents.query("p", "items", SPEC, where={"v": value})
    assert str(info.value) == "Unknown filter type for field 'v'"
    assert info.value.field == "v"


def test_non_indexed_where_field(loaded: Store) -> None:
    with pytest.raises(StorageQueryError) as info:
        loaded.plugin_documents.query("p", "items", SPEC, where={"v": 1, "secret": 1})
    err = info.value
    assert err.field == "secret"
    assert err.suggestion == (
        "Add 'secret' to storage.items.indexes in plugin 'p' to enable this query."
    )
    assert str(err) == (
        "Cannot query on non-indexed field 'secret'. "
        "Add 'secret' to storage.items.indexes in plugin 'p' to enable this query."
    )
    with pytest.raises(StorageQueryError, match="^Cannot query on non-indexed field 'secret'"):
        loaded.plugin_documents.count("p", "items", SPEC, {"secret": 1})


def test_non_indexed_order_field(loaded: Store) -> None:
    with pytest.raises(StorageQueryError) as info:
        loaded.plugin_documents.query("p", "items", SPEC, order_by={"createdAt": "desc"})
    assert str(info.value) == (
        "Cannot order by non-indexed field 'createdAt'. "
        "Add 'createdAt' to storage.items.indexes in plugin 'p' to enable this query."
    )


def test_composite_parts_and_unique_fields_are_queryable(store: Store) -> None:
    ps = store.plugin_documents
    ps.put("p", "items", "a", {"status": "x", "email": "e@x"})
    assert [i["id"] for i in ps.query("p", "items", SPEC, where={"status": "x"})["items"]] == ["a"]
    assert [i["id"] for i in ps.query("p", "items", SPEC, where={"email": "e@x"})["items"]] == ["a"]
    assert ps.query("p", "items", SPEC, order_by={"formId": "asc"})["items"][0]["id"] == "a"


@pytest.mark.parametrize("field", ["x'; DROP TABLE _plugin_storage; --", "a.b", "$", "v\n", "1a"])
def test_hostile_field_names_never_reach_sql(loaded: Store, field: str) -> None:
    with pytest.raises(StorageQueryError, match="^Cannot query on non-indexed field"):
        loaded.plugin_documents.query("p", "items", SPEC, where={field: 1})
    with pytest.raises(StorageQueryError, match="^Cannot order by non-indexed field"):
        loaded.plugin_documents.query("p", "items", SPEC, order_by={field: "asc"})
    assert loaded.plugin_documents.count("p", "items", SPEC) == len(VALUES) + 1


def test_an_invalid_name_in_the_spec_itself_is_refused_before_sql(loaded: Store) -> None:
    # model_construct bypasses the descriptor's validation, as a forged spec would.
    spec = StorageCollection.model_construct(indexes=["v\n"], unique_indexes=[])
    with pytest.raises(StorageQueryError) as info:
        loaded.plugin_documents.query("p", "items", spec, where={"v\n": 1})
    assert str(info.value).startswith("Invalid field name 'v\n'")


def test_where_and_order_by_shapes(loaded: Store) -> None:
    ps = loaded.plugin_documents
    with pytest.raises(BridgeError) as info:
        ps.query("p", "items", SPEC, where=["v"])
    assert str(info.value) == "Parameter where must be an object when provided"
    for bad in ({"v": "ascending"}, {"v": 1}, ["v"]):
        with pytest.raises(BridgeError) as info:
            ps.query("p", "items", SPEC, order_by=bad)
        assert (
            str(info.value) == 'Parameter orderBy must be an object mapping field to "asc"|"desc"'
        )


@pytest.mark.parametrize(
    ("limit", "size"),
    [
        (None, 50),
        (10, 10),
        (100, 100),
        (1000, 100),
        (0, 1),
        (-5, 1),
        ("10", 50),
        (True, 50),
        (2.7, 2),
    ],
)
def test_limit_default_cap_and_clamp(store: Store, limit: Any, size: int) -> None:
    store.plugin_documents.put_many(
        "p", "items", [{"id": f"d{i:03d}", "data": {}} for i in range(120)]
    )
    page = store.plugin_documents.query("p", "items", SPEC, limit=limit)
    assert len(page["items"]) == size
    assert page["hasMore"] is True
    assert "cursor" in page


def test_has_more_is_false_on_an_exact_last_page(store: Store) -> None:
    store.plugin_documents.put_many("p", "items", [{"id": f"d{i}", "data": {}} for i in range(4)])
    page = store.plugin_documents.query("p", "items", SPEC, limit=4)
    assert page["hasMore"] is False and "cursor" not in page
    assert store.plugin_documents.count("p", "items", SPEC) == 4


def test_default_order_is_insertion_time_then_id(store: Store, clock: Any) -> None:
    ps = store.plugin_documents
    ps.put("p", "items", "z", {})
    clock.advance(seconds=1)
    ps.put("p", "items", "b", {})
    ps.put("p", "items", "a", {})
    assert [i["id"] for i in ps.query("p", "items", SPEC)["items"]] == ["z", "a", "b"]


def test_too_many_in_values(loaded: Store) -> None:
    with pytest.raises(StorageQueryError) as info:
        loaded.plugin_documents.query("p", "items", SPEC, where={"v": {"in": list(range(1001))}})
    assert str(info.value) == "Too many values in 'in' filter for field 'v': 1001 (at most 1000)"


def test_queries_use_the_declared_partial_index(loaded: Store) -> None:
    sqlite_only(loaded, "EXPLAIN QUERY PLAN")
    plan = loaded.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM _plugin_storage WHERE plugin_id = 'p' "
        "AND collection = 'items' AND json_extract(data, '$.email') = ?",
        ("x",),
    ).fetchall()
    assert any("uidx_plugin_p_items_email" in row[3] for row in plan)
