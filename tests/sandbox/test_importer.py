"""The import policy: shims, the plugin's own modules, exposed preludes, and nothing else.

Covers escape corpus 001-007 (import category), 067-069 (real modules leaking), 073 (C-level
imports from restricted frames) and the ``IMPORT_FROM`` fallback to ``sys.modules``.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from sandbox import CompileError, SandboxViolation
from sandbox._compiler import compile_bundle
from sandbox._guards import PluginModule
from sandbox._importer import BundleImporter
from sandbox._loader import Preludes, build_preludes, load_bundle
from stdlib_shims import SHIMS, Facade

HOST_API = """
__all__ = ["greet", "Config"]

SECRET = "not exported"


class Config:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def greet(name):
    return "hello " + name
"""

PRELUDES = build_preludes({"host.api": HOST_API}, {"host": "host.api"})
ALLOWED = (
    "base64, bisect, collections, datetime, decimal, functools, hashlib, heapq, hmac, host, html, "
    "itertools, json, math, random, re, secrets, statistics, string, textwrap, time, typing, "
    "urllib, urllib.parse, uuid"
)


def load(
    files: dict[str, str], entry: str = "plugin", preludes: Preludes = PRELUDES
) -> PluginModule:
    return load_bundle(compile_bundle(files), entry, preludes=preludes, rng_seed=3)


def run(source: str) -> PluginModule:
    return load({"plugin.py": source})


def refused(files: dict[str, str] | str) -> str:
    bundle = {"plugin.py": files} if isinstance(files, str) else files
    with pytest.raises(SandboxViolation) as info:
        load(bundle)
    return str(info.value)


# -- what may be imported ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "os",
        "sys",
        "importlib",
        "ctypes",
        "pickle",
        "marshal",
        "gc",
        "inspect",
        "subprocess",
        "socket",
        "io",
        "codecs",
        "copyreg",
        "logging",
        "operator",
        "types",
        "json.decoder",
        "re.enum",
        "collections.abc",
        "urllib.request",
        "dataclasses",
        "zoneinfo",
        "sandbox",
        "stdlib_shims",
        "host.api",
    ],
)
def test_modules_outside_the_allowlist_are_refused(name: str) -> None:
    assert refused(f"import {name}\n") == (
        f'Import of "{name}" is not allowed in sandboxed plugins. Allowed modules: {ALLOWED} '
        "(and the plugin's own modules)"
    )


def test_builtins_module_is_refused_at_compile_and_run_time() -> None:
    with pytest.raises(CompileError) as info:
        compile_bundle({"plugin.py": "import builtins\n"})
    assert info.value.errors == ['plugin.py:1: "builtins" is a reserved name.']
    assert refused("from builtins import open\n").startswith(
        'Import of "builtins" is not allowed in sandboxed plugins.'
    )


def test_refused_inside_functions_and_from_imports_too() -> None:
    module = run("def later():\n    import os\n")
    with pytest.raises(SandboxViolation) as info:
        module.later()
    assert str(info.value).startswith('Import of "os" is not allowed in sandboxed plugins.')
    assert refused("from os import path\n").startswith('Import of "os" is not allowed')


def test_every_shim_imports_as_a_facade_never_a_module() -> None:
    names = sorted(SHIMS) + ["random"]
    module = run("".join(f"import {name}\n" for name in names) + "r = [json, urllib, random]\n")
    assert all(isinstance(value, Facade) for value in module.r)
    for name in names:
        assert isinstance(module.__dict__[name.partition(".")[0]], Facade)


def test_import_forms_bind_like_cpython() -> None:
    module = run(
        "import urllib.parse\n"
        "import json as j\n"
        "from urllib import parse\n"
        "from urllib.parse import quote, urlsplit as split\n"
        "r = [urllib.parse is parse, j.dumps([1]), quote('a b'), split('http://h/p').netloc]\n"
    )
    assert module.r == [True, "[1]", "a%20b", "h"]


@pytest.mark.parametrize(
    ("source", "item", "shim"),
    [
        ("from json import codecs\n", "codecs", "json"),  # 004: attribute fromlist
        ("from re import enum\n", "enum", "re"),
        ("from datetime import sys\n", "sys", "datetime"),
        ("from random import seed\n", "seed", "random"),
        ("from json import decoder\n", "decoder", "json"),  # would fall back to sys.modules
    ],
)
def test_fromlist_names_are_checked_against_the_facade(source: str, item: str, shim: str) -> None:
    message = refused(source)
    assert message.startswith(
        f'Cannot import "{item}" from "{shim}": the sandboxed "{shim}" module provides only: '
    )


def test_fromlist_message_lists_what_the_facade_provides() -> None:
    assert refused("from json import codecs\n") == (
        'Cannot import "codecs" from "json": the sandboxed "json" module provides only: JSONDecodeError, dumps, loads'
    )


def test_future_annotations_is_supported() -> None:
    module = run(
        "from __future__ import annotations\ndef f(x: os.path) -> Missing:\n    return x\nr = f(2)\n"
    )
    assert module.r == 2


# -- exposed preludes ----------------------------------------------------------------


def test_exposed_prelude_offers_exactly_its_all() -> None:
    module = run(
        "import host\nfrom host import greet, Config\nr = [greet('x'), Config('c').name, host.greet is greet]\n"
    )
    assert module.r == ["hello x", "c", True]
    assert refused("from host import SECRET\n") == (
        'Cannot import "SECRET" from "host": the sandboxed "host" module provides only: Config, greet'
    )
    with pytest.raises(AttributeError) as info:
        run("import host\nr = host.SECRET\n")
    assert str(info.value) == 'the sandboxed module "host" has no attribute "SECRET"'


def test_prelude_internals_are_not_importable() -> None:
    assert refused("import host.api\n").startswith('Import of "host.api" is not allowed')
    with pytest.raises(CompileError):
        compile_bundle({"plugin.py": "import host._private\n"})


# -- the plugin's own modules ---------------------------------------------------------


def test_plugin_packages_and_submodules() -> None:
    module = load(
        {
            "plugin.py": "import lib.util\nfrom lib import util as u2\nfrom lib.util import twice\nfrom helpers import three\n"
            "r = [lib.util.twice(2), u2 is lib.util, twice(three), lib.NAME]\n",
            "lib/__init__.py": "NAME = 'lib'\n",
            "lib/util.py": "def twice(x):\n    return 2 * x\n",
            "helpers.py": "three = 3\n",
        }
    )
    assert module.r == [4, True, 6, "lib"]
    assert repr(module.lib) == "<plugin module 'lib'>"


def test_namespace_packages_without_init_work() -> None:
    module = load(
        {"plugin.py": "from pkg.sub import mod\nr = mod.V\n", "pkg/sub/mod.py": "V = 7\n"}
    )
    assert module.r == 7


def test_relative_imports_resolve_inside_the_bundle() -> None:
    module = load(
        {
            "plugin.py": "from . import helpers\nfrom .lib import util\nfrom .lib.util import deep\nr = [helpers.H, util.U, deep()]\n",
            "helpers.py": "H = 'h'\n",
            "lib/__init__.py": "",
            "lib/util.py": "from . import sibling\nfrom .. import helpers\nfrom .sibling import S\nU = 'u'\ndef deep():\n    return sibling.S + S + helpers.H\n",
            "lib/sibling.py": "S = 's'\n",
        }
    )
    assert module.r == ["h", "u", "ssh"]


def test_relative_imports_cannot_escape_the_bundle_or_reach_shims() -> None:
    assert refused("from .. import x\n") == (
        'Relative import ".." in plugin module "plugin" goes above the plugin\'s top-level package'
    )
    assert refused({"plugin.py": "import lib.util\n", "lib/util.py": "from ... import x\n"}) == (
        'Relative import "..." in plugin module "lib.util" goes above the plugin\'s top-level package'
    )
    with pytest.raises(ModuleNotFoundError) as info:
        run("from .json import dumps\n")
    assert str(info.value) == 'No module named "json" in this plugin'


def test_missing_plugin_modules_and_names() -> None:
    with pytest.raises(ModuleNotFoundError) as missing:
        load({"plugin.py": "import lib.nope\n", "lib/__init__.py": ""})
    assert str(missing.value) == 'No module named "lib.nope" in this plugin'
    with pytest.raises(ImportError) as name:
        load({"plugin.py": "from lib import nope\n", "lib/__init__.py": ""})
    assert str(name.value) == 'cannot import name "nope" from plugin module "lib"'
    with pytest.raises(ImportError) as root:
        run("from . import nope\n")
    assert str(root.value) == 'cannot import name "nope" from the plugin\'s top-level package'


def test_a_plugin_module_named_like_a_real_package_cannot_reach_it() -> None:
    # IMPORT_FROM falls back to sys.modules[module.__name__ + ".path"] on a miss. Our
    # modules are named "<plugin>.os", so the real os.path is never found (007).
    with pytest.raises(ImportError) as info:
        load({"plugin.py": "from os import path\n", "os.py": "x = 1\n"})
    assert str(info.value) == 'cannot import name "path" from plugin module "os"'
    module = load({"plugin.py": "import os\nr = os.x\n", "os.py": "x = 1\n"})
    assert module.r == 1
    assert module.os.__name__ == "<plugin>.os"


def test_modules_execute_once_and_circular_imports_see_partial_modules() -> None:
    module = load(
        {
            "plugin.py": "import a\nimport b\nimport a as again\nr = [a.COUNT, b.SEEN, again is a]\n",
            "a.py": "import b\nCOUNT = len(b.SEEN) + 1\n",
            "b.py": "import a\nSEEN = ['b saw a', hasattr(a, 'COUNT')]\n",
        }
    )
    assert module.r == [3, ["b saw a", False], True]


def test_a_module_that_fails_is_not_left_half_imported() -> None:
    module = load(
        {
            "plugin.py": "attempts = []\ndef try_import():\n    try:\n        import flaky\n    except ValueError as e:\n        attempts.append(str(e))\n",
            "flaky.py": "raise ValueError('boom')\n",
        }
    )
    module.try_import()
    module.try_import()
    assert module.attempts == ["boom", "boom"]


def test_each_module_has_fresh_globals() -> None:
    module = load(
        {
            "plugin.py": "import other\nx = 'plugin'\nr = [other.x, other.read(), x]\n",
            "other.py": "x = 'other'\ndef read():\n    return x\n",
        }
    )
    assert module.r == ["other", "other", "plugin"]
    assert module.__dict__ is not module.other.__dict__
    assert module.__dict__["__builtins__"] is module.other.__dict__["__builtins__"]


# -- the hook itself ------------------------------------------------------------------


def hook() -> Any:
    importer = BundleImporter({}, SHIMS, {})
    return importer.import_hook


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"json",), "Module names must be str"),
        (("json", None, None, ("dumps",), -1), "Invalid relative import level"),
        (
            ("json", None, None, ["dumps"], 0),
            "Invalid import: the list of imported names must be a tuple",
        ),
        (
            ("json", None, None, ("*",), 0),
            '"from ... import *" is not allowed in sandboxed plugins',
        ),
        (
            ("json", None, None, ("_default_encoder",), 0),
            'Importing "_default_encoder" is not allowed (names starting with "_" are private)',
        ),
        (("json", None, None, (b"dumps",), 0), "Imported names must be str"),
        (
            ("", {}, None, ("x",), 1),
            "Relative imports are only allowed inside the plugin's own modules",
        ),
    ],
)
def test_malformed_import_calls_are_refused(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(SandboxViolation) as info:
        hook()(*args)
    assert str(info.value) == message


def test_c_level_imports_get_nothing_back() -> None:
    # PyImport_Import (datetime.strptime -> _strptime) passes an empty *list* as fromlist and
    # reads sys.modules itself; the hook confirms and returns None, never the module (073).
    assert "_strptime" in sys.modules
    assert hook()("_strptime", {}, {}, [], 0) is None
    assert hook()("os", {}, {}, [], 0) is None
    with pytest.raises(SandboxViolation) as info:
        hook()("surely_not_loaded_module", {}, {}, [], 0)
    assert str(info.value) == (
        'The standard library needed module "surely_not_loaded_module", which was not preloaded '
        "(call stdlib_shims.preload() before confining the worker)"
    )


def test_strptime_from_plugin_code_uses_the_c_level_path() -> None:
    module = run(
        "import datetime, time\n"
        "r = [datetime.datetime.strptime('2024-02-03', '%Y-%m-%d').isoformat(), time.strptime('2024', '%Y').tm_year,\n"
        "     datetime.datetime(2024, 1, 2).strftime('%Y/%m/%d'), datetime.date(2024, 1, 2).timetuple().tm_yday]\n"
    )
    assert module.r == ["2024-02-03T00:00:00", 2024, "2024/01/02", 2]
