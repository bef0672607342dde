"""Keyset cursors for plugin storage: correct paging over any order, strict decoding."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from emdash._model._descriptor import StorageCollection
from emdash._shared._errors import InvalidCursorError
from emdash._store import MAX_CURSOR_CHARS, Store
from emdash._store._cursor import Keyset, OrderKey, clamp_limit

SPEC = StorageCollection(indexes=["score", "name", "group"])

# Ties, NULLs (explicit and missing), ints and floats that compare equal, booleans (which
# SQLite sees as 1/0), and strings (which sort after every number).
SCORES: list[Any] = [3, 1, None, "b", 2.5, 1, "a", 3.0, None, True, 0, "a", 1, 2, "MISSING"]


def _doc(i: int) -> dict[str, Any]:
    score = SCORES[i % len(SCORES)]
    doc: dict[str, Any] = {"name": f"n{(i * 7) % 5}", "group": i % 3}
    if score != "MISSING":
        doc["score"] = score
    return doc


@pytest.fixture
def loaded(store: Store) -> Store:
    store.plugin_documents.sync_indexes("p", {"items": SPEC})
    # One put_many: every row has the same created_at, so the default order is all ties.
    store.plugin_documents.put_many(
        "p", "items", [{"id": f"d{i:02d}", "data": _doc(i)} for i in range(45)]
    )
    return store


def page_all(fetch: Callable[[str | None], dict[str, Any]]) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = fetch(cursor)
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        if not page["hasMore"]:
            assert "cursor" not in page
            return seen, pages
        cursor = page["cursor"]
        assert pages < 100


def _rank(value: Any) -> tuple[int, Any]:
    """SQLite's total order: NULL < numbers (booleans are 1/0) < text."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, value)


def expected(store: Store, order: list[tuple[str, str]]) -> list[str]:
    docs = {f"d{i:02d}": _doc(i) for i in range(45)}
    ids = sorted(docs)
    last_desc = order[-1][1] == "desc" if order else False
    ids.sort(reverse=last_desc)  # id tie-break follows the last key's direction
    for field, direction in reversed(order):
        ranks = {d: _rank(docs[d].get(field)) for d in ids}
        ids.sort(key=ranks.__getitem__, reverse=direction == "desc")
    return ids


@pytest.mark.parametrize(
    "order",
    [
        [("score", "asc")],
        [("score", "desc")],
        [("score", "asc"), ("name", "desc")],
        [("score", "desc"), ("name", "asc")],
        [("group", "desc"), ("score", "asc"), ("name", "asc")],
        [("name", "asc")],
    ],
)
@pytest.mark.parametrize("limit", [1, 4, 7])
def test_paging_has_no_duplicates_and_no_gaps(
    loaded: Store, order: list[tuple[str, str]], limit: int
) -> None:
    order_by = dict(order)

    def fetch(cursor: str | None) -> dict[str, Any]:
        return loaded.plugin_documents.query(
            "p", "items", SPEC, order_by=order_by, limit=limit, cursor=cursor
        )

    seen, pages = page_all(fetch)
    assert pages >= 3
    assert len(seen) == len(set(seen)) == 45
    assert seen == expected(loaded, order)


def test_default_order_pages_through_ties_by_id(loaded: Store) -> None:
    seen, pages = page_all(
        lambda c: loaded.plugin_documents.query("p", "items", SPEC, limit=10, cursor=c)
    )
    assert pages == 5
    assert seen == [f"d{i:02d}" for i in range(45)]


def test_paging_with_a_where_filter(loaded: Store) -> None:
    where = {"score": {"gte": 1}}

    def fetch(cursor: str | None) -> dict[str, Any]:
        return loaded.plugin_documents.query(
            "p", "items", SPEC, where=where, order_by={"score": "desc"}, limit=2, cursor=cursor
        )

    seen, pages = page_all(fetch)
    assert pages >= 3
    want = [d for d in expected(loaded, [("score", "desc")]) if _numeric_at_least_1(loaded, d)]
    assert seen == want


def _numeric_at_least_1(store: Store, doc_id: str) -> bool:
    v = _doc(int(doc_id[1:])).get("score")
    return isinstance(v, int | float) and not isinstance(v, bool) and v >= 1


def test_descending_order_does_not_repeat_rows(store: Store, clock: Any) -> None:
    """EmDash's bug: orderBy createdAt desc paged with (created_at, id) > cursor."""
    spec = StorageCollection(indexes=["at"])
    for i in range(9):
        clock.advance(seconds=1)
        store.plugin_documents.put("p", "ev", f"e{i}", {"at": store.now()})
    seen, pages = page_all(
        lambda c: store.plugin_documents.query(
            "p", "ev", spec, order_by={"at": "desc"}, limit=3, cursor=c
        )
    )
    assert pages == 3
    assert seen == [f"e{i}" for i in reversed(range(9))]


def test_rows_deleted_between_pages_leave_no_gap(loaded: Store) -> None:
    first = loaded.plugin_documents.query("p", "items", SPEC, order_by={"score": "asc"}, limit=5)
    last_id = first["items"][-1]["id"]
    loaded.plugin_documents.delete("p", "items", last_id)
    rest, _ = page_all(
        lambda c: loaded.plugin_documents.query(
            "p", "items", SPEC, order_by={"score": "asc"}, limit=5, cursor=c or first["cursor"]
        )
    )
    full = expected(loaded, [("score", "asc")])
    assert [i["id"] for i in first["items"]] + rest == full


def test_long_order_values_use_a_row_reference_cursor(store: Store) -> None:
    spec = StorageCollection(indexes=["name"])
    for i in range(7):
        store.plugin_documents.put("p", "c", f"r{i}", {"name": f"{i}" + "x" * 5000})
    first = store.plugin_documents.query("p", "c", spec, order_by={"name": "asc"}, limit=2)
    assert len(first["cursor"]) < 200
    seen, pages = page_all(
        lambda c: store.plugin_documents.query(
            "p", "c", spec, order_by={"name": "asc"}, limit=2, cursor=c
        )
    )
    assert seen == [f"r{i}" for i in range(7)] and pages == 4
    # The referenced row is gone: the cursor can no longer be resolved.
    store.plugin_documents.delete("p", "c", "r1")
    with pytest.raises(InvalidCursorError):
        store.plugin_documents.query(
            "p", "c", spec, order_by={"name": "asc"}, limit=2, cursor=first["cursor"]
        )


def test_cursor_from_another_order_is_rejected(loaded: Store) -> None:
    ps = loaded.plugin_documents
    cursor = ps.query("p", "items", SPEC, order_by={"score": "asc"}, limit=2)["cursor"]
    for other in ({"score": "desc"}, {"name": "asc"}, None, {"score": "asc", "name": "asc"}):
        with pytest.raises(InvalidCursorError) as info:
            ps.query("p", "items", SPEC, order_by=other, limit=2, cursor=cursor)
        assert str(info.value) == f"Invalid pagination cursor: {cursor[:47]}..."


def test_cursor_from_another_collection_is_rejected(loaded: Store) -> None:
    cursor = loaded.plugin_documents.query("p", "items", SPEC, limit=2)["cursor"]
    with pytest.raises(InvalidCursorError):
        loaded.plugin_documents.query("p", "other", SPEC, limit=2, cursor=cursor)


def _forge(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


SIG = [["score", "asc"], ["id", "asc"]]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!!",
        "eyJ",
        "a" * (MAX_CURSOR_CHARS + 4),
        base64.b64encode(b'{"c":"storage:items"}').decode() + "=",  # bad padding
        _forge([1, 2]),
        _forge("text"),
        _forge({"c": "storage:items", "o": SIG}),
        _forge({"c": "storage:items", "o": SIG, "v": [1]}),
        _forge({"c": "storage:items", "o": SIG, "v": [1, 2]}),
        _forge({"c": "storage:items", "o": SIG, "v": [True, "d01"]}),
        _forge({"c": "storage:items", "o": SIG, "v": [{"a": 1}, "d01"]}),
        _forge({"c": "storage:items", "o": SIG, "v": [2**70, "d01"]}),
        _forge({"c": "storage:items", "o": SIG, "v": [1, "d01"], "x": 1}),
        _forge({"c": "storage:items", "o": SIG, "r": 5}),
        base64.urlsafe_b64encode(
            b'{"c":"storage:items","o":[["score","asc"],["id","asc"]],"v":[NaN,"d01"]}'
        ).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        5,
    ],
)
def test_malformed_cursors_are_rejected(loaded: Store, cursor: Any) -> None:
    with pytest.raises(InvalidCursorError) as info:
        loaded.plugin_documents.query(
            "p", "items", SPEC, order_by={"score": "asc"}, limit=2, cursor=cursor
        )
    text = cursor if isinstance(cursor, str) else repr(cursor)
    assert str(info.value) == f"Invalid pagination cursor: {text[:47]}..."


def test_a_well_formed_forged_cursor_only_moves_the_start(loaded: Store) -> None:
    cursor = _forge({"c": "storage:items", "o": SIG, "v": [2, "d99"]})
    page = loaded.plugin_documents.query(
        "p", "items", SPEC, order_by={"score": "asc"}, limit=100, cursor=cursor
    )
    want = expected(loaded, [("score", "asc")])
    assert [i["id"] for i in page["items"]] == [
        d for d in want if _rank(_doc(int(d[1:])).get("score")) > (1, 2.0)
    ]


def test_keyset_predicate_shapes() -> None:
    ks = Keyset("t", [OrderKey("a", "a"), OrderKey("b", "b", desc=True), OrderKey("id", "id")])
    sql, params = ks.predicate([None, None, "x"])
    # asc after NULL: any non-NULL; desc after NULL: nothing at that level.
    assert sql == "((a IS NOT NULL) OR (a IS ? AND b IS ? AND id > ?))"
    assert params == [None, None, "x"]
    sql, params = ks.predicate([1, "m", "x"])
    assert sql == "((a > ?) OR (a IS ? AND (b < ? OR b IS NULL)) OR (a IS ? AND b IS ? AND id > ?))"
    assert params == [1, 1, "m", 1, "m", "x"]
    with pytest.raises(ValueError):
        Keyset("t", [OrderKey("a", "a")])


@pytest.mark.parametrize(
    ("limit", "size"),
    [
        (None, 50),
        (5, 5),
        (500, 100),
        (0, 1),
        (-1, 1),
        (3.9, 3),
        ("7", 50),
        (False, 50),
        (float("inf"), 100),
        (float("-inf"), 1),
        (float("nan"), 1),
    ],
)
def test_clamp_limit(limit: Any, size: int) -> None:
    assert clamp_limit(limit) == size
