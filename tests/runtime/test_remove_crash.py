"""A process killed (SIGKILL) in the middle of ``remove_plugin``: the removal is owed, and
the next process that adds the plugin finishes it (its owed hooks, then its data) before
installing it anew.

Mirrors ``test_lifecycle_crash.py``: the child is a real Python process on the same SQLite
file. The hook under test says so on stdout and then blocks, so the parent kills it exactly
there. For the last step (the data deletion after the uninstall hook returned) the parent
holds the database's write lock from its own connection, so the child cannot commit the
deletion: it is killed after its hook and before that commit, whatever the machine's speed.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from emdash import define_plugin
from emdash._runtime._runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = {"id": "life", "capabilities": ["content:read"]}

CHILD = textwrap.dedent(
    """
    import sys, threading
    from emdash import define_plugin
    from emdash._runtime._runtime import Runtime

    db, blocked, steps = sys.argv[1], sys.argv[2], sys.argv[3].split(",")

    def make(name):
        def handler(event, ctx):
            if name == blocked:
                print("in-hook", flush=True)
                threading.Event().wait()  # until SIGKILL
            if name + ":returns" == blocked:
                print("in-hook", flush=True)
                sys.stdin.readline()  # the parent holds the write lock once this returns
                print("returning", flush=True)
        return handler

    names = ("plugin:install", "plugin:activate", "plugin:deactivate", "plugin:uninstall")
    hooks = {n: make(n) for n in names}
    rt = Runtime(db)
    descriptor = {"id": "life", "capabilities": ["content:read"]}
    for step in steps:
        if step == "add":
            rt.add_plugin(descriptor, source=define_plugin(hooks=hooks), trusted=True)
            rt.store.kv_entries.set("life", "kept", 1)
            rt.cron.schedule("life", "nightly", "@daily")
        elif step == "disable":
            rt.disable_plugin("life")
        elif step == "remove":
            rt.remove_plugin("life")
        elif step == "remove-data":
            rt.remove_plugin("life", delete_data=True)
    print("finished", flush=True)
    """
)


def kill_inside(db: Path, blocked: str, steps: str) -> None:
    """Run the child until it is inside ``blocked``'s hook, then SIGKILL it.

    ``<hook>:returns``: the hook returns, but only after the parent took the database's
    write lock; the child is killed while the lock is still the parent's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), blocked, steps],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    holder: sqlite3.Connection | None = None
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "in-hook"
        if blocked.endswith(":returns"):
            holder = sqlite3.connect(db, isolation_level=None, timeout=30)
            holder.execute("BEGIN IMMEDIATE")
            child.stdin.write("go\n")
            child.stdin.flush()
            # The hook is returning, and the child's next commit waits for our lock
            # (for up to its busy timeout, far longer than the kill below takes).
            assert child.stdout.readline().strip() == "returning"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdout, child.stdin):
            if stream is not None:
                stream.close()
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    assert child.returncode == -signal.SIGKILL


def recording(calls: list[str], events: list[Any]) -> Any:
    def make(name: str) -> Any:
        def handler(event: Any, ctx: Any) -> None:
            calls.append(name.removeprefix("plugin:"))
            if name == "plugin:uninstall":
                events.append(event)

        return handler

    names = ("plugin:install", "plugin:activate", "plugin:deactivate", "plugin:uninstall")
    return define_plugin(hooks={n: make(n) for n in names})


@pytest.mark.parametrize(
    ("blocked", "steps", "owed", "then_fired", "data_deleted"),
    [
        # Killed inside remove_plugin's deactivate: deactivate and uninstall are owed.
        ("plugin:deactivate", "add,remove", "remove", ["deactivate", "uninstall"], False),
        ("plugin:deactivate", "add,remove-data", "remove-data", ["deactivate", "uninstall"], True),
        # Killed inside the uninstall hook: only uninstall is owed.
        ("plugin:uninstall", "add,remove", "uninstall", ["uninstall"], False),
        ("plugin:uninstall", "add,remove-data", "uninstall-data", ["uninstall"], True),
        # A disabled plugin owes no deactivate.
        ("plugin:uninstall", "add,disable,remove", "uninstall", ["uninstall"], False),
        # Killed after the uninstall hook returned, before the deletion committed.
        ("plugin:uninstall:returns", "add,remove-data", "uninstall-data", ["uninstall"], True),
    ],
)
def test_a_removal_cut_off_by_sigkill_is_finished_at_the_next_add(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    blocked: str,
    steps: str,
    owed: str,
    then_fired: list[str],
    data_deleted: bool,
) -> None:
    db = tmp_path / "site.db"
    kill_inside(db, blocked, steps)

    calls: list[str] = []
    events: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="emdash"), Runtime(db) as rt:
        # Reported at open, before anything adds the plugin.
        assert any(
            "life" in r.getMessage() and "removal was cut off" in r.getMessage()
            for r in caplog.records
        )
        record = rt.store.plugin_registry.get("life")
        assert record is not None
        assert record["pending"] == owed
        assert record["enabled"] is False
        rt.add_plugin(DESCRIPTOR, source=recording(calls, events), trusted=True)
        # The removal is finished, then the plugin is installed anew.
        assert calls == [*then_fired, "install", "activate"]
        assert events == [{"deleteData": data_deleted}]
        assert rt.get_plugin("life").enabled is True
        record = rt.store.plugin_registry.get("life")
        assert record is not None
        assert "pending" not in record
        # Cron tasks always go with a removal; KV only with deleteData.
        assert rt.cron.list("life") == []
        assert rt.store.kv_entries.get("life", "kept") == (None if data_deleted else 1)

    calls.clear()
    with Runtime(db) as rt:  # finished: a later boot owes nothing
        rt.add_plugin(DESCRIPTOR, source=recording(calls, events), trusted=True)
        assert calls == []


def test_a_finished_removal_leaves_nothing_owed(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    calls: list[str] = []
    events: list[Any] = []
    with Runtime(db) as rt:
        rt.add_plugin(DESCRIPTOR, source=recording(calls, events), trusted=True)
        rt.store.kv_entries.set("life", "kept", 1)
        rt.remove_plugin("life", delete_data=True)
        assert calls == ["install", "activate", "deactivate", "uninstall"]
        assert rt.store.plugin_registry.get("life") is None
        assert rt.store.kv_entries.get("life", "kept") is None
