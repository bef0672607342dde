"""``emdash check PATH``: would this plugin load in the sandbox?

Checks, in order, and reports every problem found rather than the first one:

1. the descriptor (``emdash-plugin.toml``) is valid;
2. the code can be located and its source is at most 1 MB (the sandbox's per-plugin cap);
3. every file compiles under the sandbox's restricted compiler; each refusal is listed as
   ``file:line: message``.

Nothing is executed: compiling restricted code runs none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._bridge._hosts import unreachable_allowed_hosts
from .._hosting._loader import locate, sandbox_files
from .._model._descriptor import PluginDescriptor
from .._shared._errors import EmDashError

__all__ = ["MAX_SOURCE_BYTES", "check_plugin"]

# The sandbox's own cap (sandbox.compile_bundle), reported here up front.
MAX_SOURCE_BYTES = 1_000_000


def check_plugin(path: Path) -> dict[str, Any]:
    """Return ``{"ok", "id", "version", "files", "bytes", "errors": [str], "warnings": [str]}``."""
    report: dict[str, Any] = {
        "ok": False,
        "path": str(path),
        "id": None,
        "version": None,
        "files": 0,
        "bytes": 0,
        "errors": [],
        "warnings": [],
    }
    errors: list[str] = report["errors"]
    try:
        descriptor = PluginDescriptor.from_file(path)
    except EmDashError as exc:
        errors.append(f"{_descriptor_file(path)}: {exc.message}")
        return report
    report["id"] = descriptor.id
    report["version"] = descriptor.version
    # allowedHosts entries no request can ever reach (valid descriptor, useless entry).
    report["warnings"].extend(
        f"{_descriptor_file(path)}: warning: {line}"
        for line in unreachable_allowed_hosts(descriptor.allowed_hosts)
    )
    try:
        files, _entry = sandbox_files(locate(descriptor), descriptor.id)
    except EmDashError as exc:
        errors.append(f"{_descriptor_file(path)}: {exc.message}")
        return report
    size = sum(len(text.encode("utf-8")) for text in files.values())
    report["files"] = len(files)
    report["bytes"] = size
    errors.extend(_compile_errors(files))
    report["ok"] = not errors
    return report


def _compile_errors(files: dict[str, str]) -> list[str]:
    from sandbox import CompileError, compile_bundle

    try:
        compile_bundle(files, max_bytes=MAX_SOURCE_BYTES)
    except CompileError as exc:
        return list(exc.errors) or [str(exc)]
    return []


def _descriptor_file(path: Path) -> Path:
    return path / "emdash-plugin.toml" if path.is_dir() else path
