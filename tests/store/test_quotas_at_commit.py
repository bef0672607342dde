"""Stored-data quotas are checked again when an invocation commits (emdash._store._quotas).

A write's quota check sees the invocation's own view; invocations running at the same time
could each pass it and together store more than the quota. The commit transaction checks
the plugin's stored usage again, after its writes are replayed, so the final usage never
passes the quota. Real SQLite files; interleavings made structurally (a commit from another
thread between an invocation's write and its end), or by many threads for the invariant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import QuotaExceededError
from emdash._store import Store
from emdash._store._db import InvocationScope
from emdash._store._quotas import QuotaPolicy, Quotas

from .conftest import other_thread


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Store]:
    policy = QuotaPolicy(plugins={"p": Quotas(stored_rows=3, stored_bytes=1000)})
    with Store(tmp_path / "site.db", quotas=policy) as s:
        s.audit_records.flush_after_s = None
        yield s


def _usage(store: Store) -> dict[str, int]:
    usage = store.stored_quota.usage("p")
    assert usage == store.stored_quota.recount("p")
    return usage


def test_a_concurrent_commit_that_fills_the_quota_fails_the_later_commit(small: Store) -> None:
    kv = small.kv_entries
    kv.set("p", "a", 1)
    kv.set("p", "b", 1)  # 2 of 3 rows

    def other() -> None:
        with small.invocation("p", "route:other"):
            kv.set("p", "c", 1)

    with pytest.raises(QuotaExceededError) as info, small.invocation("p", "route:mine"):
        kv.set("p", "d", 1)  # passes: this invocation sees 2 rows
        other_thread(other)  # commits the third row
    err = info.value
    assert (err.plugin_id, err.quota, err.limit) == ("p", "stored_rows", 3)
    assert "Plugin p would exceed its stored_rows quota of 3 rows" in str(err)
    assert "checked again when it committed" in str(err)
    assert "Nothing was written" in str(err)
    assert kv.get("p", "d") is None  # nothing of the invocation was kept
    assert _usage(small)["rows"] == 3


def test_bytes_are_checked_at_commit_too(small: Store) -> None:
    kv = small.kv_entries
    with pytest.raises(QuotaExceededError) as info, small.invocation("p", "route:mine"):
        kv.set("p", "x", "m" * 600)
        other_thread(lambda: small.plugin_documents.put("p", "docs", "d", {"t": "o" * 600}))
    assert info.value.quota == "stored_bytes"
    assert kv.get("p", "x") is None
    assert _usage(small)["bytes"] <= 1000


def test_shrinking_commits_whatever_the_others_did(small: Store) -> None:
    kv = small.kv_entries
    kv.set("p", "a", "v" * 100)
    small.quotas.set("p", Quotas(stored_rows=1, stored_bytes=50))  # now over both
    with small.invocation("p", "route:mine"):
        kv.set("p", "a", "v")  # smaller: allowed, also at commit
        kv.delete("p", "gone")
    assert kv.get("p", "a") == "v"


def test_only_the_invocations_plugin_is_rechecked(small: Store) -> None:
    kv = small.kv_entries
    for k in "abc":
        kv.set("p", k, 1)  # p is full; q has the default quota
    with small.invocation("q", "route:mine"):
        kv.set("q", "k", 1)
        other_thread(lambda: kv.delete("p", "a"))
    assert kv.get("q", "k") == 1


@pytest.mark.parametrize("threads", [4, 8])
def test_concurrent_invocations_never_store_more_than_the_quota(
    tmp_path: Path, threads: int
) -> None:
    policy = QuotaPolicy(plugins={"p": Quotas(stored_rows=20, stored_bytes=1 << 20)})
    with Store(tmp_path / "site.db", quotas=policy) as store:
        stored = [0] * threads
        refused = [0] * threads

        def worker(i: int) -> None:
            for n in range(15):

                def grow(_: InvocationScope | None, key: str = f"t{i}-{n}") -> None:
                    store.kv_entries.set("p", key, 1)
                    store.kv_entries.increment("p", "calls", 1)  # a second row, shared

                try:
                    store.run_invocation("p", "route:grow", grow)
                    stored[i] += 1
                except QuotaExceededError:
                    refused[i] += 1

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(300)
        usage = _usage(store)
        assert usage["rows"] <= 20
        # One row per successful invocation, plus the shared counter; the counter holds
        # exactly the number of invocations that committed.
        assert usage["rows"] == sum(stored) + 1
        assert store.kv_entries.get("p", "calls") == sum(stored)
        assert sum(stored) + sum(refused) == 15 * threads
