"""The plugin registry: which plugins this database has seen, their version and state.

The runtime uses it to decide lifecycle events: a plugin id absent here is new
(``plugin:install`` then ``plugin:activate``); ``enabled`` drives activate/deactivate.
"""

from __future__ import annotations

from typing import Any

from ._db import Db
from ._values import check_plugin_id

__all__ = ["PluginRegistry"]


class PluginRegistry:
    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, plugin_id: str) -> dict[str, Any] | None:
        """``{"id", "version", "enabled", "trusted", "installedAt"}`` or None."""
        pid = check_plugin_id(plugin_id)
        row = self._db.row("SELECT * FROM _emdash_plugins WHERE id = ?", (pid,))
        return None if row is None else _shape(row)

    def upsert(
        self, plugin_id: str, *, version: str, enabled: bool, trusted: bool
    ) -> dict[str, Any]:
        """Insert or update; ``installedAt`` is set once, on first insert."""
        pid = check_plugin_id(plugin_id)
        now = self._db.now()
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO _emdash_plugins (id, version, enabled, trusted, installed_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "version = excluded.version, enabled = excluded.enabled, "
                "trusted = excluded.trusted, updated_at = excluded.updated_at",
                (pid, str(version), int(bool(enabled)), int(bool(trusted)), now, now),
            )
        found = self.get(pid)
        assert found is not None
        return found

    def delete(self, plugin_id: str) -> bool:
        pid = check_plugin_id(plugin_id)
        with self._db.transaction():
            return self._db.execute("DELETE FROM _emdash_plugins WHERE id = ?", (pid,)) > 0

    def list(self) -> list[dict[str, Any]]:
        return [_shape(r) for r in self._db.rows("SELECT * FROM _emdash_plugins ORDER BY id")]


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "version": row["version"],
        "enabled": bool(row["enabled"]),
        "trusted": bool(row["trusted"]),
        "installedAt": row["installed_at"],
    }
