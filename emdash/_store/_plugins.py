"""The plugin registry: which plugins this database has seen, their version and state.

The runtime uses it to decide lifecycle events: a plugin id absent here is new
(``plugin:install`` then ``plugin:activate``); ``enabled`` drives activate/deactivate.

Crash safety: a registry change that owes a lifecycle hook records that hook in
``pending`` in the same transaction (``upsert(..., pending="install")``), and
:meth:`PluginRegistry.clear_pending` clears it once the hook has run. A process killed in
between leaves the hook owed, and the runtime runs it when the plugin is next added. So a
lifecycle hook runs at least once per transition (twice only if the process dies after the
hook returned and before the clear committed).

Removal (``remove_plugin``) is a transition of its own, recorded before its first hook:
``remove`` (deactivate, then uninstall, still owed) or ``uninstall`` (only the uninstall
hook owed), with ``-data`` when the plugin's data goes with it. The data deletion and the
registry row's deletion then commit together, so a removal cut off anywhere is either
complete or still recorded here, and the runtime finishes it when the plugin is next added.

Consent (:mod:`emdash._runtime._consent`): ``approved`` holds the access the operator
approved (JSON ``{"capabilities", "allowedHosts"}``), written in the same commit as the
registry change that adds or upgrades the plugin; ``bundleSha256`` the digest of the
bundle the plugin came from.
"""

from __future__ import annotations

from typing import Any

from .._shared._errors import EmDashError
from ._db import Db
from ._values import check_plugin_id

__all__ = ["PENDING_TRANSITIONS", "REMOVAL_TRANSITIONS", "PluginRegistry"]

#: An owed removal: ``remove*`` still owes the deactivate hook, ``uninstall*`` only the
#: uninstall hook; ``-data`` means ``remove_plugin(..., delete_data=True)``.
REMOVAL_TRANSITIONS = ("remove", "remove-data", "uninstall", "uninstall-data")
PENDING_TRANSITIONS = ("install", "activate", "deactivate", *REMOVAL_TRANSITIONS)


class PluginRegistry:
    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, plugin_id: str) -> dict[str, Any] | None:
        """``{"id", "version", "enabled", "trusted", "installedAt"}`` or None; plus
        ``"pending"`` (the owed lifecycle transition) when one is owed, ``"approved"`` (the
        approval's JSON text) once recorded and ``"bundleSha256"`` for a bundle."""
        pid = check_plugin_id(plugin_id)
        row = self._db.row("SELECT * FROM _emdash_plugins WHERE id = ?", (pid,))
        return None if row is None else _shape(row)

    def upsert(
        self,
        plugin_id: str,
        *,
        version: str,
        enabled: bool,
        trusted: bool,
        pending: str | None = None,
        approved: str | None = None,
        bundle_sha256: str | None = None,
    ) -> dict[str, Any]:
        """Insert or update; ``installedAt`` is set once, on first insert. ``pending``
        records the lifecycle transition this change owes (see the module docstring).
        ``approved`` / ``bundle_sha256``: ``None`` keeps what is recorded."""
        pid = check_plugin_id(plugin_id)
        if pending is not None and pending not in PENDING_TRANSITIONS:
            raise EmDashError(
                f"Unknown lifecycle transition {pending!r}: use one of {PENDING_TRANSITIONS}"
            )
        now = self._db.now()
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO _emdash_plugins (id, version, enabled, trusted, installed_at, "
                "updated_at, pending, approved, bundle_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                "SET version = excluded.version, enabled = excluded.enabled, "
                "trusted = excluded.trusted, updated_at = excluded.updated_at, "
                "pending = excluded.pending, "
                "approved = COALESCE(excluded.approved, approved), "
                "bundle_sha256 = COALESCE(excluded.bundle_sha256, bundle_sha256)",
                (
                    pid,
                    str(version),
                    int(bool(enabled)),
                    int(bool(trusted)),
                    now,
                    now,
                    pending,
                    approved,
                    bundle_sha256,
                ),
            )
            self._db.announce_registry_change()
        found = self.get(pid)
        assert found is not None
        return found

    def set_pending(self, plugin_id: str, pending: str | None) -> None:
        """Record the lifecycle transition still owed (``None``: the owed hook has run,
        nothing is pending any more)."""
        pid = check_plugin_id(plugin_id)
        if pending is not None and pending not in PENDING_TRANSITIONS:
            raise EmDashError(
                f"Unknown lifecycle transition {pending!r}: use one of {PENDING_TRANSITIONS}"
            )
        with self._db.transaction():
            self._db.execute("UPDATE _emdash_plugins SET pending = ? WHERE id = ?", (pending, pid))

    def clear_pending(self, plugin_id: str) -> None:
        """The owed lifecycle hook has run: nothing is pending any more."""
        self.set_pending(plugin_id, None)

    def delete(self, plugin_id: str) -> bool:
        pid = check_plugin_id(plugin_id)
        with self._db.transaction():
            deleted = self._db.execute("DELETE FROM _emdash_plugins WHERE id = ?", (pid,)) > 0
            self._db.announce_registry_change()
            return deleted

    def list(self) -> list[dict[str, Any]]:
        return [_shape(r) for r in self._db.rows("SELECT * FROM _emdash_plugins ORDER BY id")]


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "version": row["version"],
        "enabled": bool(row["enabled"]),
        "trusted": bool(row["trusted"]),
        "installedAt": row["installed_at"],
    }
    if row.get("pending") is not None:
        out["pending"] = row["pending"]
    if row.get("approved") is not None:
        out["approved"] = row["approved"]
    if row.get("bundle_sha256") is not None:
        out["bundleSha256"] = row["bundle_sha256"]
    return out
