"""Store paths every invocation takes: the clock, audit flushing in chunks, option reads."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from emdash._store import Store, format_timestamp
from emdash._store._audit import FLUSH_AT


def test_now_matches_formatting_the_system_clock(tmp_path: Path) -> None:
    s = Store(tmp_path / "site.db")
    s.audit_records.flush_after_s = None  # what is buffered must not depend on timing
    try:
        for _ in range(200):
            before = format_timestamp(datetime.now(UTC))
            now = s.now()
            after = format_timestamp(datetime.now(UTC))
            assert before <= now <= after
            assert len(now) == len("2026-11-22T05:33:24.123Z") and now.endswith("Z")
    finally:
        s.close()


def test_flush_splits_into_inserts_that_fit_the_parameter_limit(tmp_path: Path) -> None:
    s = Store(tmp_path / "site.db")
    s.audit_records.flush_after_s = None  # what is buffered must not depend on timing
    try:
        # 9 columns per record: a limit of 20 parameters allows 2 records per INSERT.
        s._db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)
        for i in range(7):
            s.audit_records.record("p", "hook", f"h{i}", "ok", float(i), cpu_ms=0.5 * i)
        assert s.audit_records.flush() == 7
        rows = s.audit_records.list(limit=10)
        assert [r["name"] for r in rows] == [f"h{i}" for i in reversed(range(7))]
        assert [r["cpuMs"] for r in rows] == [0.5 * i for i in reversed(range(7))]
        assert all(r["id"] is not None for r in rows)
    finally:
        s.close()


def test_a_full_buffer_is_written_in_one_flush(tmp_path: Path) -> None:
    s = Store(tmp_path / "site.db")
    s.audit_records.flush_after_s = None  # what is buffered must not depend on timing
    try:
        for i in range(FLUSH_AT + 3):
            s.audit_records.record("p", "route", "r", "error", 1.0, error=f"e{i}", limit="cpu_ms")
        assert s.audit_records.pending() == 3
        s.audit_records.flush()
        rows = s.audit_records.list(limit=FLUSH_AT + 10)
        assert len(rows) == FLUSH_AT + 3
        assert rows[-1]["error"] == "e0" and rows[-1]["limit"] == "cpu_ms"
    finally:
        s.close()


def test_option_reads_distinguish_missing_from_stored_values(tmp_path: Path) -> None:
    s = Store(tmp_path / "site.db")
    s.audit_records.flush_after_s = None  # what is buffered must not depend on timing
    try:
        assert s.options.get("absent", "dflt") == "dflt"
        s.options.set("n", None)
        assert s.options.get("n", "dflt") is None
        s.kv_entries.set("p", "k", {"a": 1})
        assert s.kv_entries.get("p", "k") == {"a": 1}
        assert s.kv_entries.get("p", "missing") is None
    finally:
        s.close()
