"""The modules that run on both sides of the process boundary: in the host, and inside
every sandbox worker.

A sandboxed plugin's worker cannot import emdash (imports need ``open``, which seccomp
refuses, and the host must not be reachable from plugin code anyway). The fork server is
handed the *source* of each module in this package and executes it once, as a "prelude",
before forking workers. So everything here runs next to hostile code and obeys one rule,
enforced by ``tests/shared/test_import_rule.py``: import only the standard library, each
other, ``sandbox._errors``, ``sandbox._jsonrule`` (the exact-JSON rule), and ``jsonschema`` (route input is validated in the worker,
under the plugin's own limits: see ``_route_input``). Nothing host-only (the store, the bridge, pydantic, httpx)
may be imported here, directly or through another module.

:func:`prelude_sources` is the one list of these modules: every ``_*.py`` file of this
directory, in an order in which each module's imports among them come first.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["PACKAGE", "prelude_sources", "shared_imports"]

PACKAGE = __name__
_HERE = Path(__file__).parent


def shared_imports(source: str) -> set[str]:
    """The sibling modules (``_name``) a module of this package imports, from its source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def prelude_sources() -> dict[str, str]:
    """``{"emdash._shared._name": source}`` for every module here, dependencies first."""
    sources = {p.stem: p.read_text(encoding="utf-8") for p in sorted(_HERE.glob("_*.py"))}
    sources.pop("__init__", None)
    ordered: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if f"{PACKAGE}.{name}" in ordered:
            return
        if name in path:
            raise ImportError(f"circular import among shared modules: {' -> '.join(path)}")
        for dep in sorted(shared_imports(sources[name]) & sources.keys()):
            visit(dep, (*path, name))
        ordered[f"{PACKAGE}.{name}"] = sources[name]

    for name in sources:
        visit(name, ())
    return ordered
