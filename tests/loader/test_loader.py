"""Locating plugin code, and loading multi-file plugins natively under private names."""

from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import ManifestError, PluginDescriptor, PluginError, define_plugin
from emdash._hosting import _loader as loader
from emdash._hosting._loader import locate, sandbox_files
from emdash._runtime._runtime import Runtime


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with Runtime(tmp_path / "site.db") as runtime:
        yield runtime


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def desc(pid: str, **fields: object) -> PluginDescriptor:
    return PluginDescriptor.load({"id": pid, **fields})


def route_plugin(imports: str, expr: str) -> str:
    """An entry module with the given import lines and one route "go" returning ``expr``."""
    return (
        f"from emdash import define_plugin\n{imports}\n"
        f'plugin = define_plugin(routes={{"go": lambda r, ctx: {expr}}})\n'
    )


def test_multi_file_plugin_imports_its_own_modules(rt: Runtime, tmp_path: Path) -> None:
    root = write(
        tmp_path / "multi",
        {
            "plugin.py": route_plugin(
                "import helpers\nfrom lib import shout\nfrom lib.text import TAIL\nfrom . import helpers as again",
                "[helpers.greet('x'), shout('y'), TAIL, again is helpers]",
            ),
            "helpers.py": "def greet(name):\n    return 'hello ' + name\n",
            "lib/__init__.py": "from .text import shout\n",
            "lib/text.py": "TAIL = '!'\ndef shout(s):\n    return s.upper() + TAIL\n",
            "notes/readme.py": "raise RuntimeError('not a package: never read')\n",
        },
    )
    rt.add_plugin({"id": "multi", "entrypoint": str(root)}, trusted=True)
    assert rt.invoke_route("multi", "go") == ["hello x", "Y!", "!", True]


def test_same_module_names_in_two_plugins_do_not_collide(rt: Runtime, tmp_path: Path) -> None:
    for pid, word in (("one", "first"), ("two", "second")):
        write(
            tmp_path / pid,
            {
                "plugin.py": route_plugin("import helpers", "helpers.WORD"),
                "helpers.py": f"WORD = {word!r}\n",
            },
        )
        rt.add_plugin({"id": pid, "entrypoint": str(tmp_path / pid)}, trusted=True)
    assert rt.invoke_route("one", "go") == "first"
    assert rt.invoke_route("two", "go") == "second"
    assert "helpers" not in sys.modules


def test_in_memory_files_with_subpackages(rt: Runtime) -> None:
    files = {
        "plugin.py": route_plugin("from util.fmt import fmt", "fmt(2)"),
        "util/__init__.py": "",
        "util/fmt.py": "def fmt(n):\n    from .num import double\n    return 'n=' + str(double(n))\n",
        "util/num.py": "def double(n):\n    return n * 2\n",
    }
    rt.add_plugin({"id": "mem"}, source=files, trusted=True)
    assert rt.invoke_route("mem", "go") == "n=4"


def test_source_text_is_one_entry_module(rt: Runtime) -> None:
    source = route_plugin("import math", "math.floor(2.5)")
    rt.add_plugin({"id": "text"}, source=source, trusted=True)
    assert rt.invoke_route("text", "go") == 2


def test_definition_dict_and_module_sources(rt: Runtime) -> None:
    rt.add_plugin({"id": "d"}, source={"routes": {"go": lambda r, c: "dict"}}, trusted=True)
    module = types.ModuleType("some_plugin")
    module.plugin = define_plugin(routes={"go": lambda r, c: "module"})  # type: ignore[attr-defined]
    rt.add_plugin({"id": "m"}, source=module, trusted=True)
    assert (rt.invoke_route("d", "go"), rt.invoke_route("m", "go")) == ("dict", "module")


def test_module_path_entry_is_imported_natively(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "site_packages",
        {
            "acme_plugin/__init__.py": "",
            "acme_plugin/entry.py": route_plugin("from acme_plugin import words", "words.W"),
            "acme_plugin/words.py": "W = 'acme'\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site_packages"))
    monkeypatch.delitem(sys.modules, "acme_plugin", raising=False)
    rt.add_plugin({"id": "acme", "entrypoint": "acme_plugin.entry"}, trusted=True)
    assert rt.invoke_route("acme", "go") == "acme"


def test_sandbox_files_of_a_module_path_are_found_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    write(
        tmp_path / "lib",
        {
            "pkg_untrusted/__init__.py": f"open({str(marker)!r}, 'w').close()\n",
            "pkg_untrusted/entry.py": "plugin = {}\n",
            "pkg_untrusted/sub/__init__.py": "",
            "pkg_untrusted/sub/x.py": "X = 1\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    code = locate(desc("u", entrypoint="pkg_untrusted.entry"))
    files, entry = sandbox_files(code, "u")
    assert entry == "pkg_untrusted.entry"
    assert sorted(files) == [
        "pkg_untrusted/__init__.py",
        "pkg_untrusted/entry.py",
        "pkg_untrusted/sub/__init__.py",
        "pkg_untrusted/sub/x.py",
    ]
    assert not marker.exists()
    with pytest.raises(
        ManifestError, match='^Plugin u: module "nowhere.entry" was not found on sys.path$'
    ):
        sandbox_files(locate(desc("u", entrypoint="nowhere.entry")), "u")


def test_sandbox_files_of_a_directory(tmp_path: Path) -> None:
    write(
        tmp_path / "p",
        {"plugin.py": "plugin = {}\n", "h.py": "", ".hidden/x.py": "", "venv/y.py": ""},
    )
    files, entry = sandbox_files(locate(desc("p"), tmp_path / "p"), "p")
    assert (sorted(files), entry) == (["h.py", "plugin.py"], "plugin")


def test_package_directory_is_named_after_itself(rt: Runtime, tmp_path: Path) -> None:
    write(
        tmp_path / "mypkg",
        {
            "__init__.py": route_plugin(
                "from mypkg.core import VALUE\nfrom .core import VALUE as V2", "[VALUE, V2]"
            ),
            "core.py": "VALUE = 7\n",
        },
    )
    code = locate(desc("pk"), tmp_path / "mypkg")
    assert (code.entry, code.entry_module) == ("mypkg/__init__.py", "mypkg")
    rt.add_plugin({"id": "pk"}, source=tmp_path / "mypkg", trusted=True)
    assert rt.invoke_route("pk", "go") == [7, 7]


def test_file_entry_and_descriptor_relative_paths(rt: Runtime, tmp_path: Path) -> None:
    write(
        tmp_path / "p",
        {
            "main_entry.py": route_plugin("import other", "other.X"),
            "other.py": "X = 'other'\n",
            "emdash-plugin.toml": 'id = "rel"\nentrypoint = "main_entry.py"\n',
        },
    )
    rt.add_plugin(tmp_path / "p" / "emdash-plugin.toml", trusted=True)
    assert rt.invoke_route("rel", "go") == "other"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"../up.py": "x"},
            'Plugin bad: invalid source file name "../up.py": use relative paths '
            'such as "plugin.py" or "helpers/util.py" made of valid module names',
        ),
        (
            {"__init__.py": "x"},
            'Plugin bad: invalid source file name "__init__.py": use relative '
            'paths such as "plugin.py" or "helpers/util.py" made of valid module names',
        ),
        (
            {"my-mod.py": "x"},
            'Plugin bad: invalid source file name "my-mod.py": use relative '
            'paths such as "plugin.py" or "helpers/util.py" made of valid module names',
        ),
        (
            {"a.py": "x", "b.py": "y"},
            "Plugin bad: cannot tell which file is the entry among a.py, "
            "b.py; name it plugin.py or set entrypoint in the descriptor",
        ),
        (
            {"plugin.py": 3},
            "Plugin bad: source files must map relative paths (str) to source (str)",
        ),
        (
            42,
            "Plugin bad: cannot load code from int; pass a module path, a file or directory "
            "path, Python source text, a {path: source} dict or a define_plugin() result",
        ),
    ],
)
def test_bad_sources_are_refused(source: object, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        locate(desc("bad"), source)
    assert str(info.value) == message


def test_missing_code_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        locate(desc("nocode"))
    assert str(info.value) == (
        "Plugin nocode has no code: set `entrypoint` in its descriptor or pass source= to "
        "add_plugin()"
    )
    with pytest.raises(ManifestError) as info:
        locate(desc("gone"), tmp_path / "missing.py")
    assert str(info.value) == f"Plugin gone: code not found at {tmp_path / 'missing.py'}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError) as info:
        locate(desc("e"), tmp_path / "empty")
    assert str(info.value) == (
        f"Plugin e: directory {tmp_path / 'empty'} has no plugin.py (or __init__.py) entry "
        "module; point entrypoint at the entry file instead"
    )


def test_entry_without_plugin_binding(rt: Runtime) -> None:
    with pytest.raises(ManifestError) as info:
        rt.add_plugin({"id": "unbound"}, source="x = 1\n", trusted=True)
    assert str(info.value) == (
        "Plugin unbound: the entry module does not bind a module-level `plugin` "
        "(plugin = define_plugin(hooks=..., routes=...))"
    )


def test_plugin_binding_of_the_wrong_type(rt: Runtime) -> None:
    with pytest.raises(ManifestError) as info:
        rt.add_plugin({"id": "typed"}, source="plugin = 5\n", trusted=True)
    assert str(info.value) == (
        "Plugin typed: The entry module must bind `plugin` to define_plugin(...) or to a dict "
        "with 'hooks' and/or 'routes' (got int)"
    )


def private_modules() -> list[str]:
    return [name for name in sys.modules if name.startswith("_emdash_plugin_")]


def test_syntax_error_is_a_plugin_error_and_leaves_nothing_loaded(rt: Runtime) -> None:
    before = private_modules()
    with pytest.raises(PluginError) as info:
        rt.add_plugin(
            {"id": "broken"},
            source={"plugin.py": "import helper\n", "helper.py": "def (:\n"},
            trusted=True,
        )
    err = info.value
    assert err.error_type == "SyntaxError"
    assert err.message.startswith("Plugin broken raised SyntaxError while loading plugin.py: ")
    assert private_modules() == before
    assert rt.plugins() == []


def test_import_time_error_shows_the_plugin_line(rt: Runtime) -> None:
    with pytest.raises(PluginError) as info:
        rt.add_plugin(
            {"id": "divider"},
            source="from emdash import define_plugin\nRATIO = 1 / 0\n",
            trusted=True,
        )
    assert info.value.error_type == "ZeroDivisionError"
    assert info.value.traceback_text is not None
    assert 'File "<plugin divider>/plugin.py", line 2' in info.value.traceback_text
    assert "RATIO = 1 / 0" in info.value.traceback_text


def test_remove_plugin_unloads_its_modules(rt: Runtime) -> None:
    before = private_modules()
    rt.add_plugin(
        {"id": "tmp"},
        source={"plugin.py": route_plugin("import h", "h.X"), "h.py": "X = 1\n"},
        trusted=True,
    )
    loaded = [m for m in private_modules() if m not in before]
    assert len(loaded) == 3  # the private root package, plugin and h
    rt.remove_plugin("tmp")
    assert private_modules() == before


def test_oversized_trees_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_FILES", 2)
    write(tmp_path / "big", {"plugin.py": "", "a.py": "", "b.py": ""})
    with pytest.raises(ManifestError) as info:
        locate(desc("big"), tmp_path / "big")
    assert str(info.value) == (
        f"Plugin big: {tmp_path / 'big'} holds more than 2 modules, 10000 directory entries or "
        "16 MB of source; point entrypoint at the plugin's own directory"
    )


def test_example_hello_plugin_runs_natively(rt: Runtime) -> None:
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello"
    rt.add_plugin(hello, trusted=True)
    event = {"content": {"id": "post-1"}, "collection": "posts", "isNew": True}
    assert rt.run_hook("content:afterSave", event).ok
    [item] = rt.invoke_route("plugin-hello", "recent")["events"]
    assert item["data"]["contentId"] == "post-1"
