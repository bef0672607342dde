"""emdash/_shared runs inside hostile sandbox workers: its import rule, and the prelude list.

The fork server executes these modules from source before it forks workers; a module that
pulled in a host-only dependency (the store, httpx, pydantic) would either fail there or,
worse, place host machinery next to plugin code. So the rule is structural and checked
here: standard library, sibling shared modules, ``sandbox._errors``, and ``jsonschema`` for
route input (validated in the worker, under the plugin's limits).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import emdash._shared as shared
from emdash._shared import prelude_sources, shared_imports

SHARED_DIR = Path(shared.__file__).parent
MODULES = sorted(p for p in SHARED_DIR.glob("_*.py") if p.name != "__init__.py")
# jsonschema is the one third-party exception, for one reason: a sandboxed plugin's route
# input is validated inside its worker, under its own limits (see _route_input's
# docstring: a hostile schema could stall the host). The fork server preloads it.
# sandbox._jsonrule states the exact-JSON rule that every boundary applies (stdlib only).
# sandbox._print holds the sink sandboxed print() output goes to (stdlib only).
ALLOWED_NON_STDLIB = {"sandbox._errors", "sandbox._jsonrule", "sandbox._print", "jsonschema"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, dotted name) of every import statement in a module, nested ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((0, node.module or ""))
            else:
                base = node.module or ""
                found.extend(
                    (node.level, f"{base}.{a.name}" if not base else base) for a in node.names
                )
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_shared_modules_import_only_stdlib_siblings_and_sandbox_errors(path: Path) -> None:
    for level, name in _imports(path):
        if level == 1:
            sibling = name.split(".")[0]
            assert (SHARED_DIR / f"{sibling}.py").is_file(), f"{path.name}: .{name} is not shared"
            continue
        assert level == 0, f"{path.name} reaches outside emdash/_shared: {'.' * level}{name}"
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name in ALLOWED_NON_STDLIB, (
            f"{path.name} imports {name}: shared modules run inside sandbox workers and may "
            "import only the standard library, each other, sandbox._errors, sandbox._jsonrule "
            "and jsonschema"
        )


def test_the_prelude_list_is_every_shared_module() -> None:
    names = list(prelude_sources())
    assert sorted(names) == sorted(f"emdash._shared.{p.stem}" for p in MODULES)


def test_preludes_come_after_the_shared_modules_they_import() -> None:
    order = [name.rpartition(".")[2] for name in prelude_sources()]
    for position, name in enumerate(order):
        deps = shared_imports((SHARED_DIR / f"{name}.py").read_text(encoding="utf-8"))
        assert deps <= set(order[:position]), (
            f"{name} is listed before {deps - set(order[:position])}"
        )


def test_a_circular_import_among_shared_modules_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "_a.py").write_text("from ._b import x\n")
    (tmp_path / "_b.py").write_text("from ._a import y\n")
    monkeypatch.setattr(shared, "_HERE", tmp_path)
    with pytest.raises(ImportError, match="circular import among shared modules"):
        prelude_sources()


def test_the_sandbox_host_configures_exactly_these_preludes() -> None:
    from emdash._hosting import _sandboxed

    assert _sandboxed.prelude_sources is prelude_sources
