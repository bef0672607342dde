"""A process killed (SIGKILL) between a registry change and its lifecycle hook: the hook
is owed, and the next process that adds the plugin runs it, once.

The child is a real Python process on the same SQLite file. Its hook for the transition
under test says so on stdout and then blocks, so the parent kills it exactly between the
registry commit and the hook's completion.
"""

from __future__ import annotations

import os
import signal
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
        return handler

    hooks = {n: make(n) for n in ("plugin:install", "plugin:activate", "plugin:deactivate")}
    rt = Runtime(db)
    descriptor = {"id": "life", "capabilities": ["content:read"]}
    for step in steps:
        if step == "add":
            rt.add_plugin(descriptor, source=define_plugin(hooks=hooks), trusted=True)
        elif step == "add-disabled":
            rt.add_plugin(
                descriptor, source=define_plugin(hooks=hooks), trusted=True, enabled=False
            )
        elif step == "enable":
            rt.enable_plugin("life")
        elif step == "disable":
            rt.disable_plugin("life")
    print("finished", flush=True)
    """
)


def kill_inside(db: Path, blocked: str, steps: str) -> None:
    """Run the child until it is inside ``blocked``'s hook, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), blocked, steps],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in-hook"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def recording(calls: list[str]) -> Any:
    def make(name: str) -> Any:
        return lambda event, ctx: calls.append(name.removeprefix("plugin:"))

    names = ("plugin:install", "plugin:activate", "plugin:deactivate")
    return define_plugin(hooks={n: make(n) for n in names})


@pytest.mark.parametrize(
    ("blocked", "steps", "owed", "then_fired", "enabled"),
    [
        # Killed inside plugin:install of a first add: install, then activate, are owed.
        ("plugin:install", "add", "install", ["install", "activate"], True),
        # Killed inside plugin:activate right after install: only activate is owed.
        ("plugin:activate", "add", "activate", ["activate"], True),
        # Killed inside enable_plugin's activate.
        ("plugin:activate", "add-disabled,enable", "activate", ["activate"], True),
        # Killed inside disable_plugin's deactivate: the disable completes.
        ("plugin:deactivate", "add,disable", "deactivate", ["deactivate"], False),
    ],
)
def test_a_transition_cut_off_by_sigkill_completes_at_the_next_add(
    tmp_path: Path,
    blocked: str,
    steps: str,
    owed: str,
    then_fired: list[str],
    enabled: bool,
) -> None:
    db = tmp_path / "site.db"
    kill_inside(db, blocked, steps)

    calls: list[str] = []
    with Runtime(db) as rt:
        record = rt.store.plugin_registry.get("life")
        assert record is not None
        assert record["pending"] == owed
        rt.add_plugin(DESCRIPTOR, source=recording(calls), trusted=True)
        assert calls == then_fired
        assert rt.get_plugin("life").enabled is enabled
        record = rt.store.plugin_registry.get("life")
        assert record is not None
        assert "pending" not in record
        assert record["enabled"] is enabled

    calls.clear()
    with Runtime(db) as rt:  # completed: a later boot owes nothing
        rt.add_plugin(DESCRIPTOR, source=recording(calls), trusted=True)
        assert calls == []


def test_an_owed_activate_is_dropped_when_the_plugin_is_added_disabled(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    kill_inside(db, "plugin:activate", "add-disabled,enable")
    calls: list[str] = []
    with Runtime(db) as rt:
        rt.add_plugin(DESCRIPTOR, source=recording(calls), trusted=True, enabled=False)
        # It never activated, so there is nothing to deactivate.
        assert calls == []
        record = rt.store.plugin_registry.get("life")
        assert record is not None
        assert "pending" not in record
        assert record["enabled"] is False
