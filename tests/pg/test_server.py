"""The test PostgreSQL server starts, and each test's database is its own."""

from __future__ import annotations

import psycopg

from tests.pgserver import PgServer


def test_server_runs_and_databases_are_separate(pg_server: PgServer) -> None:
    first, second = pg_server.create_database(), pg_server.create_database()
    assert first != second
    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_here (x INTEGER)")
    with psycopg.connect(second, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('only_here') IS NULL").fetchone()
        assert found == (True,)
        # The server runs with byte-order text comparison (locale C), as SQLite's BINARY.
        row = conn.execute("SELECT 'B' < 'a', 'é' > 'z'").fetchone()
        assert row == (True, True)
