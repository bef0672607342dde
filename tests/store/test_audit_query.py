"""Audit queries done by SQLite: filters, time range and keyset paging over more rows than
the old in-Python scan ever looked at (it read the newest 10,000 and filtered those)."""

from __future__ import annotations

import pytest

from emdash._shared._errors import EmDashError
from emdash._store import Store
from emdash._store._audit_query import FIGURES_WINDOW, query_audit

from .conftest import Clock, sqlite_only

KINDS = ("hook", "route", "cron")


def fill(store: Store, clock: Clock, count: int) -> list[str]:
    """``count`` records, one a second; the oldest one is the only timeout. Returns the
    timestamps, oldest first."""
    stamps = []
    for i in range(count):
        stamps.append(store.now())
        outcome = "timeout" if i == 0 else ("error" if i % 7 == 0 else "ok")
        store.audit_records.record(
            "rare" if i == 0 else ("a" if i % 2 else "b"),
            KINDS[i % 3],
            f"op{i}",
            outcome,
            float(i % 50),
            cpu_ms=1.0,
        )
        clock.advance(seconds=1)
    return stamps


@pytest.fixture
def filled(store: Store, clock: Clock) -> list[str]:
    return fill(store, clock, 12_000)


def test_a_match_older_than_the_newest_10000_rows_is_found(store: Store, filled: list[str]) -> None:
    page = query_audit(store.audit_records, outcome="timeout")
    assert [(r["pluginId"], r["name"]) for r in page.rows] == [("rare", "op0")]
    assert page.total == 1 and page.older is None and page.newer is None


def test_filters_combine(store: Store, filled: list[str]) -> None:
    page = query_audit(store.audit_records, plugin_id="a", kind="route", outcome="error", limit=500)
    expected = [i for i in range(12_000) if i % 2 == 1 and i % 3 == 1 and i % 7 == 0 and i != 0]
    assert page.total == len(expected)
    assert [r["name"] for r in page.rows] == [f"op{i}" for i in reversed(expected)][:500]
    for r in page.rows:
        assert (r["pluginId"], r["kind"], r["outcome"]) == ("a", "route", "error")


def test_time_range_is_since_inclusive_until_exclusive(store: Store, filled: list[str]) -> None:
    page = query_audit(store.audit_records, since=filled[100], until=filled[110], limit=50)
    assert [r["name"] for r in page.rows] == [f"op{i}" for i in range(109, 99, -1)]
    assert page.total == 10


def test_keyset_pages_walk_every_row_once_both_ways(store: Store, filled: list[str]) -> None:
    records = store.audit_records
    pages = [query_audit(records, plugin_id="b", limit=500)]
    assert pages[0].newer is None
    while pages[-1].older is not None:
        pages.append(query_audit(records, plugin_id="b", before=pages[-1].older, limit=500))
    names = [r["name"] for p in pages for r in p.rows]
    expected = [f"op{i}" for i in range(11_999, 0, -1) if i % 2 == 0]
    assert names == expected and len(pages) == 12
    # And back, newest-first within each page, ending at the newest page.
    back = [pages[-1]]
    while back[-1].newer is not None:
        back.append(query_audit(records, plugin_id="b", after=back[-1].newer, limit=500))
    assert [[r["id"] for r in p.rows] for p in back] == [
        [r["id"] for r in p.rows] for p in reversed(pages)
    ]
    assert back[-1].newer is None


def test_new_rows_do_not_shift_a_page_being_read(store: Store, clock: Clock) -> None:
    fill(store, clock, 30)
    first = query_audit(store.audit_records, limit=10)
    fill(store, clock, 5)  # written while someone reads the first page
    second = query_audit(store.audit_records, before=first.older, limit=10)
    assert int(second.rows[0]["id"]) == int(first.rows[-1]["id"]) - 1


def test_figures_cover_every_match_not_one_page(store: Store, filled: list[str]) -> None:
    page = query_audit(store.audit_records, plugin_id="b", limit=5)
    counts = {pid: n for pid, n, _d, _c in page.figures}
    assert counts == {"b": 5999} and page.total == 5999 and not page.total_capped
    assert len(page.rows) == 5


def test_figures_read_at_most_the_newest_window_of_matches(store: Store, filled: list[str]) -> None:
    # Every query holds the store's lock: the figures read a bounded number of rows
    # (FIGURES_WINDOW, the newest matches), not every row the log keeps.
    page = query_audit(store.audit_records, limit=5)
    assert page.total == FIGURES_WINDOW == 10_000 and page.total_capped
    counts = {pid: n for pid, n, _d, _c in page.figures}
    # The newest 10,000 of 12,000 (op2000..op11999): "rare" (op0) is older than that.
    assert counts == {"a": 5000, "b": 5000}
    exactly = query_audit(store.audit_records, since=filled[2001], limit=5)
    assert exactly.total == 9999 and not exactly.total_capped


def test_buffered_records_are_seen(store: Store) -> None:
    store.audit_records.record("p", "hook", "x", "ok", 1.0)
    assert store.audit_records.pending() == 1
    assert [r["name"] for r in query_audit(store.audit_records).rows] == ["x"]


def test_unknown_filters_are_refused(store: Store) -> None:
    with pytest.raises(EmDashError, match="Unknown audit kind"):
        query_audit(store.audit_records, kind="shell")
    with pytest.raises(EmDashError, match="Unknown audit outcome"):
        query_audit(store.audit_records, outcome="fine")
    with pytest.raises(EmDashError, match="not both"):
        query_audit(store.audit_records, before=5, after=1)


def test_the_plugin_filter_is_an_index_search(store: Store) -> None:
    # Structural: the plan SQLite picks, not a timing.
    sqlite_only(store, "EXPLAIN QUERY PLAN")
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM _emdash_audit WHERE plugin_id = ? AND id < ? "
        "ORDER BY id DESC LIMIT 101",
        ["a", 100],
    ).fetchall()
    text = " ".join(str(tuple(row)) for row in plan)
    assert "idx_emdash_audit_plugin" in text and "TEMP B-TREE" not in text
