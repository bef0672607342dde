"""Store core: connection, transactions, invocation scopes, migrations, clock and ids."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from emdash._shared._errors import BridgeError, EmDashError, StorageError
from emdash._store import Store, format_timestamp
from emdash._store._migrations import MIGRATIONS, migrate

from .conftest import Clock


def _names(store: Store) -> list[str]:
    return sorted(store.options.list())


def test_file_database_uses_wal_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    with Store(path) as s:
        assert s.db.journal_mode == "wal"
        s.options.set("emdash:site_title", "Hello")
    with Store(path) as s:
        assert s.options.get("emdash:site_title") == "Hello"


def test_memory_database_works() -> None:
    with Store(":memory:") as s:
        s.options.set("a", 1)
        assert s.options.get("a") == 1


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    with Store(path) as s:
        rows = list(s.db.query("SELECT id, name FROM _emdash_migrations ORDER BY id"))
        assert [r["id"] for r in rows] == [n for n, _, _ in MIGRATIONS]
        assert migrate(s._db) == []  # nothing left to apply
    with Store(path) as s:
        assert s.db["_emdash_migrations"].count == len(MIGRATIONS)


def test_database_from_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    with Store(path) as s, s.transaction():
        s._db.execute(
            "INSERT INTO _emdash_migrations (id, name, applied_at) VALUES (9999, 'future', 'x')"
        )
    with pytest.raises(EmDashError) as info:
        Store(path)
    assert str(info.value) == (
        "This database was written by a newer emdash (schema migration 9999; this version "
        f"knows up to {MIGRATIONS[-1][0]}). Upgrade emdash to open it."
    )


def test_now_format_and_ids(store: Store, clock: Clock) -> None:
    assert store.now() == "2026-11-22T05:33:24.123Z"
    clock.advance(milliseconds=5)
    assert store.now() == "2026-11-22T05:33:24.128Z"
    ids = [store.new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 2000
    assert all(len(i) == 26 for i in ids)


def test_format_timestamp_converts_to_utc() -> None:
    from datetime import datetime, timedelta, timezone

    moment = datetime(2026, 5, 1, 14, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2026-05-01T12:00:00.999Z"


def test_transaction_commits_and_rolls_back(store: Store) -> None:
    with store.transaction():
        store.options.set("a", 1)
        store.options.set("b", 2)
    with pytest.raises(RuntimeError), store.transaction():
        store.options.set("c", 3)
        raise RuntimeError("boom")
    assert _names(store) == ["a", "b"]


def test_nested_transaction_is_a_savepoint(store: Store) -> None:
    with store.transaction():
        store.options.set("outer", 1)
        with pytest.raises(RuntimeError), store.transaction():
            store.options.set("inner", 1)
            raise RuntimeError("inner fails")
        store.options.set("after", 1)
    assert _names(store) == ["after", "outer"]


def test_write_outside_transaction_is_refused(store: Store) -> None:
    with pytest.raises(EmDashError, match="store write outside a transaction"):
        store._db.execute("DELETE FROM _emdash_options")


def test_invocation_write_then_exception_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.invocation():
        store.kv_entries.set("p", "k", 1)
        store.plugin_documents.put("p", "events", "e1", {"n": 1})
        store.options.set("x", 1)
        raise RuntimeError("plugin crashed")
    assert store.kv_entries.get("p", "k") is None
    assert store.plugin_documents.get("p", "events", "e1") is None
    assert store.options.get("x") is None


def _elsewhere(read: Callable[[], object]) -> object:
    """``read()`` run on another thread (outside this thread's invocation scope)."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(read()))
    t.start()
    t.join(10)
    return out[0]


def test_invocation_commits_all_writes_on_normal_exit(store: Store) -> None:
    with store.invocation():
        store.kv_entries.set("p", "a", 1)
        # The write is in the invocation's log: no lock is held between its calls.
        assert not store.lock._is_owned()  # type: ignore[attr-defined]
        store.kv_entries.set("p", "b", 2)
        # Reads inside the scope see the scope's own writes; other threads do not yet.
        assert store.kv_entries.get("p", "a") == 1
        assert _elsewhere(lambda: store.kv_entries.get("p", "a")) is None
    assert not store.lock._is_owned()  # type: ignore[attr-defined]
    assert [e["key"] for e in store.kv_entries.list("p")] == ["a", "b"]


def test_failed_write_caught_inside_invocation_leaves_nothing_of_itself(store: Store) -> None:
    with store.invocation():
        store.kv_entries.set("p", "kept", 1)
        with pytest.raises(BridgeError):
            store.plugin_documents.put_many(
                "p", "events", [{"id": "ok", "data": 1}, {"id": "bad", "data": float("nan")}]
            )
        with pytest.raises(StorageError), store.transaction():
            store.options.set("half", 1)
            store._db.execute("INSERT INTO no_such_table VALUES (1)")
    assert store.kv_entries.get("p", "kept") == 1
    assert store.plugin_documents.get("p", "events", "ok") is None
    assert store.options.get("half") is None


def test_read_only_invocation_never_takes_the_lock(store: Store) -> None:
    store.kv_entries.set("p", "k", 1)
    entered = threading.Event()
    release = threading.Event()
    seen: list[object] = []

    def plugin() -> None:
        with store.invocation():
            seen.append(store.kv_entries.get("p", "k"))
            seen.append(store.kv_entries.list("p"))
            entered.set()
            release.wait(10)

    t = threading.Thread(target=plugin)
    t.start()
    assert entered.wait(10)
    # Another thread can take the lock and write while the read-only invocation is open
    # (to what it did not read: like a writer, a read-only invocation is validated at its
    # end, and a write to a scope it read, made before that end, is a conflict).
    assert store.lock.acquire(blocking=False)
    store.lock.release()
    store.kv_entries.set("q", "other", 2)
    release.set()
    t.join(10)
    assert seen == [1, [{"key": "k", "value": 1}]]
    assert store.kv_entries.get("q", "other") == 2


def test_writing_invocation_holds_no_lock_while_it_waits(store: Store) -> None:
    wrote = threading.Event()
    release = threading.Event()

    def plugin() -> None:
        with store.invocation():
            store.kv_entries.set("p", "k", 1)
            wrote.set()
            release.wait(10)

    t = threading.Thread(target=plugin)
    t.start()
    assert wrote.wait(10)
    # Other threads can write meanwhile, and never read the uncommitted row.
    assert store.lock.acquire(blocking=False)
    store.lock.release()
    store.kv_entries.set("p", "other", 2)
    assert store.kv_entries.get("p", "k") is None
    release.set()
    t.join(10)
    assert store.kv_entries.get("p", "k") == 1
    assert store.kv_entries.get("p", "other") == 2


def test_nested_invocation_joins_outer_and_fails_alone(store: Store) -> None:
    with store.invocation():
        store.kv_entries.set("p", "outer", 1)
        with store.invocation():
            store.kv_entries.set("p", "inner-ok", 1)
        with pytest.raises(RuntimeError), store.invocation():
            store.kv_entries.set("p", "inner-bad", 1)
            raise RuntimeError("nested handler failed")
        # Nothing is committed before the outer scope ends.
        assert _elsewhere(lambda: store.kv_entries.list("p")) == []
    assert [e["key"] for e in store.kv_entries.list("p")] == ["inner-ok", "outer"]


def test_nested_invocation_rolled_back_with_outer(store: Store) -> None:
    with pytest.raises(RuntimeError), store.invocation():
        with store.invocation():
            store.kv_entries.set("p", "inner", 1)
        raise RuntimeError("outer fails after inner succeeded")
    assert store.kv_entries.list("p") == []


def test_first_write_in_nested_scope_opens_outer_scope_too(store: Store) -> None:
    with pytest.raises(RuntimeError), store.invocation():
        with store.invocation():
            store.kv_entries.set("p", "inner", 1)
        store.kv_entries.set("p", "outer", 1)
        raise RuntimeError("outer fails")
    assert store.kv_entries.list("p") == []


def test_invocation_scopes_are_per_thread(store: Store) -> None:
    done = threading.Event()

    def other() -> None:
        store.kv_entries.set("p", "other-thread", 1)  # not inside this thread's scope
        done.set()

    with pytest.raises(RuntimeError), store.invocation():
        t = threading.Thread(target=other)
        t.start()
        assert done.wait(10)
        t.join(10)
        store.kv_entries.set("p", "mine", 1)
        raise RuntimeError("rolls back only this thread's writes")
    assert [e["key"] for e in store.kv_entries.list("p")] == ["other-thread"]


def test_concurrent_writers_are_serialised(store: Store) -> None:
    def worker(n: int) -> None:
        for i in range(50):
            store.plugin_documents.put("p", "c", f"{n}-{i}", {"n": n, "i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert store.db.execute("SELECT COUNT(*) FROM _plugin_storage").fetchone()[0] == 200


def test_two_stores_on_one_file_see_each_others_commits(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    with Store(path) as a, Store(path) as b:
        a.kv_entries.set("p", "k", "from a")
        assert b.kv_entries.get("p", "k") == "from a"


def test_close_is_idempotent_and_later_writes_fail(tmp_path: Path) -> None:
    s = Store(tmp_path / "x.db")
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(EmDashError, match="the store is closed"):
        s.options.set("a", 1)


def test_commit_and_rollback_callbacks_follow_the_outcome(store: Store) -> None:
    events: list[str] = []
    db = store._db
    with store.transaction():
        db.after_commit(lambda: events.append("outer-commit"))
        db.on_rollback(lambda: events.append("outer-rollback"))
        with pytest.raises(RuntimeError), store.transaction():
            db.after_commit(lambda: events.append("inner-commit-dropped"))
            db.on_rollback(lambda: events.append("inner-rollback"))
            raise RuntimeError("inner")
        with store.transaction():
            db.after_commit(lambda: events.append("kept-commit"))
        assert events == ["inner-rollback"]
    assert events == ["inner-rollback", "outer-commit", "kept-commit"]
    events.clear()
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            db.on_rollback(lambda: events.append("released-then-rolled-back"))
            db.after_commit(lambda: events.append("never"))
        raise RuntimeError("outer")
    assert events == ["released-then-rolled-back"]


def test_failing_callback_is_logged_not_raised(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise OSError("disk gone")

    with store.transaction():
        store._db.after_commit(boom)
        store.options.set("a", 1)
    assert store.options.get("a") == 1
    assert "a commit/rollback callback failed" in caplog.text


def test_callbacks_need_a_transaction(store: Store) -> None:
    with pytest.raises(EmDashError, match="outside a transaction"):
        store._db.after_commit(lambda: None)


def test_timestamps_are_fixed_width() -> None:
    from datetime import UTC, datetime

    from emdash._store import parse_timestamp

    assert format_timestamp(datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0005-01-02T03:04:05.000Z"
    assert parse_timestamp("2026-05-01T12:00:00", what="t") == "2026-05-01T12:00:00.000Z"
    with pytest.raises(BridgeError) as info:
        parse_timestamp("9999-12-31T23:59:59-01:00", what="publishedAt")
    assert str(info.value) == (
        'Invalid publishedAt "9999-12-31T23:59:59-01:00": use an ISO 8601 datetime such as '
        '"2026-05-01T12:00:00Z"'
    )
    with pytest.raises(BridgeError) as info:
        parse_timestamp(12, what="t")
    assert str(info.value) == "Invalid t: expected an ISO 8601 datetime string"


def test_in_scope_here_is_per_thread(store: Store) -> None:
    import threading

    assert not store.in_scope_here()
    seen: list[bool] = []
    with store.invocation():
        assert store.in_scope_here()
        worker = threading.Thread(target=lambda: seen.append(store.in_scope_here()))
        worker.start()
        worker.join()
    with store.transaction():
        assert store.in_scope_here()
    assert not store.in_scope_here()
    assert seen == [False]
