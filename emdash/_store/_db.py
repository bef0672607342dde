"""The one SQLite connection, its lock, transactions and invocation scopes.

One ``sqlite3`` connection (``check_same_thread=False``, WAL for files) is shared by every
thread and guarded by one ``threading.RLock``. Python's implicit transaction handling is
switched off (``isolation_level=None``): every write goes through :meth:`Db.transaction`,
which issues ``BEGIN IMMEDIATE`` at the outermost level and ``SAVEPOINT`` when nested, and
holds the lock for its whole duration, so no other thread can interleave statements (or
read uncommitted rows) on the shared connection. Every such transaction is short: the host
opens them around a few statements of its own, and an invocation's are speculative or its
commit (below), never open while it waits. Reads take the lock per statement. Other processes on the same file wait at most :data:`BUSY_TIMEOUT_S`
for SQLite's write lock, then get a :class:`StorageError` saying so.

``sqlite_utils.Database`` wraps the same connection (``execute_plugins=False``: no
third-party code runs on our connection); it is used for schema work in migrations. The
hot paths call ``conn.execute`` directly because ``Database.query`` wraps every SELECT in
its own SAVEPOINT/RELEASE pair.

Invocation scopes: optimistic concurrency
-----------------------------------------
The runtime wraps each plugin invocation in :meth:`Db.invocation`. An invocation never
holds the lock (nor SQLite's write lock) while it waits on anything: HTTP, email, another
plugin, a worker round trip, its own CPU work. Instead (design and guarantees:
``docs/integrity.md``):

- **Versions.** ``_emdash_versions(scope, version)`` holds one counter per *scope* a write
  changes: a point (``kv/<plugin>/<key>``, ``st/...``, ``opt/<name>``, a content item
  ``ct/<collection>/<id>``, a media row ``md/<id>``), a namespace (``kv/<plugin>``,
  ``ct/<collection>``, ``md``...: what a listing reads), a table (``t/<table>``). Every write, on any path, bumps the
  table scope derived from its statement and the scopes its repository names
  (:meth:`Db.touch`), in the same transaction, just before COMMIT.
- **Read set.** A read inside a scope records the version of what it depends on (the
  scopes its repository names, else the tables it reads), read *before* the data: a commit
  in between shows as a conflict at validation, never a miss. The first version seen is
  kept.
- **Write log.** :meth:`Db.transaction` inside a scope is *speculative*: one short
  ``BEGIN IMMEDIATE`` that replays the scope's log, runs the body while ``execute`` /
  ``executemany`` record each statement, then ``ROLLBACK``. The recorded statements (ids
  and timestamps are computed once, so they are deterministic) and the level's callbacks
  join the scope; a body that fails adds nothing. A read whose scopes the invocation has
  written runs in the same kind of short replaying transaction, so it sees its own writes;
  any other read (and every read of an invocation that wrote nothing) is a plain read. The
  log is capped (:data:`MAX_LOG_STATEMENTS`, :data:`MAX_LOG_BYTES`): its replays are host
  CPU a plugin could otherwise inflate.
- **Commit.** At the outermost scope's normal exit: one short ``BEGIN IMMEDIATE`` that
  validates the read set (every version unchanged), replays the log, bumps the written
  scopes, writes the invocation's audit record (and those of its nested invocations)
  and commits; then the after-commit callbacks run. A changed version, or a logged write
  that no longer applies (a constraint, an increment finding no number), is a
  :class:`~emdash._shared._errors.ConflictError`: nothing is kept, rollback callbacks
  run. :meth:`Db.retrying` re-runs an invocation that had no effects outside the database
  (:meth:`Db.mark_effect`) up to :data:`CONFLICT_RETRIES` times. Checks registered with
  :meth:`Db.check_at_commit` (stored-data quotas) run again in that transaction, around
  the replay. A read-only invocation commits nothing but is validated all the same (its
  reads must be one view), from one snapshot and without the write lock; one read of one
  scope needs no check.
- **Nesting.** A nested invocation joins the outer scope and remembers where its part of
  the log starts: its failure drops only its part. An invocation entered inside an
  ordinary transaction on this thread (a host write firing hooks) is a savepoint of it.

Outside invocation scopes (host API, CLI, migrations, audit flushes) transactions are
ordinary short ``BEGIN IMMEDIATE`` transactions (savepoints when nested) that hold the lock
for their duration, and bump versions like any other write. Scopes are per thread.

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

import functools
import logging
import os
import random
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, TypeVar

import sqlite_utils
from ulid import ULID

from .._shared._errors import BridgeError, ConfigError, ConflictError, EmDashError, StorageError
from ._sidecars import check_database_files

__all__ = [
    "BUSY_TIMEOUT_S",
    "CONFLICT_RETRIES",
    "MAX_LOG_BYTES",
    "MAX_LOG_STATEMENTS",
    "Db",
    "InvocationScope",
    "check_not_foreign",
    "format_timestamp",
    "parse_timestamp",
    "storage_error",
    "storage_os_error",
    "table_scope",
]

log = logging.getLogger("emdash.store")

Params = Sequence[Any]
Callback = Callable[[], object]
_T = TypeVar("_T")

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
    by this process sort in creation order (content and media lists rely on id order).

    The millisecond part never goes back: when the wall clock does (an NTP correction after
    a forward jump, an operator setting the time), ids keep the last millisecond and count
    up in the random part until the clock passes it again. :meth:`seed` raises that floor
    to the largest id a database already holds, so this holds across restarts too: new
    content and media never list as older than what was stored before."""

    def __init__(self, now_ms: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._last_ms = -1
        self._last_rand = 0

    def seed(self, largest: str) -> None:
        """Never hand out an id at or below ``largest`` (an id already stored). Ids that
        are not ULIDs (imported data) are ignored: they say nothing about the clock."""
        try:
            raw = ULID.from_str(largest).bytes
        except (ValueError, TypeError):
            return
        ms, rand = int.from_bytes(raw[:6], "big"), int.from_bytes(raw[6:], "big")
        with self._lock:
            if (ms, rand) > (self._last_ms, self._last_rand):
                self._last_ms, self._last_rand = ms, rand

    def new(self) -> tuple[str, int]:
        """A new id and its millisecond (never below any earlier one's)."""
        with self._lock:
            ms = max(0, self._now_ms())  # an injected clock before 1970 is still a clock
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
        return str(ULID.from_bytes(ms.to_bytes(6, "big") + rand.to_bytes(10, "big"))), ms


#: Caps on one invocation's write log. The log is replayed (host CPU a plugin can inflate)
#: for reads of the invocation's own writes and once more at commit, so it is bounded.
MAX_LOG_STATEMENTS = 2_000
MAX_LOG_BYTES = 4 * 1024 * 1024
#: How many times a conflicting invocation without outside effects is re-run.
CONFLICT_RETRIES = 3

# One write of a log: (sql, params or rows for executemany, many, expected rowcount or -1).
_Entry = tuple[str, Any, bool, int]

# Tables whose changes no invocation validates (the audit log is append-only and read by
# operators; versions and migrations are the mechanism itself).
_UNVERSIONED = frozenset({"_emdash_audit", "_emdash_versions", "_emdash_migrations"})
_WRITE_RE = re.compile(
    r"\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+[\"`\[]?(\w+)",
    re.IGNORECASE,
)
_READ_RE = re.compile(r"\b(?:FROM|JOIN)\s+[\"`\[]?(\w+)", re.IGNORECASE)
_write_scopes: dict[str, str | None] = {}
_read_scopes: dict[str, tuple[str, ...]] = {}


def table_scope(table: str) -> str:
    """The coarse scope of a whole table: bumped by every write to it."""
    return f"t/{table}"


def _written_scope(sql: str) -> str | None:
    """The table scope a write statement changes (``None``: an unversioned table or not
    a DML statement), cached per statement text (the texts come from our code)."""
    try:
        return _write_scopes[sql]
    except KeyError:
        pass
    m = _WRITE_RE.match(sql)
    found = None if m is None or m.group(1) in _UNVERSIONED else table_scope(m.group(1))
    if len(_write_scopes) > 4096:  # statements with variable IN lists: keep it bounded
        _write_scopes.clear()
    _write_scopes[sql] = found
    return found


_versioned_scalars: dict[str, str] = {}


def _versioned_scalar(sql: str) -> str:
    """``sql`` (a one-column read) as a scalar subquery next to its scope's version."""
    try:
        return _versioned_scalars[sql]
    except KeyError:
        pass
    found = f"SELECT (SELECT version FROM _emdash_versions WHERE scope = ?), ({sql})"
    if len(_versioned_scalars) > 4096:
        _versioned_scalars.clear()
    _versioned_scalars[sql] = found
    return found


def _read_tables(sql: str) -> tuple[str, ...]:
    """The table scopes a read that names no scope depends on: every table it reads
    (coarse, so never a missed conflict)."""
    try:
        return _read_scopes[sql]
    except KeyError:
        pass
    found = tuple(sorted({table_scope(t) for t in _READ_RE.findall(sql) if t not in _UNVERSIONED}))
    if len(_read_scopes) > 4096:
        _read_scopes.clear()
    _read_scopes[sql] = found
    return found


class InvocationScope:
    """What one outermost plugin invocation has done to the store so far: the versions of
    what it read (its read set), the writes it will commit (its log), the scopes they
    change, the callbacks to run after commit / on rollback, and whether it had effects
    outside the database (then it must not be re-run)."""

    __slots__ = (
        "audit",
        "audited",
        "checks",
        "cpu_ms",
        "effects",
        "log",
        "log_bytes",
        "on_commit",
        "on_rollback",
        "operation",
        "plugin_id",
        "reads",
        "reread",
        "started",
        "written",
    )

    def __init__(self, plugin_id: str | None, operation: str | None) -> None:
        self.plugin_id = plugin_id
        self.operation = operation
        self.reads: dict[str, int] = {}
        #: Whether a scope was read more than once (then even one scope is validated).
        self.reread = False
        self.log: list[_Entry] = []
        self.log_bytes = 0
        self.written: set[str] = set()
        self.on_commit: list[Callback] = []
        self.on_rollback: list[Callback] = []
        self.effects = False
        # Audit records of nested invocations, written with this one's commit.
        self.audit: list[Any] = []
        self.started = time.perf_counter()
        #: The invocation's CPU time, when the host measured it (sandboxed: the worker's).
        self.cpu_ms: float | None = None
        #: Set once its commit wrote its own audit record (see Db.commit_audit).
        self.audited = False
        #: Checks re-run inside the commit transaction (see Db.check_at_commit), by key.
        self.checks: dict[str, Callable[[], Callable[[], None]]] = {}


class RegistryNotices(Protocol):
    """Announcements of registry changes made by other hosts (PostgreSQL LISTEN)."""

    def wait(self, timeout: float) -> bool:
        """Block until an announcement arrives (True) or ``timeout`` seconds pass (False;
        also when the server cannot be reached, after waiting that long)."""
        ...

    def close(self) -> None: ...


class _Tx:
    """One transaction level: BEGIN IMMEDIATE at the outermost level, else a SAVEPOINT.

    Inside an invocation scope the outermost level is *speculative*: a short transaction
    that replays the scope's log, runs the body while recording its writes, and rolls
    back; the recorded writes join the scope's log (see the module docstring)."""

    __slots__ = ("_db", "_mark", "_savepoint", "_spec")

    def __init__(self, db: Db) -> None:
        self._db = db
        self._savepoint: str | None = None
        self._spec: InvocationScope | None = None
        self._mark = 0

    def __enter__(self) -> None:
        db = self._db
        scope: InvocationScope | None = getattr(db._local, "scope", None)
        if scope is not None and not db.in_transaction_here():
            self._spec = scope
            db._begin_speculation(scope)
            return
        self._savepoint = db._enter_tx()
        if db._recording is not None:
            self._mark = len(db._recording)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db = self._db
        if self._spec is not None:
            db._end_speculation(self._spec, ok=exc_type is None)
            return
        if exc_type is not None and db._recording is not None:
            # A failed savepoint inside a speculative transaction: its writes are undone,
            # so they must not reach the log either.
            del db._recording[self._mark :]
        db._exit_tx(self._savepoint, ok=exc_type is None)


class _RawTx(_Tx):
    """:meth:`Db.raw_transaction`: always a real transaction level (or savepoint)."""

    __slots__ = ()

    def __enter__(self) -> None:
        db = self._db
        self._savepoint = db._enter_tx()
        if db._recording is not None:
            self._mark = len(db._recording)


class _Invocation:
    """``Db.invocation()``: a class, not a generator context manager (it wraps every
    plugin invocation, and ``contextlib`` costs a generator and several frames each time).

    The outermost one owns the thread's :class:`InvocationScope` and commits it on a
    normal exit (validate, replay, audit, COMMIT in one short transaction). A nested one
    joins it, remembering where its part of the log starts, so that its failure drops
    only its own writes. One entered inside an ordinary transaction on this thread (a
    host write that fires hooks) is a savepoint of that transaction, as before."""

    __slots__ = ("_db", "_mark", "_operation", "_plugin_id", "_scope", "_tx")

    def __init__(self, db: Db, plugin_id: str | None, operation: str | None) -> None:
        self._db = db
        self._plugin_id = plugin_id
        self._operation = operation
        self._scope: InvocationScope | None = None
        self._mark: tuple[int, int, int, int, int] | None = None
        self._tx: _Tx | None = None

    def __enter__(self) -> InvocationScope | None:
        db = self._db
        local = db._local
        outer: InvocationScope | None = getattr(local, "scope", None)
        if outer is not None:
            self._mark = (
                len(outer.log),
                outer.log_bytes,
                len(outer.on_commit),
                len(outer.on_rollback),
                len(outer.audit),
            )
            return outer
        if db.in_transaction_here():
            tx = _Tx(db)
            tx.__enter__()
            self._tx = tx
            return None
        scope = self._scope = InvocationScope(self._plugin_id, self._operation)
        local.scope = scope
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db = self._db
        if self._tx is not None:
            self._tx.__exit__(exc_type, exc, tb)
            return
        scope = self._scope
        if scope is None:  # nested
            if exc_type is not None and self._mark is not None:
                outer: InvocationScope = db._local.scope
                n_log, n_bytes, n_commit, n_rollback, _ = self._mark
                del outer.log[n_log:]
                outer.log_bytes = n_bytes
                del outer.on_commit[n_commit:]
                undo = outer.on_rollback[n_rollback:]
                del outer.on_rollback[n_rollback:]
                _run(undo)
            return
        db._local.scope = None
        if exc_type is not None:
            db._drop_scope(scope)
            return
        db._commit_scope(scope)


class Db:
    """Connection, lock, clock and id source shared by every repository of one store."""

    backend = "sqlite"

    def __init__(
        self, database: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None
    ) -> None:
        try:
            path = os.fsdecode(database)  # bytes paths too: one spelling for every message
        except TypeError:
            raise ConfigError(
                f"The database must be a file path (str or os.PathLike) or ':memory:', got "
                f"{type(database).__name__}: pass e.g. Runtime('site.db')"
            ) from None
        self.is_memory = path in (":memory:", "")
        self.path = ":memory:" if self.is_memory else path
        if not self.is_memory:
            # Before SQLite maps -shm: what would kill the process later is refused now.
            check_database_files(path)
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
        # The scopes the open outermost transaction changes; their versions are bumped
        # just before its COMMIT (or handed to the invocation scope when speculative).
        self._bumps: set[str] = set()
        #: Whether the schema has ``_emdash_versions`` (set by ``migrate``; a database
        #: part-way through its migrations has no versions to keep).
        self.versioned = False
        # The writes of the open speculative transaction, in order (None: not speculating).
        self._recording: list[_Entry] | None = None
        self._recording_bytes = 0
        self._recording_limit: tuple[int, int] = (0, 0)
        #: Writes the invocation's audit record inside its commit transaction (set by the
        #: audit repository); ``drop_audit`` buffers a dropped scope's nested records.
        self.commit_audit: Callable[[InvocationScope], None] | None = None
        self.drop_audit: Callable[[list[Any]], None] | None = None
        self._local = threading.local()
        self._clock = clock or (lambda: datetime.now(UTC))
        # Ids follow the injected clock too, so clock jumps are testable without sleeping.
        self._ids = _UlidSource(None if clock is None else lambda: _epoch_ms(clock()))
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
        return self._ids.new()[0]

    def new_id_at(self) -> tuple[str, str]:
        """A new id and a creation time that, like the id, never goes back: the id's own
        millisecond. For records listed by creation time (content), so one made after a
        backward clock jump does not list as older than those made before it."""
        ident, ms = self._ids.new()
        return ident, format_timestamp(datetime.fromtimestamp(ms / 1000, UTC))

    def seed_ids(self, tables: Sequence[str]) -> None:
        """Raise the id floor to the largest ULID stored in ``tables`` (their ``id``
        column; trusted names, never caller input). Run at open, after migrations."""
        for table in tables:
            # ULIDs are 26 upper-case Crockford characters, the first 0-7; the filter keeps
            # imported ids of another shape from hiding the largest ULID behind them
            # (written in SQL both backends share: no GLOB on PostgreSQL).
            largest = self.scalar(
                f"SELECT id FROM {table} WHERE length(id) = 26 "
                "AND substr(id, 1, 1) BETWEEN '0' AND '7' "
                "AND id = upper(id) ORDER BY id DESC LIMIT 1"
            )
            if isinstance(largest, str):
                self._ids.seed(largest)

    # -- reads -------------------------------------------------------------------------

    # Connection.execute() hands back a plain C cursor: its fetches, where a damaged page
    # is met, are guarded here (a try costs nothing on the path that does not raise).
    #
    # ``scopes`` names what a read depends on (see the module docstring); a read that
    # names none depends on every table it reads. Outside an invocation scope it is unused.

    def rows(
        self, sql: str, params: Params = (), *, scopes: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            replayed = self._read_begin(sql, scopes)
            try:
                cur = self.conn.execute(sql, params)
                names = [d[0] for d in cur.description]
                try:
                    fetched = cur.fetchall()
                except sqlite3.Error as exc:
                    raise storage_error(exc, self.path) from exc
                return [dict(zip(names, r, strict=True)) for r in fetched]
            finally:
                if replayed:
                    self._read_end()

    def row(
        self, sql: str, params: Params = (), *, scopes: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        found = self.rows(sql, params, scopes=scopes)
        return found[0] if found else None

    def scalar(self, sql: str, params: Params = (), *, scopes: Sequence[str] | None = None) -> Any:
        with self.lock:
            scope: InvocationScope | None = getattr(self._local, "scope", None)
            if (
                scope is not None
                and scopes is not None
                and len(scopes) == 1
                and scopes[0] not in scope.reads
                and scopes[0] not in scope.written
                and self._owner is None
                and self.versioned
            ):
                # The hot path of a point read in an invocation (every ctx.kv.get): the
                # version and the value in one statement, so from one snapshot.
                name = scopes[0]
                cur = self.conn.execute(_versioned_scalar(sql), (name, *params))
                try:
                    version, value = cur.fetchone()
                except sqlite3.Error as exc:
                    raise storage_error(exc, self.path) from exc
                scope.reads[name] = int(version or 0)
                return value
            replayed = self._read_begin(sql, scopes)
            try:
                cur = self.conn.execute(sql, params)
                try:
                    r = cur.fetchone()
                except sqlite3.Error as exc:
                    raise storage_error(exc, self.path) from exc
                return None if r is None else r[0]
            finally:
                if replayed:
                    self._read_end()

    def _read_begin(self, sql: str, scopes: Sequence[str] | None) -> bool:
        """Before a read (lock held): inside an invocation scope, record the versions of
        what it depends on, read BEFORE the data (a commit in between then shows as a
        conflict at validation: safe, never a miss). If the scope has already written to
        one of those scopes, open a short transaction that replays its log, so the read
        sees the invocation's own writes; returns whether it did (then :meth:`_read_end`
        rolls it back). Outside a scope this is one attribute lookup."""
        scope: InvocationScope | None = getattr(self._local, "scope", None)
        if scope is None:
            return False
        names = _read_tables(sql) if scopes is None else scopes
        if self._owner == threading.get_ident():
            # Inside this thread's speculative transaction: its writes are visible already,
            # and the versions table is untouched by them (bumps wait for the commit).
            self._note_versions(scope, names)
            return False
        replay = bool(scope.log) and not scope.written.isdisjoint(names)
        if replay:
            self._begin_immediate()
            try:
                self._replay(scope, scope.log)
                self._note_versions(scope, names)
            except BaseException:
                self._read_end()
                raise
        else:
            self._note_versions(scope, names)
        return replay

    def _read_end(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _note_versions(self, scope: InvocationScope, names: Sequence[str]) -> None:
        reads = scope.reads
        missing = [n for n in names if n not in reads]
        if len(missing) != len(names):
            scope.reread = True
        if not missing:
            return
        found = self._versions(missing)
        for name in missing:
            reads[name] = found.get(name, 0)

    def _versions(self, names: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        if not self.versioned:
            return out
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            cur = self.conn.execute(
                "SELECT scope, version FROM _emdash_versions WHERE scope IN ("  # noqa: S608
                + ",".join("?" * len(chunk))
                + ")",
                chunk,
            )
            try:
                out.update((str(r[0]), int(r[1])) for r in cur.fetchall())
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc
        return out

    def note_read(self, sql: str, scopes: Sequence[str] | None = None) -> bool:
        """:meth:`_read_begin` for a read made on the connection directly (paged reads):
        call with :attr:`lock` held, and :meth:`end_read` after when it returns true."""
        return self._read_begin(sql, scopes)

    def end_read(self) -> None:
        self._read_end()

    # -- writes ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = (), *, expect: int | None = None) -> int:
        """Run one write statement inside the current transaction; returns the row count.

        ``expect``: the row count this write must have when the invocation's log is
        replayed at commit (a different count there is a conflict); increments use it.
        """
        if not self.in_transaction_here():
            raise EmDashError("store write outside a transaction (use store.transaction())")
        table = _written_scope(sql)
        if table is not None:
            self._bumps.add(table)
        if self._recording is not None:
            frozen = tuple(params)
            self._record((sql, frozen, False, -1 if expect is None else expect), sql, frozen)
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, seq: Sequence[Params]) -> int:
        if not self.in_transaction_here():
            raise EmDashError("store write outside a transaction (use store.transaction())")
        table = _written_scope(sql)
        if table is not None:
            self._bumps.add(table)
        if self._recording is not None:
            frozen = [tuple(p) for p in seq]
            self._record((sql, frozen, True, -1), sql, *frozen)
            seq = frozen
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

    def lifecycle_lock(self, plugin_id: str) -> AbstractContextManager[None]:
        """Held while one host decides and runs a plugin's lifecycle transition. One host
        per SQLite file: the runtime's own lock suffices (PostgreSQL: a server lock)."""
        return nullcontext()

    def announce_registry_change(self) -> None:
        """Inside a transaction that changes the plugin registry: tell the other hosts when
        it commits. One host per SQLite file: nobody to tell (PostgreSQL: a NOTIFY)."""

    def registry_notices(self) -> RegistryNotices | None:
        """What a host waits on for other hosts' registry changes (None: nothing to wait
        for; the registry is then only polled)."""
        return None

    def touch(self, *scopes: str) -> None:
        """Say that the current write changes these scopes (point and namespace): their
        versions are bumped in the same transaction as the write."""
        if not self.in_transaction_here():
            raise EmDashError("store scopes touched outside a transaction")
        self._bumps.update(scopes)

    def _record(self, entry: _Entry, sql: str, *params: Params) -> None:
        size = _entry_size(sql, params)
        count_left, bytes_left = self._recording_limit
        self._recording_bytes += size
        if len(self._recording or ()) + 1 > count_left or self._recording_bytes > bytes_left:
            scope: InvocationScope | None = getattr(self._local, "scope", None)
            raise _log_full(scope.plugin_id if scope is not None else None)
        assert self._recording is not None
        self._recording.append(entry)

    def can_log_blind_write(self) -> bool:
        """Whether a write made now could skip its speculative transaction
        (:meth:`log_blind_write`): this thread is in an invocation scope whose log is
        empty, and in no transaction of its own."""
        scope: InvocationScope | None = getattr(self._local, "scope", None)
        return scope is not None and not scope.log and not self.in_transaction_here()

    def log_blind_write(self, sql: str, params: Params, scopes: Sequence[str]) -> None:
        """Log one write for the invocation's commit without running it now.

        The speculative transaction (``BEGIN IMMEDIATE``, replay, write, ``ROLLBACK``)
        exists to find out, at the call, whether a write fails and what it records. A
        caller may skip it only for a write that (1) is the first of its invocation
        (:meth:`can_log_blind_write`: nothing to replay, so the committed data is what the
        invocation sees), (2) cannot fail in SQL when replayed (an upsert of one row by
        its key, no constraint it could break), (3) records exactly this one statement
        with fixed parameters, (4) has made every check it needs (quotas) against the
        committed data beforehand, and (5) names every scope it changes besides its table
        scope. The commit then replays it, bumps the scopes and validates the read set
        exactly as for a speculated write (``docs/integrity.md``)."""
        scope: InvocationScope | None = getattr(self._local, "scope", None)
        if scope is None or scope.log or self.in_transaction_here():
            raise EmDashError("log_blind_write needs an invocation scope with an empty log")
        frozen = tuple(params)
        size = _entry_size(sql, (frozen,))
        if size > MAX_LOG_BYTES - scope.log_bytes:
            raise _log_full(scope.plugin_id)
        scope.log.append((sql, frozen, False, -1))
        scope.log_bytes += size
        scope.written.update(scopes)
        table = _written_scope(sql)
        if table is not None:
            scope.written.add(table)

    def transaction(self) -> _Tx:
        """Re-entrant transaction; inside an invocation scope, a speculative one."""
        return _Tx(self)

    def raw_transaction(self) -> _Tx:
        """A transaction of the host's own (audit flushes, migrations): never speculative,
        even when an invocation scope is open on this thread."""
        return _RawTx(self)

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
        return self.in_transaction_here() or getattr(self._local, "scope", None) is not None

    def invocation(self, plugin_id: str | None = None, operation: str | None = None) -> _Invocation:
        """An invocation scope (see the module docstring); a context manager whose value
        is the :class:`InvocationScope` (``None`` inside an ordinary transaction)."""
        return _Invocation(self, plugin_id, operation)

    def current_scope(self) -> InvocationScope | None:
        """This thread's open invocation scope, if any."""
        scope: InvocationScope | None = getattr(self._local, "scope", None)
        return scope

    def check_at_commit(self, key: str, check: Callable[[], Callable[[], None]]) -> None:
        """Inside an invocation scope, run ``check`` again in its commit transaction: a
        check made during the invocation saw only its own view, and invocations committing
        meanwhile may have changed what it checked (quotas: their writes count too).
        ``check()`` runs before the log is replayed (it reads a baseline) and returns the
        check to run after the replay, which raises to fail the commit. Once per ``key``;
        outside a scope nothing is registered (a plain transaction's checks are exact)."""
        scope: InvocationScope | None = getattr(self._local, "scope", None)
        if scope is not None and key not in scope.checks:
            scope.checks[key] = check

    def mark_effect(self) -> None:
        """The current invocation did something outside the database (HTTP, email...):
        it must not be re-run on a conflict."""
        scope: InvocationScope | None = getattr(self._local, "scope", None)
        if scope is not None:
            scope.effects = True

    # -- speculation, validation and commit --------------------------------------------

    def _begin_immediate(self) -> None:
        if self.closed:
            raise EmDashError("the store is closed")
        self.conn.execute("BEGIN IMMEDIATE")

    def _replay(self, scope: InvocationScope, log: list[_Entry]) -> None:
        """Run logged writes again (lock held, transaction open). A write that now fails a
        constraint, or an increment that now finds no number, is a conflict: the data it
        was computed from changed."""
        conn = self.conn
        for sql, params, many, expect in log:
            try:
                count = (
                    conn.executemany(sql, params) if many else conn.execute(sql, params)
                ).rowcount
            except sqlite3.IntegrityError as exc:
                raise self._conflict(scope, table_scope(_table_of(sql)), str(exc)) from None
            if expect >= 0 and count != expect:
                raise self._conflict(scope, table_scope(_table_of(sql)), "an increment")

    def _conflict(
        self, scope: InvocationScope, name: str, what: str | None = None
    ) -> ConflictError:
        pid = scope.plugin_id or "(host)"
        op = f" {scope.operation}" if scope.operation else ""
        why = f" ({what} no longer applies)" if what else ""
        return ConflictError(
            f"Plugin {pid} could not commit its{op} invocation: {name} was changed by "
            f"another invocation or process after this one read it{why}. Nothing of this "
            "invocation was kept. Retry it; for counters use ctx.kv.increment, for "
            "check-then-set ctx.kv.compare_and_set.",
            plugin_id=scope.plugin_id,
            scope=name,
        )

    def _begin_speculation(self, scope: InvocationScope) -> None:
        self._enter_tx()  # lock, BEGIN IMMEDIATE
        try:
            self._replay(scope, scope.log)
        except BaseException:
            self._exit_tx(None, ok=False)
            raise
        self._recording = []
        self._recording_bytes = 0
        self._recording_limit = (
            MAX_LOG_STATEMENTS - len(scope.log),
            MAX_LOG_BYTES - scope.log_bytes,
        )

    def _end_speculation(self, scope: InvocationScope, *, ok: bool) -> None:
        recorded, self._recording = self._recording or [], None
        if ok:
            on_commit, on_rollback = self._callbacks[-1]
            scope.log.extend(recorded)
            scope.log_bytes += self._recording_bytes
            scope.written.update(self._bumps)
            scope.on_commit.extend(on_commit)
            scope.on_rollback.extend(on_rollback)
            # Handed over: the rollback below undoes the rows only, for now.
            self._callbacks[-1] = ([], [])
        self._bumps = set()
        self._exit_tx(None, ok=False)

    def _drop_scope(self, scope: InvocationScope) -> None:
        """A failed invocation: nothing of it is kept."""
        try:
            _run(scope.on_rollback)
        finally:
            if scope.audit and self.drop_audit is not None:
                self.drop_audit(scope.audit)

    def _commit_scope(self, scope: InvocationScope) -> None:
        """Validate, replay, audit and commit in one short transaction."""
        if not scope.log and not scope.written:
            # Read-only: nothing to write, but its reads must still be one consistent
            # view (serializable): two reads from two moments, with a commit in between,
            # are a view no serial order gives. Validated without the write lock; one
            # read of one scope is consistent by itself and costs nothing.
            if len(scope.reads) > 1 or (scope.reads and scope.reread):
                try:
                    self._validate_read_only(scope)
                except BaseException:
                    self._drop_scope(scope)
                    raise
            if scope.audit and self.drop_audit is not None:
                self.drop_audit(scope.audit)
            _run(scope.on_commit)
            return
        try:
            self._enter_tx()
        except StorageError as exc:
            # The database failed the invocation, not its plugin: say whose it was (a
            # write logged without speculation meets a locked database here first).
            if exc.plugin_id is None:
                exc.plugin_id = scope.plugin_id
            self._drop_scope(scope)
            raise
        except BaseException:
            self._drop_scope(scope)
            raise
        level = self._callbacks[-1]
        level[0].extend(scope.on_commit)
        level[1].extend(scope.on_rollback)
        ok = False
        try:
            if scope.reads:
                names = list(scope.reads)
                now = self._versions(names)
                for name in names:
                    if now.get(name, 0) != scope.reads[name]:
                        raise self._conflict(scope, name)
            after = [check() for check in scope.checks.values()]
            self._replay(scope, scope.log)
            for check_after in after:
                check_after()
            self._bumps.update(scope.written)
            if self.commit_audit is not None:
                self.commit_audit(scope)
            ok = True
        finally:
            if not ok and scope.audit and self.drop_audit is not None:
                self.drop_audit(scope.audit)
            self._exit_tx(None, ok=ok)
        scope.audited = scope.plugin_id is not None and scope.operation is not None

    def _validate_read_only(self, scope: InvocationScope) -> None:
        """A read-only invocation's read set, checked from one snapshot: a read
        transaction (``BEGIN`` is deferred: WAL readers take no write lock and wait for no
        writer), or a single statement when the set fits in one."""
        names = list(scope.reads)
        with self.lock:
            if self.closed:
                raise EmDashError("the store is closed")
            many = len(names) > 500  # _versions reads in chunks: one snapshot for all
            if many:
                self.conn.execute("BEGIN")
            try:
                now = self._versions(names)
            finally:
                if many and self.conn.in_transaction:
                    self.conn.execute("COMMIT")
        for name in names:
            if now.get(name, 0) != scope.reads[name]:
                raise self._conflict(scope, name)

    def retrying(
        self,
        plugin_id: str | None,
        operation: str | None,
        run: Callable[[InvocationScope | None], _T],
        *,
        deadline: float | None = None,
    ) -> _T:
        """Run ``run`` inside an invocation scope; re-run it (up to
        :data:`CONFLICT_RETRIES` times, with a short jittered back-off, never past
        ``deadline``, a ``time.monotonic()`` value) when it conflicts and had no effects
        outside the database. Otherwise the :class:`ConflictError` propagates."""
        attempt = 0
        while True:
            scope: InvocationScope | None = None
            try:
                with self.invocation(plugin_id, operation) as scope:
                    return run(scope)
            except ConflictError:
                attempt += 1
                if scope is None or scope.effects or attempt > CONFLICT_RETRIES:
                    raise
                pause = random.uniform(0.0005, 0.002) * attempt  # noqa: S311 - jitter only
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)

    # -- internals ---------------------------------------------------------------------

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
            self._bumps = set()
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
                        if self._bumps and self.versioned:
                            # One multi-row statement per chunk, not one execution per
                            # scope: a kv.set bumps three.
                            bumps = sorted(self._bumps)
                            for start in range(0, len(bumps), _BUMP_CHUNK):
                                chunk = bumps[start : start + _BUMP_CHUNK]
                                self.conn.execute(_bump_sql(len(chunk)), chunk)
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
                self._bumps = set()
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


# Scopes per bump statement (one bound parameter each: far under SQLite's limit).
_BUMP_CHUNK = 500


@functools.lru_cache(maxsize=64)
def _bump_sql(rows: int) -> str:
    """The statement that bumps ``rows`` scopes' versions (a missing scope starts at 1)."""
    return (
        "INSERT INTO _emdash_versions (scope, version) VALUES "  # noqa: S608 - no data
        + ",".join(["(?, 1)"] * rows)
        + " ON CONFLICT(scope) DO UPDATE SET version = version + 1"
    )


def _entry_size(sql: str, params: Sequence[Params]) -> int:
    """What one log entry counts against :data:`MAX_LOG_BYTES`."""
    return len(sql) + sum(len(v) if isinstance(v, str | bytes) else 8 for p in params for v in p)


def _log_full(pid: str | None) -> BridgeError:
    return BridgeError(
        f"Plugin {pid or '(host)'} made more writes in one invocation than one "
        f"invocation may commit ({MAX_LOG_STATEMENTS} statements, "
        f"{MAX_LOG_BYTES} bytes of data): nothing of this write was kept. Split the "
        "work over several invocations (a cron task, or a route called in pages), "
        "or use storage.putMany for many documents.",
        plugin_id=pid,
    )


def _epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, in integers (a float product can land one
    millisecond short of what :func:`format_timestamp` prints for the same moment)."""
    # astimezone: a naive moment is local time, as format_timestamp reads it.
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _table_of(sql: str) -> str:
    m = _WRITE_RE.match(sql)
    return m.group(1) if m is not None else "?"


def _run(callbacks: list[Callback]) -> None:
    for fn in callbacks:
        try:
            fn()
        except Exception:
            log.exception("store: a commit/rollback callback failed")
