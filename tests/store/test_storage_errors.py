"""Storage failures are typed, say what to do, and are never blamed on a plugin.

Real SQLite files throughout: another real connection holds the write lock, pages of a
real file are overwritten, a real table is dropped. No timing is asserted: the busy
timeout is made short only so the tests do not wait, and the audit back-off is driven by
its state, not by the clock.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import emdash
from emdash import StorageError
from emdash._cli._doctor import check_database
from emdash._cli._main import main
from emdash._store import Store, _audit, _db


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read when a connection opens: a locked database fails fast instead of after 5 s.
    monkeypatch.setattr(_db, "BUSY_TIMEOUT_S", 0.05)


def _lock(path: Path) -> sqlite3.Connection:
    """A second connection (as another process would be) holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")
    return other


# -- at open ------------------------------------------------------------------------------


def test_a_foreign_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "other-app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not an emdash database") as info:
        Store(path)
    assert "users" in str(info.value) and "new or empty file" in str(info.value)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == {"users"}  # not given emdash's tables


def test_an_empty_file_and_an_emdash_database_open(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    path.write_bytes(b"")
    Store(path).close()
    Store(path).close()  # reopened: it is emdash's now


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    path.write_bytes(b"not a database " * 500)
    with pytest.raises(StorageError, match="emdash doctor --database"):
        Store(path)


# -- while running ------------------------------------------------------------------------


def test_a_locked_database_is_a_storage_error_that_says_what_to_do(tmp_path: Path) -> None:
    store = Store(tmp_path / "site.db")
    locker = _lock(tmp_path / "site.db")
    try:
        with pytest.raises(StorageError) as info:
            store.options.set("k", 1)
        message = str(info.value)
        assert message.startswith("Storage failure: database is locked")
        assert "held the database's write lock longer than" in message
        assert not isinstance(info.value.__cause__, StorageError)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        locker.close()
        store.close()


def _damage(path: Path) -> None:
    """Fill a table over many pages, then overwrite the pages in the middle of the file."""
    store = Store(path)
    with store.transaction():
        for i in range(400):
            store.options.set(f"key-{i}", "x" * 1000)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = len(data) // 2 // page * page
    data[start : start + 20 * page] = b"\xa5" * (20 * page)
    path.write_bytes(bytes(data))


def test_damaged_pages_are_a_storage_error_and_doctor_finds_them(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    _damage(path)
    report = check_database(str(path))
    assert report["ok"] is False and report["emdash"] is True
    assert report["problems"]
    with pytest.raises(StorageError, match="emdash doctor --database"):
        store = Store(path)  # may already fail here, on the schema pages
        try:
            store._db.rows("SELECT * FROM _emdash_options")
        finally:
            store.close()


def test_doctor_database_option(tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    Store(good).close()
    result = CliRunner().invoke(main, ["doctor", "--json", "--database", str(good)])
    assert json.loads(result.output)["database"] == {
        "path": str(good),
        "ok": True,
        "emdash": True,
        "problems": [],
    }
    bad = tmp_path / "bad.db"
    _damage(bad)
    result = CliRunner().invoke(main, ["doctor", "--database", str(bad)])
    assert result.exit_code == 1
    assert "DAMAGED" in result.output and "backup" in result.output
    missing = CliRunner().invoke(main, ["doctor", "--json", "--database", str(tmp_path / "x")])
    assert missing.exit_code == 1
    assert not (tmp_path / "x").exists()  # checked, never created


def test_close_closes_the_connection_even_when_the_audit_flush_fails(tmp_path: Path) -> None:
    store = Store(tmp_path / "site.db")
    store.audit_records.record("p", "hook", "h", "ok", 1.0)
    with store.lock:
        store._db.conn.execute("DROP TABLE _emdash_audit")
    with pytest.raises(StorageError, match="no such table: _emdash_audit"):
        store.close()
    assert store.closed
    with pytest.raises(StorageError, match="store was closed"):
        store._db.conn.execute("SELECT 1")
    store.close()  # idempotent, no second error


# -- the audit buffer while the database cannot be written ---------------------------------


def test_audit_flush_backs_off_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "site.db")
    locker = _lock(tmp_path / "site.db")
    audit = store.audit_records
    attempts = 0
    real_flush = audit.flush

    def counting_flush(*, wait: bool = True, timeout: float | None = None) -> int:
        nonlocal attempts
        attempts += 1
        return real_flush(wait=wait, timeout=timeout)

    audit.flush = counting_flush  # type: ignore[method-assign]
    # A long back-off already (as after several failures), so the next one outlasts the
    # test on any machine.
    audit._backoff_s = 30.0
    caplog.set_level(logging.WARNING, logger="emdash.store")
    try:
        for i in range(_audit.FLUSH_AT * 4):
            audit.record("p", "hook", f"h{i}", "ok", 1.0)  # never raises
        assert attempts == 1  # one try, then the back-off: not one per record
        warnings = [r for r in caplog.records if "could not write" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].exc_info is None  # no traceback
        assert audit.pending() == _audit.FLUSH_AT * 4  # nothing lost
        assert len(audit.list(limit=10_000)) == _audit.FLUSH_AT * 4  # still listed
        locker.rollback()
        audit._retry_at = 0.0  # the back-off period is over
        audit.record("p", "hook", "last", "ok", 1.0)
        assert audit.pending() == 0
        assert store._db.scalar("SELECT COUNT(*) FROM _emdash_audit") == _audit.FLUSH_AT * 4 + 1
    finally:
        locker.close()
        store.close()


def test_the_audit_buffer_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_audit, "BUFFER_CAP", 1000)
    store = Store(tmp_path / "site.db")
    locker = _lock(tmp_path / "site.db")
    audit = store.audit_records
    audit._backoff_s = 30.0
    caplog.set_level(logging.WARNING, logger="emdash.store")
    try:
        for i in range(2500):
            audit.record("p", "hook", f"h{i}", "ok", 1.0)
        assert audit.pending() <= 1000
        assert audit.dropped == 2500 - audit.pending()
        assert any("dropped the 100 oldest" in r.getMessage() for r in caplog.records)
        names = [r["name"] for r in audit.list(limit=10_000)]
        assert names[0] == "h2499"  # the newest are kept
    finally:
        locker.close()
        store.close()


# -- not the plugin's fault ----------------------------------------------------------------

PLUGIN = """
from emdash import define_plugin, StorageError

def bump(route_ctx, ctx):
    ctx.kv.set("n", 1)
    return "done"

def swallow(route_ctx, ctx):
    try:
        ctx.kv.set("n", 1)
    except StorageError as exc:
        raise ValueError("the plugin's own error after: " + str(exc))

def forge(route_ctx, ctx):
    raise StorageError("Storage failure: forged by the plugin")

def on_save(event, ctx):
    ctx.kv.set("seen", 1)

plugin = define_plugin(
    hooks={"content:afterSave": on_save},
    routes={"bump": bump, "swallow": swallow, "forge": forge},
)
"""


@pytest.fixture(params=["native", "sandboxed"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[emdash.Runtime]:
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        runtime.add_plugin(
            {"id": "innocent", "capabilities": ["content:read"]},
            source={"plugin.py": PLUGIN},
            trusted=request.param == "native",
        )
        yield runtime


def test_a_storage_failure_in_a_route_is_not_blamed_on_the_plugin(
    rt: emdash.Runtime, tmp_path: Path
) -> None:
    other = _lock(tmp_path / "site.db")
    try:
        with pytest.raises(StorageError, match="database is locked") as info:
            rt.invoke_route("innocent", "bump")
        assert info.value.plugin_id == "innocent"
        # The host reports the storage failure even when the plugin turned it into an
        # error of its own.
        with pytest.raises(StorageError, match="database is locked"):
            rt.invoke_route("innocent", "swallow")
    finally:
        other.close()
    rows = rt.store.audit_records.list(limit=10)
    bumps = [r for r in rows if r["name"] == "bump"]
    assert bumps[0]["outcome"] == "error"
    assert bumps[0]["error"].startswith("Storage failure")


def test_a_plugin_cannot_pass_its_own_error_off_as_storage(rt: emdash.Runtime) -> None:
    if rt.get_plugin("innocent").trusted:
        # In-process, a trusted plugin's exception is whatever it raises: it is trusted, and
        # there is no boundary to lie across.
        with pytest.raises(StorageError, match="forged by the plugin"):
            rt.invoke_route("innocent", "forge")
        return
    with pytest.raises(emdash.PluginError, match="forged by the plugin"):
        rt.invoke_route("innocent", "forge")


def test_a_storage_failure_in_a_hook_is_reported_as_storage(
    rt: emdash.Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="emdash")
    other = _lock(tmp_path / "site.db")
    errors: list[BaseException | None] = []
    try:
        outcome = rt.run_hook(
            "content:afterSave",
            {"content": {"id": "1"}, "collection": "posts", "isNew": True},
        )
        errors = [r.error for r in outcome.results]
    except StorageError as exc:  # the handler's error policy is "abort": raised as itself
        errors = [exc]
    finally:
        other.close()
    assert errors and all(isinstance(e, StorageError) for e in errors)
    logged = [r.getMessage() for r in caplog.records if "innocent" in r.getMessage()]
    assert any("Storage failed while plugin" in m for m in logged)
    assert not any("handler failed" in m for m in logged)
