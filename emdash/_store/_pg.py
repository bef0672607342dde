"""The PostgreSQL twin of :class:`~emdash._store._db.Db`: the same Db, another connection.

:class:`PgDb` *is* the store's :class:`Db` (invocation scopes, optimistic validation, write
logs, savepoints, callbacks: one implementation); only its ``conn`` differs. It is a
:class:`_PgConnection`, which answers the calls ``Db`` makes on a ``sqlite3`` connection
(``execute``, ``executemany``, ``in_transaction``, ``close``) on PostgreSQL, each
statement rewritten once by :func:`~emdash._store._dialect.to_postgres`:

Connections
    A ``psycopg_pool`` pool per host (``pool_size``, default 8), every connection in
    autocommit mode with server-side timeouts (a statement, a lock wait and an idle
    transaction each have a bound), connecting with a timeout. A statement outside a
    transaction borrows a connection for itself; a transaction keeps one until it ends.
    Connections are checked when borrowed, so after the server restarts the pool
    reconnects by itself: requests made while it was down fail with a
    :class:`StorageError`, the next ones work, without restarting the host.

Transactions
    ``Db`` opens each outermost transaction with SQLite's ``BEGIN IMMEDIATE``: one writer
    per database, which the store's read-modify-write paths and the commit of an
    invocation (validate the read set, replay the log, bump versions) rely on. Here it is
    ``BEGIN`` plus ``pg_advisory_xact_lock`` on the site's write key: the same guarantee
    across every host of the site (the server releases it at commit or rollback, or when
    a host dies). Those transactions are short by design (an invocation never holds one
    while it waits), so one site-wide writer at a time costs little; reads never take it.
    ``Db``'s lock keeps one transaction per host at a time, as on SQLite.

Errors
    ``psycopg`` errors never leave this module: integrity violations become the
    ``sqlite3.IntegrityError`` the repositories already catch (with SQLite's wording and
    the violated index's name), everything else a :class:`StorageError` saying what to do.
    No message carries the password: the URL is shown redacted, and the password's text is
    removed from any server or driver message.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .._shared._errors import ConflictError, EmDashError, StorageError
from ._db import Db, Params
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
RECONNECT_GIVE_UP_S = 2.0
#: Server-side bounds (milliseconds): one statement, one lock wait, an idle transaction.
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 15_000
IDLE_TX_TIMEOUT_MS = 60_000
#: The advisory lock key of the site's writer (BEGIN IMMEDIATE's equivalent).
SITE_WRITE_KEY = 0x656D6461736801  # "emdash" + 1
#: The channel on which a change of the plugin registry is announced to the other hosts.
REGISTRY_CHANNEL = "emdash_registry"
#: The advisory lock key migrations hold (several hosts starting at once).
MIGRATION_KEY = 0x656D6461736802
#: The first key of a plugin's lifecycle lock (the second is a hash of its id).
LIFECYCLE_CLASS = 0x656D64


class PgIntegrityError(sqlite3.IntegrityError):
    """An integrity violation on PostgreSQL, in the form the repositories catch."""


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


class _PgConnection:
    """What ``Db`` uses of a ``sqlite3`` connection, on a pool of PostgreSQL connections.

    Every call is made under ``Db.lock`` (as on SQLite), so while a transaction is open the
    caller is the thread that opened it, and its statements go to the transaction's
    connection; any other statement borrows a pooled connection for itself."""

    def __init__(self, db: PgDb, pool: ConnectionPool[Any]) -> None:
        self._db = db
        self._pool = pool
        self._tx: psycopg.Connection[Any] | None = None

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def execute(self, sql: str, params: Params = ()) -> _Cursor:
        word = sql[:16].upper()
        if word.startswith("BEGIN"):
            self._begin()
            return _Cursor(None, [], -1)
        if word in ("COMMIT", "ROLLBACK"):
            self._end(word)
            return _Cursor(None, [], -1)
        if word.startswith("PRAGMA"):
            return _Cursor(None, [], -1)  # SQLite's connection settings: nothing to set here
        return self._db._run(self._tx, sql, params, fetch=True)

    def executemany(self, sql: str, seq: Sequence[Params]) -> _Cursor:
        rows = [pg_params(p) for p in seq]
        text = to_postgres(sql)
        try:
            if self._tx is not None:
                with self._tx.cursor() as cur:
                    cur.executemany(text, rows)
                    return _Cursor(None, [], cur.rowcount)
            with self._pool.connection() as conn, conn.cursor() as cur:
                cur.executemany(text, rows)
                return _Cursor(None, [], cur.rowcount)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._db._error(exc) from None

    def _begin(self) -> None:
        if self._tx is not None:
            raise EmDashError("a PostgreSQL transaction is already open on this store")
        for attempt in (1, 2):
            try:
                conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise self._db._error(exc) from None
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SITE_WRITE_KEY,))
            except psycopg.Error as exc:
                _abandon(conn)
                self._pool.putconn(conn)
                # A connection the server dropped (it restarted): once more, on a new one.
                if attempt == 1 and isinstance(exc, psycopg.OperationalError) and conn.closed:
                    continue
                raise self._db._error(exc) from None
            self._tx = conn
            return

    def _end(self, word: str) -> None:
        conn = self._tx
        if conn is None:
            return
        self._tx = None
        try:
            conn.execute(word)
        except psycopg.Error as exc:
            _abandon(conn)
            if word == "COMMIT":
                raise self._db._error(exc) from None
            # A failed ROLLBACK (the connection died): the server has dropped the
            # transaction with the connection; the pool discards it.
        finally:
            self._pool.putconn(conn)

    # -- what else Db, the repositories and tests use of a sqlite3 connection --------

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        """``sqlite_utils.Database.query``: rows as dicts (tests inspect tables with it)."""
        return iter(self._db.rows(sql, params))

    def __getitem__(self, table: str) -> _TableShim:
        return _TableShim(self._db, table)

    def getlimit(self, category: int) -> int:  # noqa: ARG002 - one limit is asked for
        return 32766  # PostgreSQL allows 65535 parameters; SQLite's default keeps batches equal

    def close(self) -> None:
        if self._tx is not None:
            self._end("ROLLBACK")
        self._pool.close(timeout=5.0)


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
        # Db's own state (locks, scopes, clock, ids, versions...) is set up by Db itself,
        # on a throwaway in-memory SQLite connection that is closed at once and replaced:
        # whatever state Db grows, PgDb has it too.
        super().__init__(":memory:", clock=clock)
        self.conn.close()
        self.is_memory = False
        self.path = redact_url(url)
        self._secret = password or _password_of(url)
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
        # Kept for the registry listener's connection of its own (registry_notices).
        self._url, self._kwargs = url, kwargs
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs=kwargs,
            timeout=POOL_WAIT_S,
            # No check on every borrow (it costs a round trip per statement): a connection
            # found dead is discarded by the pool when returned, and the statement that
            # met it is tried once more on a fresh one (see _run and _begin).
            # A failed connection attempt is retried with a growing back-off; after a few
            # seconds the pool gives up on it, and the next request makes a fresh attempt
            # at once. So a server that comes back is used by the next request, instead
            # of after a back-off grown long while it was down.
            reconnect_timeout=RECONNECT_GIVE_UP_S,
            name="emdash",
            open=False,
        )
        pg = _PgConnection(self, self._pool)
        # No sqlite_utils here: Store.db (schema inspection, tests) gets the connection,
        # whose execute/query/[table].count are all it is used for.
        self.conn = pg  # type: ignore[assignment]
        self.sdb = pg  # type: ignore[assignment]
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
        if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
            # Typed as the conflict it is: an invocation without outside effects is re-run.
            return ConflictError(
                f"Conflict: {detail} (the transaction met another host's; nothing of it was "
                "kept: retry it)"
            )
        if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
            hint = (
                f"a statement or lock wait passed its time limit ({STATEMENT_TIMEOUT_MS} ms / "
                f"{LOCK_TIMEOUT_MS} ms); retry, and if it persists look for a session holding "
                "a long transaction open (pg_stat_activity)"
            )
        elif _unreachable(exc):
            hint = (
                f"cannot reach the PostgreSQL server of {where}: check that it is running "
                "and reachable from this host and that the credentials are right; this host "
                "reconnects by itself once the server answers again, no restart needed"
            )
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

    def _run(
        self, conn: psycopg.Connection[Any] | None, sql: str, params: Params, *, fetch: bool
    ) -> _Cursor:
        if self.closed:
            raise StorageError(
                "Storage failure: the store was closed (this Runtime/Store can no longer be "
                "used, open a new one)"
            )
        text = to_postgres(sql)
        args = pg_params(params)
        try:
            if conn is not None:
                return _result(conn.execute(text, args), fetch)
            for attempt in (1, 2):
                used: psycopg.Connection[Any] | None = None
                try:
                    with self._pool.connection() as used:
                        return _result(used.execute(text, args), fetch)
                except psycopg.OperationalError:
                    # A pooled connection the server dropped (it restarted): a statement
                    # outside a transaction is tried once more, on a new connection.
                    if attempt == 2 or used is None or not used.closed:
                        raise
            raise AssertionError("unreachable")
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from None

    # -- migrations ----------------------------------------------------------------------

    def lock_migrations(self) -> None:
        """Inside the migration's transaction: one host at a time applies migrations."""
        self.scalar("SELECT pg_advisory_xact_lock(?)", (MIGRATION_KEY,))

    def prepare_schema(self) -> None:
        """The SQLite functions the store's SQL uses (under the migration lock)."""
        for statement in PG_FUNCTIONS:
            self.conn.execute(statement)

    def schema(self) -> object:
        return PgSchema(self)

    # -- several hosts -------------------------------------------------------------------

    @contextmanager
    def lifecycle_lock(self, plugin_id: str) -> Iterator[None]:
        """A session-level advisory lock on the plugin's id, on a connection of its own,
        held while this host decides and runs the plugin's lifecycle transition: hosts
        starting together take turns, and the later ones find the transition done (its
        ``pending`` cleared). A host that dies holding it loses its session, so the lock
        is released and the next host finds the transition still owed and runs it."""
        try:
            conn = self._pool.getconn()
        except PoolTimeout as exc:
            raise self._error(exc) from None
        try:
            try:
                conn.execute(
                    "SELECT pg_advisory_lock(%s, hashtext(%s))", (LIFECYCLE_CLASS, plugin_id)
                )
            except psycopg.Error as exc:
                raise self._error(exc) from None
            try:
                yield
            finally:
                try:
                    conn.execute(
                        "SELECT pg_advisory_unlock(%s, hashtext(%s))",
                        (LIFECYCLE_CLASS, plugin_id),
                    )
                except psycopg.Error:
                    conn.close()  # the session ends, and its locks with it
        finally:
            self._pool.putconn(conn)

    # -- several hosts: registry changes announced ---------------------------------------

    def announce_registry_change(self) -> None:
        """NOTIFY the other hosts' listeners; PostgreSQL delivers it when (and only if) the
        current transaction commits, so no host hears of a change that was rolled back."""
        self.execute("SELECT pg_notify(?, '')", (REGISTRY_CHANNEL,))

    def registry_notices(self) -> _RegistryNotices:
        """A listener for the announcements, on a connection of its own (outside the pool:
        it waits most of its life, and must not take a connection from the statements)."""
        return _RegistryNotices(self._url, self._kwargs)

    # -- lifetime ----------------------------------------------------------------------

    def _close_pool(self) -> None:
        self.closed = True
        try:
            self._pool.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - closing must not mask the original error
            log.warning("store: closing the PostgreSQL pool failed", exc_info=True)


class _RegistryNotices:
    """``LISTEN emdash_registry`` on one connection, made on first use and again after a
    failure. Used by one thread (the registry watcher), which also closes it."""

    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        self._url = url
        self._kwargs = kwargs
        self._conn: psycopg.Connection[Any] | None = None
        # Listening from now on: an announcement made before the first wait() is kept by
        # the connection and returned by it. If the server cannot be reached now, wait()
        # tries again.
        try:
            self._connect()
        except psycopg.Error:
            self.close()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None:
            conn = self._conn = psycopg.connect(self._url, **self._kwargs)
            conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
        return conn

    def wait(self, timeout: float) -> bool:
        started = time.monotonic()
        try:
            conn = self._connect()
            for _notice in conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except psycopg.Error:
            # The server is away: the watcher's poll carries on meanwhile; wait out the
            # timeout here, so a failing server is not asked again at once.
            self.close()
            left = timeout - (time.monotonic() - started)
            if left > 0:
                time.sleep(left)
            return False

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


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


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server cannot be used at all: no free connection came, the
    connection failed or broke (no SQLSTATE, or class 08), or the server is shutting down
    or starting (57P01-57P03). Other operational errors come from a working server."""
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    return not state or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _password_of(url: str) -> str | None:
    try:
        return conninfo_to_dict(url).get("password") or None  # type: ignore[return-value]
    except psycopg.Error:
        return None
