"""The plugin registry."""

from __future__ import annotations

import pytest

from emdash._shared._errors import BridgeError
from emdash._store import Store

from .conftest import Clock


def test_upsert_get_list_delete(store: Store, clock: Clock) -> None:
    assert store.plugin_registry.get("hello") is None
    rec = store.plugin_registry.upsert("hello", version="1.0.0", enabled=True, trusted=False)
    assert rec == {
        "id": "hello",
        "version": "1.0.0",
        "enabled": True,
        "trusted": False,
        "installedAt": "2026-11-22T05:33:24.123Z",
    }
    clock.advance(days=1)
    rec = store.plugin_registry.upsert("hello", version="1.1.0", enabled=False, trusted=True)
    assert rec == {
        "id": "hello",
        "version": "1.1.0",
        "enabled": False,
        "trusted": True,
        "installedAt": "2026-11-22T05:33:24.123Z",
    }
    store.plugin_registry.upsert("audit-log", version="0.1.0", enabled=True, trusted=True)
    assert [p["id"] for p in store.plugin_registry.list()] == ["audit-log", "hello"]
    assert store.plugin_registry.delete("hello") is True
    assert store.plugin_registry.delete("hello") is False
    assert store.plugin_registry.get("hello") is None


def test_invalid_plugin_id(store: Store) -> None:
    with pytest.raises(BridgeError, match="^Invalid plugin id"):
        store.plugin_registry.upsert("Bad Id", version="1.0.0", enabled=True, trusted=False)
