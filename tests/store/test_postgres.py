"""PostgreSQL as the store: the dialect rewrites, migrations under several hosts at once,
connection failures and recovery, what the store refuses, and a Runtime on a URL."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from emdash import ConflictError, StorageError, define_plugin
from emdash._cli._config import SiteConfig
from emdash._cli._doctor import check_database, render_database
from emdash._runtime._runtime import Runtime
from emdash._store import Store, _pg
from emdash._store._dialect import redact_url, to_postgres
from emdash._store._migrations import MIGRATIONS
from tests.pgserver import PgServer, start_pg_server

# -- the rewrites (no server needed) ----------------------------------------------------


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        (
            "SELECT a FROM t WHERE b = ? AND c LIKE 'x%'",
            "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'",
        ),
        ("SELECT '?' FROM t WHERE b = ?", "SELECT '?' FROM t WHERE b = %s"),
        (
            "SELECT length(CAST(name AS BLOB)) FROM t",
            "SELECT length(convert_to(name, 'UTF8')) FROM t",
        ),
        (
            "INSERT OR IGNORE INTO t (a) VALUES (?)",
            "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING",
        ),
        ("SELECT 1 FROM t WHERE a IS ? AND b IS NOT ?", None),
        ("SELECT a FROM t WHERE (1) AND (x = 1) ORDER BY a DESC, id", None),
        (
            "INSERT INTO u (k, n) VALUES (?, 1) ON CONFLICT(k) DO UPDATE SET n = n + excluded.n",
            "INSERT INTO u (k, n) VALUES (%s, 1) ON CONFLICT(k) DO UPDATE SET n = u.n + excluded.n",
        ),
    ],
)
def test_rewrites(sqlite: str, postgres: str | None) -> None:
    got = to_postgres(sqlite)
    if postgres is not None:
        assert got == postgres
    elif "IS ?" in sqlite:
        assert got == ("SELECT 1 FROM t WHERE a IS NOT DISTINCT FROM %s AND b IS DISTINCT FROM %s")
    else:
        # A lone 1 is a truth value; SQLite's NULL placement is spelled out.
        assert got == (
            "SELECT a FROM t WHERE (TRUE) AND (x = 1) ORDER BY a DESC NULLS LAST, id NULLS FIRST"
        )


def test_an_unknown_schema_lookup_fails_loudly() -> None:
    with pytest.raises(ValueError, match="no PostgreSQL form"):
        to_postgres("SELECT type FROM sqlite_master")


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("postgresql://site:s3cret@db:5432/x") == "postgresql://site:***@db:5432/x"
    assert redact_url("postgresql://site@db/x") == "postgresql://site@db/x"


# -- on a server -------------------------------------------------------------------------


def test_hosts_starting_together_apply_each_migration_once(
    pg_database: str, tmp_path: Path
) -> None:
    stores: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one(i: int) -> None:
        try:
            start.wait()
            stores.append(Store(pg_database, media_dir=tmp_path / f"m{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        rows = stores[0]._db.rows("SELECT id FROM _emdash_migrations ORDER BY id")
        assert [r["id"] for r in rows] == [n for n, _, _ in MIGRATIONS]
    finally:
        for s in stores:
            s.close()


def test_a_writer_waits_for_another_hosts_writer(pg_database: str, tmp_path: Path) -> None:
    """Each host's transactions take the site's write lock: a read-modify-write on one host
    cannot interleave with another host's (no lost update), as with SQLite's one writer."""
    a = Store(pg_database, media_dir=tmp_path / "a")
    b = Store(pg_database, media_dir=tmp_path / "b")
    try:
        with a.transaction():
            a.kv_entries.set("p", "n", 1)
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def bump(store: Store) -> None:
            try:
                barrier.wait()
                for _ in range(25):
                    with store.transaction():
                        value = store.kv_entries.get("p", "n")
                        store.kv_entries.set("p", "n", int(value) + 1)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=bump, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert a.kv_entries.get("p", "n") == 51
    finally:
        a.close()
        b.close()


def test_a_foreign_database_is_refused(pg_database: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StorageError, match="not an emdash database.*invoices"):
        Store(pg_database, media_dir=tmp_path)


def test_a_database_that_does_not_sort_bytewise_is_refused(
    pg_server: PgServer, tmp_path: Path
) -> None:
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(
            "CREATE DATABASE ascii_site TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
            "LC_CTYPE 'C'"
        )
    try:
        with pytest.raises(StorageError, match="encoding is SQL_ASCII.*CREATE DATABASE"):
            Store(pg_server.url("ascii_site"), media_dir=tmp_path)
    finally:
        pg_server.drop_database(pg_server.url("ascii_site"))


def test_a_store_on_postgresql_needs_a_shared_media_dir(pg_database: str) -> None:
    with pytest.raises(Exception, match="needs media_dir"):
        Store(pg_database)


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of this test's own, which it may stop and start."""
    try:
        server = start_pg_server()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def test_server_down_is_a_clear_error_and_the_store_recovers(
    own_server: PgServer, tmp_path: Path
) -> None:
    url = own_server.create_database()
    store = Store(url, media_dir=tmp_path)
    pool = store._db._pool  # type: ignore[attr-defined]  # PgDb's; no public handle
    try:
        with store.transaction():
            store.kv_entries.set("p", "k", 1)
        own_server.stop(mode="fast")
        # While the server is down no connection can come, however long a request waits
        # for one: a short wait changes no verdict, and saves the pool's 10 s per request.
        # The requests after the restart get the full wait back.
        full_wait = pool.timeout
        pool.timeout = 0.2
        with pytest.raises(StorageError) as info:
            store.kv_entries.get("p", "k")
        assert "cannot reach the PostgreSQL server" in str(info.value)
        assert "no restart needed" in str(info.value)
        with pytest.raises(StorageError):
            with store.transaction():
                store.kv_entries.set("p", "k", 2)
        pool.timeout = full_wait
        own_server.start_again()
        # The same store, no restart: the pool replaces its dead connections.
        assert store.kv_entries.get("p", "k") == 1
        with store.transaction():
            store.kv_entries.set("p", "k", 3)
        assert store.kv_entries.get("p", "k") == 3
    finally:
        store.close()


def test_errors_never_show_the_password(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port nothing listens on: the connection fails, and the message must not leak.
    # No connection can ever come, so the pool's wait for one (10 s) is cut short: the
    # verdict is the same for any wait.
    monkeypatch.setattr(_pg, "POOL_WAIT_S", 0.2)
    url = f"postgresql://emdash:hunter2secret@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(StorageError) as info:
        Store(url, media_dir=tmp_path)
    assert "hunter2secret" not in str(info.value)
    assert "cannot reach the PostgreSQL server" in str(info.value)
    report = check_database(url)
    assert not report["ok"]
    assert "hunter2secret" not in render_database(report)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_doctor_checks_connection_and_schema(pg_database: str, tmp_path: Path) -> None:
    empty = check_database(pg_database)
    assert empty["ok"] and empty["emdash"] is False
    assert "empty: the first start creates the schema" in render_database(empty)
    Store(pg_database, media_dir=tmp_path).close()
    report = check_database(pg_database)
    assert report["ok"] and report["schema"] == max(n for n, _, _ in MIGRATIONS)
    assert f"schema at migration {report['schema']}" in render_database(report)


def test_config_keeps_the_url_and_reads_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SiteConfig.model_validate(
        {
            "database": "postgresql://site@db.internal/site",
            "database_password": {"$env": "SITE_DB_PASSWORD"},
            "database_pool_size": 4,
            "base_dir": tmp_path,
        }
    )
    assert config.database_path() == "postgresql://site@db.internal/site"
    monkeypatch.setenv("SITE_DB_PASSWORD", "from-env")
    assert config.database_secret() == "from-env"
    assert config.describe()["database_password"] == {"$env": "SITE_DB_PASSWORD"}
    monkeypatch.delenv("SITE_DB_PASSWORD")
    with pytest.raises(Exception, match="SITE_DB_PASSWORD, which is not set"):
        config.database_secret()


def test_a_runtime_on_postgresql_runs_plugins(pg_database: str, tmp_path: Path) -> None:
    calls: list[str] = []

    def after_save(event: Any, ctx: Any) -> None:
        ctx.kv.set("saved", (ctx.kv.get("saved") or 0) + 1)
        calls.append(event["content"]["id"])

    plugin = define_plugin(hooks={"content:afterSave": after_save})
    save = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}
    with Runtime(pg_database, media_dir=tmp_path, sandbox=False) as rt:
        rt.add_plugin(
            {"id": "counter", "capabilities": ["content:read"]}, source=plugin, trusted=True
        )
        rt.run_hook("content:afterSave", save)
        rt.run_hook("content:afterSave", save)
    with Runtime(pg_database, media_dir=tmp_path, sandbox=False) as rt:
        assert rt.store.kv_entries.get("counter", "saved") == 2
        assert rt.store.backend == "postgresql"
    assert calls == ["c1", "c1"]
    assert os.path.isdir(tmp_path)


def test_media_uploaded_on_one_host_is_read_on_another(pg_database: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared-media"
    a = Store(pg_database, media_dir=shared)
    b = Store(pg_database, media_dir=shared)
    try:
        up = a.media_items.upload("photo.png", "image/png", b"\x89PNG bytes")
        found = b.media_items.get(up["mediaId"])
        assert found is not None and found["storageKey"] == up["storageKey"]
        assert b.media_files.get(up["storageKey"]) == b"\x89PNG bytes"
    finally:
        a.close()
        b.close()


def test_a_host_follows_the_registry_another_host_changed(
    pg_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = define_plugin(hooks={"content:afterSave": lambda event, ctx: None})
    desc = {"id": "p", "version": "1.0.0", "capabilities": ["content:read"]}
    with (
        Runtime(pg_database, media_dir=tmp_path, sandbox=False) as a,
        Runtime(pg_database, media_dir=tmp_path, sandbox=False) as b,
    ):
        for rt in (a, b):
            rt.add_plugin(dict(desc), source=plugin, trusted=True)
        watch = b._registry_watch
        assert watch is not None
        watch.stop()  # driven by hand below: each round is one sync()
        watch.sync()
        assert b.get_plugin("p").enabled
        a.disable_plugin("p")
        assert watch.sync() == ["p"]
        assert b.get_plugin("p").enabled is False
        a.enable_plugin("p")
        assert watch.sync() == ["p"]
        assert b.get_plugin("p").enabled
        # The site moved to another version: this host stops running the one it loaded.
        a.store.plugin_registry.upsert("p", version="2.0.0", enabled=True, trusted=True)
        assert watch.sync() == ["p"]
        assert b.get_plugin("p").enabled is False
        assert "the site runs version 2.0.0, this host loaded 1.0.0" in caplog.text


SANDBOXED_COUNTER = """
from emdash import HookConfig, define_plugin

def count(event, ctx):
    ctx.kv.set("n", (ctx.kv.get("n") or 0) + 1)
    ctx.kv.increment("calls")

# A minute, not the default 5 s: on a loaded machine three threads' invocations wait for
# each other at the site's writer lock, and the verdict must not depend on how long.
plugin = define_plugin(hooks={"content:afterSave": HookConfig(count, timeout_ms=60_000)})
"""


def test_a_sandboxed_plugin_on_postgresql_loses_no_update(pg_database: str, tmp_path: Path) -> None:
    """Sandboxed invocations from several threads of one host: conflicts are re-run (no
    outside effects), so both counters end at the number of calls."""
    save = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}
    with Runtime(pg_database, media_dir=tmp_path, worker_pool_size=2) as rt:
        rt.add_plugin(
            {
                "id": "sbx",
                "capabilities": ["content:read"],
                "limits": {"wall_ms": 60_000, "cpu_ms": 5_000},
            },
            source={"plugin.py": SANDBOXED_COUNTER},
        )
        ok: list[int] = []
        failed: list[str] = []
        lock = threading.Lock()

        def hit() -> None:
            for _ in range(10):
                try:
                    outcome = rt.run_hook("content:afterSave", save)
                except ConflictError:
                    continue  # lost every retry: nothing of it was kept
                with lock:
                    ok.extend(1 for r in outcome.results if r.success)
                    failed.extend(str(r.error) for r in outcome.results if not r.success)

        threads = [threading.Thread(target=hit) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert rt.get_plugin("sbx").sandboxed
        assert rt.store.kv_entries.get("sbx", "n") == len(ok)
        assert rt.store.kv_entries.get("sbx", "calls") == len(ok)
        assert len(ok) > 0, f"no invocation succeeded; the failures: {failed[:5]}"


def test_a_deadlock_reported_by_the_server_is_a_conflict(pg_database: str, tmp_path: Path) -> None:
    """A real deadlock between two sessions (advisory locks taken in opposite orders): the
    server's error reaches a caller as a ConflictError, which an invocation re-runs."""
    store = Store(pg_database, media_dir=tmp_path)
    one = psycopg.connect(pg_database)
    two = psycopg.connect(pg_database)
    caught: list[BaseException] = []
    try:
        one.execute("SELECT pg_advisory_xact_lock(1)")
        two.execute("SELECT pg_advisory_xact_lock(2)")

        def cross(conn: psycopg.Connection[Any], key: int) -> None:
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            except psycopg.errors.DeadlockDetected as exc:
                caught.append(exc)
                conn.rollback()

        threads = [
            threading.Thread(target=cross, args=(one, 2)),
            threading.Thread(target=cross, args=(two, 1)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(caught) == 1  # the server breaks the cycle by failing one of them
        err = store._db._error(caught[0])  # type: ignore[attr-defined]
        assert isinstance(err, ConflictError)
        assert "retry it" in str(err)
    finally:
        one.close()
        two.close()
        store.close()
