"""Fixtures for the tests of ``emdash.testing``: real plugin directories and process scans.

``pytester`` runs inner pytest sessions, which is how the fixtures of the emdash pytest
plugin are proven to work from a test suite that is not ours.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HELLO = EXAMPLES / "hello"

WritePlugin = Callable[..., Path]


@pytest.fixture
def write_plugin(tmp_path: Path) -> WritePlugin:
    """``write_plugin(id, source, capabilities=[...], storage="...toml...")`` -> plugin dir.

    Writes a real plugin directory (``emdash-plugin.toml`` + ``plugin.py``), the shape a
    plugin author's repository has.
    """

    def write(
        plugin_id: str, source: str, *, capabilities: list[str] | None = None, extra: str = ""
    ) -> Path:
        directory = tmp_path / "plugins" / plugin_id
        directory.mkdir(parents=True)
        caps = ", ".join(f'"{c}"' for c in capabilities or [])
        (directory / "emdash-plugin.toml").write_text(
            f'id = "{plugin_id}"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
            f"capabilities = [{caps}]\n{textwrap.dedent(extra)}",
            encoding="utf-8",
        )
        (directory / "plugin.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return directory

    return write


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, None once it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[19]


def descendants() -> dict[int, str]:
    """``{pid: start time}`` of every live process below this one (workers included:
    they are children of the fork server, which is ours)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (found := _stat(int(name))) is not None:
            parents.setdefault(found[0], []).append(int(name))
            starts[int(name)] = found[1]
    out: dict[int, str] = {}
    todo = [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def still_running(processes: dict[int, str]) -> list[int]:
    """The pids of ``processes`` that still run as the same process (start time checked,
    so a recycled pid does not count)."""
    return [
        pid
        for pid, start in processes.items()
        if (found := _stat(pid)) is not None and found[1] == start
    ]


@pytest.fixture(name="descendants")
def descendants_fixture() -> Callable[[], dict[int, str]]:
    return descendants


@pytest.fixture(name="still_running")
def still_running_fixture() -> Callable[[dict[int, str]], list[int]]:
    return still_running
