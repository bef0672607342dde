"""Per-plugin stored-data quotas and audit retention, on real SQLite files (issue row 8).

The counters are kept by triggers in the write's own transaction; every test compares them
with a recount from the rows themselves, so "exact" is checked, not assumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import QuotaExceededError, Quotas, StorageCollection
from emdash._shared._errors import BridgeError
from emdash._store import Store
from emdash._store._audit import enforce_retention
from emdash._store._db import Db
from emdash._store._migrations import MIGRATIONS, migrate
from emdash._store._quotas import AuditRetention, QuotaPolicy
from emdash._store._values import MAX_DOC_BYTES

from .conftest import Clock


def _exact(store: Store, pid: str) -> dict[str, int]:
    usage = store.stored_quota.usage(pid)
    assert usage == store.stored_quota.recount(pid)
    return usage


@pytest.fixture
def small(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    policy = QuotaPolicy(Quotas(), {"p": Quotas(stored_bytes=1000, stored_rows=5)})
    s = Store(tmp_path / "q.db", media_dir=tmp_path / "m", clock=clock, quotas=policy)
    yield s
    s.close()


def test_sizes_are_what_the_plugin_chose(store: Store) -> None:
    store.kv_entries.set("p", "k\u00e9", "v")  # key 3 bytes, value '"v"' 3 bytes
    assert _exact(store, "p") == {"bytes": 6, "rows": 1}
    store.plugin_documents.put("p", "c", "id1", {"a": 1})  # 1 + 3 + 7
    assert _exact(store, "p") == {"bytes": 17, "rows": 2}
    assert _exact(store, "other") == {"bytes": 0, "rows": 0}


def test_a_write_over_the_byte_quota_is_refused_and_nothing_changes(small: Store) -> None:
    kv, docs = small.kv_entries, small.plugin_documents
    kv.set("p", "keep", "x" * 500)
    docs.put("p", "c", "d", "y" * 300)
    before = _exact(small, "p")
    with pytest.raises(QuotaExceededError) as info:
        kv.set("p", "more", "z" * 400)
    err = info.value
    assert (err.plugin_id, err.quota, err.limit) == ("p", "stored_bytes", 1000)
    assert "Plugin p would exceed its stored_bytes quota of 1000 bytes" in str(err)
    assert "Nothing was written" in str(err) and "raise stored_bytes" in str(err)
    with pytest.raises(QuotaExceededError):
        docs.put("p", "c", "d", "y" * 900)  # an overwrite that grows
    with pytest.raises(QuotaExceededError):
        docs.put_many("p", "c", [{"id": "n1", "data": "a"}, {"id": "n2", "data": "b" * 400}])
    # Nothing already stored was lost or changed; nothing new appeared.
    assert kv.get("p", "keep") == "x" * 500 and kv.get("p", "more") is None
    assert docs.get("p", "c", "d") == "y" * 300
    assert docs.get_many("p", "c", ["n1", "n2"]) == {}
    assert _exact(small, "p") == before


def test_the_row_quota_counts_kv_and_storage_together(small: Store) -> None:
    for i in range(3):
        small.kv_entries.set("p", f"k{i}", i)
    small.plugin_documents.put_many("p", "c", [{"id": "a", "data": 1}, {"id": "b", "data": 2}])
    with pytest.raises(QuotaExceededError) as info:
        small.kv_entries.set("p", "k9", 9)
    assert info.value.quota == "stored_rows" and info.value.limit == 5
    # Overwriting an existing row adds no row: allowed at the limit.
    small.kv_entries.set("p", "k0", "again")
    # Deleting gives room back, for either kind of row.
    assert small.plugin_documents.delete("p", "c", "a")
    small.kv_entries.set("p", "k9", 9)
    assert _exact(small, "p")["rows"] == 5


def test_deletes_of_every_kind_give_room_back(small: Store) -> None:
    kv, docs = small.kv_entries, small.plugin_documents
    kv.set("p", "a", "x" * 400)
    docs.put("p", "c", "d1", "y" * 400)
    with pytest.raises(QuotaExceededError):
        docs.put("p", "c", "d2", "z" * 400)
    assert docs.delete_many("p", "c", ["d1"]) == 1
    docs.put("p", "c", "d2", "z" * 400)
    kv.delete_all("p")
    docs.delete_plugin_data("p")
    assert _exact(small, "p") == {"bytes": 0, "rows": 0}
    kv.set("p", "big", "w" * 900)  # the whole quota is free again


def test_shrinking_is_allowed_above_a_lowered_quota(small: Store) -> None:
    small.kv_entries.set("p", "a", "x" * 900)
    small.quotas.set("p", Quotas(stored_bytes=100, stored_rows=5))
    # Over quota now: the data stays, and is readable; growth is refused, shrinking is not.
    assert small.kv_entries.get("p", "a") == "x" * 900
    with pytest.raises(QuotaExceededError):
        small.kv_entries.set("p", "b", 1)
    small.kv_entries.set("p", "a", "x" * 500)
    assert small.kv_entries.get("p", "a") == "x" * 500
    assert small.kv_entries.delete("p", "a")
    small.kv_entries.set("p", "b", 1)


def test_put_many_counts_repeated_ids_once_with_the_last_data(small: Store) -> None:
    items = [{"id": "a", "data": "x" * 600}, {"id": "a", "data": "y" * 10}]
    small.plugin_documents.put_many("p", "c", items)
    assert small.plugin_documents.get("p", "c", "a") == "y" * 10
    assert _exact(small, "p") == {"bytes": 1 + 1 + 12, "rows": 1}


def test_counters_stay_exact_when_an_invocation_rolls_back(small: Store) -> None:
    small.kv_entries.set("p", "a", 1)
    before = _exact(small, "p")
    with pytest.raises(RuntimeError), small.invocation():
        small.kv_entries.set("p", "b", "x" * 500)
        small.plugin_documents.put("p", "c", "d", "y" * 300)
        small.kv_entries.delete("p", "a")
        raise RuntimeError("the handler failed")
    assert _exact(small, "p") == before
    # A unique-index violation rolls its batch (and its counting) back too.
    small.plugin_documents.sync_indexes(
        "p",
        {"u": StorageCollection.model_validate({"uniqueIndexes": ["k"]})},
    )
    small.plugin_documents.put("p", "u", "one", {"k": 1})
    mid = _exact(small, "p")
    with pytest.raises(BridgeError, match="unique index"):
        small.plugin_documents.put("p", "u", "two", {"k": 1})
    assert _exact(small, "p") == mid


def test_random_operations_keep_the_counters_exact(store: Store) -> None:
    rng = random.Random(1234)
    kv, docs = store.kv_entries, store.plugin_documents
    for _ in range(400):
        pid = rng.choice(["p", "q"])
        key = f"k{rng.randrange(30)}\u00e9"
        value = "v" * rng.randrange(0, 50)
        op = rng.randrange(6)
        if op == 0:
            kv.set(pid, key, value)
        elif op == 1:
            kv.delete(pid, key)
        elif op == 2:
            docs.put(pid, rng.choice(["a", "bb"]), key, {"v": value})
        elif op == 3:
            docs.put_many(pid, "a", [{"id": key, "data": value}, {"id": key + "x", "data": 1}])
        elif op == 4:
            docs.delete_many(pid, "a", [key, key + "x"])
        else:
            store.options.set(f"site:{key}", value)  # not a plugin's: never counted
    for pid in ("p", "q"):
        _exact(store, pid)


def test_kv_rows_named_by_hand_count_for_their_plugin(store: Store) -> None:
    # Options.set with a KV-shaped name (admin tools, migrations) is counted like kv.set.
    store.options.set("plugin:p:k", "v")
    assert _exact(store, "p") == {"bytes": 4, "rows": 1}
    store.options.delete("plugin:p:k")
    assert _exact(store, "p") == {"bytes": 0, "rows": 0}


def test_migration_counts_what_was_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Db(path)
    migrate(db, MIGRATIONS[:3])  # a site from before quotas existed
    with db.transaction():
        db.execute(
            "INSERT INTO _emdash_options (name, value, updated_at) VALUES (?, ?, 'x')",
            ("plugin:p:key", '"' + "v" * (MAX_DOC_BYTES - 10) + '"'),
        )
        db.execute(
            "INSERT INTO _plugin_storage VALUES ('p', 'c', 'd', '{}', 'x', 'x'), "
            "('q', 'c', 'e', '[1]', 'x', 'x')"
        )
    db.close()
    policy = QuotaPolicy(plugins={"p": Quotas(stored_bytes=1000)})
    with Store(path, quotas=policy) as store:
        assert _exact(store, "p") == {"bytes": 3 + MAX_DOC_BYTES - 8 + 4, "rows": 2}
        assert _exact(store, "q") == {"bytes": 5, "rows": 1}
        # Already over its quota: nothing is dropped, growth is refused.
        assert len(store.kv_entries.get("p", "key")) == MAX_DOC_BYTES - 10
        with pytest.raises(QuotaExceededError):
            store.kv_entries.set("p", "more", 1)


# -- audit retention -------------------------------------------------------------------


def _audit(store: Store, n: int) -> None:
    for i in range(n):
        store.audit_records.record("p", "route", f"r{i}", "error", 1.0, error="boom")
    store.audit_records.flush()


def _ids(store: Store) -> list[int]:
    return [r[0] for r in store.db.execute("SELECT id FROM _emdash_audit ORDER BY id")]


def test_audit_rows_past_the_row_bound_are_trimmed_on_flush(store: Store) -> None:
    store.audit_records.retention = AuditRetention(max_rows=50)
    _audit(store, 30)
    assert len(_ids(store)) == 30
    _audit(store, 40)
    ids = _ids(store)
    assert len(ids) == 50 and ids == list(range(21, 71))  # the newest 50 kept


def test_audit_rows_past_the_age_bound_are_trimmed_on_flush(store: Store, clock: Clock) -> None:
    store.audit_records.retention = AuditRetention(max_age_days=30)
    _audit(store, 5)
    clock.advance(days=20)
    _audit(store, 3)
    assert len(_ids(store)) == 8
    clock.advance(days=11)  # the first five are now 31 days old
    _audit(store, 2)
    rows = store.audit_records.list(limit=100)
    assert len(rows) == 5 and {r["name"] for r in rows} == {"r0", "r1", "r2"}


def test_retention_deletes_a_backlog_in_batches(store: Store) -> None:
    store.audit_records.retention = None
    _audit(store, 120)
    retention = AuditRetention(max_rows=10)
    with store.transaction():
        assert enforce_retention(store._db, retention, batch=50) == 50
    assert len(_ids(store)) == 70
    with store.transaction():
        assert enforce_retention(store._db, retention, batch=1000) == 60
    assert _ids(store) == list(range(111, 121))


def test_default_retention_is_30_days_and_a_million_rows(store: Store) -> None:
    assert store.audit_records.retention == AuditRetention()
    assert (AuditRetention().max_age_days, AuditRetention().max_rows) == (30, 1_000_000)


def test_rows_moved_by_hand_between_plugins_are_counted_exactly(store: Store) -> None:
    store.kv_entries.set("p", "a", "x" * 10)
    store.options.set("site:s", "y" * 5)
    store.plugin_documents.put("p", "c", "d", "z" * 7)
    with store.transaction():
        store._db.execute(
            "UPDATE _emdash_options SET name = 'plugin:q:a' WHERE name = 'plugin:p:a'"
        )
        store._db.execute("UPDATE _emdash_options SET name = 'plugin:p:s' WHERE name = 'site:s'")
        store._db.execute("UPDATE _plugin_storage SET plugin_id = 'q' WHERE plugin_id = 'p'")
    assert _exact(store, "p") == {"bytes": 1 + 7, "rows": 1}
    assert _exact(store, "q") == {"bytes": 1 + 12 + 1 + 1 + 9, "rows": 2}


def test_a_first_kv_set_in_an_invocation_is_checked_against_the_committed_usage(
    small: Store,
) -> None:
    # The invocation's first kv.set skips the speculative transaction (Db.log_blind_write):
    # its quota check reads the committed usage instead, with the same verdicts.
    small.kv_entries.set("p", "keep", "x" * 900)
    before = _exact(small, "p")
    with pytest.raises(QuotaExceededError), small.invocation("p", "route:x"):
        small.kv_entries.set("p", "more", "z" * 200)
    assert _exact(small, "p") == before
    with small.invocation("p", "route:x"):
        small.kv_entries.set("p", "keep", "y" * 10)  # shrinking is always allowed
        small.kv_entries.set("p", "more", "z" * 200)  # the second write sees the first
    assert small.kv_entries.get("p", "more") == "z" * 200
    assert _exact(small, "p")["rows"] == 2
