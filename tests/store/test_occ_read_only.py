"""Read-only invocations are validated too (emdash._store._db): serializable means their
reads form one consistent view. Real SQLite files; interleavings made structurally."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import ConflictError
from emdash._store import Store
from emdash._store._db import InvocationScope

from .conftest import other_thread


@pytest.fixture
def fstore(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "site.db") as s:
        s.audit_records.flush_after_s = None
        s.kv_entries.set("p", "a", 1)
        s.kv_entries.set("p", "b", 1)
        yield s


def _transfer(store: Store) -> None:
    """Move 1 from a to b, in one transaction (a + b stays 2)."""
    with store.transaction():
        store.kv_entries.set("p", "a", 0)
        store.kv_entries.set("p", "b", 2)


def test_two_reads_from_two_moments_are_a_conflict(fstore: Store) -> None:
    kv = fstore.kv_entries
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:sum"):
        kv.get("p", "a")
        # A transfer from a to b commits between the two reads: a then b sees 1 + 2.
        other_thread(lambda: _transfer(fstore))
        kv.get("p", "b")
    assert info.value.scope == "kv/p/a" and info.value.plugin_id == "p"


def test_one_read_is_consistent_by_itself(fstore: Store) -> None:
    kv = fstore.kv_entries
    with fstore.invocation("p", "route:peek"):
        assert kv.get("p", "a") == 1
        other_thread(lambda: kv.set("p", "a", 5))  # after its only read: serializes first


def test_the_same_key_read_twice_across_a_commit_is_a_conflict(fstore: Store) -> None:
    kv = fstore.kv_entries
    with pytest.raises(ConflictError), fstore.invocation("p", "route:peek"):
        kv.get("p", "a")
        other_thread(lambda: kv.set("p", "a", 5))
        kv.get("p", "a")


def test_reads_of_unchanged_scopes_commit(fstore: Store) -> None:
    kv = fstore.kv_entries
    with fstore.invocation("p", "route:sum"):
        kv.get("p", "a")
        other_thread(lambda: kv.set("p", "other", 5))  # not read: no conflict
        kv.get("p", "b")
        kv.list("p")  # a list after the write: its namespace version is the new one


def test_a_read_only_invocation_is_re_run_on_a_conflict(fstore: Store) -> None:
    kv = fstore.kv_entries
    seen: list[tuple[object, object]] = []
    moved = [False]

    def read(_: InvocationScope | None) -> None:
        a = kv.get("p", "a")
        if not moved[0]:
            moved[0] = True
            other_thread(lambda: _transfer(fstore))
        seen.append((a, kv.get("p", "b")))

    fstore.run_invocation("p", "route:sum", read)
    assert seen == [(1, 2), (0, 2)]  # the inconsistent view was not kept: re-run


def test_validation_takes_no_write_lock(fstore: Store, tmp_path: Path) -> None:
    """Another process holding the write lock does not stop a read-only commit."""
    other = sqlite3.connect(tmp_path / "site.db", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO _emdash_versions (scope, version) VALUES ('x', 1)")
        with fstore.invocation("p", "route:scan"):
            for i in range(600):  # validated inside a (deferred) read transaction
                fstore.kv_entries.get("p", f"k{i}")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_many_scopes_are_validated_from_one_snapshot(fstore: Store) -> None:
    kv = fstore.kv_entries
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:scan"):
        for i in range(600):  # past one statement's chunk of 500
            kv.get("p", f"k{i}")
        other_thread(lambda: kv.set("p", "k599", 1))
    assert info.value.scope == "kv/p/k599"
