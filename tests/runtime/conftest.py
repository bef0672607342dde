"""A real Runtime on a tmp_path SQLite file, and a helper that adds native plugins.

Handlers are plain functions defined in the tests (closures that record what they saw), put
into real plugins with ``define_plugin`` and run by the real native host: inline on the
calling thread, timeouts (one watchdog thread), ``store.invocation()`` scopes, bridge-backed
``ctx``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emdash import define_plugin
from emdash._runtime._plugin_info import PluginInfo
from emdash._runtime._runtime import Runtime

AddPlugin = Callable[..., PluginInfo]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "site.db"


@pytest.fixture
def rt(db_path: Path) -> Iterator[Runtime]:
    with Runtime(db_path) as runtime:
        yield runtime


@pytest.fixture
def add(rt: Runtime) -> AddPlugin:
    """``add(pid, hooks={...}, routes={...}, capabilities=[...], **descriptor fields)``."""

    def add_plugin(
        pid: str,
        *,
        hooks: dict[str, Any] | None = None,
        routes: dict[str, Any] | None = None,
        capabilities: list[str] | tuple[str, ...] = (),
        enabled: bool | None = None,
        **descriptor: Any,
    ) -> PluginInfo:
        return rt.add_plugin(
            {"id": pid, "capabilities": list(capabilities), **descriptor},
            source=define_plugin(hooks=hooks or {}, routes=routes or {}),
            trusted=True,
            enabled=enabled,
        )

    return add_plugin
