"""The host reads nothing for a plugin but the plugin's own regular files, and reads those bounded.

Real files, real FIFOs, real symbolic links to a secret outside the plugin directory and to
/dev/zero, real sandboxed workers. What each refusal proves structurally:

- the error names the plugin and the offending path relative to the plugin directory;
- the secret never appears in the error, its traceback or the log;
- the host never *opened* the link, the FIFO or the secret (a Python audit hook records every
  open of the process while a test asks for it);
- add_plugin returns: a FIFO with no writer cannot block it (were it to hang, pytest's
  faulthandler_timeout would report it; no timing is asserted).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from emdash import ManifestError, PluginDescriptor, PluginError
from emdash._hosting import _loader as loader
from emdash._hosting._loader import PluginDir, locate, sandbox_files
from emdash._runtime._runtime import Runtime
from emdash.cli import main

SECRET = "DB_PASSWORD=hunter2-do-not-leak"
LINK_ADVICE = (
    "plugin files must be regular files inside the plugin directory (symbolic links are "
    "never followed): replace the link with a copy of what it points to, or remove it"
)
FIFO_ADVICE = (
    "plugin files must be regular files (no FIFOs, sockets or devices): remove it from the "
    "plugin directory"
)

# -- recording what the process opens ---------------------------------------------------
#
# An audit hook cannot be removed, so one is installed once and records only while a test
# holds the list.

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and args and isinstance(args[0], (str, bytes)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


# -- a plugin directory and the hazards planted in it ----------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


ENTRY = (
    "from emdash import define_plugin\nplugin = define_plugin(routes={'go': lambda r, ctx: 'ok'})\n"
)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory next to the plugin: a .env, a settings module, a package."""
    return write(
        tmp_path / "host",
        {
            ".env": SECRET + "\n",
            "settings.py": f"SECRET = {SECRET!r}\n",
            "lib/__init__.py": f"SECRET = {SECRET!r}\n",
            "plugin.py": f"from emdash import define_plugin\nplugin = define_plugin()\nS = {SECRET!r}\n",
            "evil.toml": 'id = "evil"\nentrypoint = "plugin.py"\n',
        },
    )


def plugin_dir(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    return write(
        tmp_path / "plug",
        {
            "emdash-plugin.toml": 'id = "evil"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n',
            "plugin.py": ENTRY,
            **(files or {}),
        },
    )


def plant(kind: str, root: Path, outside: Path) -> tuple[str, str]:
    """Plant hazard ``kind`` in plugin directory ``root``; ``(offending path, error)``."""
    plug = 'Plugin "evil"'
    if kind == "file link to a secret":
        (root / "conf.py").symlink_to(outside / "settings.py")
        return "conf.py", f"{plug}: conf.py is a symbolic link; {LINK_ADVICE}"
    if kind == "file link to .env":
        (root / "conf.py").symlink_to(outside / ".env")
        return "conf.py", f"{plug}: conf.py is a symbolic link; {LINK_ADVICE}"
    if kind == "link to /dev/zero":
        (root / "zero.py").symlink_to("/dev/zero")
        return "zero.py", f"{plug}: zero.py is a symbolic link; {LINK_ADVICE}"
    if kind == "fifo":
        os.mkfifo(root / "pipe.py")
        return "pipe.py", f"{plug}: pipe.py is a FIFO (named pipe); {FIFO_ADVICE}"
    if kind == "fifo with another name":
        os.mkfifo(root / "notes.txt")
        return "notes.txt", f"{plug}: notes.txt is a FIFO (named pipe); {FIFO_ADVICE}"
    if kind == "directory link":
        (root / "lib").symlink_to(outside / "lib", target_is_directory=True)
        return "lib", f"{plug}: lib is a symbolic link; {LINK_ADVICE}"
    if kind == "link inside a package":
        write(root, {"pkg/__init__.py": "", "pkg/ok.py": ""})
        (root / "pkg" / "conf.py").symlink_to(outside / "settings.py")
        return "conf.py", f"{plug}: pkg/conf.py is a symbolic link; {LINK_ADVICE}"
    if kind == "fifo inside a package":
        write(root, {"pkg/__init__.py": ""})
        os.mkfifo(root / "pkg" / "pipe.py")
        return "pipe.py", f"{plug}: pkg/pipe.py is a FIFO (named pipe); {FIFO_ADVICE}"
    if kind == "entry is a link":
        (root / "plugin.py").unlink()
        (root / "plugin.py").symlink_to(outside / "plugin.py")
        return "plugin.py", f"{plug}: plugin.py is a symbolic link; {LINK_ADVICE}"
    if kind == "non-source link":
        (root / "README.md").symlink_to(outside / ".env")
        return "README.md", f"{plug}: README.md is a symbolic link; {LINK_ADVICE}"
    if kind == "dangling link":
        (root / "gone.py").symlink_to(outside / "missing.py")
        return "gone.py", f"{plug}: gone.py is a symbolic link; {LINK_ADVICE}"
    if kind == "descriptor is a link":
        (root / "emdash-plugin.toml").unlink()
        (root / "emdash-plugin.toml").symlink_to(outside / "evil.toml")
        return "emdash-plugin.toml", (
            f"Plugin directory {root.resolve()}: emdash-plugin.toml is a symbolic link; {LINK_ADVICE}"
        )
    if kind == "descriptor is a fifo":
        (root / "emdash-plugin.toml").unlink()
        os.mkfifo(root / "emdash-plugin.toml")
        return "emdash-plugin.toml", (
            f"Plugin directory {root.resolve()}: emdash-plugin.toml is a FIFO (named pipe); "
            f"{FIFO_ADVICE}"
        )
    raise AssertionError(kind)


HAZARDS = [
    "file link to a secret",
    "file link to .env",
    "link to /dev/zero",
    "fifo",
    "fifo with another name",
    "directory link",
    "link inside a package",
    "fifo inside a package",
    "entry is a link",
    "non-source link",
    "dangling link",
    "descriptor is a link",
    "descriptor is a fifo",
]


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "sandboxed"])
@pytest.mark.parametrize("kind", HAZARDS)
def test_add_plugin_refuses_links_and_special_files(
    kind: str,
    trusted: bool,
    tmp_path: Path,
    outside: Path,
    opened: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = plugin_dir(tmp_path)
    name, message = plant(kind, root, outside)
    caplog.set_level(logging.DEBUG)
    with Runtime(tmp_path / "site.db") as rt:
        opened.clear()  # from here on: what the host opens
        with pytest.raises(ManifestError) as info:
            rt.add_plugin(root, trusted=trusted)
        assert str(info.value) == message
        assert rt.plugins() == []
    assert_nothing_leaked(info.value, caplog.text)
    # Neither the planted entry nor anything outside the plugin directory was opened.
    assert not [p for p in opened if Path(p).name == name or str(outside) in p]


def assert_nothing_leaked(error: BaseException, log_text: str) -> None:
    shown = [str(error), repr(error), log_text]
    shown.append(getattr(error, "traceback_text", None) or "")
    assert not [s for s in shown if "hunter2" in s]


@pytest.mark.parametrize("kind", HAZARDS)
def test_emdash_check_reports_the_same_refusal(kind: str, tmp_path: Path, outside: Path) -> None:
    root = plugin_dir(tmp_path)
    _name, message = plant(kind, root, outside)
    result = CliRunner().invoke(main, ["check", "--json", str(root)])
    assert result.exit_code == 1
    report = result.stdout
    assert "hunter2" not in report
    errors = json.loads(report)["errors"]
    assert len(errors) == 1
    assert errors[0].endswith(f": {message}")


def test_emdash_check_prints_it_for_people(tmp_path: Path, outside: Path) -> None:
    root = plugin_dir(tmp_path)
    _name, message = plant("file link to a secret", root, outside)
    result = CliRunner().invoke(main, ["check", str(root)])
    assert result.exit_code == 1
    assert message in result.stderr
    assert "hunter2" not in result.output


# -- entrypoints in a descriptor file stay inside the plugin directory -------------------------


@pytest.mark.parametrize(
    ("entrypoint", "setup", "error"),
    [
        ("src/plugin.py", "src-link", f'Plugin "evil": src is a symbolic link; {LINK_ADVICE}'),
        ("./src", "src-link", f'Plugin "evil": src is a symbolic link; {LINK_ADVICE}'),
        (
            "../host/plugin.py",
            None,
            'Plugin "evil": entrypoint "../host/plugin.py" is outside '
            "the plugin directory {root}; give a path inside the directory of emdash-plugin.toml "
            "(or a module path such as my_plugin.entry)",
        ),
        (
            "a/../../host",
            None,
            'Plugin "evil": entrypoint "a/../../host" is outside the plugin '
            "directory {root}; give a path inside the directory of emdash-plugin.toml (or a "
            "module path such as my_plugin.entry)",
        ),
        (
            "{outside}/plugin.py",
            None,
            'Plugin "evil": entrypoint "{outside}/plugin.py" is '
            "outside the plugin directory {root}; give a path inside the directory of "
            "emdash-plugin.toml (or a module path such as my_plugin.entry)",
        ),
    ],
)
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "sandboxed"])
def test_descriptor_entrypoints_cannot_leave_the_plugin(
    entrypoint: str,
    setup: str | None,
    error: str,
    trusted: bool,
    tmp_path: Path,
    outside: Path,
    opened: list[str],
) -> None:
    entrypoint = entrypoint.format(outside=outside)
    root = plugin_dir(
        tmp_path,
        {
            "emdash-plugin.toml": f'id = "evil"\nentrypoint = "{entrypoint}"\n',
        },
    )
    if setup == "src-link":
        (root / "src").symlink_to(outside, target_is_directory=True)
    with Runtime(tmp_path / "site.db") as rt:
        opened.clear()
        with pytest.raises(ManifestError) as info:
            rt.add_plugin(root, trusted=trusted)
    assert str(info.value) == error.format(root=root.resolve(), outside=outside)
    assert_nothing_leaked(info.value, "")
    assert not [p for p in opened if str(outside) in p]


def test_entrypoint_of_a_descriptor_file_is_not_resolved_through_links(
    tmp_path: Path, outside: Path
) -> None:
    """Loading the descriptor alone follows nothing: the loader gets to refuse the link."""
    root = plugin_dir(tmp_path)
    (root / "plugin.py").unlink()
    (root / "plugin.py").symlink_to(outside / "plugin.py")
    descriptor = PluginDescriptor.load(root)
    assert descriptor.entrypoint == str(root.resolve() / "plugin.py")
    assert descriptor.plugin_root == root.resolve()
    assert PluginDescriptor.load({"id": "x", "entrypoint": "p.py"}).plugin_root is None


# -- the directory the operator names may itself be a link ---------------------------------


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "sandboxed"])
def test_the_plugin_root_itself_may_be_a_symlink(trusted: bool, tmp_path: Path) -> None:
    real = plugin_dir(
        tmp_path,
        {
            "helpers.py": "WORD = 'linked'\n",
            "plugin.py": (
                "from emdash import define_plugin\nimport helpers\n"
                "plugin = define_plugin(routes={'go': lambda r, ctx: helpers.WORD})\n"
            ),
        },
    )
    link = tmp_path / "plugins-enabled"
    link.symlink_to(real, target_is_directory=True)
    with Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(link, trusted=trusted)
        assert rt.invoke_route("evil", "go") == "linked"


def test_an_operator_source_path_follows_the_same_rules(tmp_path: Path, outside: Path) -> None:
    root = plugin_dir(tmp_path)
    (root / "conf.py").symlink_to(outside / "settings.py")
    for source in (root, root / "plugin.py", str(root)):
        with pytest.raises(ManifestError) as info:
            locate(PluginDescriptor.load({"id": "evil"}), source)
        assert str(info.value) == f'Plugin "evil": conf.py is a symbolic link; {LINK_ADVICE}'
    # A file named directly must be a regular file too.
    with pytest.raises(ManifestError) as info:
        locate(PluginDescriptor.load({"id": "evil"}), root / "conf.py")
    assert str(info.value) == f'Plugin "evil": conf.py is a symbolic link; {LINK_ADVICE}'


def test_a_package_directory_names_paths_inside_it(tmp_path: Path, outside: Path) -> None:
    pkg = write(tmp_path / "mypkg", {"__init__.py": ENTRY, "sub/__init__.py": ""})
    (pkg / "sub" / "conf.py").symlink_to(outside / "settings.py")
    with pytest.raises(ManifestError) as info:
        locate(PluginDescriptor.load({"id": "evil"}), pkg)
    assert str(info.value) == f'Plugin "evil": sub/conf.py is a symbolic link; {LINK_ADVICE}'


def test_a_module_path_bundle_for_the_sandbox_refuses_links(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "site", {"evil_pkg/__init__.py": "", "evil_pkg/entry.py": ENTRY})
    (tmp_path / "site" / "evil_pkg" / "conf.py").symlink_to(outside / "settings.py")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    code = locate(PluginDescriptor.load({"id": "evil", "entrypoint": "evil_pkg.entry"}))
    with pytest.raises(ManifestError) as info:
        sandbox_files(code, "evil")
    assert str(info.value) == (f'Plugin "evil": evil_pkg/conf.py is a symbolic link; {LINK_ADVICE}')


# -- size caps, checked before reading; reads bounded even when the file grows ---------------


def test_sizes_are_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_TOTAL_BYTES", 1000)
    root = plugin_dir(tmp_path, {"data.py": "x = 1\n" + "#" * 2000 + "\n"})
    reads = count_reads(monkeypatch)
    with pytest.raises(ManifestError) as info:
        locate(PluginDescriptor.load({"id": "evil"}), root)
    assert str(info.value) == (
        f"Plugin evil: {root} holds more than 1000 modules, 10000 directory entries or 0 MB "
        "of source; point entrypoint at the plugin's own directory"
    )
    assert reads.get("data.py", 0) == 0  # refused on the size lstat/fstat gave: no byte read


def count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Bytes os.read returned, per file name (by its descriptor's /proc link)."""
    counts: dict[str, int] = {}
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        counts[name] = counts.get(name, 0) + len(data)
        return data

    monkeypatch.setattr(os, "read", read)
    return counts


def test_a_file_growing_after_the_size_check_is_read_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file really grows between fstat and read (forced right after the fstat)."""
    monkeypatch.setattr(loader, "MAX_TOTAL_BYTES", 4096)
    root = plugin_dir(tmp_path, {"data.py": "x = 1\n"})
    real_fstat = os.fstat

    def fstat_then_grow(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("data.py"):
            with open(root / "data.py", "a") as f:
                f.write("#" * 1_000_000)
        return result

    monkeypatch.setattr(os, "fstat", fstat_then_grow)
    reads = count_reads(monkeypatch)
    with pytest.raises(ManifestError, match="holds more than 1000 modules"):
        locate(PluginDescriptor.load({"id": "evil"}), root)
    # data.py is read first (sorted), with the whole budget: cap + 1 bytes tell it is too
    # large, and not one more is read.
    assert reads["data.py"] == 4096 + 1


def test_plugin_dir_reads_at_most_the_cap(tmp_path: Path) -> None:
    write(tmp_path, {"a.py": "12345"})

    def too_large(size: int) -> ManifestError:
        return ManifestError(f"too large: {size}")

    with PluginDir(tmp_path, 'Plugin "t"', "t") as tree:
        assert tree.read("a.py", 5, too_large) == b"12345"
        with pytest.raises(ManifestError, match="^too large: 5$"):
            tree.read("a.py", 4, too_large)


def test_a_fifo_swapped_in_after_the_check_cannot_block_or_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lstat is fooled (as if the FIFO appeared just after it): open and fstat still refuse."""
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "link.py").symlink_to("/dev/zero")
    regular = os.stat(__file__)
    real_stat = os.stat

    def fooled(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if path in ("pipe.py", "link.py"):
            return regular
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", fooled)

    def too_large(size: int) -> ManifestError:
        return ManifestError(f"too large: {size}")

    with PluginDir(tmp_path, 'Plugin "t"', "t") as tree:
        with pytest.raises(ManifestError) as info:
            tree.read("pipe.py", 10_000_000, too_large)
        assert str(info.value) == f'Plugin "t": pipe.py is a FIFO (named pipe); {FIFO_ADVICE}'
        with pytest.raises(ManifestError) as info:
            tree.read("link.py", 10_000_000, too_large)
        assert str(info.value) == f'Plugin "t": link.py is a symbolic link; {LINK_ADVICE}'


def test_a_directory_swapped_for_a_link_after_the_check_is_not_followed(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lib").symlink_to(outside / "lib", target_is_directory=True)
    as_dir = os.stat(tmp_path)
    real_stat = os.stat
    fooled: list[Any] = []

    def fooled_once(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if path == "lib" and not fooled:
            fooled.append(path)
            return as_dir
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", fooled_once)

    def too_large(size: int) -> ManifestError:
        return ManifestError(f"too large: {size}")

    with PluginDir(tmp_path, 'Plugin "t"', "t") as tree:
        with pytest.raises(ManifestError) as info:
            tree.read("lib/__init__.py", 10_000, too_large)
    assert fooled == ["lib"]
    assert str(info.value) == f'Plugin "t": lib is a symbolic link; {LINK_ADVICE}'


def test_a_huge_descriptor_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = plugin_dir(tmp_path)
    with open(root / "emdash-plugin.toml", "a") as f:
        f.write("# pad\n" * 50_000)
    reads = count_reads(monkeypatch)
    with pytest.raises(ManifestError) as info:
        PluginDescriptor.load(root)
    assert str(info.value) == (
        f"Plugin descriptor {root.resolve() / 'emdash-plugin.toml'} is "
        f"{(root / 'emdash-plugin.toml').stat().st_size} bytes; a descriptor may be at most "
        "262144 bytes (it holds settings, never data)"
    )
    assert reads.get("emdash-plugin.toml", 0) == 0


def test_too_many_directory_entries_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "MAX_ENTRIES", 5)
    root = plugin_dir(tmp_path, {f"note{i}.txt": "" for i in range(10)})
    with pytest.raises(ManifestError, match="holds more than 1000 modules, 5 directory entries"):
        locate(PluginDescriptor.load({"id": "evil"}), root)


def test_a_sandboxed_bundle_past_the_sandbox_limit_is_refused_before_shipping(
    tmp_path: Path,
) -> None:
    root = plugin_dir(tmp_path, {"data.py": "x = 1\n" + "# padding\n" * 120_000})
    code = locate(PluginDescriptor.load({"id": "big"}), root)  # fine natively (16 MB)
    with pytest.raises(ManifestError) as info:
        sandbox_files(code, "big")
    total = len(ENTRY) + 1_200_006
    assert str(info.value) == (
        f"Plugin big cannot run sandboxed. The plugin source is too large: {total} bytes (the "
        "limit is 1000000 bytes); move data out of its modules, or add it trusted if you trust "
        "its code (emdash plugins add --trusted PATH; in Python: add_plugin(..., trusted=True))"
    )


def test_non_utf8_source_names_the_file(tmp_path: Path) -> None:
    root = plugin_dir(tmp_path)
    (root / "latin.py").write_bytes(b"x = '\xe9'\n")
    with pytest.raises(ManifestError) as info:
        locate(PluginDescriptor.load({"id": "evil"}), root)
    assert str(info.value) == (
        'Plugin "evil": latin.py is not UTF-8 text (invalid continuation byte at byte 5); '
        "save it as UTF-8"
    )


def test_tracebacks_show_the_source_that_ran_not_the_disk(tmp_path: Path) -> None:
    """linecache is filled from what was read: the path is never opened again, so a FIFO put
    in the entry's place after loading blocks nothing."""
    root = plugin_dir(
        tmp_path,
        {
            "plugin.py": (
                "from emdash import define_plugin\n"
                "def boom(r, ctx):\n"
                "    raise ValueError('from the plugin')\n"
                "plugin = define_plugin(routes={'go': boom})\n"
            )
        },
    )
    with Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(root, trusted=True)
        (root / "plugin.py").unlink()
        os.mkfifo(root / "plugin.py")
        with pytest.raises(PluginError) as info:
            rt.invoke_route("evil", "go")
    assert info.value.traceback_text is not None
    assert f'File "{root.resolve() / "plugin.py"}", line 3, in boom' in info.value.traceback_text
    assert "raise ValueError('from the plugin')" in info.value.traceback_text
