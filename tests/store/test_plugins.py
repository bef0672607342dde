"""The plugin registry."""

from __future__ import annotations

import pytest

from emdash._shared._errors import BridgeError, EmDashError
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


def test_a_pending_transition_is_recorded_with_the_change_and_cleared(store: Store) -> None:
    rec = store.plugin_registry.upsert(
        "seo", version="1", enabled=True, trusted=False, pending="install"
    )
    assert rec["pending"] == "install"
    store.plugin_registry.set_pending("seo", "activate")
    assert store.plugin_registry.get("seo") == {**rec, "pending": "activate"}
    store.plugin_registry.clear_pending("seo")
    assert store.plugin_registry.get("seo") == rec_without_pending(rec)
    # A plain upsert owes nothing.
    store.plugin_registry.set_pending("seo", "deactivate")
    assert "pending" not in store.plugin_registry.upsert(
        "seo", version="2", enabled=False, trusted=False
    )
    with pytest.raises(EmDashError, match="Unknown lifecycle transition 'purge'"):
        store.plugin_registry.set_pending("seo", "purge")


def rec_without_pending(rec: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in rec.items() if k != "pending"}
