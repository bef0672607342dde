"""The audit log: one record per hook handler, route, lifecycle and cron invocation, and
sandbox load.

An invocation that committed writes gets its record inside its commit transaction
(``Db.commit_audit`` calls :meth:`AuditRecords._commit_audit`; the host then passes
``committed=True`` so the record is not written twice): committed work never lacks its audit
row. Records made inside an open invocation scope (nested invocations') wait for that scope
and commit with it. Every other record only appends to an in-memory buffer (its own small
lock, never the store lock), so auditing puts no SQLite commit on the hot path. The buffer
is written in one transaction when it reaches 256 records, on :meth:`AuditRecords.flush`,
before :meth:`AuditRecords.list`, and when the store closes. What follows is about the
buffer: records of invocations that wrote nothing or failed.

What a process that ends without ``close()`` can lose (file databases only; an in-memory
one dies with its process anyway):

- Interpreter exit (end of the script, ``sys.exit``, an uncaught exception, Ctrl-C's
  ``KeyboardInterrupt``): nothing. An ``atexit`` hook flushes every open store (weakly
  referenced, so it keeps none alive).
- SIGTERM, and SIGINT when its handler is the OS default: nothing, if the host has not
  installed its own handler for that signal. The first store opened on the main thread
  installs one for each signal still at ``SIG_DFL``; it flushes, restores ``SIG_DFL`` and
  re-sends the signal, so the process still ends as killed by that signal. A host with its
  own handler (an ASGI server, a service framework) keeps it untouched; it usually exits
  through ``sys.exit``, which the ``atexit`` hook covers, and can call ``rt.close()``.
- SIGKILL (and power loss): at most the records younger than ``FLUSH_AFTER_S`` plus
  ``FLUSH_AFTER_S / 2`` (1.5 s by default). A background thread ("emdash-audit-flush")
  writes any buffer whose oldest record is older than ``FLUSH_AFTER_S``. It never waits
  for the store lock, which is only ever held for short transactions (invocations hold no
  lock while they run, see ``emdash._store._db``).

A flush at exit or on a signal waits at most ``EXIT_WAIT_S`` for the store lock, and
writes nothing when the signal arrived while the main thread was inside a transaction (its
open transaction is rolled back by the kill anyway; the records of that instant may be lost).

Audit rows must survive the invocation they describe: a failed invocation rolls its own
writes back, but its audit record is exactly what an operator needs. So a flush never
joins an invocation's transaction. It uses its own transaction, and is postponed while the
calling thread is inside a transaction (``list`` then also shows the still-buffered
records). The buffer is swapped out while the store lock is held, so records reach the
table in the order they were made.

``cpu_ms`` is always measured by the host, never reported by the plugin's side: for a
sandboxed plugin it is the kernel's count of its worker's CPU time from the moment the call
took the worker to the moment its answer arrived (``sandbox.CallResult.cpu_ms``; a worker
that broke out of the sandbox can forge what it says about itself, not this), for a trusted
one the CPU time of the host thread that ran it. NULL when there is no such figure (the
invocation failed before or without one).

Retention (:func:`enforce_retention`, run by every flush that wrote rows, in the same
transaction): rows older than ``AuditRetention.max_age_days`` (default 30) are deleted,
and so are the oldest rows beyond ``AuditRetention.max_rows`` (default 1,000,000), at most
``RETENTION_BATCH`` rows of each per flush, so a flush never stalls on a large backlog
(the backlog shrinks by a batch per flush, faster than flushes add rows). Age uses the
``at`` index; the row bound uses the id (rows get increasing ids, so the rows with
``id <= max(id) - max_rows`` are the oldest, and at most ``max_rows`` remain). Both are
index lookups when there is nothing to delete. The site operator sets both
(``Runtime(audit_retention=...)``, ``[audit]`` in emdash.toml).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from .._shared._errors import EmDashError, StorageError
from .._shared._hooks_catalog import HOOKS
from ._db import Db, InvocationScope, format_timestamp
from ._quotas import AuditRetention

__all__ = ["AUDIT_KINDS", "AUDIT_OUTCOMES", "AuditRecords"]

# "admin": a change made in the admin on a plugin's behalf (a settings save).
AUDIT_KINDS = frozenset({"hook", "route", "lifecycle", "cron", "load", "admin"})
AUDIT_OUTCOMES = frozenset({"ok", "error", "timeout", "limit", "vetoed"})
FLUSH_AT = 256
MAX_BUFFERED = 4096
#: A buffered record older than this (seconds) is written by the background flusher.
FLUSH_AFTER_S = 1.0
#: How long a flush at interpreter exit or on SIGTERM/SIGINT waits for the store lock.
EXIT_WAIT_S = 2.0
#: Past this many buffered records (flushes failing), the oldest are dropped.
BUFFER_CAP = 50_000
_MAX_TEXT = 4000

_Record = tuple[str, str, str, str, str, float, float | None, str | None, str | None, str | None]
_FIELDS = 10
_INSERT = (
    "INSERT INTO _emdash_audit (at, plugin_id, kind, name, outcome, duration_ms, cpu_ms, "
    "limit_name, error, logs) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: The stored log lines of one record (JSON text, already bounded by the bridge's capture).
_MAX_LOGS_TEXT = 20_000


RETENTION_BATCH = 10_000

log = logging.getLogger("emdash.store")


def _storable(text: str) -> str:
    """``text`` as SQLite can store it. Python strings may hold lone surrogates (a plugin's
    ``raise ValueError("\\ud800")``, a line decoded with ``surrogateescape``), the only
    characters without a UTF-8 form: one such record made every flush of the buffer it sat
    in fail with ``UnicodeEncodeError`` (at close too), losing the others' records. Each
    becomes U+FFFD, the replacement character, which also keeps the logs' JSON text valid
    (an escape such as ``\\ud800`` would parse back into the same surrogate). ASCII, the
    common case, costs one check."""
    if text.isascii():
        return text
    return _SURROGATES.sub("\ufffd", text)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _kind_and_name(operation: str) -> tuple[str, str]:
    """The audit kind and name of an invocation the host called ``operation``."""
    prefix, _, name = operation.partition(":")
    if prefix == "route":
        return "route", name
    spec = HOOKS.get(name)
    family = spec.family if spec is not None else "hook"
    return (family if family in ("lifecycle", "cron") else "hook"), name


def enforce_retention(db: Db, retention: AuditRetention, *, batch: int = RETENTION_BATCH) -> int:
    """Delete audit rows past the retention bounds (inside a transaction); returns how many.

    See the module docstring for the policy. At most ``batch`` rows per bound per call.
    """
    cutoff = format_timestamp(db.now_datetime() - timedelta(days=retention.max_age_days))
    deleted = db.execute(
        "DELETE FROM _emdash_audit WHERE id IN "
        "(SELECT id FROM _emdash_audit WHERE at < ? ORDER BY at LIMIT ?)",
        (cutoff, batch),
    )
    newest = db.scalar("SELECT MAX(id) FROM _emdash_audit")
    if newest is not None and newest > retention.max_rows:
        deleted += db.execute(
            "DELETE FROM _emdash_audit WHERE id IN "
            "(SELECT id FROM _emdash_audit WHERE id <= ? ORDER BY id LIMIT ?)",
            (int(newest) - retention.max_rows, batch),
        )
    return deleted


class AuditRecords:
    #: How long rows are kept (set by the Store; ``None``: forever).
    retention: AuditRetention | None = None

    #: Seconds after which the background flusher writes a buffered record (``None``:
    #: never; only the size, ``flush``, ``list``, close and exit paths write it).
    flush_after_s: float | None = FLUSH_AFTER_S

    def __init__(self, db: Db) -> None:
        self._db = db
        self._buffer: list[_Record] = []
        self._buffer_lock = threading.Lock()
        # time.monotonic() when the buffer last went from empty to non-empty.
        self._oldest: float | None = None
        self._flush_failed = False
        # An invocation that commits writes gets its record in its commit transaction.
        #: Returns the log lines of the invocation being committed (see _commit_audit).
        self.current_logs: Callable[[], str | None] | None = None
        db.commit_audit = self._commit_audit
        db.drop_audit = self._buffer_records
        if not db.is_memory:
            _track(self)

    def record(
        self,
        plugin_id: str,
        kind: str,
        name: str,
        outcome: str,
        duration_ms: float,
        *,
        cpu_ms: float | None = None,
        limit: str | None = None,
        error: str | None = None,
        logs: str | None = None,
        committed: bool = False,
    ) -> None:
        """Buffer one audit record (``kind``: hook|route|lifecycle|cron; ``outcome``:
        ok|error|timeout|limit|vetoed; ``limit`` names the limit hit, ``error`` the message;
        ``logs`` the invocation's log lines as JSON text, from
        :meth:`emdash._bridge._invocation_logs.InvocationLogs.stored`).

        ``committed``: the invocation's commit already wrote its record
        (``InvokeResult.audited``); an ``ok`` record is then not written again. A record
        made inside an open invocation scope (a nested invocation's) waits for that
        scope: it commits with its writes, or is buffered.

        ``cpu_ms`` must be a host-measured figure (see the module doc), never one a sandbox
        worker reported."""
        if kind not in AUDIT_KINDS:
            raise EmDashError(f"Unknown audit kind {kind!r}: use one of {sorted(AUDIT_KINDS)}")
        if outcome not in AUDIT_OUTCOMES:
            raise EmDashError(
                f"Unknown audit outcome {outcome!r}: use one of {sorted(AUDIT_OUTCOMES)}"
            )
        # Every text field through _storable: one unencodable record would otherwise
        # fail every flush of the buffer it sits in, the records of others with it.
        rec: _Record = (
            self._db.now(),
            _storable(str(plugin_id)[:200]),
            kind,
            _storable(str(name)[:200]),
            outcome,
            float(duration_ms),
            None if cpu_ms is None else float(cpu_ms),
            None if limit is None else _storable(str(limit)[:200]),
            None if error is None else _storable(str(error)[:_MAX_TEXT]),
            # Over the bound only if a caller bypassed the capture: dropped, never cut into
            # text that no longer parses.
            _storable(logs) if logs is not None and len(logs) <= _MAX_LOGS_TEXT else None,
        )
        if committed and outcome == "ok":
            return  # written by the invocation's own commit (see _commit_audit)
        scope = self._db.current_scope()
        if scope is not None:
            # A nested invocation: its record commits with the outer one's writes (or is
            # buffered when the outer one writes nothing or fails).
            scope.audit.append(rec)
            return
        self._buffer_records([rec])

    def _commit_audit(self, scope: InvocationScope) -> None:
        """Inside an invocation's commit transaction: its own record (when the host named
        the invocation) and those of its nested invocations, in that transaction, so an
        invocation whose writes committed always has its audit row (no buffer to lose)."""
        # The buffered records first (at most FLUSH_AT, oldest first): they were made
        # before this one, so ids keep the order records were made in, and every commit
        # also drains the buffer (less for a SIGKILL to take). Put back if this rolls back.
        with self._buffer_lock:
            taken, self._buffer = self._buffer[:FLUSH_AT], self._buffer[FLUSH_AT:]
            if not self._buffer:
                self._oldest = None
        if taken:
            self._db.on_rollback(lambda: self._restore(taken))
        records: list[_Record] = [*taken, *scope.audit]
        if scope.plugin_id is not None and scope.operation is not None:
            kind, name = _kind_and_name(scope.operation)
            records.append(
                (
                    self._db.now(),
                    _storable(str(scope.plugin_id)[:200]),
                    kind,
                    _storable(name[:200]),
                    "ok",
                    (time.perf_counter() - scope.started) * 1000,
                    scope.cpu_ms,
                    None,
                    None,
                    self._own_logs(),
                )
            )
        step = self._rows_per_insert()
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            self._db.execute(
                _INSERT + ",".join([_ROW] * len(chunk)),
                [value for record in chunk for value in record],
            )
        # Retention runs with the flushes; when commits drain the buffer, with them.
        self._since_retention += len(records)
        if self._since_retention >= FLUSH_AT and self.retention is not None:
            self._since_retention = 0
            enforce_retention(self._db, self.retention)

    def _own_logs(self) -> str | None:
        # The committing invocation's log lines, from the runtime's capture (the store does
        # not know where they are kept; the runtime sets ``current_logs``).
        logs = None if self.current_logs is None else self.current_logs()
        return _storable(logs) if logs is not None and len(logs) <= _MAX_LOGS_TEXT else None

    def _restore(self, records: list[_Record]) -> None:
        with self._buffer_lock:  # back in front, for the next flush
            self._buffer[:0] = records
            if self._oldest is None:
                self._oldest = time.monotonic()
        # The background flusher may be asleep (it sleeps while every buffer is empty):
        # without this, the records would wait for the next record anyone makes.
        _wake.set()

    _since_retention = 0

    def _buffer_records(self, records: list[_Record]) -> None:
        with self._buffer_lock:
            self._buffer.extend(records)
            size = len(self._buffer)
            if size == len(records):
                self._oldest = time.monotonic()
            if size > BUFFER_CAP:
                size = self._drop_oldest()
        if size == len(records):
            _wake.set()
        if size >= FLUSH_AT and not self._db.in_transaction_here():
            # Don't wait behind another thread's transaction just to write the log; try
            # again on the next record. Only a buffer grown huge makes this call wait.
            self._auto_flush(wait=size >= MAX_BUFFERED)

    # -- degraded storage: back-off and a bounded buffer -------------------------------
    #
    # While the database cannot be written (locked by another process past the busy
    # timeout, disk full, read-only, damaged), retrying the whole buffer on every record
    # costs each plugin call a failed transaction over thousands of rows, and logging a
    # traceback each time floods the log. So an automatic flush that fails waits before
    # the next try (0.5 s, doubling to 60 s; reset by a flush that succeeds), and logs one
    # warning per failed try, without a traceback. Explicit flushes (close, flush()) always
    # try, and raise the StorageError. The buffer is bounded: past BUFFER_CAP records the
    # oldest BUFFER_CAP // 10 are dropped, counted in ``dropped`` and logged.

    _retry_at = 0.0
    _backoff_s = 0.0
    #: Records dropped because the buffer passed BUFFER_CAP while flushes were failing.
    dropped = 0

    def _drop_oldest(self) -> int:
        """Drop the oldest tenth of the buffer (caller holds the buffer lock)."""
        n = BUFFER_CAP // 10
        del self._buffer[:n]
        self.dropped += n
        log.warning(
            "audit: the buffer passed %d records while the database could not be written; "
            "dropped the %d oldest (%d dropped so far). Fix the database (see the previous "
            "warning) to stop losing audit records.",
            BUFFER_CAP,
            n,
            self.dropped,
        )
        return len(self._buffer)

    def _auto_flush(self, *, wait: bool) -> None:
        """A flush the caller did not ask for: honours the back-off, never raises
        StorageError (the records stay buffered for the next try)."""
        if time.monotonic() < self._retry_at:
            return
        try:
            self.flush(wait=wait)
        except StorageError as exc:
            self._backoff_s = min(60.0, max(0.5, self._backoff_s * 2))
            self._retry_at = time.monotonic() + self._backoff_s
            log.warning(
                "audit: could not write %d buffered records, next try in %g s: %s",
                self.pending(),
                self._backoff_s,
                exc,
            )
        else:
            self._backoff_s = 0.0

    def _rows_per_insert(self) -> int:
        # SQLite caps the parameters of one statement (32766 by default since 3.32).
        limit = self._db.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, min(FLUSH_AT, limit // _FIELDS))

    def pending(self) -> int:
        with self._buffer_lock:
            return len(self._buffer)

    def due(self) -> bool:
        """Whether the oldest buffered record is older than :attr:`flush_after_s`."""
        after, oldest = self.flush_after_s, self._oldest
        return (
            after is not None
            and oldest is not None
            and bool(self._buffer)
            and time.monotonic() - oldest >= after
        )

    def flush(self, *, wait: bool = True, timeout: float | None = None) -> int:
        """Write every buffered record now; returns how many were written.

        Does nothing (returns 0) when called inside a transaction on this thread, or when
        ``wait`` is false and another thread holds the store, or when ``timeout`` (seconds)
        passes before the store and the buffer are free (the exit and signal paths).
        """
        if self._db.closed:
            return 0
        got = (
            self._db.lock.acquire(timeout=timeout)
            if timeout is not None and wait
            else self._db.lock.acquire(blocking=wait)
        )
        if not got:
            return 0
        try:
            if self._db.closed or self._db.in_transaction_here():
                return 0
            # With a timeout this may run in a signal handler that interrupted this very
            # thread inside the buffer lock: give up rather than deadlock on it.
            if not self._buffer_lock.acquire(timeout=-1 if timeout is None else timeout):
                return 0
            try:
                batch, self._buffer = self._buffer, []
                self._oldest = None
            finally:
                self._buffer_lock.release()
            if not batch:
                return 0
            try:
                with self._db.raw_transaction():
                    # Multi-row INSERTs, not executemany: executemany steps (and releases
                    # the GIL) once per row, and with other threads running each release
                    # is a hand-off. Also ~25% less time per row.
                    step = self._rows_per_insert()
                    for start in range(0, len(batch), step):
                        chunk = batch[start : start + step]
                        self._db.execute(
                            _INSERT + ",".join([_ROW] * len(chunk)),
                            [value for record in chunk for value in record],
                        )
                    if self.retention is not None:
                        enforce_retention(self._db, self.retention)
            except BaseException:
                with self._buffer_lock:  # keep them for the next attempt
                    self._buffer[:0] = batch
                    self._oldest = time.monotonic()
                raise
            return len(batch)
        finally:
            self._db.lock.release()

    def list(self, *, limit: int = 100, plugin_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``limit`` is clamped to [1, 10000]."""
        size = max(1, min(int(limit), 10_000))
        with self._db.lock:
            # A listing still works while the database cannot be written: it shows the
            # records still buffered.
            self._auto_flush(wait=True)
            scope = self._db.current_scope()
            with self._buffer_lock:
                # Records of nested invocations waiting for this thread's commit, too.
                waiting = [*self._buffer, *(scope.audit if scope is not None else ())]
                buffered = [r for r in waiting if plugin_id is None or r[1] == plugin_id]
            out = [_from_record(r) for r in reversed(buffered)][:size]
            if len(out) < size:
                where, params = ("WHERE plugin_id = ?", [plugin_id]) if plugin_id else ("", [])
                rows = self._db.rows(
                    f"SELECT * FROM _emdash_audit {where} ORDER BY id DESC LIMIT ?",
                    [*params, size - len(out)],
                )
                out.extend(_from_row(r) for r in rows)
            return out


# -- flushing without close(): background, atexit, SIGTERM/SIGINT ---------------------------
#
# Module state, one per process: the open file-backed audit buffers (weakly: a store that
# is garbage is not kept alive for its log), the flusher thread, and whether the exit
# hooks are in place. A forked child starts over (register_at_fork): the parent's buffers
# are the parent's to write, and the flusher thread does not exist in the child.

_live: weakref.WeakSet[AuditRecords] = weakref.WeakSet()
_live_lock = threading.Lock()
_wake = threading.Event()
_flusher: threading.Thread | None = None
_exit_hooks = False
_signals_done = False
_pid = os.getpid()


def _track(records: AuditRecords) -> None:
    global _flusher, _exit_hooks
    with _live_lock:
        _live.add(records)
        if not _exit_hooks:
            atexit.register(_flush_all_at_exit)
            _exit_hooks = True
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_loop, name="emdash-audit-flush", daemon=True)
            _flusher.start()
    _install_signal_handlers()


def _tracked(timeout: float = -1) -> list[AuditRecords]:
    # A signal handler may interrupt this thread inside _live_lock: never deadlock on it.
    if _live_lock.acquire(timeout=timeout):
        try:
            return list(_live)
        finally:
            _live_lock.release()
    try:
        return list(_live)
    except RuntimeError:  # changed size while copying; nothing better to do at exit
        return []


def _flush_loop() -> None:
    """Sleeps while every buffer is empty; otherwise checks twice per ``FLUSH_AFTER_S``."""
    while True:
        _wake.wait()
        _wake.clear()
        time.sleep(FLUSH_AFTER_S / 2)
        if _flush_due():
            _wake.set()


def _flush_due() -> bool:
    """Write buffers whose oldest record is older than their ``flush_after_s``, never
    waiting for the store lock; returns whether any buffer still holds records to age.
    (A function of its own, so no strong reference outlives the round.)"""
    busy = False
    for records in _tracked():
        if records.due():
            try:
                records.flush(wait=False)
                records._flush_failed = False
            except Exception as exc:  # the next round retries; say so once
                if not records._flush_failed:
                    log.warning("emdash: writing the audit log failed (will retry): %s", exc)
                records._flush_failed = True
        if records.flush_after_s is not None and records.pending():
            busy = True
    return busy


def _flush_all(timeout: float) -> None:
    if os.getpid() != _pid:
        return
    for records in _tracked(timeout):
        try:
            records.flush(timeout=timeout)
        except Exception as exc:
            log.warning("emdash: writing the audit log at exit failed: %s", exc)


def _flush_all_at_exit() -> None:
    _flush_all(EXIT_WAIT_S)


def _install_signal_handlers() -> None:
    """SIGTERM and SIGINT, each only while still at ``SIG_DFL`` (the host's own handler is
    left alone), only from the main thread (the only one that may), once per process."""
    global _signals_done
    if _signals_done or threading.current_thread() is not threading.main_thread():
        return
    _signals_done = True
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            if signal.getsignal(signum) == signal.SIG_DFL:
                signal.signal(signum, _flush_then_default)
        except (ValueError, OSError):  # an embedded interpreter without signal support
            pass


def _flush_then_default(signum: int, frame: FrameType | None) -> None:
    # Write what is buffered, then end exactly as the default action would have: restore
    # SIG_DFL and re-send, so the exit status still says "killed by this signal".
    _flush_all(EXIT_WAIT_S)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork_in_child() -> None:
    # Fresh locks too: another thread may have held one at the fork.
    global _live, _live_lock, _wake, _flusher, _pid
    _live = weakref.WeakSet()
    _live_lock = threading.Lock()
    _wake = threading.Event()
    _flusher = None
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _from_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "at": r["at"],
        "pluginId": r["plugin_id"],
        "kind": r["kind"],
        "name": r["name"],
        "outcome": r["outcome"],
        "durationMs": r["duration_ms"],
        "cpuMs": r["cpu_ms"],
        "limit": r["limit_name"],
        "error": r["error"],
        "logs": _logs(r.get("logs")),
    }


def _from_record(r: _Record) -> dict[str, Any]:
    at, pid, kind, name, outcome, duration, cpu, limit, error, logs = r
    return {
        "id": None,
        "at": at,
        "pluginId": pid,
        "kind": kind,
        "name": name,
        "outcome": outcome,
        "durationMs": duration,
        "cpuMs": cpu,
        "limit": limit,
        "error": error,
        "logs": _logs(logs),
    }


def _logs(text: Any) -> list[dict[str, str]]:
    """The stored log lines, ``[{"level", "message"}]`` (``[]``: none, or unreadable)."""
    if not isinstance(text, str):
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [
        {"level": str(i.get("level", "")), "message": str(i.get("message", ""))}
        for i in items
        if isinstance(i, dict)
    ]
