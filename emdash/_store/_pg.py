"""The PostgreSQL twin of :class:`~emdash._store._db.Db`: same interface, a pool of connections.

The repositories call ``rows``/``row``/``scalar``/``execute``/``transaction``/``invocation``
exactly as on SQLite; each statement is rewritten once by
:func:`~emdash._store._dialect.to_postgres`. What differs underneath:

Connections
    A ``psycopg_pool`` pool per host (``pool_size``, default 8), every connection in
    autocommit mode with server-side timeouts (a statement, a lock wait and an idle
    transaction each have a bound), connecting with a timeout. A read outside a
    transaction borrows a connection for that statement. A transaction keeps one
    connection, per thread, until it ends. Connections are checked when borrowed, so after
    the server restarts the pool reconnects by itself: the requests made while it was down
    fail with a :class:`StorageError`, the next ones work, no host restart.

Transactions
    SQLite's ``BEGIN IMMEDIATE`` makes one writer per database at a time; the store's
    read-modify-write paths (quotas, counters, registry transitions) rely on it. Here the
    outermost level is ``BEGIN`` plus ``pg_advisory_xact_lock`` on the site's write key,
    the same guarantee across every host of the site (the lock is the server's, released
    by the commit or rollback, or by the server when a host dies). Reads do not take it.
    Nested levels are savepoints; invocation scopes work as on SQLite, per thread.

Errors
    ``psycopg`` errors never leave this module: integrity violations become the
    ``sqlite3.IntegrityError`` the repositories already catch (with SQLite's wording and
    the violated index's name), everything else a :class:`StorageError` saying what to do.
    No message carries the password: the URL is shown redacted, and the password text is
    removed from any server or driver message.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .._shared._errors import EmDashError, StorageError
from ._db import Callback, Db, Params, _run, _UlidSource
from ._dialect import (
    PG_FUNCTIONS,
    PgSchema,
    collation_problem,
    pg_params,
    redact_url,
    to_postgres,
)

__all__ = ["DEFAULT_POOL_SIZE", "SITE_WRITE_KEY", "PgDb"]

log = logging.getLogger("emdash.store")

#: Connections one host keeps at most (its threads beyond that wait up to POOL_WAIT_S).
DEFAULT_POOL_SIZE = 8
#: How long a thread waits for a free connection, and a connection attempt lasts.
POOL_WAIT_S = 10.0
CONNECT_TIMEOUT_S = 5
#: Server-side bounds (milliseconds): one statement, one lock wait, an idle transaction.
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 15_000
IDLE_TX_TIMEOUT_MS = 60_000
#: The advisory lock key of the site's writer (BEGIN IMMEDIATE's equivalent).
SITE_WRITE_KEY = 0x656D6461736801  # "emdash" + 1
#: The advisory lock key migrations hold (several hosts starting at once).
MIGRATION_KEY = 0x656D6461736802


class PgIntegrityError(sqlite3.IntegrityError):
    """An integrity violation on PostgreSQL, in the form the repositories catch."""


class _Thread(threading.local):
    def __init__(self) -> None:
        self.conn: psycopg.Connection[Any] | None = None
        self.depth = 0
        self.savepoints = 0
        self.callbacks: list[tuple[list[Callback], list[Callback]]] = []


class _Cursor:
    """What ``db.conn.execute`` returns on SQLite, for the few paths that read rows one at
    a time (the rows are already fetched here: a PostgreSQL client cursor holds them)."""

    def __init__(self, description: Any, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.description = description
        self._rows: Iterator[tuple[Any, ...]] = iter(rows)
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._rows, None)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def close(self) -> None:
        self._rows = iter(())


class _ConnShim:
    """``db.conn`` for the paths that use the SQLite connection directly."""

    def __init__(self, db: PgDb) -> None:
        self._db = db

    def execute(self, sql: str, params: Params = ()) -> _Cursor:
        return self._db._run(sql, params, fetch=True)

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        """``sqlite_utils.Database.query``: rows as dicts (tests inspect tables with it)."""
        return iter(self._db.rows(sql, params))

    def __getitem__(self, table: str) -> _TableShim:
        return _TableShim(self._db, table)

    def getlimit(self, category: int) -> int:  # noqa: ARG002 - one limit matters
        return 32766  # PostgreSQL allows 65535 parameters; SQLite's default keeps batches equal


class _TableShim:
    """``sqlite_utils.Database[table]``: only ``count``."""

    def __init__(self, db: PgDb, table: str) -> None:
        if not table.replace("_", "").isalnum():
            raise ValueError(f"unexpected table name {table!r}")
        self._db, self._table = db, table

    @property
    def count(self) -> int:
        return int(self._db.scalar(f"SELECT COUNT(*) FROM {self._table}"))


class PgDb(Db):
    """A :class:`Db` on a PostgreSQL server (see the module docstring)."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        password: str | None = None,
    ) -> None:
        # Deliberately not Db.__init__: that opens SQLite. Every method that touches the
        # connection is overridden below; the clock and ids are shared.
        self.is_memory = False
        self.path = redact_url(url)
        self.lock = threading.RLock()
        self.closed = False
        self._secret = password or _password_of(url)
        self._ids = _UlidSource()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._system_clock = clock is None
        self._second = (-1, "")
        self._local = threading.local()
        self._t = _Thread()
        # No sqlite_utils here: Store.db (schema inspection, tests) and db.conn get the
        # shim's execute(sql, params) -> cursor, which is all they are used for.
        self.conn = _ConnShim(self)  # type: ignore[assignment]
        self.sdb = self.conn  # type: ignore[assignment]
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": (
                f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} "
                f"-c idle_in_transaction_session_timeout={IDLE_TX_TIMEOUT_MS} -c TimeZone=UTC"
            ),
            "application_name": "emdash",
        }
        if password is not None:
            kwargs["password"] = password
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs=kwargs,
            timeout=POOL_WAIT_S,
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,  # never give up on the server: it may come back
            name="emdash",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=POOL_WAIT_S)
            self._check_database()
        except PoolTimeout as exc:
            self._close_pool()
            raise self._error(exc) from None
        except BaseException:
            self._close_pool()
            raise

    # -- checks at open ----------------------------------------------------------------

    def _check_database(self) -> None:
        row = self.row(
            "SELECT datcollate, datctype, pg_encoding_to_char(encoding) AS enc "
            "FROM pg_database WHERE datname = current_database()"
        )
        assert row is not None
        # In a non-UTF8 database the server's names arrive as bytes.
        collate, ctype, enc = (_text(row[k]) for k in ("datcollate", "datctype", "enc"))
        problem = collation_problem(collate, ctype, enc)
        if problem:
            raise StorageError(
                f"Storage failure: the PostgreSQL database {self.path} cannot hold an emdash "
                f"site: {problem}. Create it with: CREATE DATABASE <name> TEMPLATE template0 "
                "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        names = {
            r["table_name"]
            for r in self.rows(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
        if names and "_emdash_migrations" not in names:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise StorageError(
                f"Storage failure: {self.path} is not an emdash database: its schema holds "
                f"other tables ({shown}) and no _emdash_migrations table. Point emdash at a "
                "new or empty database (or schema) instead; emdash never adds its tables to "
                "another application's database."
            )

    # -- errors ------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def _error(self, exc: BaseException) -> Exception:
        """The error a caller of the store sees for a ``psycopg`` error."""
        if isinstance(exc, psycopg.errors.IntegrityError):
            diag = exc.diag
            if isinstance(exc, psycopg.errors.UniqueViolation):
                text = f"UNIQUE constraint failed: index '{diag.constraint_name}'"
            elif isinstance(exc, psycopg.errors.ForeignKeyViolation):
                text = "FOREIGN KEY constraint failed"
            elif isinstance(exc, psycopg.errors.NotNullViolation):
                text = f"NOT NULL constraint failed: {diag.table_name}.{diag.column_name}"
            else:
                text = f"CHECK constraint failed: {diag.constraint_name}"
            return PgIntegrityError(text)
        detail = self._clean(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        where = self.path
        if isinstance(
            exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError
        ) and not (isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable)):
            hint = (
                f"cannot reach the PostgreSQL server of {where}: check that it is running "
                "and reachable from this host and that the credentials are right; this host "
                "reconnects by itself once the server answers again, no restart needed"
            )
        elif isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
            hint = (
                f"a statement or lock wait passed its time limit ({STATEMENT_TIMEOUT_MS} ms / "
                f"{LOCK_TIMEOUT_MS} ms); retry, and if it persists look for a session holding "
                "a long transaction open (pg_stat_activity)"
            )
        elif isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
            hint = "the transaction conflicted with another host's; retry it"
        elif isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
            hint = (
                "the database schema is damaged (an emdash table or column is missing): run "
                f"`emdash doctor --database {where}` to check it"
            )
        else:
            hint = (
                f"run `emdash doctor --database {where}` to check the database; if it is "
                "sound, this is a bug in emdash: please report it"
            )
        return StorageError(f"Storage failure: {detail or type(exc).__name__} ({hint})")

    # -- statements --------------------------------------------------------------------

    def _run(self, sql: str, params: Params, *, fetch: bool) -> _Cursor:
        if self.closed:
            raise StorageError(
                "Storage failure: the store was closed (this Runtime/Store can no longer be "
                "used, open a new one)"
            )
        text = to_postgres(sql)
        args = pg_params(params)
        conn = self._t.conn
        try:
            if conn is not None:
                return _result(conn.execute(text, args), fetch)
            with self._pool.connection() as c:
                return _result(c.execute(text, args), fetch)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from None

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        cur = self._run(sql, params, fetch=True)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def scalar(self, sql: str, params: Params = ()) -> Any:
        r = self._run(sql, params, fetch=True).fetchone()
        return None if r is None else r[0]

    def execute(self, sql: str, params: Params = ()) -> int:
        if not self.in_transaction_here():
            raise EmDashError("store write outside a transaction (use store.transaction())")
        return self._run(sql, params, fetch=False).rowcount

    def executemany(self, sql: str, seq: Sequence[Params]) -> int:
        if not self.in_transaction_here():
            raise EmDashError("store write outside a transaction (use store.transaction())")
        conn = self._t.conn
        assert conn is not None
        try:
            with conn.cursor() as cur:
                cur.executemany(to_postgres(sql), [pg_params(p) for p in seq])
                return cur.rowcount
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def lock_migrations(self) -> None:
        """Inside the migration's transaction: one host at a time applies migrations."""
        self._run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_KEY,), fetch=True)

    def prepare_schema(self) -> None:
        """The SQLite functions the store's SQL uses (under the migration lock)."""
        for statement in PG_FUNCTIONS:
            self._run(statement, (), fetch=False)

    def schema(self) -> object:
        return PgSchema(self)

    # -- transactions ------------------------------------------------------------------

    def in_transaction_here(self) -> bool:
        return self._t.depth > 0

    def _require_tx(self) -> tuple[list[Callback], list[Callback]]:
        if not self.in_transaction_here():
            raise EmDashError("store callback registered outside a transaction")
        return self._t.callbacks[-1]

    def _enter_tx(self) -> str | None:
        # The store lock is held for the transaction's whole duration, as on SQLite: this
        # host's writers are serialized by the site lock anyway, and code that must not
        # wait for a writer (the audit flush) tests this lock without blocking.
        self.lock.acquire()
        try:
            savepoint = self._begin_level()
        except BaseException:
            self.lock.release()
            raise
        return savepoint

    def _begin_level(self) -> str | None:
        t = self._t
        if self.closed:
            raise EmDashError("the store is closed")
        savepoint: str | None = None
        if t.depth == 0:
            try:
                conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise self._error(exc) from None
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SITE_WRITE_KEY,))
            except psycopg.Error as exc:
                _abandon(conn)
                self._pool.putconn(conn)
                raise self._error(exc) from None
            t.conn = conn
        else:
            t.savepoints += 1
            savepoint = f"emdash_sp_{t.savepoints}"
            self._run(f"SAVEPOINT {savepoint}", (), fetch=False)
        t.depth += 1
        t.callbacks.append(([], []))
        return savepoint

    def _exit_tx(self, savepoint: str | None, *, ok: bool) -> None:
        t = self._t
        on_commit, on_rollback = t.callbacks.pop()
        committed = False
        conn = t.conn
        assert conn is not None
        try:
            if ok:
                if savepoint is None:
                    try:
                        conn.execute("COMMIT")
                    except psycopg.Error as exc:
                        ok = False
                        _abandon(conn)
                        raise self._error(exc) from None
                    committed = True
                else:
                    self._run(f"RELEASE SAVEPOINT {savepoint}", (), fetch=False)
                    t.callbacks[-1][0].extend(on_commit)
                    t.callbacks[-1][1].extend(on_rollback)
            elif savepoint is None:
                _abandon(conn)
            elif conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR or (
                conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            ):
                self._run(f"ROLLBACK TO SAVEPOINT {savepoint}", (), fetch=False)
                self._run(f"RELEASE SAVEPOINT {savepoint}", (), fetch=False)
        finally:
            t.depth -= 1
            if t.depth == 0:
                t.conn = None
                t.savepoints = 0
                self._pool.putconn(conn)
            try:
                if committed:
                    _run(on_commit)
                elif not ok:
                    _run(on_rollback)
            finally:
                self.lock.release()

    # -- lifetime ----------------------------------------------------------------------

    def _close_pool(self) -> None:
        try:
            self._pool.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - closing must not mask the original error
            log.warning("store: closing the PostgreSQL pool failed", exc_info=True)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self._close_pool()


def _result(cur: psycopg.Cursor[Any], fetch: bool) -> _Cursor:
    rows = cur.fetchall() if fetch and cur.description is not None else []
    return _Cursor(cur.description, rows, cur.rowcount)


def _abandon(conn: psycopg.Connection[Any]) -> None:
    """Roll back whatever is open on ``conn`` (a broken connection is left to the pool)."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _password_of(url: str) -> str | None:
    try:
        return conninfo_to_dict(url).get("password") or None  # type: ignore[return-value]
    except psycopg.Error:
        return None
