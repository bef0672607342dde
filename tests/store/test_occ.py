"""Optimistic concurrency of invocation scopes (emdash._store._db), on real SQLite files.

Threads share one Store; conflicts are provoked structurally (a write from another thread
between an invocation's read and its end), never by timing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import ConflictError, StorageError
from emdash._shared._errors import BridgeError
from emdash._store import Store, _db
from emdash._store._db import CONFLICT_RETRIES, InvocationScope

from .conftest import other_thread


@pytest.fixture
def fstore(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "site.db") as s:
        s.audit_records.flush_after_s = None  # only what the test does writes the audit
        yield s


def _statements(store: Store) -> list[str]:
    """Every statement the store's connection runs from now on (SQLite's trace hook)."""
    seen: list[str] = []
    store._db.conn.set_trace_callback(seen.append)
    return seen


# -- no lost update ----------------------------------------------------------------------


@pytest.mark.parametrize("threads", [2, 8])
def test_read_modify_write_from_threads_loses_no_update(fstore: Store, threads: int) -> None:
    successes = [0] * threads
    conflicts = [0] * threads

    def rmw(_: InvocationScope | None) -> None:
        n = fstore.kv_entries.get("p", "counter") or 0
        fstore.kv_entries.set("p", "counter", n + 1)

    def worker(i: int) -> None:
        for _ in range(40):
            try:
                fstore.run_invocation("p", "route:bump", rmw)
                successes[i] += 1
            except ConflictError:
                conflicts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert fstore.kv_entries.get("p", "counter") == sum(successes)
    assert sum(successes) + sum(conflicts) == 40 * threads
    assert sum(successes) > 0


def test_increments_from_threads_never_conflict(fstore: Store) -> None:
    def inc(_: InvocationScope | None) -> None:
        fstore.kv_entries.increment("p", "hits", 1)

    def worker() -> None:
        for _ in range(50):
            fstore.run_invocation("p", "route:hit", inc, rerun=False)

    pool = [threading.Thread(target=worker) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert fstore.kv_entries.get("p", "hits") == 400


# -- conflicts ----------------------------------------------------------------------------


def test_a_changed_read_is_a_conflict_naming_plugin_and_scope(fstore: Store) -> None:
    fstore.kv_entries.set("p", "n", 1)
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:bump"):
        n = fstore.kv_entries.get("p", "n")
        fstore.kv_entries.set("p", "n", n + 1)
        fstore.kv_entries.set("p", "side", True)
        other_thread(lambda: fstore.kv_entries.set("p", "n", 100))
    err = info.value
    assert isinstance(err, StorageError)
    assert err.plugin_id == "p" and err.scope == "kv/p/n"
    assert "Plugin p could not commit its route:bump invocation: kv/p/n was changed" in str(err)
    assert "ctx.kv.increment" in str(err) and "Retry" in str(err)
    # Nothing of the invocation was kept.
    assert fstore.kv_entries.get("p", "n") == 100
    assert fstore.kv_entries.get("p", "side") is None


def test_a_write_to_another_key_is_no_conflict(fstore: Store) -> None:
    with fstore.invocation("p", "route:x"):
        fstore.kv_entries.set("p", "a", (fstore.kv_entries.get("p", "a") or 0) + 1)
        other_thread(lambda: fstore.kv_entries.set("p", "b", 1))
        other_thread(lambda: fstore.kv_entries.set("q", "a", 1))
    assert fstore.kv_entries.get("p", "a") == 1


def test_a_listing_conflicts_with_a_new_key(fstore: Store) -> None:
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:x"):
        keys = [e["key"] for e in fstore.kv_entries.list("p")]
        fstore.kv_entries.set("p", "count", len(keys))
        other_thread(lambda: fstore.kv_entries.set("p", "new", 1))
    assert info.value.scope == "kv/p"


def test_storage_point_and_collection_scopes(fstore: Store) -> None:
    docs = fstore.plugin_documents
    with fstore.invocation("p", "route:x"):
        assert docs.get("p", "events", "e1") is None
        docs.put("p", "events", "e1", {"n": 1})
        other_thread(lambda: docs.put("p", "events", "e2", {"n": 2}))  # another document
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:y"):
        docs.put("p", "events", "e1", {"n": docs.get("p", "events", "e1")["n"] + 1})
        other_thread(lambda: docs.put("p", "events", "e1", {"n": 10}))
    assert info.value.scope == "st/p/events/e1"
    assert docs.get("p", "events", "e1") == {"n": 10}


def test_a_host_write_outside_invocations_bumps_versions(fstore: Store) -> None:
    # Host API writes (rt.content..., the CLI) are ordinary transactions, and still
    # conflict with an invocation that read what they changed.
    fstore.options.set("site", "a")
    with pytest.raises(ConflictError), fstore.invocation("p", "route:x"):
        fstore.kv_entries.set("p", "copy", fstore.options.get("site"))
        other_thread(lambda: fstore.options.set("site", "b"))
    assert fstore.kv_entries.get("p", "copy") is None


def test_a_conflicting_invocation_without_effects_is_re_run(fstore: Store) -> None:
    fstore.kv_entries.set("p", "n", 0)
    runs: list[int] = []

    def bump(_: InvocationScope | None) -> None:
        runs.append(1)
        n = fstore.kv_entries.get("p", "n")
        if len(runs) == 1:  # the first run loses a race
            other_thread(lambda: fstore.kv_entries.set("p", "n", 100))
        fstore.kv_entries.set("p", "n", n + 1)

    fstore.run_invocation("p", "route:bump", bump)
    assert len(runs) == 2
    assert fstore.kv_entries.get("p", "n") == 101


def test_an_invocation_with_outside_effects_is_not_re_run(fstore: Store) -> None:
    fstore.kv_entries.set("p", "n", 0)
    runs: list[int] = []

    def bump(_: InvocationScope | None) -> None:
        runs.append(1)
        n = fstore.kv_entries.get("p", "n")
        fstore.mark_effect()  # what the bridge does for http.fetch, email.send
        other_thread(lambda: fstore.kv_entries.set("p", "n", 100))
        fstore.kv_entries.set("p", "n", n + 1)

    with pytest.raises(ConflictError):
        fstore.run_invocation("p", "route:bump", bump)
    assert runs == [1]
    assert fstore.kv_entries.get("p", "n") == 100


def test_re_runs_are_bounded(fstore: Store) -> None:
    runs: list[int] = []

    def always_loses(_: InvocationScope | None) -> None:
        runs.append(1)
        n = fstore.kv_entries.get("p", "n") or 0
        other_thread(lambda: fstore.kv_entries.set("p", "n", n + 100))
        fstore.kv_entries.set("p", "n", n + 1)

    with pytest.raises(ConflictError):
        fstore.run_invocation("p", "route:bump", always_loses)
    assert len(runs) == CONFLICT_RETRIES + 1


def test_a_nested_invocation_failing_drops_only_its_part(fstore: Store) -> None:
    with fstore.invocation("p", "route:outer"):
        fstore.kv_entries.set("p", "outer", 1)
        with pytest.raises(RuntimeError), fstore.invocation("q", "hook:content:afterSave"):
            fstore.kv_entries.set("q", "inner", 1)
            raise RuntimeError("nested handler failed")
        fstore.kv_entries.set("p", "after", 1)
    assert fstore.kv_entries.get("p", "outer") == 1
    assert fstore.kv_entries.get("p", "after") == 1
    assert fstore.kv_entries.get("q", "inner") is None


# -- own writes, cheap paths -----------------------------------------------------------------


def test_reads_see_the_invocations_own_writes_and_others_do_not(fstore: Store) -> None:
    seen: list[object] = []
    with fstore.invocation("p", "route:x"):
        fstore.kv_entries.set("p", "a", 1)
        fstore.plugin_documents.put("p", "events", "e", {"n": 1})
        assert fstore.kv_entries.get("p", "a") == 1
        assert fstore.kv_entries.list("p") == [{"key": "a", "value": 1}]
        assert fstore.plugin_documents.get("p", "events", "e") == {"n": 1}
        other_thread(lambda: seen.append(fstore.kv_entries.get("p", "a")))
    assert seen == [None]
    assert fstore.kv_entries.get("p", "a") == 1


def test_an_invocation_without_reads_or_writes_runs_no_statement(fstore: Store) -> None:
    seen = _statements(fstore)
    with fstore.invocation("p", "hook:content:afterSave"):
        pass
    assert seen == []


def test_a_first_kv_set_is_logged_without_a_speculative_transaction(fstore: Store) -> None:
    seen = _statements(fstore)
    with fstore.invocation("p", "route:x"):
        fstore.kv_entries.set("p", "a", 1)
        # The invocation's first write, a blind upsert: one read (the key's stored size and
        # the plugin's usage, for the quota), no transaction, the write only logged.
        assert len(seen) == 1
        assert seen[0].startswith("SELECT (SELECT length(CAST(value AS BLOB))")
        # A read of another key does not replay the log.
        del seen[:]
        assert fstore.kv_entries.get("p", "b") is None
        assert not [s for s in seen if s.startswith(("BEGIN", "INSERT"))]
        # A read of the written key replays it (own writes are seen)...
        assert fstore.kv_entries.get("p", "a") == 1
        # ...and a second write is speculated as before: BEGIN, replay, write, ROLLBACK.
        del seen[:]
        fstore.kv_entries.set("p", "c", 2)
        assert seen[0] == "BEGIN IMMEDIATE"
        assert seen[1].startswith("INSERT INTO _emdash_options")
        assert seen[-1] == "ROLLBACK"
        del seen[:]
    # The commit replays the log: both writes land, with their version bumps.
    assert any(s.startswith("INSERT INTO _emdash_options") for s in seen)
    assert seen[-1] == "COMMIT"
    fstore._db.conn.set_trace_callback(None)
    assert fstore.kv_entries.get("p", "a") == 1
    assert fstore.kv_entries.get("p", "c") == 2
    assert fstore.stored_quota.usage("p")["rows"] == 2


def test_the_audit_row_commits_with_the_writes(fstore: Store, tmp_path: Path) -> None:
    with fstore.invocation("p", "route:save"):
        fstore.kv_entries.set("p", "a", 1)
    with fstore.invocation("p", "route:peek"):  # read-only: buffered as before
        fstore.kv_entries.get("p", "a")
    # Read from another connection, with no flush: the row is already in the file.
    conn = sqlite3.connect(tmp_path / "site.db")
    try:
        rows = conn.execute("SELECT plugin_id, kind, name, outcome FROM _emdash_audit").fetchall()
    finally:
        conn.close()
    assert rows == [("p", "route", "save", "ok")]


def test_a_failed_invocation_leaves_nothing(fstore: Store, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), fstore.invocation("p", "route:x"):
        fstore.kv_entries.set("p", "a", 1)
        fstore.plugin_documents.put("p", "events", "e", {"n": 1})
        raise RuntimeError("plugin failed")
    conn = sqlite3.connect(tmp_path / "site.db")
    try:
        assert conn.execute("SELECT COUNT(*) FROM _emdash_options").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM _plugin_storage").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM _emdash_versions").fetchone()[0] == 0
    finally:
        conn.close()


def test_the_log_is_capped(fstore: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each speculative write replays the log so far, so reaching the real cap costs about
    # MAX_LOG_STATEMENTS**2 / 2 statements (~15 s of CPU); the check is the same with a
    # small cap (the module's constant is read as each write is logged).
    monkeypatch.setattr(_db, "MAX_LOG_STATEMENTS", 40)
    with pytest.raises(BridgeError) as info, fstore.invocation("p", "route:x"):
        for i in range(40 + 1):
            fstore.kv_entries.set("p", f"k{i}", i)
    assert info.value.plugin_id == "p"
    assert "Plugin p made more writes in one invocation" in str(info.value)
    assert "(40 statements, " in str(info.value)
    assert fstore.kv_entries.list("p", "k1") == []


# -- primitives ------------------------------------------------------------------------------


def test_increment_semantics(fstore: Store) -> None:
    kv = fstore.kv_entries
    assert kv.increment("p", "n") == 1
    assert kv.increment("p", "n", 5) == 6
    assert kv.increment("p", "n", -0.5) == 5.5
    assert kv.get("p", "n") == 5.5
    with fstore.invocation("p", "route:x"):
        assert kv.increment("p", "m", 2) == 2  # as this invocation sees it
        assert kv.increment("p", "m", 2) == 4
    assert kv.get("p", "m") == 4
    kv.set("p", "s", "text")
    with pytest.raises(BridgeError, match='key "s" of plugin p holds text, not a number'):
        kv.increment("p", "s")
    for bad in (True, "1", None, float("inf"), float("nan")):
        with pytest.raises(BridgeError, match="by must be a finite number"):
            kv.increment("p", "n", bad)


def test_an_increment_whose_key_stops_being_a_number_conflicts(fstore: Store) -> None:
    fstore.kv_entries.set("p", "n", 1)
    with pytest.raises(ConflictError), fstore.invocation("p", "route:x"):
        fstore.kv_entries.increment("p", "n")
        other_thread(lambda: fstore.kv_entries.set("p", "n", "text"))
    assert fstore.kv_entries.get("p", "n") == "text"


def test_compare_and_set_semantics(fstore: Store) -> None:
    kv = fstore.kv_entries
    assert kv.compare_and_set("p", "k", None, {"v": 1}) is True  # absent -> set
    assert kv.compare_and_set("p", "k", None, {"v": 2}) is False
    assert kv.compare_and_set("p", "k", {"v": 1}, {"v": 2}) is True
    assert kv.get("p", "k") == {"v": 2}
    kv.set("p", "n", 1)
    assert kv.compare_and_set("p", "n", 1.0, 2) is False  # exact JSON: 1 is not 1.0
    assert kv.compare_and_set("p", "n", True, 2) is False  # nor true
    assert kv.compare_and_set("p", "n", 1, None) is True  # None new: delete
    assert kv.get("p", "n") is None


def test_compare_and_set_inside_an_invocation_is_atomic(fstore: Store) -> None:
    fstore.kv_entries.set("p", "lock", "free")
    with pytest.raises(ConflictError), fstore.invocation("p", "route:take"):
        assert fstore.kv_entries.compare_and_set("p", "lock", "free", "mine") is True
        other_thread(lambda: fstore.kv_entries.compare_and_set("p", "lock", "free", "theirs"))
    assert fstore.kv_entries.get("p", "lock") == "theirs"


def test_a_commit_also_writes_the_buffered_records_in_order(fstore: Store, tmp_path: Path) -> None:
    fstore.audit_records.record("p", "hook", "content:afterSave", "ok", 1)  # buffered
    with fstore.invocation("p", "route:save"):
        fstore.kv_entries.set("p", "a", 1)
    assert fstore.audit_records.pending() == 0
    conn = sqlite3.connect(tmp_path / "site.db")
    try:
        rows = conn.execute("SELECT name FROM _emdash_audit ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows == [("content:afterSave",), ("save",)]


def test_buffered_records_taken_by_a_conflicting_commit_stay_buffered(fstore: Store) -> None:
    fstore.kv_entries.set("p", "n", 1)
    fstore.audit_records.record("p", "hook", "content:afterSave", "ok", 1)
    with pytest.raises(ConflictError), fstore.invocation("p", "route:bump"):
        fstore.kv_entries.set("p", "n", fstore.kv_entries.get("p", "n") + 1)
        other_thread(lambda: fstore.kv_entries.set("p", "n", 100))
    assert fstore.audit_records.pending() == 1
