"""Site options (``_emdash_options``) and the plugin KV store built on them.

KV is *one* store for both plugin modes (EmDash keeps isolate KV in a different table, so a
plugin moved between modes lost its data, spec §4.2). A KV key ``k`` of plugin ``p`` is the
option row ``plugin:p:k``. Plugin ids cannot contain ``:`` (checked on every call), so the
prefix ``plugin:p:`` can never match a row of another plugin, whatever the key or list
prefix looks like: ``other:key`` is stored as ``plugin:p:other:key``.

Prefix listing is a literal prefix match, done as a half-open range on the primary key
(``%``, ``_`` and ``\\`` are ordinary characters, and upper/lower case differ).
"""

from __future__ import annotations

import builtins
from typing import Any

from .._shared._errors import BridgeError
from ._db import Db
from ._values import (
    MAX_OPTION_NAME_CHARS,
    check_key,
    check_plugin_id,
    decode_json,
    encode_json,
    prefix_bounds,
)

__all__ = ["KVEntries", "Options"]


class Options:
    """Named JSON values: site settings, exclusive-hook selections, plugin KV rows."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, name: str, default: Any = None) -> Any:
        name = check_key(name, what="name", limit=MAX_OPTION_NAME_CHARS)
        # scalar(), not row(): no dict per row on this hot path (every ctx.kv.get). The
        # column is NOT NULL, so None means "no such row".
        text = self._db.scalar("SELECT value FROM _emdash_options WHERE name = ?", (name,))
        return default if text is None else decode_json(text)

    def set(self, name: str, value: Any) -> None:
        name = check_key(name, what="name", limit=MAX_OPTION_NAME_CHARS)
        self._put(name, encode_json(value, what=f'Option "{name}"'))

    def _put(self, name: str, text: str) -> None:
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO _emdash_options (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (name, text, self._db.now()),
            )

    def delete(self, name: str) -> bool:
        name = check_key(name, what="name", limit=MAX_OPTION_NAME_CHARS)
        with self._db.transaction():
            return self._db.execute("DELETE FROM _emdash_options WHERE name = ?", (name,)) > 0

    def list(self, prefix: str = "") -> dict[str, Any]:
        """Every option whose name starts with ``prefix`` (literally), sorted by name."""
        return {row["name"]: decode_json(row["value"]) for row in self._prefixed(prefix)}

    def _prefixed(self, prefix: str) -> builtins.list[dict[str, Any]]:
        if type(prefix) is not str:
            raise BridgeError("Parameter prefix must be a string when provided")
        low, high = prefix_bounds(prefix)
        if high is None:
            return self._db.rows(
                "SELECT name, value FROM _emdash_options WHERE name >= ? ORDER BY name", (low,)
            )
        return self._db.rows(
            "SELECT name, value FROM _emdash_options WHERE name >= ? AND name < ? ORDER BY name",
            (low, high),
        )


class KVEntries:
    """Per-plugin key/value store: option rows named ``plugin:<pluginId>:<key>``."""

    def __init__(self, options: Options) -> None:
        self._options = options

    @staticmethod
    def _name(plugin_id: str, key: object) -> str:
        check_plugin_id(plugin_id)
        return f"plugin:{plugin_id}:{check_key(key, plugin_id=plugin_id)}"

    def get(self, plugin_id: str, key: str) -> Any:
        return self._options.get(self._name(plugin_id, key))

    def set(self, plugin_id: str, key: str, value: Any) -> None:
        name = self._name(plugin_id, key)
        self._options._put(
            name, encode_json(value, what=f'KV value for key "{key}"', plugin_id=plugin_id)
        )

    def delete(self, plugin_id: str, key: str) -> bool:
        return self._options.delete(self._name(plugin_id, key))

    def list(self, plugin_id: str, prefix: str | None = "") -> builtins.list[dict[str, Any]]:
        """``[{"key", "value"}]`` for this plugin's keys starting with ``prefix``, by key."""
        check_plugin_id(plugin_id)
        if prefix is None:
            prefix = ""
        if type(prefix) is not str:
            raise BridgeError(
                "Parameter prefix must be a string when provided", plugin_id=plugin_id
            )
        scope = f"plugin:{plugin_id}:"
        rows = self._options._prefixed(scope + prefix)
        return [
            {"key": row["name"][len(scope) :], "value": decode_json(row["value"])} for row in rows
        ]

    def delete_all(self, plugin_id: str) -> int:
        """Remove every KV row of the plugin (uninstall with deleteData)."""
        check_plugin_id(plugin_id)
        low, high = prefix_bounds(f"plugin:{plugin_id}:")
        db = self._options._db
        with db.transaction():
            return db.execute(
                "DELETE FROM _emdash_options WHERE name >= ? AND name < ?", (low, high)
            )
