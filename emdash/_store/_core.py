"""``Store``: every persisted thing of one emdash site, on one SQLite database."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import sqlite_utils

from .._shared._errors import EmDashError
from ._audit import AuditRecords
from ._comments import CommentRecords
from ._content import ContentItems
from ._cron import CronTasks
from ._db import Db, InvocationScope, RegistryNotices
from ._dialect import is_postgres_url
from ._media import LocalMediaStorage, MediaItems
from ._migrations import migrate
from ._options import KVEntries, Options
from ._plugin_storage import PluginDocuments
from ._plugins import PluginRegistry
from ._quotas import AuditRetention, QuotaPolicy, StoredQuota
from ._taxonomies import Taxonomies
from ._users import UserAccounts
from ._values import Locales

__all__ = ["Store", "default_media_dir"]

_T = TypeVar("_T")


#: Tables whose ULID ids order listings (or creation times): read at open to seed the ids.
ID_ORDERED_TABLES = (
    "_emdash_content",
    "_emdash_revisions",
    "_emdash_media",
    "_emdash_comments",
    "_emdash_users",
    "_emdash_taxonomy_defs",
    "_emdash_taxonomy_terms",
    "_emdash_cron_tasks",
)


def default_media_dir(database: str | os.PathLike[str]) -> Path:
    """Where a store keeps media bytes when no ``media_dir`` is configured.

    A file database gets ``<database>-media`` beside it (``site.db`` -> ``site.db-media``),
    named like SQLite's own ``-wal``/``-shm`` files so that copying ``site.db*`` copies the
    whole site. ``":memory:"`` gets a new temporary directory: its rows do not outlive the
    process, so neither need the bytes.
    """
    if is_postgres_url(database):
        raise EmDashError(
            'A PostgreSQL store needs media_dir (media_dir = "..." in emdash.toml): a '
            "directory every host of the site shares (a network or cluster file system "
            "mount), so that media uploaded on one host is readable on the others"
        )
    path = os.fsdecode(database)  # a bytes path too (Db accepts one)
    if path in (":memory:", ""):
        return Path(tempfile.mkdtemp(prefix="emdash-media-"))
    return Path(path + "-media")


class Store:
    """The site's database: options, plugin KV and storage, content, media, users,
    comments, taxonomies, cron tasks, the plugin registry and the audit log.

    ``database`` is a file path (WAL mode), ``":memory:"``, or a PostgreSQL URL
    (``postgresql://user@host:5432/site``: the shared store of several hosts, a pool of
    ``pool_size`` connections; the password from ``password``, the URL or ``PGPASSWORD``). ``media_dir`` is where
    uploaded media bytes live. When omitted it is :func:`default_media_dir`: for a file
    database the directory ``<database>-media`` next to it (``site.db`` ->
    ``site.db-media/``), kept like the database itself, so media rows and their bytes
    survive a restart together; for ``":memory:"`` a temporary directory removed at close
    (the rows die with the process too).
    ``clock`` returns the current time (tests pass a fixed clock). ``quotas`` are the
    per-plugin quotas (:class:`~emdash._store._quotas.QuotaPolicy`; defaults when omitted),
    ``audit_retention`` how long audit rows are kept, ``locales`` the site's locales
    (:class:`~emdash._store._values.Locales`; ``en`` only, any code accepted, when omitted).

    Thread-safe: one connection guarded by :attr:`lock`, which is only ever held for
    short transactions and single reads (never across a plugin invocation's waits). Use
    :meth:`transaction` to group writes, and let the runtime wrap each plugin invocation
    in :meth:`invocation`.
    ``db`` (the ``sqlite_utils.Database``) is for schema inspection and tests; statements
    run on it must hold :attr:`lock`.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] = ":memory:",
        *,
        media_dir: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        quotas: QuotaPolicy | None = None,
        audit_retention: AuditRetention | None = None,
        locales: Locales | None = None,
        pool_size: int | None = None,
        password: str | None = None,
    ) -> None:
        if is_postgres_url(database):
            # Imported here: psycopg is the optional 'postgres' extra.
            from ._pg import DEFAULT_POOL_SIZE, PgDb

            self._db: Db = PgDb(
                str(database),
                clock=clock,
                pool_size=pool_size or DEFAULT_POOL_SIZE,
                password=password,
            )
        else:
            self._db = Db(database, clock=clock)
        try:
            migrate(self._db)
            # Ids (and content creation times) continue after the largest one stored, so
            # a restart under a clock set back does not make new records list as older.
            self._db.seed_ids(ID_ORDERED_TABLES)
        except BaseException:
            self._db.close()
            raise
        #: The connection's lock: held for one read statement, or one short transaction
        #: (a host write, a speculative write of an invocation, an invocation's commit),
        #: never while a plugin invocation waits. Take it to run statements on :attr:`db`.
        self.lock = self._db.lock
        self.db: sqlite_utils.Database = self._db.sdb
        self.quotas = quotas or QuotaPolicy()
        self.stored_quota = StoredQuota(self._db, self.quotas)
        self.options = Options(self._db)
        self.kv_entries = KVEntries(self.options, self.stored_quota)
        self.plugin_documents = PluginDocuments(self._db, self.stored_quota)
        self.audit_records = AuditRecords(self._db)
        self.audit_records.retention = audit_retention or AuditRetention()
        self.plugin_registry = PluginRegistry(self._db)
        # The site's locales: the default and the spelling of every locale a write uses.
        self.locales = locales or Locales()
        self.content_items = ContentItems(self._db, self.locales)
        self.user_accounts = UserAccounts(self._db)
        # Only a temporary directory (an in-memory database's) is ours to remove at close.
        self._own_media_dir = media_dir is None and self._db.is_memory
        root = media_dir if media_dir is not None else default_media_dir(self._db.path)
        self.media_files = LocalMediaStorage(root)
        self.media_items = MediaItems(self._db, self.media_files)
        if not self._db.is_memory:
            try:
                # Files a killed process left without a row (never one being written).
                self.media_items.sweep_orphans()
            except BaseException:
                self._db.close()
                raise
        self.comment_records = CommentRecords(self._db)
        self.taxonomies = Taxonomies(self._db, self.locales)
        self.cron_tasks = CronTasks(self._db)

    # -- time and ids ------------------------------------------------------------------

    def now(self) -> str:
        """Current time as ``2026-11-22T05:33:24.123Z`` (UTC, milliseconds)."""
        return self._db.now()

    def new_id(self) -> str:
        """A new ULID (monotonic within this process)."""
        return self._db.new_id()

    # -- transactions ------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """Re-entrant: ``BEGIN IMMEDIATE``..``COMMIT``/``ROLLBACK``, savepoints when nested;
        holds :attr:`lock` throughout, so keep it short. Inside an :meth:`invocation` on this
        thread it is speculative instead: its writes join the invocation's log and commit
        with it (see ``docs/integrity.md``)."""
        return self._db.transaction()

    def invocation(
        self, plugin_id: str | None = None, operation: str | None = None
    ) -> AbstractContextManager[InvocationScope | None]:
        """Scope around one plugin invocation (``operation``: ``hook:<name>`` or
        ``route:<name>``): its reads are validated and its writes committed together, with
        its audit record, at a normal exit; nothing of it is kept after an exception or a
        :class:`~emdash.ConflictError`. The store is never locked between its calls (see
        ``docs/integrity.md``)."""
        return self._db.invocation(plugin_id, operation)

    def run_invocation(
        self,
        plugin_id: str,
        operation: str,
        run: Callable[[InvocationScope | None], _T],
        *,
        deadline: float | None = None,
        rerun: bool = True,
    ) -> _T:
        """``run`` inside :meth:`invocation`, re-run on a conflict when it had no effects
        outside the database (``rerun=False``: never), at most ``CONFLICT_RETRIES``
        times and never past ``deadline`` (``time.monotonic()``)."""
        if not rerun:
            with self._db.invocation(plugin_id, operation) as scope:
                return run(scope)
        return self._db.retrying(plugin_id, operation, run, deadline=deadline)

    def mark_effect(self) -> None:
        """The calling thread's invocation acted outside the database (HTTP, email): a
        conflict at its commit is then reported, never answered by re-running it."""
        self._db.mark_effect()

    def lifecycle_lock(self, plugin_id: str) -> AbstractContextManager[None]:
        """Held by a host while it decides and runs ``plugin_id``'s lifecycle transition
        (install, activate, deactivate): on a database several hosts share, they take
        turns, so a transition runs once per site, and again only if its host died."""
        return self._db.lifecycle_lock(plugin_id)

    def registry_notices(self) -> RegistryNotices | None:
        """What a host waits on for other hosts' changes of the plugin registry (PostgreSQL:
        a listener on a connection of its own; None on SQLite, where a host is alone)."""
        return self._db.registry_notices()

    def in_scope_here(self) -> bool:
        """Whether the calling thread is inside a store transaction or invocation scope.

        Work started from such a thread must stay on it: both are per thread. A transaction
        holds :attr:`lock`; an invocation scope holds no lock, but its read set and write
        log do, so work moved to another thread would escape it (its writes committed on
        their own, its reads never validated).
        """
        return self._db.in_scope_here()

    # -- lifetime ----------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.backend

    @property
    def closed(self) -> bool:
        return self._db.closed

    def close(self) -> None:
        """Flush the audit buffer and close the database. Idempotent."""
        if self._db.closed:
            return
        try:
            with self.lock:
                try:
                    self.audit_records.flush()
                finally:
                    # Closed whatever the flush did (a damaged or locked database must not
                    # leak the connection); the flush's StorageError is raised after.
                    self._db.close()
        finally:
            self.media_files.settle_all()
            if self._own_media_dir:
                shutil.rmtree(self.media_files.root, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
