"""Plugin document storage: CRUD, batches, scoping, declared indexes."""

from __future__ import annotations

import logging

import pytest

from emdash._model._descriptor import StorageCollection
from emdash._shared._errors import BridgeError
from emdash._store import Store

from .conftest import Clock

SPEC = StorageCollection(indexes=["status", ["formId", "createdAt"]], uniqueIndexes=["email"])


def test_put_get_exists_delete(store: Store) -> None:
    ps = store.plugin_documents
    assert ps.get("p", "events", "e1") is None
    assert ps.exists("p", "events", "e1") is False
    ps.put("p", "events", "e1", {"n": 1, "tags": ["a"]})
    assert ps.get("p", "events", "e1") == {"n": 1, "tags": ["a"]}
    assert ps.exists("p", "events", "e1") is True
    assert ps.delete("p", "events", "e1") is True
    assert ps.delete("p", "events", "e1") is False


def test_put_is_an_upsert_that_keeps_created_at(store: Store, clock: Clock) -> None:
    ps = store.plugin_documents
    ps.put("p", "events", "e1", {"v": 1})
    clock.advance(seconds=10)
    ps.put("p", "events", "e1", {"v": 2})
    row = next(store.db.query("SELECT data, created_at, updated_at FROM _plugin_storage"))
    assert row == {
        "data": '{"v":2}',
        "created_at": "2026-11-22T05:33:24.123Z",
        "updated_at": "2026-11-22T05:33:34.123Z",
    }


def test_get_many_returns_existing_ids_in_requested_order(store: Store) -> None:
    ps = store.plugin_documents
    for i in range(3):
        ps.put("p", "c", f"id{i}", {"i": i})
    assert ps.get_many("p", "c", []) == {}
    got = ps.get_many("p", "c", ["id2", "nope", "id0", "id2"])
    assert list(got.items()) == [("id2", {"i": 2}), ("id0", {"i": 0})]
    assert ps.get_many("p", "c", ["__proto__"]) == {}


def test_get_many_and_delete_many_handle_large_id_lists(store: Store) -> None:
    ps = store.plugin_documents
    ps.put_many("p", "c", [{"id": f"d{i:04d}", "data": i} for i in range(1200)])
    ids = [f"d{i:04d}" for i in range(1200)]
    assert len(ps.get_many("p", "c", ids)) == 1200
    assert ps.delete_many("p", "c", [*ids, "missing"]) == 1200
    assert ps.delete_many("p", "c", []) == 0


def test_put_many_is_atomic_with_one_timestamp(store: Store, clock: Clock) -> None:
    ps = store.plugin_documents
    ps.put_many("p", "c", [{"id": "a", "data": {"x": 1}}, {"id": "b", "data": {"x": 2}}])
    stamps = {r["created_at"] for r in store.db.query("SELECT created_at FROM _plugin_storage")}
    assert stamps == {"2026-11-22T05:33:24.123Z"}
    ps.put_many("p", "c", [])  # empty: no-op
    with pytest.raises(BridgeError):
        ps.put_many("p", "c", [{"id": "c", "data": 1}, {"id": "d", "data": {1, 2}}])
    with pytest.raises(BridgeError) as info:
        ps.put_many("p", "c", [{"id": "e", "data": 1}, {"data": 1}])
    assert str(info.value) == "Parameter items must be an array of { id: string, data } items"
    assert sorted(ps.get_many("p", "c", ["a", "b", "c", "d", "e"])) == ["a", "b"]


def test_put_many_rolls_back_on_unique_violation(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("p", {"subs": SPEC})
    ps.put("p", "subs", "s0", {"email": "x@example.com"})
    with pytest.raises(BridgeError) as info:
        ps.put_many(
            "p",
            "subs",
            [
                {"id": "s1", "data": {"email": "new@example.com"}},
                {"id": "s2", "data": {"email": "x@example.com"}},
            ],
        )
    assert str(info.value) == (
        "Storage collection 'subs' of plugin 'p' already has a document with the same value "
        "of unique index (email): change the value or update that document instead. "
        "Nothing was written."
    )
    assert ps.get("p", "subs", "s1") is None


def test_delete_many_counts_only_own_rows(store: Store) -> None:
    ps = store.plugin_documents
    ps.put("p", "c", "a", 1)
    ps.put("p", "c", "b", 1)
    ps.put("other", "c", "a", 1)
    assert ps.delete_many("p", "c", ["a", "b", "zz"]) == 2
    assert ps.get("other", "c", "a") == 1


@pytest.mark.parametrize("doc_id", ["other:key", "plugin:other:x", "../x", "%", "_", "a"])
def test_other_plugins_documents_are_unreachable(store: Store, doc_id: str) -> None:
    ps = store.plugin_documents
    spec = StorageCollection(indexes=["k"])
    ps.put("other", "c", doc_id, {"k": "secret"})
    ps.put("other", "c", "a", {"k": "secret"})
    assert ps.get("mine", "c", doc_id) is None
    assert ps.exists("mine", "c", doc_id) is False
    assert ps.get_many("mine", "c", [doc_id, "a"]) == {}
    assert ps.delete("mine", "c", doc_id) is False
    assert ps.delete_many("mine", "c", [doc_id, "a"]) == 0
    assert ps.query("mine", "c", spec) == {"items": [], "hasMore": False}
    assert ps.query("mine", "c", spec, where={"k": {"startsWith": "%"}})["items"] == []
    assert ps.count("mine", "c", spec) == 0
    ps.put("mine", "c", doc_id, {"k": "mine"})
    assert ps.get("other", "c", doc_id) == {"k": "secret"}


def test_collections_of_one_plugin_are_separate(store: Store) -> None:
    ps = store.plugin_documents
    ps.put("p", "a", "x", 1)
    assert ps.get("p", "b", "x") is None


@pytest.mark.parametrize("collection", ["", "Events", "a-b", "__kv", "x\n", "1a", None])
def test_invalid_collection_names_are_refused(store: Store, collection: object) -> None:
    with pytest.raises(BridgeError, match="^Invalid collection name: "):
        store.plugin_documents.get("p", collection, "x")  # type: ignore[arg-type]


def test_invalid_ids_are_refused(store: Store) -> None:
    ps = store.plugin_documents
    with pytest.raises(BridgeError) as info:
        ps.put("p", "c", "", {})
    assert str(info.value) == "Parameter id must be a non-empty string of at most 1024 characters"
    with pytest.raises(BridgeError) as info:
        ps.get_many("p", "c", "abc")
    assert str(info.value) == "Parameter ids must be an array of strings"
    with pytest.raises(BridgeError) as info:
        ps.delete_many("p", "c", ["a", 3])  # type: ignore[list-item]
    assert str(info.value) == "Parameter ids must be an array of strings"


def test_unique_index_is_scoped_to_its_own_collection(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("p", {"subs": StorageCollection(uniqueIndexes=["email"])})
    ps.put("p", "subs", "1", {"email": "a@x"})
    # The same value is fine in another collection and in another plugin (EmDash's
    # whole-table index would make these collide).
    ps.put("p", "other", "1", {"email": "a@x"})
    ps.put("p", "other", "2", {"email": "a@x"})
    ps.put("q", "subs", "1", {"email": "a@x"})
    ps.put("q", "subs", "2", {"email": "a@x"})
    # Documents without the field never collide (NULLs are distinct).
    ps.put("p", "subs", "2", {})
    ps.put("p", "subs", "3", {})
    # Updating the same document keeps its own value.
    ps.put("p", "subs", "1", {"email": "a@x", "name": "A"})
    with pytest.raises(BridgeError, match="unique index \\(email\\)"):
        ps.put("p", "subs", "4", {"email": "a@x"})


def test_composite_unique_index(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("p", {"votes": StorageCollection(uniqueIndexes=[["pollId", "userId"]])})
    ps.put("p", "votes", "1", {"pollId": "a", "userId": "u"})
    ps.put("p", "votes", "2", {"pollId": "b", "userId": "u"})
    with pytest.raises(BridgeError, match="unique index \\(pollId, userId\\)"):
        ps.put("p", "votes", "3", {"pollId": "a", "userId": "u"})


def test_sync_indexes_creates_tracks_and_drops(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("forms", {"submissions": SPEC})
    assert ps.indexes("forms") == [
        {
            "name": "idx_plugin_forms_submissions_formId_createdAt",
            "collection": "submissions",
            "fields": ["formId", "createdAt"],
            "unique": False,
        },
        {
            "name": "idx_plugin_forms_submissions_status",
            "collection": "submissions",
            "fields": ["status"],
            "unique": False,
        },
        {
            "name": "uidx_plugin_forms_submissions_email",
            "collection": "submissions",
            "fields": ["email"],
            "unique": True,
        },
    ]
    assert _index_sql(store, "uidx_plugin_forms_submissions_email") == (
        'CREATE UNIQUE INDEX "uidx_plugin_forms_submissions_email" ON _plugin_storage '
        "(json_extract(data, '$.email')) WHERE plugin_id = 'forms' AND collection = 'submissions'"
        if store.backend == "sqlite"
        else "CREATE UNIQUE INDEX uidx_plugin_forms_submissions_email ON public._plugin_storage "
        "USING btree (json_extract(data, '$.email'::text)) WHERE ((plugin_id = 'forms'::text) "
        "AND (collection = 'submissions'::text))"
    )
    # Re-sync with fewer indexes drops the rest; a collection that disappears loses its own.
    ps.sync_indexes("forms", {"submissions": StorageCollection(indexes=["status"])})
    assert [i["name"] for i in ps.indexes("forms")] == ["idx_plugin_forms_submissions_status"]
    assert _index_sql(store, "uidx_plugin_forms_submissions_email") is None
    ps.sync_indexes("forms", {})
    assert ps.indexes("forms") == []


def test_sync_indexes_is_idempotent_and_recreates_missing(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("p", {"c": SPEC})
    before = ps.indexes("p")
    ps.sync_indexes("p", {"c": SPEC})
    assert ps.indexes("p") == before
    with store.transaction():
        store._db.execute('DROP INDEX "idx_plugin_p_c_status"')
    ps.sync_indexes("p", {"c": SPEC})
    assert ps.indexes("p") == before
    assert _index_sql(store, "idx_plugin_p_c_status")


def test_same_fields_plain_and_unique_make_only_the_unique_index(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("p", {"c": StorageCollection(indexes=["email"], uniqueIndexes=["email"])})
    assert [i["name"] for i in ps.indexes("p")] == ["uidx_plugin_p_c_email"]


def test_colliding_index_names_get_a_hash_suffix(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("a", {"b_c": StorageCollection(uniqueIndexes=["f"])})
    ps.sync_indexes("a_b", {"c": StorageCollection(uniqueIndexes=["f"])})
    first, second = ps.indexes("a")[0]["name"], ps.indexes("a_b")[0]["name"]
    assert first == "uidx_plugin_a_b_c_f"
    assert second.startswith("uidx_plugin_a_b_c_f_") and len(second) == len(first) + 9
    # Both enforce uniqueness, each in its own collection.
    ps.put("a", "b_c", "1", {"f": 1})
    ps.put("a_b", "c", "1", {"f": 1})
    with pytest.raises(BridgeError):
        ps.put("a_b", "c", "2", {"f": 1})
    # Dropping one plugin's indexes leaves the other's.
    ps.drop_indexes("a")
    assert ps.indexes("a") == []
    assert [i["name"] for i in ps.indexes("a_b")] == [second]


def test_index_names_differing_only_in_case_do_not_collide(store: Store) -> None:
    ps = store.plugin_documents
    ps.sync_indexes("p", {"c": StorageCollection(uniqueIndexes=["email", "Email"])})
    names = sorted(i["name"] for i in ps.indexes("p"))
    assert len(names) == 2 and len({n.lower() for n in names}) == 2
    ps.put("p", "c", "1", {"email": "x", "Email": "y"})
    with pytest.raises(BridgeError):
        ps.put("p", "c", "2", {"Email": "y"})


def test_long_index_names_are_cut_to_128_with_a_hash(store: Store) -> None:
    ps = store.plugin_documents
    fields = [f"field{i:02d}" for i in range(15)]
    ps.sync_indexes("p", {"c": StorageCollection(indexes=[fields])})
    (index,) = ps.indexes("p")
    assert len(index["name"]) == 128
    assert index["name"].startswith("idx_plugin_p_c_field00_field01")


def test_unique_index_over_duplicate_data_is_logged_not_raised(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ps = store.plugin_documents
    ps.put("p", "c", "1", {"email": "dup"})
    ps.put("p", "c", "2", {"email": "dup"})
    with caplog.at_level(logging.WARNING, logger="emdash.store"):
        ps.sync_indexes("p", {"c": StorageCollection(uniqueIndexes=["email"], indexes=["n"])})
    assert "plugin p: could not create unique index on storage.c (email)" in caplog.text
    assert [i["name"] for i in ps.indexes("p")] == ["idx_plugin_p_c_n"]


def test_delete_plugin_data_removes_only_that_plugins_documents(store: Store) -> None:
    ps = store.plugin_documents
    ps.put("p", "a", "1", 1)
    ps.put("p", "b", "1", 1)
    ps.put("pp", "a", "1", 1)
    assert ps.delete_plugin_data("p") == 2
    assert ps.get("pp", "a", "1") == 1


def test_documents_must_be_json(store: Store) -> None:
    with pytest.raises(BridgeError) as info:
        store.plugin_documents.put("p", "events", "x", {"at": object()})
    assert str(info.value) == (
        "Document data for storage.events must be JSON data (objects with distinct string "
        "keys, arrays, strings, integers within int64, finite numbers, booleans, null): "
        "a object at $.at is not JSON data"
    )
    assert info.value.plugin_id == "p"


def _index_sql(store: Store, name: str) -> str | None:
    """The definition of an index as the database holds it (None: there is none)."""
    sql = (
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?"
        if store.backend == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = ?"
    )
    row = store.db.execute(sql, (name,)).fetchone()
    return None if row is None else str(row[0])
