"""The one SQLite connection, its lock, transactions and invocation scopes.

One ``sqlite3`` connection (``check_same_thread=False``, WAL for files) is shared by every
thread and guarded by one ``threading.RLock``. Python's implicit transaction handling is
switched off (``isolation_level=None``): every write goes through :meth:`Db.transaction`,
which issues ``BEGIN IMMEDIATE`` at the outermost level and ``SAVEPOINT`` when nested, and
holds the lock for its whole duration, so no other thread can interleave statements (or
read uncommitted rows) on the shared connection. Reads take the lock per statement.

``sqlite_utils.Database`` wraps the same connection (``execute_plugins=False``: no
third-party code runs on our connection); it is used for schema work in migrations. The
hot paths call ``conn.execute`` directly because ``Database.query`` wraps every SELECT in
its own SAVEPOINT/RELEASE pair.

Invocation scopes
-----------------
The runtime wraps each plugin invocation in :meth:`Db.invocation`. Nothing happens on
entry: a read-only invocation never holds the lock between its reads. The first
transaction started on that thread inside the scope first opens the scope's own
transaction (lazily), which then stays open, lock held, until the scope exits: commit on
normal exit, rollback on exception. Each write inside is a SAVEPOINT within it, so a
failed write that the plugin catches leaves nothing behind either. A nested invocation
joins the outer one (nothing commits before the outer scope exits) but is itself a
savepoint, so a nested invocation that fails rolls back only its own writes. Scopes are
per thread: the runtime must open the scope in the thread that makes the writes.

Errors
------
The connection is a :class:`_Connection` whose cursors translate every ``sqlite3`` error
except ``IntegrityError`` (which the repositories catch and turn into their own errors)
into :class:`~emdash._shared._errors.StorageError`, with a message that says what to do
(locked: which timeout passed; damaged: run ``emdash doctor --database``; read-only, full,
I/O...). This is the one place such errors are made, so no caller of the store ever sees
a raw ``sqlite3`` error, whichever path (repositories, ``sqlite_utils``, cursors read
row by row) reached the database.

At open, a file that already holds tables but no ``_emdash_migrations`` table is refused
(:func:`check_not_foreign`): it belongs to something else, and giving it emdash's tables
would mix two applications' data in one file.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlite_utils
from ulid import ULID

from .._shared._errors import BridgeError, EmDashError, StorageError

__all__ = [
    "BUSY_TIMEOUT_S",
    "Db",
    "check_not_foreign",
    "format_timestamp",
    "parse_timestamp",
    "storage_error",
    "storage_os_error",
]

log = logging.getLogger("emdash.store")

Params = Sequence[Any]
Callback = Callable[[], object]

#: How long a statement waits for another connection's write lock before failing.
BUSY_TIMEOUT_S = 5.0


def storage_error(exc: sqlite3.Error, database: str = "the site database") -> StorageError:
    """The :class:`StorageError` for a ``sqlite3`` error: what happened, what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    doctor = f"run `emdash doctor --database {database}` to check it"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        hint = (
            f"another process or connection held the database's write lock longer than "
            f"{BUSY_TIMEOUT_S:g} s; retry, and if it persists look for a process keeping a "
            "long transaction open on it"
        )
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        hint = f"the database file is damaged or not a database: {doctor}, then restore it from a backup"
    elif name.startswith("SQLITE_READONLY") or "readonly" in text:
        hint = (
            "the database is read-only: give this process write access to the database "
            "file and its directory (SQLite writes -wal and -shm files next to it)"
        )
    elif name.startswith("SQLITE_FULL") or "is full" in text:
        hint = "the disk (or the database's size limit) is full: free some space and retry"
    elif name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        hint = (
            "the database file could not be read or written: check that it exists, that "
            f"this process may read and write it and its directory, and the disk; {doctor}"
        )
    elif isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        hint = "the store was closed: this Runtime/Store can no longer be used, open a new one"
    elif "no such table" in text or "no such column" in text:
        hint = f"the database schema is damaged (an emdash table or column is missing): {doctor}"
    else:
        hint = f"{doctor}; if it is sound, this is a bug in emdash: please report it"
    err = StorageError(f"Storage failure: {text} ({hint})")
    err.__cause__ = exc
    return err


def storage_os_error(exc: OSError, what: str) -> StorageError:
    """The :class:`StorageError` for a failure of the media directory (``what`` says which
    operation: "writing media file ...")."""
    err = StorageError(
        f"Storage failure while {what}: {exc.strerror or exc} (check that the media "
        "directory exists, that this process may read and write it, and free disk space)"
    )
    err.__cause__ = exc
    return err


class _Cursor(sqlite3.Cursor):
    """A cursor whose errors are :class:`StorageError` (``IntegrityError`` excepted): what
    ``conn.cursor()`` returns (``sqlite_utils`` uses those).

    Rows are read lazily: a damaged page fails on the fetch that reaches it, not on
    ``execute``, so the fetches are guarded too."""

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]

    def executescript(self, sql_script: str, /) -> _Cursor:
        try:
            super().executescript(sql_script)
            return self
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.connection.emdash_path) from exc  # type: ignore[attr-defined]


class _Connection(sqlite3.Connection):
    """The store's connection: every cursor is a :class:`_Cursor` (``Connection.execute``
    and friends use one), and its own calls are guarded."""

    emdash_path = "the site database"

    def cursor(self, factory: Any = None) -> Any:  # noqa: ARG002 - always our cursors
        try:
            return super().cursor(_Cursor)
        except sqlite3.Error as exc:  # closed connection
            raise storage_error(exc, self.emdash_path) from exc

    # Connection.execute() and friends make their cursor with cursor() (so its fetches are
    # guarded) but run the statement in C, without the cursor's execute(): guarded here.

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            return super().execute(sql, parameters)  # type: ignore[return-value]
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.emdash_path) from exc

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        try:
            return super().executemany(sql, parameters)  # type: ignore[return-value]
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.emdash_path) from exc

    def executescript(self, sql_script: str, /) -> _Cursor:
        try:
            return super().executescript(sql_script)  # type: ignore[return-value]
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise storage_error(exc, self.emdash_path) from exc

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.Error as exc:
            raise storage_error(exc, self.emdash_path) from exc

    def rollback(self) -> None:
        try:
            super().rollback()
        except sqlite3.Error as exc:
            raise storage_error(exc, self.emdash_path) from exc


def check_not_foreign(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a database that holds tables but is not emdash's.

    The rule: an empty database, or one with an ``_emdash_migrations`` table, is ours;
    anything else (tables, views, but no ``_emdash_migrations``) belongs to another
    application and is refused rather than given emdash's tables.
    """
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    }
    if names and "_emdash_migrations" not in names:
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise StorageError(
            f"Storage failure: {path} is not an emdash database: it holds other tables "
            f"({shown}) and no _emdash_migrations table. Point emdash at a new or empty "
            "file (or at the site's own database) instead; emdash never adds its tables "
            "to another application's database."
        )


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2026-11-22T05:33:24.123Z``.

    Fixed width, so timestamps compare correctly as strings (cron and scheduling rely on it).
    """
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


def parse_timestamp(value: object, *, what: str) -> str:
    """An ISO-8601 datetime as canonical UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (naive = UTC)."""
    if not isinstance(value, datetime | str):
        raise BridgeError(f"Invalid {what}: expected an ISO 8601 datetime string")
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return format_timestamp(moment)
    except (ValueError, OverflowError):
        raise BridgeError(
            f'Invalid {what} "{str(value)[:64]}": use an ISO 8601 datetime such as '
            '"2026-05-01T12:00:00Z"'
        ) from None


class _UlidSource:
    """Monotonic ULIDs: within one millisecond the random part is incremented, so ids made
    by this process sort in creation order (content and media lists rely on id order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand >= 1 << 80:  # 2**80 ids in one ms: move to the next ms
                    ms += 1
                    rand = int.from_bytes(secrets.token_bytes(10), "big") >> 1
            else:
                # Top bit clear leaves room to increment without overflowing the ms.
                rand = int.from_bytes(secrets.token_bytes(10), "big") >> 1
            self._last_ms, self._last_rand = ms, rand
        return str(ULID.from_bytes(ms.to_bytes(6, "big") + rand.to_bytes(10, "big")))


class _Scope:
    __slots__ = ("tx",)

    def __init__(self) -> None:
        self.tx: _Tx | None = None


class _Tx:
    """One transaction level: BEGIN IMMEDIATE at the outermost level, else a SAVEPOINT."""

    __slots__ = ("_db", "_lazy", "_savepoint")

    def __init__(self, db: Db, *, lazy: bool) -> None:
        self._db = db
        self._lazy = lazy
        self._savepoint: str | None = None

    def __enter__(self) -> None:
        if self._lazy:
            self._db._begin_pending_scopes()
        self._savepoint = self._db._enter_tx()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db._exit_tx(self._savepoint, ok=exc_type is None)


class _Invocation:
    """``Db.invocation()``: a class, not a generator context manager (it wraps every
    plugin invocation, and ``contextlib`` costs a generator and several frames each time).
    On exit the scope's transaction, if a write opened one, commits or rolls back."""

    __slots__ = ("_db", "_scope")

    def __init__(self, db: Db) -> None:
        self._db = db
        self._scope = _Scope()

    def __enter__(self) -> None:
        self._db._scopes().append(self._scope)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._scope
        self._db._pop_scope(scope)
        if scope.tx is not None:
            scope.tx.__exit__(exc_type, exc, tb)


class Db:
    """Connection, lock, clock and id source shared by every repository of one store."""

    backend = "sqlite"

    def __init__(
        self, database: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None
    ) -> None:
        path = os.fspath(database)
        self.is_memory = path in (":memory:", "")
        self.path = ":memory:" if self.is_memory else path
        # isolation_level=None: the driver never opens transactions behind our back.
        try:
            conn = sqlite3.connect(
                self.path,
                check_same_thread=False,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_S,
                factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise storage_error(exc, path) from exc
        conn.emdash_path = self.path
        self.conn: _Connection = conn
        self.sdb = sqlite_utils.Database(self.conn, execute_plugins=False)
        self.lock = threading.RLock()
        self.closed = False
        self._depth = 0
        self._owner: int | None = None
        self._savepoints = 0
        # One entry per open transaction level: (run after the outermost COMMIT, run if
        # this level is rolled back). Files written or removed next to a row use them, so
        # the disk follows what the database actually kept.
        self._callbacks: list[tuple[list[Callback], list[Callback]]] = []
        self._local = threading.local()
        self._ids = _UlidSource()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._system_clock = clock is None
        # (whole second since the epoch, its "YYYY-MM-DDTHH:MM:SS." text): now() runs for
        # every audit record, and formatting a datetime costs more than the rest of it.
        self._second: tuple[int, str] = (-1, "")
        try:
            self.conn.execute("PRAGMA foreign_keys=ON")
            # Reading the schema is also the first read of the file: a file that is not a
            # database at all fails here (SQLITE_NOTADB), as a StorageError.
            check_not_foreign(self.conn, self.path)
            if not self.is_memory:
                self.sdb.enable_wal()
                # NORMAL is durable across application crashes in WAL mode; only an OS
                # crash or power loss can drop the last commits.
                self.conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            self.closed = True
            conn.close()
            raise

    # -- clock and ids -----------------------------------------------------------------

    def now(self) -> str:
        if not self._system_clock:
            return format_timestamp(self._clock())
        # Same value as format_timestamp(datetime.now(UTC)): both read CLOCK_REALTIME and
        # truncate to the millisecond. The tuple is replaced whole, so threads never see a
        # second paired with another second's text.
        second, rest = divmod(time.time_ns(), 1_000_000_000)
        cached = self._second
        if cached[0] != second:
            text = format_timestamp(datetime.fromtimestamp(second, UTC))[:-4]
            cached = self._second = (second, text)
        return f"{cached[1]}{rest // 1_000_000:03d}Z"

    def now_datetime(self) -> datetime:
        return self._clock().astimezone(UTC)

    def new_id(self) -> str:
        return self._ids.new()

    # -- reads -------------------------------------------------------------------------

    # Connection.execute() hands back a plain C cursor: its fetches, where a damaged page
    # is met, are guarded here (a try costs nothing on the path that does not raise).

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            try:
                fetched = cur.fetchall()
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc
            return [dict(zip(names, r, strict=True)) for r in fetched]

    def row(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        with self.lock:
            cur = self.conn.execute(sql, params)
            try:
                r = cur.fetchone()
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc
            return None if r is None else r[0]

    # -- writes ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement inside the current transaction; returns the row count."""
        if not self.in_transaction_here():
            raise EmDashError("store write outside a transaction (use store.transaction())")
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, seq: Sequence[Params]) -> int:
        if not self.in_transaction_here():
            raise EmDashError("store write outside a transaction (use store.transaction())")
        return self.conn.executemany(sql, seq).rowcount

    # -- migrations (the PostgreSQL twin overrides these three) -------------------------

    def lock_migrations(self) -> None:
        """Inside a migration's transaction: nothing to do, BEGIN IMMEDIATE already makes
        one process at a time."""

    def prepare_schema(self) -> None:
        """Before the migrations: nothing on SQLite (its functions are built in)."""

    def schema(self) -> object:
        """What a migration function is given: the ``sqlite_utils.Database``."""
        return self.sdb

    def transaction(self) -> _Tx:
        """Re-entrant transaction; joins (and lazily opens) this thread's invocation scope."""
        return _Tx(self, lazy=True)

    def raw_transaction(self) -> _Tx:
        """A transaction that does *not* open a pending invocation scope (audit flushes)."""
        return _Tx(self, lazy=False)

    def after_commit(self, fn: Callback) -> None:
        """Run ``fn`` once the outermost transaction commits (dropped if rolled back)."""
        self._require_tx()[0].append(fn)

    def on_rollback(self, fn: Callback) -> None:
        """Run ``fn`` if the current transaction level is rolled back."""
        self._require_tx()[1].append(fn)

    def _require_tx(self) -> tuple[list[Callback], list[Callback]]:
        if not self.in_transaction_here():
            raise EmDashError("store callback registered outside a transaction")
        return self._callbacks[-1]

    def in_transaction_here(self) -> bool:
        return self._depth > 0 and self._owner == threading.get_ident()

    def in_scope_here(self) -> bool:
        """Whether this thread is inside an open transaction or ``invocation()`` scope."""
        return self.in_transaction_here() or bool(getattr(self._local, "scopes", None))

    def invocation(self) -> _Invocation:
        """An invocation scope (see the module docstring); a context manager."""
        return _Invocation(self)

    # -- internals ---------------------------------------------------------------------

    def _scopes(self) -> list[_Scope]:
        scopes: list[_Scope] | None = getattr(self._local, "scopes", None)
        if scopes is None:
            scopes = []
            self._local.scopes = scopes
        return scopes

    def _pop_scope(self, scope: _Scope) -> None:
        scopes = self._scopes()
        if not scopes or scopes[-1] is not scope:
            raise EmDashError("store.invocation() scopes exited out of order")
        scopes.pop()

    def _begin_pending_scopes(self) -> None:
        # Outermost first, so the scopes' transactions nest in the order the scopes do.
        for scope in getattr(self._local, "scopes", ()):
            if scope.tx is None:
                tx = _Tx(self, lazy=False)
                tx.__enter__()
                scope.tx = tx

    def _enter_tx(self) -> str | None:
        self.lock.acquire()
        try:
            if self.closed:
                raise EmDashError("the store is closed")
            if self._depth == 0 and not self.conn.in_transaction:
                self.conn.execute("BEGIN IMMEDIATE")
                savepoint = None
            else:
                self._savepoints += 1
                savepoint = f"emdash_sp_{self._savepoints}"
                self.conn.execute(f"SAVEPOINT {savepoint}")
        except BaseException:
            self.lock.release()
            raise
        if self._depth == 0:
            self._owner = threading.get_ident()
        self._depth += 1
        self._callbacks.append(([], []))
        return savepoint

    def _exit_tx(self, savepoint: str | None, *, ok: bool) -> None:
        on_commit, on_rollback = self._callbacks.pop()
        committed = False
        try:
            if ok:
                if savepoint is None:
                    try:
                        self.conn.execute("COMMIT")
                    except BaseException:
                        ok = False
                        if self.conn.in_transaction:
                            self.conn.execute("ROLLBACK")
                        raise
                    committed = True
                else:
                    self.conn.execute(f"RELEASE SAVEPOINT {savepoint}")
                    # Not durable yet: hand the callbacks to the enclosing level.
                    self._callbacks[-1][0].extend(on_commit)
                    self._callbacks[-1][1].extend(on_rollback)
            elif self.conn.in_transaction:
                # Some errors (SQLITE_FULL, interrupts) end the transaction by themselves;
                # then there is nothing left to undo and the original error propagates.
                if savepoint is None:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                    self.conn.execute(f"RELEASE SAVEPOINT {savepoint}")
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
            try:
                if committed:
                    _run(on_commit)
                elif not ok:
                    _run(on_rollback)
            finally:
                self.lock.release()

    def close(self) -> None:
        """Close the connection (idempotent). It is closed even when rolling back an open
        transaction fails; that failure is raised afterwards, as a StorageError."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            finally:
                self.conn.close()


def _run(callbacks: list[Callback]) -> None:
    for fn in callbacks:
        try:
            fn()
        except Exception:
            log.exception("store: a commit/rollback callback failed")
