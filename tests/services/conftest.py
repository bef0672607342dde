"""Fixtures for the service tests: a real Runtime on a real SQLite file, and trusted plugins
written to ``tmp_path`` that record every event they receive to a JSON-lines file."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash

HEADER = """\
import json
from emdash import HookConfig, define_plugin

_LOG = {log!r}


def record(tag, value=None):
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({{"tag": tag, "value": value}}) + "\\n")


"""


class RecordingPlugin:
    """A trusted plugin on disk and the events it recorded."""

    def __init__(self, plugin_id: str, log: Path) -> None:
        self.id = plugin_id
        self.log = log

    def records(self, tag: str | None = None) -> list[Any]:
        """``value`` of every record (with ``tag``, if given), in order."""
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r["value"] for r in rows if tag is None or r["tag"] == tag]

    def tags(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["tag"] for line in self.log.read_text().splitlines()]


class PluginFactory:
    def __init__(self, rt: emdash.Runtime, root: Path) -> None:
        self.rt = rt
        self.root = root

    def add(
        self,
        plugin_id: str,
        body: str,
        *,
        capabilities: list[str] | None = None,
        **descriptor: Any,
    ) -> RecordingPlugin:
        """Write ``body`` (after a header defining ``record(tag, value)``) as the plugin's
        entry module and add it to the runtime as a trusted plugin."""
        folder = self.root / "plugins" / plugin_id
        folder.mkdir(parents=True)
        log = folder / "events.jsonl"
        (folder / "plugin.py").write_text(HEADER.format(log=str(log)) + textwrap.dedent(body))
        self.rt.add_plugin(
            {"id": plugin_id, "version": "1.0.0", "capabilities": capabilities or [], **descriptor},
            source=str(folder / "plugin.py"),
            trusted=True,
        )
        return RecordingPlugin(plugin_id, log)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[emdash.Runtime]:
    runtime = emdash.Runtime(tmp_path / "site.db", media_dir=tmp_path / "media")
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
def plugins(rt: emdash.Runtime, tmp_path: Path) -> PluginFactory:
    return PluginFactory(rt, tmp_path)
