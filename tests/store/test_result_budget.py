"""List-shaped store answers are bounded in bytes, counted in SQL before rows are read."""

from __future__ import annotations

import pytest

from emdash import BridgeError
from emdash._store import Store
from emdash._store._cursor import ROW_OVERHEAD_BYTES, bounded_rows
from emdash._store._values import MAX_DOC_BYTES, MAX_RESULT_BYTES

BIG = "x" * (MAX_DOC_BYTES - 64)


def _sized(store: Store) -> str:
    return (
        "SELECT name, length(CAST(value AS BLOB)) AS _size FROM _emdash_options "
        "WHERE name >= 'plugin:p:' AND name < 'plugin:p;' ORDER BY name"
    )


def test_bounded_rows_stop_before_the_budget(store: Store) -> None:
    for i in range(5):
        store.kv_entries.set("p", f"k{i}", "v" * 100)
    size = len('"' + "v" * 100 + '"') + ROW_OVERHEAD_BYTES
    db = store.options._db
    rows, cut = bounded_rows(db, _sized(store), (), budget=size * 3, what="t")
    assert [r["name"] for r in rows] == ["plugin:p:k0", "plugin:p:k1", "plugin:p:k2"] and cut
    rows, cut = bounded_rows(db, _sized(store), (), budget=size * 5, what="t")
    assert len(rows) == 5 and not cut


def test_one_item_over_the_budget_is_a_clear_error(store: Store) -> None:
    store.kv_entries.set("p", "big", BIG)
    with pytest.raises(
        BridgeError, match=r"^kv\.list: one item is \d+ bytes, more than the 1000-byte"
    ) as info:
        bounded_rows(
            store.options._db, _sized(store), (), budget=1000, what="kv.list", plugin_id="p"
        )
    assert info.value.plugin_id == "p"


def test_kv_list_without_paging_refuses_past_the_budget_and_pages_cover_all(store: Store) -> None:
    count = MAX_RESULT_BYTES // len(BIG) + 2
    for i in range(count):
        store.kv_entries.set("p", f"big:{i:02d}", BIG)
    with pytest.raises(BridgeError, match="page through them with ctx.kv.list") as info:
        store.kv_entries.list("p", "big:")
    assert info.value.plugin_id == "p"
    keys: list[str] = []
    cursor = None
    while True:
        page = store.kv_entries.page("p", "big:", limit=1000, cursor=cursor)
        assert sum(len(item["value"]) for item in page["items"]) <= MAX_RESULT_BYTES
        keys += [item["key"] for item in page["items"]]
        if not page["hasMore"]:
            assert "cursor" not in page
            break
        cursor = page["cursor"]
    assert keys == [f"big:{i:02d}" for i in range(count)]


def test_kv_page_cursor_is_a_key_and_is_validated(store: Store) -> None:
    for key in ("a", "b", "c"):
        store.kv_entries.set("p", key, key)
    store.kv_entries.set("other", "z", 1)
    assert store.kv_entries.page("p", limit=2) == {
        "items": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
        "hasMore": True,
        "cursor": "b",
    }
    assert store.kv_entries.page("p", cursor="b") == {
        "items": [{"key": "c", "value": "c"}],
        "hasMore": False,
    }
    # A cursor past every key of this plugin cannot reach another plugin's rows.
    assert store.kv_entries.page("p", cursor="\U0010ffff") == {"items": [], "hasMore": False}
    with pytest.raises(BridgeError, match="cursor"):
        store.kv_entries.page("p", cursor="")


def test_get_many_past_the_budget_refuses(store: Store) -> None:
    count = MAX_RESULT_BYTES // len(BIG) + 2
    store.plugin_documents.put_many(
        "p", "docs", [{"id": f"d{i}", "data": BIG} for i in range(count)]
    )
    assert len(store.plugin_documents.get_many("p", "docs", ["d0", "d1"])) == 2
    with pytest.raises(BridgeError, match="ask for fewer ids per call") as info:
        store.plugin_documents.get_many("p", "docs", [f"d{i}" for i in range(count)])
    assert info.value.plugin_id == "p"


def test_content_list_pages_end_at_the_byte_budget(store: Store) -> None:
    count = MAX_RESULT_BYTES // len(BIG) + 2
    for i in range(count):
        store.content_items.create("posts", {"body": BIG}, slug=f"s{i}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.content_items.list("posts", limit=100, cursor=cursor)
        pages += 1
        seen += [item["id"] for item in page["items"]]
        if not page["hasMore"]:
            break
        cursor = page["cursor"]
    assert len(set(seen)) == count and pages >= 2
