"""build_preludes and load_bundle: trusted host modules, and plugin bundles with fresh state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sandbox import SandboxError, SandboxViolation
from sandbox._compiler import compile_bundle
from sandbox._guards import PluginModule
from sandbox._loader import Preludes, build_preludes, load_bundle
from stdlib_shims import Facade

ROOT = Path(__file__).resolve().parents[2]
EMPTY = build_preludes({}, {})

PKG_ERRORS = """
class AppError(Exception):
    pass
"""

PKG_MODELS = """
from __future__ import annotations

from dataclasses import dataclass

from ._errors import AppError
from . import _errors as errors_module
import pkg._errors as absolute_errors
import json

__all__ = ["Item", "make", "AppError"]


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    size: int = 0


def make(name):
    if not name:
        raise AppError("empty name")
    return Item(name, len(json.dumps(name)))


SAME = errors_module is absolute_errors and errors_module.AppError is AppError
"""


def build() -> Preludes:
    return build_preludes(
        {"pkg._errors": PKG_ERRORS, "pkg.models": PKG_MODELS}, {"pkg": "pkg.models"}
    )


# -- preludes -------------------------------------------------------------------------


def test_preludes_execute_with_imports_resolved_inside_the_set() -> None:
    preludes = build()
    models = preludes.get("pkg.models")
    errors = preludes.get("pkg._errors")
    assert models.AppError is errors.AppError
    assert models.SAME is True
    assert models.make("ab") == models.Item("ab", 4)
    # Synthesised parent package, holding its loaded submodules.
    assert preludes.get("pkg").models is models
    assert preludes.names == ["pkg", "pkg._errors", "pkg.models"]
    assert "pkg.models" in preludes and "nope" not in preludes


def test_preludes_are_not_left_in_sys_modules() -> None:
    build()
    assert "pkg.models" not in sys.modules
    assert "pkg._errors" not in sys.modules
    assert "pkg" not in sys.modules


def test_preludes_run_with_the_real_builtins() -> None:
    preludes = build_preludes({"trusted": "import os\nSEP = os.sep\nOPEN = open\n"}, {})
    trusted = preludes.get("trusted")
    assert trusted.SEP == "/"
    assert trusted.OPEN is open


def test_each_build_executes_fresh_modules() -> None:
    assert build().get("pkg.models") is not build().get("pkg.models")


def test_missing_prelude_lookup_says_what_exists() -> None:
    with pytest.raises(KeyError) as info:
        build().get("pkg.nope")
    assert (
        info.value.args[0]
        == 'No prelude module named "pkg.nope" (known: pkg, pkg._errors, pkg.models)'
    )


def test_exposed_facade_holds_exactly_all() -> None:
    facade = build().exposed["pkg"]
    assert isinstance(facade, Facade)
    assert repr(facade) == "<sandboxed module 'pkg'>"
    module = load_bundle(
        compile_bundle(
            {
                "plugin.py": "from pkg import make, AppError\nimport pkg\nr = [make('x').name, pkg.Item('y').size]\n"
            }
        ),
        "plugin",
        preludes=build(),
    )
    assert module.r == ["x", 0]


@pytest.mark.parametrize(
    ("sources", "expose", "message"),
    [
        ({"bad name": "x = 1"}, {}, "Invalid prelude module name 'bad name'"),
        ({"m": b"x = 1"}, {}, 'Prelude "m" must be given as source text (str)'),
        (
            {"m": "raise RuntimeError('nope')"},
            {},
            'Prelude module "m" failed to load: RuntimeError: nope',
        ),
        (
            {"m": "def ("},
            {},
            'Prelude module "m" failed to load: SyntaxError: invalid syntax (<prelude m>, line 1)',
        ),
        (
            {"m": "x = 1"},
            {"m2": "other"},
            'Exposed module "m2" refers to "other", which is not a prelude',
        ),
        (
            {"m": "x = 1"},
            {"m2": "m"},
            'Prelude "m" must define __all__ (a list of names) to be exposed',
        ),
        (
            {"m": "__all__ = ['x', 'y']\nx = 1"},
            {"m2": "m"},
            'Prelude "m" lists undefined names in __all__: y',
        ),
        (
            {"m": "__all__ = []"},
            {"json": "m"},
            'Exposed module "json" would shadow the sandboxed standard-library module of that name',
        ),
        (
            {"m": "__all__ = []"},
            {"_m": "m"},
            "Invalid exposed module name '_m': use a public identifier",
        ),
    ],
)
def test_bad_prelude_configuration_is_refused(
    sources: dict[str, object], expose: dict[str, str], message: str
) -> None:
    with pytest.raises(SandboxError) as info:
        build_preludes(sources, expose)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_the_real_plugin_api_runs_as_a_prelude() -> None:
    # The interface the worker uses: emdash's shared modules shipped as source text.
    names = ("_errors", "_hooks_catalog", "_plugin_api")
    sources = {
        f"emdash._shared.{n}": (ROOT / "emdash" / "_shared" / f"{n}.py").read_text() for n in names
    }
    preludes = build_preludes(sources, {"emdash": "emdash._shared._plugin_api"})
    module = load_bundle(
        compile_bundle(
            {
                "plugin.py": "from emdash import define_plugin, HookConfig\n"
                "def on_save(event, ctx):\n    return event\n"
                "plugin = define_plugin(hooks={'content:afterSave': HookConfig(handler=on_save, priority=5)})\n"
            }
        ),
        "plugin.py",
        preludes=preludes,
    )
    definition = module.plugin
    assert type(definition) is preludes.get("emdash._shared._plugin_api").PluginDefinition
    assert definition.hooks["content:afterSave"].priority == 5


# -- bundles --------------------------------------------------------------------------


def test_entry_may_be_a_module_name_or_a_bundle_path() -> None:
    code = compile_bundle({"plugin.py": "x = 1\n", "pkg/main.py": "y = 2\n"})
    assert load_bundle(code, "plugin", preludes=EMPTY).x == 1
    assert load_bundle(code, "plugin.py", preludes=EMPTY).x == 1
    assert load_bundle(code, "pkg/main.py", preludes=EMPTY).y == 2
    assert load_bundle(code, "pkg.main", preludes=EMPTY).y == 2


def test_unknown_entry_is_reported() -> None:
    code = compile_bundle({"plugin.py": "x = 1\n"})
    with pytest.raises(SandboxError) as info:
        load_bundle(code, "main", preludes=EMPTY)
    assert str(info.value) == 'Entry module "main" is not part of the plugin (its modules: plugin)'


def test_bundle_must_come_from_the_compiler() -> None:
    with pytest.raises(SandboxError) as info:
        load_bundle(
            {"plugin": compile("x = 1", "plugin.py", "exec").co_consts},  # type: ignore[dict-item]
            "plugin",
            preludes=EMPTY,
        )
    assert (
        str(info.value)
        == "Invalid bundle module 'plugin': expected a name and a code object from compile_bundle()"
    )
    with pytest.raises(SandboxError) as bad_preludes:
        load_bundle(compile_bundle({"plugin.py": ""}), "plugin", preludes={})  # type: ignore[arg-type]
    assert str(bad_preludes.value) == "preludes must come from build_preludes()"


@pytest.mark.parametrize(
    ("module", "top"),
    [
        ("json", "json"),
        ("random", "random"),
        ("urllib.x", "urllib"),
        ("pkg", "pkg"),
        ("pkg.sub", "pkg"),
    ],
)
def test_plugin_modules_may_not_shadow_shims_or_exposed_names(module: str, top: str) -> None:
    # compile_bundle already refuses shim names; the loader checks again (code objects may
    # come from elsewhere) and also knows the exposed prelude names.
    code = compile_bundle({"plugin.py": "x = 1\n"})
    code[module] = compile_bundle({"other.py": "y = 2\n"})["other"]
    with pytest.raises(SandboxViolation) as info:
        load_bundle(code, "plugin", preludes=build())
    assert (
        str(info.value)
        == f'The plugin module "{module}" would shadow the sandboxed module "{top}"; rename it'
    )


def test_load_returns_a_plugin_module_with_the_entry_globals() -> None:
    module = load_bundle(
        compile_bundle({"plugin.py": "plugin = {'id': 'x'}\n"}), "plugin", preludes=EMPTY
    )
    assert type(module) is PluginModule
    assert module.plugin == {"id": "x"}
    assert module.__name__ == "<plugin>.plugin"
    with pytest.raises(SandboxViolation):
        module.plugin = None


def test_errors_of_module_code_propagate_unchanged() -> None:
    with pytest.raises(ZeroDivisionError):
        load_bundle(compile_bundle({"plugin.py": "x = 1 / 0\n"}), "plugin", preludes=EMPTY)


def test_every_bundle_gets_its_own_builtins_and_random() -> None:
    code = compile_bundle({"plugin.py": "import random\nr = [random.random() for i in range(3)]\n"})
    first = load_bundle(code, "plugin", preludes=EMPTY, rng_seed=42)
    second = load_bundle(code, "plugin", preludes=EMPTY, rng_seed=42)
    unseeded = [load_bundle(code, "plugin", preludes=EMPTY) for _ in range(2)]
    assert first.r == second.r  # reproducible with a seed
    assert unseeded[0].r != unseeded[1].r  # from os.urandom otherwise
    assert first.random is not second.random
    assert first.__dict__["__builtins__"] is not second.__dict__["__builtins__"]
    assert first.__dict__["__builtins__"]["list"] is not second.__dict__["__builtins__"]["list"]


def test_the_random_facade_offers_no_state_access() -> None:
    for name in ("seed", "getstate", "setstate"):
        with pytest.raises(AttributeError):
            load_bundle(
                compile_bundle({"plugin.py": f"import random\nr = random.{name}\n"}),
                "plugin",
                preludes=EMPTY,
            )
    module = load_bundle(
        compile_bundle(
            {
                "plugin.py": "import random\nmine = random.Random(5)\nr = [mine.random(), random.Random(5).random()]\n"
            }
        ),
        "plugin",
        preludes=EMPTY,
    )
    assert module.r[0] == module.r[1]


def test_tracebacks_name_plugin_files_without_reading_host_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host file named like the plugin's file must never be shown as the plugin's source.
    import traceback

    (tmp_path / "plugin.py").write_text("HOST SECRET LINE 1\nHOST SECRET LINE 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ZeroDivisionError) as info:
        load_bundle(compile_bundle({"plugin.py": "x = 1\ny = x / 0\n"}), "plugin", preludes=EMPTY)
    text = "".join(traceback.format_exception(info.value))
    assert 'File "<plugin:plugin.py>", line 2, in <module>' in text
    assert "SECRET" not in text
