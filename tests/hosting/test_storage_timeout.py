"""A hook whose timeout passes while the database holds it (another connection keeps the
write lock) fails as a StorageError, not as the plugin's HookTimeoutError: the plugin did
nothing wrong, and an operator must look at the database, not at the plugin.

Real parts: a file database, a second sqlite3 connection holding ``BEGIN IMMEDIATE`` (as
another process would), the native thread pool or a sandboxed worker. The busy timeout is
made longer than the hook's timeout, so the hook times out while its ``kv.set`` waits
(natively, the waiting caller sees the handler inside a store call; sandboxed, the host
call fails after the busy timeout and the worker is past its deadline). Either way the
verdict is the same whichever of the two limits the machine reaches first.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import HookConfig, HookTimeoutError, StorageError, define_plugin
from emdash._store import _db

PLUGIN = """
from emdash import define_plugin, HookConfig

def on_save(event, ctx):
    ctx.kv.set("seen", 1)

plugin = define_plugin(
    hooks={"content:beforeSave": HookConfig(on_save, timeout_ms=1500, error_policy="abort")},
)
"""
EVENT = {"content": {"title": "t"}, "collection": "posts", "isNew": True}


@pytest.fixture(params=["native", "sandboxed"])
def rt(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[emdash.Runtime]:
    # Read when the connection opens: the database holds a writer longer than the hook's
    # 1.5 s timeout before it gives up.
    monkeypatch.setattr(_db, "BUSY_TIMEOUT_S", 3.0)
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        runtime.add_plugin(
            {"id": "innocent", "capabilities": ["content:write"]},
            source={"plugin.py": PLUGIN},
            trusted=request.param == "native",
        )
        yield runtime


def test_a_hook_held_past_its_timeout_by_the_database_is_a_storage_failure(
    rt: emdash.Runtime, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "site.db", isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="^Storage failure") as info:
            rt.run_hook("content:beforeSave", dict(EVENT))
    finally:
        other.close()
    assert not isinstance(info.value, HookTimeoutError)
    assert info.value.plugin_id == "innocent"
    rows = [r for r in rt.store.audit_records.list(limit=10) if r["kind"] == "hook"]
    assert rows[0]["outcome"] == "error"
    assert rows[0]["error"].startswith("Storage failure")
    assert rt.store.kv_entries.get("innocent", "seen") is None  # rolled back


def test_a_hook_that_overruns_on_its_own_is_still_its_timeout(tmp_path: Path) -> None:
    def on_save(event: Any, ctx: Any) -> None:
        threading.Event().wait(3.0)  # its own wait, outside any store call

    hook = HookConfig(on_save, timeout_ms=1500, error_policy="abort")
    with emdash.Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(
            {"id": "sleeper", "capabilities": ["content:write"]},
            source=define_plugin(hooks={"content:beforeSave": hook}),
            trusted=True,
        )
        with pytest.raises(HookTimeoutError):
            rt.run_hook("content:beforeSave", dict(EVENT))
