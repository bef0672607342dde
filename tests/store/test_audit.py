"""The audit log: buffered records, flush points, and survival of rolled-back invocations."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from emdash import StorageError
from emdash._shared._errors import EmDashError
from emdash._store import Store
from emdash._store._audit import FLUSH_AT


def _rows(store: Store) -> int:
    return int(store.db.execute("SELECT COUNT(*) FROM _emdash_audit").fetchone()[0])


def test_records_are_buffered_until_flush(store: Store) -> None:
    store.audit_records.record("p", "hook", "content:beforeSave", "ok", 1.5, cpu_ms=0.7)
    assert _rows(store) == 0
    assert store.audit_records.pending() == 1
    assert store.audit_records.flush() == 1
    assert _rows(store) == 1
    assert store.audit_records.flush() == 0


def test_list_flushes_and_returns_newest_first(store: Store) -> None:
    store.audit_records.record("a", "hook", "content:afterSave", "ok", 2)
    store.audit_records.record("b", "route", "recent", "error", 3.25, error="boom")
    store.audit_records.record(
        "a", "cron", "cleanup", "limit", 30000, cpu_ms=50.0, limit="cpu_ms", error="CPU limit"
    )
    records = store.audit_records.list()
    assert _rows(store) == 3
    assert [(r["pluginId"], r["kind"], r["name"], r["outcome"]) for r in records] == [
        ("a", "cron", "cleanup", "limit"),
        ("b", "route", "recent", "error"),
        ("a", "hook", "content:afterSave", "ok"),
    ]
    assert records[0] == {
        "id": 3,
        "at": "2026-11-22T05:33:24.123Z",
        "pluginId": "a",
        "kind": "cron",
        "name": "cleanup",
        "outcome": "limit",
        "durationMs": 30000.0,
        "cpuMs": 50.0,
        "limit": "cpu_ms",
        "error": "CPU limit",
        "logs": [],
    }
    assert [r["name"] for r in store.audit_records.list(plugin_id="a", limit=1)] == ["cleanup"]
    assert [r["name"] for r in store.audit_records.list(plugin_id="b")] == ["recent"]


def test_buffer_flushes_itself_when_full(store: Store) -> None:
    for i in range(FLUSH_AT - 1):
        store.audit_records.record("p", "hook", f"h{i}", "ok", 1)
    assert _rows(store) == 0
    store.audit_records.record("p", "hook", "last", "ok", 1)
    assert _rows(store) == FLUSH_AT
    assert store.audit_records.pending() == 0


def test_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    s = Store(path)
    s.audit_records.record("p", "lifecycle", "plugin:install", "ok", 4)
    s.close()
    with Store(path) as again:
        assert [r["name"] for r in again.audit_records.list()] == ["plugin:install"]


def test_audit_record_survives_a_rolled_back_invocation(store: Store) -> None:
    with pytest.raises(RuntimeError), store.invocation():
        store.kv_entries.set("p", "k", 1)
        # Inside the invocation's transaction: listing shows buffered records, flush waits.
        store.audit_records.record("p", "hook", "content:beforeSave", "error", 5, error="boom")
        assert store.audit_records.flush() == 0
        assert [r["outcome"] for r in store.audit_records.list()] == ["error"]
        raise RuntimeError("boom")
    assert store.kv_entries.get("p", "k") is None
    assert [r["error"] for r in store.audit_records.list()] == ["boom"]
    assert _rows(store) == 1


def test_audit_record_inside_an_invocation_waits_for_its_end(store: Store) -> None:
    # A record made inside an invocation scope (a nested invocation's) commits with the
    # scope's writes; when the scope fails it is buffered, never lost.
    with pytest.raises(RuntimeError), store.invocation():
        store.audit_records.record("p", "hook", "x", "ok", 1)
        assert store.audit_records.flush() == 0
        raise RuntimeError("the invocation fails later")
    assert store.audit_records.flush() == 1
    assert _rows(store) == 1


def test_flush_does_not_wait_for_another_threads_invocation(store: Store) -> None:
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
    for i in range(FLUSH_AT + 10):  # crosses the flush threshold without blocking
        store.audit_records.record("p", "hook", f"h{i}", "ok", 1)
    # The other invocation holds nothing while it waits (its write is in its log), so the
    # threshold's flush ran at once.
    assert store.audit_records.pending() == 10
    release.set()
    t.join(10)
    assert len(store.audit_records.list(limit=1000)) == FLUSH_AT + 10


def test_records_keep_their_order_across_threads(store: Store) -> None:
    def worker(n: int) -> None:
        for i in range(300):
            store.audit_records.record(f"p{n}", "hook", str(i), "ok", 1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    records = store.audit_records.list(limit=10_000)
    assert len(records) == 900
    for n in range(3):
        names = [int(r["name"]) for r in records if r["pluginId"] == f"p{n}"]
        assert names == list(reversed(range(300)))


def test_invalid_kind_and_outcome(store: Store) -> None:
    with pytest.raises(EmDashError) as info:
        store.audit_records.record("p", "job", "x", "ok", 1)
    assert str(info.value) == (
        "Unknown audit kind 'job': use one of ['admin', 'cron', 'hook', 'lifecycle', 'load', 'route']"
    )
    with pytest.raises(EmDashError) as info:
        store.audit_records.record("p", "hook", "x", "failed", 1)
    assert str(info.value) == (
        "Unknown audit outcome 'failed': use one of ['error', 'limit', 'ok', 'timeout', 'vetoed']"
    )
    assert store.audit_records.pending() == 0


def test_long_error_texts_are_truncated(store: Store) -> None:
    store.audit_records.record("p", "route", "r", "error", 1, error="x" * 10_000)
    (rec,) = store.audit_records.list()
    assert rec["error"] == "x" * 4000


def test_records_a_failed_commit_took_from_the_buffer_are_put_back(tmp_path: Path) -> None:
    # Every invocation's commit drains the buffer into its own transaction; a commit that
    # then fails (here: the database is full when the records are inserted) must put them
    # back for the next flush, not lose them with its rollback.
    with Store(tmp_path / "site.db") as store:
        # No background flusher: it could write the records before the commit takes them,
        # or between their put-back and the checks (on a busy machine, a second is nothing).
        store.audit_records.flush_after_s = None
        # The invocation's own write rewrites a row of the same size (no new page), so
        # the only thing that cannot fit is the audit records the commit inserts.
        store.kv_entries.set("p", "k", 0)
        big = "x" * 3000
        for i in range(4):
            store.audit_records.record("p", "hook", f"before-{i}", "error", 1, error=big)
        assert store.audit_records.pending() == 4
        pages = int(store.db.execute("PRAGMA page_count").fetchone()[0])
        store.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StorageError, match="full"):
            with store.invocation("p", "hook:content:afterSave"):
                store.kv_entries.set("p", "k", 1)
        assert _rows(store) == 0
        assert store.kv_entries.get("p", "k") == 0  # the invocation's write rolled back
        assert store.audit_records.pending() == 4  # the records are back in the buffer
        store.db.execute(f"PRAGMA max_page_count = {pages * 100}")
        assert store.audit_records.flush() == 4
        names = [r["name"] for r in store.audit_records.list()]
        assert names == ["before-3", "before-2", "before-1", "before-0"]
