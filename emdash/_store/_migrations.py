"""The schema, as numbered migrations recorded in ``_emdash_migrations``.

Each migration is a function of the ``sqlite_utils.Database`` and runs in its own
``BEGIN IMMEDIATE`` transaction together with the row that records it, so a crash half way
leaves the database at the previous version, and two processes opening the same new file
cannot both apply a migration (the second waits, then sees it applied). Migrations are
append-only: never edit one that has shipped, add the next number.

Tables are created with sqlite-utils; the few things it cannot express (partial indexes,
CHECK constraints) are plain DDL with no interpolated values.

The same functions build a PostgreSQL database: there they are handed a
:class:`~emdash._store._dialect.PgSchema` (the same calls, emitted as PostgreSQL DDL), so
the schema has one source of truth. On PostgreSQL every migration transaction first takes
an advisory lock (``pg_advisory_xact_lock``): hosts starting together apply each migration
once, the others wait and then see it recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlite_utils

from .._shared._errors import EmDashError
from ._db import Db

__all__ = ["MIGRATIONS", "migrate"]

Migration = tuple[int, str, Callable[[sqlite_utils.Database], None]]


def _m1_core(db: sqlite_utils.Database) -> None:
    # Site options and plugin KV (rows named "plugin:<id>:<key>"): one store for both modes.
    db.table("_emdash_options").create(
        {"name": str, "value": str, "updated_at": str}, pk="name", not_null={"value"}
    )
    # Plugin document storage. The partial expression indexes declared by plugins are
    # created on this table by PluginStorage.sync_indexes and tracked in _plugin_indexes.
    db.table("_plugin_storage").create(
        {
            "plugin_id": str,
            "collection": str,
            "id": str,
            "data": str,
            "created_at": str,
            "updated_at": str,
        },
        pk=("plugin_id", "collection", "id"),
        not_null={"data", "created_at", "updated_at"},
    )
    db.table("_plugin_storage").create_index(
        ["plugin_id", "collection", "created_at", "id"], index_name="idx_plugin_storage_list"
    )
    db.table("_plugin_indexes").create(
        {
            "plugin_id": str,
            "collection": str,
            "index_name": str,
            "fields": str,
            "is_unique": int,
            "created_at": str,
        },
        pk=("plugin_id", "index_name"),
        not_null={"collection", "fields", "is_unique", "created_at"},
    )
    db.table("_emdash_audit").create(
        {
            "id": int,
            "at": str,
            "plugin_id": str,
            "kind": str,
            "name": str,
            "outcome": str,
            "duration_ms": float,
            "cpu_ms": float,
            "limit_name": str,
            "error": str,
        },
        pk="id",
        not_null={"at", "plugin_id", "kind", "name", "outcome", "duration_ms"},
    )
    db.table("_emdash_audit").create_index(
        ["plugin_id", "id"], index_name="idx_emdash_audit_plugin"
    )
    db.table("_emdash_plugins").create(
        {
            "id": str,
            "version": str,
            "enabled": int,
            "trusted": int,
            "installed_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"version", "enabled", "trusted", "installed_at", "updated_at"},
    )


def _m2_content_users(db: sqlite_utils.Database) -> None:
    db.table("_emdash_collections").create(
        {"name": str, "label": str, "created_at": str}, pk="name", not_null={"created_at"}
    )
    db.table("_emdash_content").create(
        {
            "id": str,
            "collection": str,
            "slug": str,
            "status": str,
            "data": str,
            "author_id": str,
            "locale": str,
            "version": int,
            "created_at": str,
            "updated_at": str,
            "published_at": str,
            "scheduled_at": str,
            "deleted_at": str,
        },
        pk="id",
        not_null={"collection", "status", "data", "locale", "version", "created_at", "updated_at"},
        foreign_keys=[("collection", "_emdash_collections", "name")],
    )
    db.table("_emdash_content").create_index(
        ["collection", "created_at", "id"], index_name="idx_emdash_content_list"
    )
    # Slugs are unique per collection and locale among items not in the trash.
    db.execute(
        "CREATE UNIQUE INDEX idx_emdash_content_slug ON _emdash_content (collection, locale, slug) "
        "WHERE slug IS NOT NULL AND deleted_at IS NULL"
    )
    db.execute(
        "CREATE INDEX idx_emdash_content_scheduled ON _emdash_content (scheduled_at) "
        "WHERE status = 'scheduled'"
    )
    now = db.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0]
    db.table("_emdash_collections").insert_all(
        [
            {"name": "posts", "label": "Posts", "created_at": now},
            {"name": "pages", "label": "Pages", "created_at": now},
        ]
    )
    db.table("_emdash_users").create(
        {
            "id": str,
            "email": str,
            "email_norm": str,
            "name": str,
            "role": int,
            "created_at": str,
        },
        pk="id",
        not_null={"email", "email_norm", "role", "created_at"},
    )
    db.table("_emdash_users").create_index(
        ["email_norm"], index_name="idx_emdash_users_email", unique=True
    )
    db.table("_emdash_users").create_index(["role", "id"], index_name="idx_emdash_users_role")


def _m3_media_comments_cron_taxonomies(db: sqlite_utils.Database) -> None:
    db.table("_emdash_media").create(
        {
            "id": str,
            "filename": str,
            "mime_type": str,
            "size": int,
            "storage_key": str,
            "status": str,
            "created_at": str,
        },
        pk="id",
        not_null={"filename", "mime_type", "storage_key", "status", "created_at"},
    )
    db.table("_emdash_media").create_index(
        ["storage_key"], index_name="idx_emdash_media_key", unique=True
    )
    db.table("_emdash_media").create_index(
        ["status", "mime_type", "id"], index_name="idx_emdash_media_list"
    )
    db.table("_emdash_comments").create(
        {
            "id": str,
            "collection": str,
            "content_id": str,
            "parent_id": str,
            "author_name": str,
            "author_email": str,
            "author_email_norm": str,
            "author_user_id": str,
            "body": str,
            "ip_hash": str,
            "user_agent": str,
            "status": str,
            "moderation_metadata": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={
            "collection",
            "content_id",
            "author_name",
            "body",
            "status",
            "created_at",
            "updated_at",
        },
    )
    db.table("_emdash_comments").create_index(
        ["collection", "content_id", "created_at"], index_name="idx_emdash_comments_content"
    )
    db.table("_emdash_comments").create_index(
        ["author_email_norm", "status"], index_name="idx_emdash_comments_author"
    )
    db.table("_emdash_cron_tasks").create(
        {
            "id": str,
            "plugin_id": str,
            "task_name": str,
            "schedule": str,
            "is_oneshot": int,
            "data": str,
            "next_run_at": str,
            "last_run_at": str,
            "status": str,
            "locked_at": str,
            "enabled": int,
            "created_at": str,
        },
        pk="id",
        not_null={
            "plugin_id",
            "task_name",
            "schedule",
            "is_oneshot",
            "next_run_at",
            "status",
            "enabled",
            "created_at",
        },
    )
    db.table("_emdash_cron_tasks").create_index(
        ["plugin_id", "task_name"], index_name="idx_emdash_cron_task", unique=True
    )
    db.table("_emdash_cron_tasks").create_index(
        ["enabled", "status", "next_run_at"], index_name="idx_emdash_cron_due"
    )
    db.table("_emdash_taxonomy_defs").create(
        {
            "id": str,
            "name": str,
            "label": str,
            "label_singular": str,
            "hierarchical": int,
            "collections": str,
            "locale": str,
            "translation_group": str,
            "created_at": str,
        },
        pk="id",
        not_null={"name", "label", "hierarchical", "collections", "locale", "created_at"},
    )
    db.table("_emdash_taxonomy_defs").create_index(
        ["name", "locale"], index_name="idx_emdash_taxonomy_defs_name", unique=True
    )
    db.table("_emdash_taxonomy_terms").create(
        {
            "id": str,
            "taxonomy": str,
            "slug": str,
            "label": str,
            "parent_id": str,
            "data": str,
            "locale": str,
            "translation_group": str,
            "sort_order": int,
            "created_at": str,
        },
        pk="id",
        not_null={
            "taxonomy",
            "slug",
            "label",
            "locale",
            "translation_group",
            "sort_order",
            "created_at",
        },
    )
    db.table("_emdash_taxonomy_terms").create_index(
        ["taxonomy", "slug", "locale"], index_name="idx_emdash_taxonomy_terms_slug", unique=True
    )
    db.table("_emdash_taxonomy_terms").create_index(
        ["translation_group"], index_name="idx_emdash_taxonomy_terms_group"
    )
    db.table("_emdash_content_taxonomies").create(
        {"collection": str, "entry_id": str, "term_group": str},
        pk=("collection", "entry_id", "term_group"),
    )


def _m4_cron_fair_claims(db: sqlite_utils.Database) -> None:
    # The executor claims due tasks round-robin across plugins: "the next plugin after X
    # with an idle due task" and "that plugin's oldest idle due task" are both seeks in
    # this index, so a tick costs the same whatever one plugin's backlog.
    db.table("_emdash_cron_tasks").create_index(
        ["enabled", "status", "plugin_id", "next_run_at", "id"],
        index_name="idx_emdash_cron_plugin_due",
    )


def _m5_plugin_usage_audit_retention(db: sqlite_utils.Database) -> None:
    # Per-plugin stored bytes/rows (kv + storage together), kept by triggers so every write
    # path counts and a rollback un-counts (emdash._store._quotas). The expressions are the
    # ones of _quotas.KV_* / DOC_BYTES, inlined: a shipped migration never changes.
    db.execute(
        "CREATE TABLE _emdash_plugin_usage (plugin_id TEXT PRIMARY KEY, "
        "bytes INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0)"
    )
    kv_pid = "substr({r}.name, 8, instr(substr({r}.name, 8), ':') - 1)"
    kv_bytes = (
        "(length(CAST({r}.name AS BLOB)) - 7 - instr(substr({r}.name, 8), ':') "
        "+ length(CAST({r}.value AS BLOB)))"
    )
    kv_row = (
        "({r}.name >= 'plugin:' AND {r}.name < 'plugin;' AND instr(substr({r}.name, 8), ':') > 1)"
    )
    doc_bytes = (
        "(length(CAST({r}.collection AS BLOB)) + length(CAST({r}.id AS BLOB)) "
        "+ length(CAST({r}.data AS BLOB)))"
    )

    def add(pid: str, size: str) -> str:
        return (
            f"INSERT INTO _emdash_plugin_usage (plugin_id, bytes, rows) VALUES ({pid}, {size}, 1) "
            "ON CONFLICT(plugin_id) DO UPDATE SET bytes = bytes + excluded.bytes, "
            "rows = rows + 1;"
        )

    def sub(pid: str, size: str) -> str:
        return (
            f"UPDATE _emdash_plugin_usage SET bytes = bytes - {size}, rows = rows - 1 "
            f"WHERE plugin_id = {pid};"
        )

    def trig(name: str, event: str, table: str, when: str | None, body: str) -> None:
        cond = f" WHEN {when}" if when else ""
        db.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table}{cond} BEGIN {body} END")

    new = {k: v.format(r="NEW") for k, v in (("p", kv_pid), ("b", kv_bytes), ("w", kv_row))}
    old = {k: v.format(r="OLD") for k, v in (("p", kv_pid), ("b", kv_bytes), ("w", kv_row))}
    trig("_emdash_usage_kv_ins", "INSERT", "_emdash_options", new["w"], add(new["p"], new["b"]))
    trig("_emdash_usage_kv_del", "DELETE", "_emdash_options", old["w"], sub(old["p"], old["b"]))
    # An overwrite (same row, new value: every upsert) is one UPDATE of the counter; any
    # other update is a delete of the old row and an insert of the new one (either may be
    # a KV row or not), two triggers since a trigger has one WHEN.
    same = f"NEW.name = OLD.name AND {new['w']}"
    moved = "NEW.name IS NOT OLD.name"
    grow = f"{new['b']} - {old['b']}"
    trig(
        "_emdash_usage_kv_upd",
        "UPDATE",
        "_emdash_options",
        same,
        f"UPDATE _emdash_plugin_usage SET bytes = bytes + {grow} WHERE plugin_id = {new['p']};",
    )
    trig(
        "_emdash_usage_kv_upd_old",
        "UPDATE",
        "_emdash_options",
        f"{moved} AND {old['w']}",
        sub(old["p"], old["b"]),
    )
    trig(
        "_emdash_usage_kv_upd_new",
        "UPDATE",
        "_emdash_options",
        f"{moved} AND {new['w']}",
        add(new["p"], new["b"]),
    )
    nd, od = doc_bytes.format(r="NEW"), doc_bytes.format(r="OLD")
    trig("_emdash_usage_doc_ins", "INSERT", "_plugin_storage", None, add("NEW.plugin_id", nd))
    trig("_emdash_usage_doc_del", "DELETE", "_plugin_storage", None, sub("OLD.plugin_id", od))
    trig(
        "_emdash_usage_doc_upd",
        "UPDATE",
        "_plugin_storage",
        "NEW.plugin_id = OLD.plugin_id",
        f"UPDATE _emdash_plugin_usage SET bytes = bytes + {nd} - {od} "
        "WHERE plugin_id = NEW.plugin_id;",
    )
    trig(
        "_emdash_usage_doc_move",
        "UPDATE",
        "_plugin_storage",
        "NEW.plugin_id IS NOT OLD.plugin_id",
        sub("OLD.plugin_id", od) + " " + add("NEW.plugin_id", nd),
    )
    # What is stored already counts from the start (nothing is dropped for it).
    db.execute(
        "INSERT INTO _emdash_plugin_usage (plugin_id, bytes, rows) "
        "SELECT pid, SUM(b), COUNT(*) FROM ("
        f"SELECT {kv_pid.format(r='o')} AS pid, {kv_bytes.format(r='o')} AS b "
        f"FROM _emdash_options o WHERE {kv_row.format(r='o')} "
        f"UNION ALL SELECT s.plugin_id, {doc_bytes.format(r='s')} FROM _plugin_storage s"
        ") GROUP BY pid"
    )
    # Audit retention deletes by age through this index (emdash._store._audit).
    db.execute("CREATE INDEX idx_emdash_audit_at ON _emdash_audit (at)")


def _m6_content_revisions(db: sqlite_utils.Database) -> None:
    # What a collection supports (a JSON array such as ["drafts", "revisions"]); existing
    # collections support nothing extra, so their updates keep writing the item directly.
    db.execute("ALTER TABLE _emdash_collections ADD COLUMN supports TEXT NOT NULL DEFAULT '[]'")
    # The revision an item's live data came from, and the pending draft revision (if any).
    db.execute("ALTER TABLE _emdash_content ADD COLUMN live_revision_id TEXT")
    db.execute("ALTER TABLE _emdash_content ADD COLUMN draft_revision_id TEXT")
    # Snapshots of an item's fields (and slug): drafts staged over a published item, and the
    # versions that were published. Deleting an item for good deletes its revisions.
    db.execute(
        "CREATE TABLE _emdash_revisions (id TEXT PRIMARY KEY, collection TEXT NOT NULL, "
        "entry_id TEXT NOT NULL, data TEXT NOT NULL, slug TEXT, author_id TEXT, "
        "created_at TEXT NOT NULL, "
        "FOREIGN KEY (collection) REFERENCES _emdash_collections (name))"
    )
    db.execute(
        "CREATE INDEX idx_emdash_revisions_entry ON _emdash_revisions "
        "(collection, entry_id, created_at)"
    )


def _m7_plugin_pending_lifecycle(db: sqlite_utils.Database) -> None:
    # The lifecycle transition recorded with a registry change whose hook has not yet
    # completed ('install', 'activate' or 'deactivate'); NULL when none is owed. A crash
    # between the registry commit and the hook leaves it set, and the next add_plugin of
    # that id runs the hook (emdash._runtime._runtime).
    db.execute("ALTER TABLE _emdash_plugins ADD COLUMN pending TEXT")


def _m8_versions(db: sqlite_utils.Database) -> None:
    # Optimistic concurrency (emdash._store._db): one version per scope a write changes
    # (a row such as kv/<plugin>/<key>, a namespace such as kv/<plugin>, a table t/<name>).
    # An invocation validates at commit that what it read still has the versions it saw.
    # A scope never written has no row (version 0).
    db.execute(
        "CREATE TABLE _emdash_versions (scope TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )


def _m9_plugin_consent(db: sqlite_utils.Database) -> None:
    # The access the operator approved for a plugin ({"capabilities", "allowedHosts"} as
    # JSON; NULL for a row from before consent existed) and the sha256 of the bundle it was
    # installed or upgraded from (NULL for a directory). emdash._runtime._consent compares
    # every load against the approval.
    db.execute("ALTER TABLE _emdash_plugins ADD COLUMN approved TEXT")
    db.execute("ALTER TABLE _emdash_plugins ADD COLUMN bundle_sha256 TEXT")


def _m10_audit_logs(db: sqlite_utils.Database) -> None:
    # The log lines of the invocation an audit row describes, as JSON text
    # ([{"level", "message"}], bounded by emdash._bridge._invocation_logs); NULL: none.
    db.execute("ALTER TABLE _emdash_audit ADD COLUMN logs TEXT")


MIGRATIONS: list[Migration] = [
    (1, "core: options, plugin storage and indexes, audit log, plugin registry", _m1_core),
    (2, "content collections and items, users", _m2_content_users),
    (3, "media, comments, cron tasks, taxonomies", _m3_media_comments_cron_taxonomies),
    (4, "cron tasks: index for claims fair across plugins", _m4_cron_fair_claims),
    (
        5,
        "per-plugin stored usage counters (triggers); audit index by time",
        _m5_plugin_usage_audit_retention,
    ),
    (6, "content revisions: collection supports, draft and live revisions", _m6_content_revisions),
    (7, "plugin registry: pending lifecycle transition", _m7_plugin_pending_lifecycle),
    (8, "optimistic concurrency: scope versions", _m8_versions),
    (9, "plugin registry: approved access, bundle digest", _m9_plugin_consent),
    (10, "audit log: the invocation's log lines", _m10_audit_logs),
]


def migrate(db: Db, migrations: list[Migration] | None = None) -> list[int]:
    """Apply every migration not yet recorded; returns the numbers applied."""
    migrations = MIGRATIONS if migrations is None else migrations
    known = max((n for n, _, _ in migrations), default=0)
    with db.raw_transaction():
        db.lock_migrations()
        db.execute(
            "CREATE TABLE IF NOT EXISTS _emdash_migrations "
            "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        db.prepare_schema()
    applied: list[int] = []
    for number, name, apply in sorted(migrations, key=lambda m: m[0]):
        with db.raw_transaction():
            db.lock_migrations()
            # Re-read inside the write transaction: another process may have just applied it.
            newest = db.scalar("SELECT MAX(id) FROM _emdash_migrations") or 0
            if newest > known:
                raise EmDashError(
                    f"This database was written by a newer emdash (schema migration {newest}; "
                    f"this version knows up to {known}). Upgrade emdash to open it."
                )
            if db.scalar("SELECT 1 FROM _emdash_migrations WHERE id = ?", (number,)):
                continue
            schema: Any = db.schema()
            apply(schema)
            db.execute(
                "INSERT INTO _emdash_migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (number, name, db.now()),
            )
            applied.append(number)
    db.versioned = bool(
        db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_emdash_versions'")
    )
    return applied
