"""Locating a plugin's code, and loading it in-process for native (trusted) plugins.

:func:`locate` turns what ``Runtime.add_plugin`` was given into a :class:`PluginCode`:

- ``None``: the descriptor's ``entrypoint``;
- a module path (``my_plugin.entry``): imported with importlib natively; for the sandbox its
  files are found on ``sys.path`` *without importing anything* (importing would run
  untrusted code in the host);
- a file path: that file is the entry, the ``.py`` files under its directory are the
  plugin's own modules;
- a directory: its ``plugin.py`` is the entry; a directory with ``__init__.py`` is instead
  a package named after the directory, whose ``__init__`` is the entry;
- a ``str`` of Python source (one entry module, ``plugin.py``);
- a ``dict`` ``{relative path: source}`` (a multi-file plugin in memory);
- a ``PluginDefinition`` (or its ``{"hooks", "routes"}`` dict form) or a module object:
  already-built code, native only.

Plugin-internal module names follow the relative paths (``helpers/util.py`` is
``helpers.util``). :class:`FilesImporter` runs such files natively under a private,
unique package name (``_emdash_plugin_<n>_<id>``) so two plugins may both have a
``helpers.py``. Each module gets its own ``__import__`` that resolves the plugin's own
module names first (``import helpers``, ``from helpers.util import x``) and relative
imports (``from . import helpers``) inside the plugin; everything else goes to the normal
import system. This mirrors what sandboxed plugins may import, so one plugin's files load
the same way in both modes. It is *not* a security boundary: native code is trusted.

Reading the files, in both modes (:class:`PluginDir`): the host reads nothing for a plugin
but the plugin's own regular files. The *plugin root* is the directory of its
``emdash-plugin.toml`` when the code comes from a descriptor file's ``entrypoint`` (which must
then stay inside it), and otherwise the directory the operator named (for a file: its
directory; for a module path: the package directory on ``sys.path``). The root itself may be
reached through symbolic links: that is the operator's choice (``plugins/x -> /opt/x-1.2``).
Below it, a symbolic link (to a file or a directory, dangling or not), a FIFO, a socket or a
device is an error naming it by its path relative to the root, in every directory the loader
reads from, whatever the entry's name; nothing is skipped silently. Directories that are not
packages are never opened. Sizes are checked before reading: 16 MB of source per plugin
(every read is capped by what is left of it), 1000 modules, 10 000 directory entries, 1 MB
for a sandboxed bundle (the sandbox compiler's limit), 256 KiB for the descriptor. Native
plugins run the text read here; Python's import system never reads a plugin directory, and
tracebacks show the lines that were read, never the file as it is on disk later. Module-path
entrypoints (``my_plugin.entry``) are installed packages: natively Python imports them like
any other dependency.
"""

from __future__ import annotations

import builtins
import errno
import importlib
import itertools
import linecache
import logging
import os
import re
import stat
import sys
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._bridge import _invocation_logs as invocation_logs
from .._model._descriptor import PluginDescriptor
from .._shared._errors import ManifestError, PluginError, clean_text
from .._shared._plugin_api import PluginDefinition, coerce_definition

__all__ = [
    "FilesImporter",
    "LoadedCode",
    "PluginCode",
    "PluginDir",
    "load_native",
    "locate",
    "module_name",
    "read_descriptor",
]

# Bounds on what the host reads from a plugin directory; each is checked before the bytes
# are read (see PluginDir). MAX_FILES is the sandbox compiler's own file limit.
MAX_FILES = 1000
# Entries listed across the walk of one plugin's directories (names that are never read
# still cost a listing: a tarball of a million empty files must not cost the host memory).
MAX_ENTRIES = 10_000
# All source files of one plugin together, and so also any single one of them: each read is
# capped by what is left of this budget. Native code may be larger than sandboxed code...
MAX_TOTAL_BYTES = 16 * 1024 * 1024
# ...which is refused past the sandbox compiler's own limit (sandbox.compile_bundle's
# max_bytes default, UTF-8 bytes of the whole bundle) before anything is shipped to a worker.
SANDBOX_MAX_SOURCE_BYTES = 1_000_000
# emdash-plugin.toml holds settings, never data.
MAX_DESCRIPTOR_BYTES = 256 * 1024
DESCRIPTOR_NAME = "emdash-plugin.toml"
_DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SEGMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_counter = itertools.count(1)


@dataclass(frozen=True)
class PluginCode:
    """Where one plugin's code is.

    ``kind`` is ``"files"`` (``files`` maps relative paths to source; ``entry`` is the
    entry's relative path; ``origin`` is the directory they came from, if any),
    ``"module"`` (``module`` is an importable dotted name) or ``"definition"``
    (``definition`` is ready-made; native only).
    """

    kind: str
    files: dict[str, str] = field(default_factory=dict)
    entry: str = ""
    origin: Path | None = None
    module: str | None = None
    definition: PluginDefinition | None = None

    @property
    def entry_module(self) -> str:
        """The entry's plugin-internal dotted module name."""
        return module_name(self.entry) if self.kind == "files" else (self.module or "")


def module_name(relpath: str) -> str:
    """``helpers/util.py`` -> ``helpers.util``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = relpath.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# -- locating -------------------------------------------------------------------------


def locate(descriptor: PluginDescriptor, source: Any = None) -> PluginCode:
    """Work out where ``descriptor``'s code is; see the module docstring for the forms."""
    pid = descriptor.id
    if source is None:
        if not descriptor.entrypoint:
            raise ManifestError(
                f"Plugin {pid} has no code: set `entrypoint` in its descriptor or pass "
                "source= to add_plugin()",
                plugin_id=pid,
            )
        source = descriptor.entrypoint
        if not _looks_like_path(source):
            return _module_code(source, pid)
        # From a descriptor file, the plugin's root is that file's directory (see
        # PluginDescriptor.plugin_root): its entrypoint may not follow a symlink below it.
        return _path_code(Path(source), pid, descriptor.plugin_root)
    if isinstance(source, PluginDefinition):
        return PluginCode("definition", definition=source)
    if isinstance(source, types.ModuleType):
        return PluginCode("definition", definition=_definition_of(source, pid))
    if isinstance(source, Path):
        return _path_code(source, pid)
    if isinstance(source, dict):
        if source and set(source) <= {"hooks", "routes"}:
            return PluginCode("definition", definition=_coerce(source, pid))
        return _dict_code(source, descriptor)
    if isinstance(source, str):
        if "\n" in source:
            return PluginCode("files", files={"plugin.py": source}, entry="plugin.py")
        if _looks_like_path(source) or Path(source).exists():
            return _path_code(Path(source), pid)
        if _DOTTED_RE.match(source):
            return _module_code(source, pid)
        return PluginCode("files", files={"plugin.py": source}, entry="plugin.py")
    raise ManifestError(
        f"Plugin {pid}: cannot load code from {type(source).__name__}; pass a module path, "
        "a file or directory path, Python source text, a {path: source} dict or a "
        "define_plugin() result",
        plugin_id=pid,
    )


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or text.startswith(".")


def _module_code(dotted: str, pid: str) -> PluginCode:
    if not _DOTTED_RE.match(dotted):
        raise ManifestError(
            f'Plugin {pid}: entrypoint "{dotted}" is neither a module path (a.b.c) nor a '
            "path to a .py file or directory",
            plugin_id=pid,
        )
    return PluginCode("module", module=dotted)


def _path_code(path: Path, pid: str, root: Path | None = None) -> PluginCode:
    """Code at ``path``: a directory, a package directory or an entry file.

    ``root`` is the plugin directory of a descriptor file, when ``path`` (its entrypoint)
    came from one: no symbolic link is followed below it. Without ``root`` the path came from
    the operator (``source=`` or an in-code descriptor), and the directory it names (for a
    file: the file's directory) is the root, which may itself be reached through symlinks.
    """
    if root is None:
        path = path.expanduser()
        if path.is_dir():
            root, rel = path.resolve(), ""
        else:
            root, rel = path.parent.resolve(), path.name
    elif path.is_relative_to(root):
        rel = path.relative_to(root).as_posix()
    else:  # a copy of the descriptor given another entrypoint in code: the operator's path
        return _path_code(path, pid)
    where = root / rel if rel else root
    with _open_code_dir(root, pid, missing=f"Plugin {pid}: code not found at {where}") as tree:
        kind = tree.kind(rel)
        if kind == "dir":
            name = where.name
            if tree.kind(_join(rel, "__init__.py")) == "file":
                if not _SEGMENT_RE.match(name):
                    raise ManifestError(
                        f"Plugin {pid}: package directory {where} is not a valid module name",
                        plugin_id=pid,
                    )
                files = collect_files(tree, rel, pid, prefix=name + "/")
                return PluginCode(
                    "files", files=files, entry=f"{name}/__init__.py", origin=where.parent
                )
            if tree.kind(_join(rel, "plugin.py")) != "file":
                raise ManifestError(
                    f"Plugin {pid}: directory {where} has no plugin.py (or __init__.py) entry "
                    "module; point entrypoint at the entry file instead",
                    plugin_id=pid,
                )
            return PluginCode(
                "files", files=collect_files(tree, rel, pid), entry="plugin.py", origin=where
            )
        if kind is None:
            raise ManifestError(f"Plugin {pid}: code not found at {where}", plugin_id=pid)
        if where.suffix != ".py":
            raise ManifestError(
                f"Plugin {pid}: entry file {where} is not a .py file", plugin_id=pid
            )
        if not _SEGMENT_RE.match(where.stem):
            raise ManifestError(
                f"Plugin {pid}: entry file name {where.name} is not a valid module name "
                "(use letters, digits and _)",
                plugin_id=pid,
            )
        parent = rel.rpartition("/")[0]
        # The entry's valid name means the listing below reads it like its siblings.
        files = collect_files(tree, parent, pid)
        return PluginCode("files", files=files, entry=where.name, origin=where.parent)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _open_code_dir(root: Path, pid: str, *, shown: str = "", missing: str) -> PluginDir:
    try:
        return PluginDir(root, f'Plugin "{pid}"', pid, shown=shown)
    except (FileNotFoundError, NotADirectoryError):
        raise ManifestError(missing, plugin_id=pid) from None
    except OSError as exc:
        raise ManifestError(
            f"Plugin {pid}: cannot open {root} ({exc.strerror}); check its permissions",
            plugin_id=pid,
        ) from None


def collect_files(tree: PluginDir, base: str, pid: str, *, prefix: str = "") -> dict[str, str]:
    """The ``.py`` files of directory ``base`` and its packages, keyed by ``prefix`` + path.

    Only subdirectories with an ``__init__.py`` are entered; other directories and files
    whose names are not valid module names are not read. Every entry of a directory that is
    entered must be a regular file or a directory (see :class:`PluginDir`). An oversized
    tree is refused rather than truncated.
    """
    where = tree.root / base if base else tree.root

    def oversized(_size: int = 0) -> ManifestError:
        return ManifestError(
            f"Plugin {pid}: {where} holds more than {MAX_FILES} modules, {MAX_ENTRIES} "
            f"directory entries or {MAX_TOTAL_BYTES // (1024 * 1024)} MB of source; point "
            "entrypoint at the plugin's own directory",
            plugin_id=pid,
        )

    out: dict[str, str] = {}
    total = 0
    listed = 0
    stack = [(base, prefix)]
    while stack:
        directory, key_prefix = stack.pop()
        try:
            entries = tree.listdir(directory, MAX_ENTRIES - listed)
        except _TooMany:
            raise oversized() from None
        listed += len(entries)
        for name, kind in entries:
            rel = _join(directory, name)
            if kind == "dir":
                # Only regular packages: a stray venv/ or docs/ beside the entry is not
                # the plugin's code and must not be read (or sent to the sandbox).
                if _SEGMENT_RE.match(name) and tree.kind(f"{rel}/__init__.py") == "file":
                    stack.append((rel, f"{key_prefix}{name}/"))
                continue
            if not name.endswith(".py") or not _SEGMENT_RE.match(name[:-3]):
                continue
            if len(out) >= MAX_FILES:
                raise oversized()
            data = tree.read(rel, MAX_TOTAL_BYTES - total, oversized)
            total += len(data)
            out[f"{key_prefix}{name}"] = _decode(tree, rel, data)
    return out


def _decode(tree: PluginDir, rel: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise tree.error(
            rel, f"is not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8"
        ) from None


def read_descriptor(path: Path) -> tuple[bytes, Path]:
    """``(bytes, file)`` of a descriptor file; ``path`` is the file or its directory.

    ``file`` is the descriptor's path with its directory resolved: that directory is the
    plugin's root.

    The descriptor is a plugin file like any other: read through :class:`PluginDir`, whose
    root is the directory the operator named (or the file's directory).
    """
    path = path.expanduser()
    if path.is_dir():
        root, name = path.resolve(), DESCRIPTOR_NAME
    else:
        root, name = path.parent.resolve(), path.name
    shown = root / name
    try:
        tree = PluginDir(root, f"Plugin directory {root}", None)
    except OSError as exc:
        raise ManifestError(f"Cannot read plugin descriptor {shown}: {exc.strerror}") from None

    def too_large(size: int) -> ManifestError:
        return ManifestError(
            f"Plugin descriptor {shown} is {size} bytes; a descriptor may be at most "
            f"{MAX_DESCRIPTOR_BYTES} bytes (it holds settings, never data)"
        )

    with tree:
        if tree.kind(name) is None:
            raise ManifestError(f"Cannot read plugin descriptor {shown}: No such file or directory")
        return tree.read(name, MAX_DESCRIPTOR_BYTES, too_large), shown


# -- reading a plugin's files ----------------------------------------------------------
#
# Every byte the host reads for a plugin from disk goes through PluginDir: the descriptor
# file, the entry module, every module of a bundle (native or sandboxed). A plugin directory
# usually comes from someone else (a git checkout, a tarball), and both git and tar carry
# symbolic links and can carry FIFOs; the host reads with its own privileges, so a
# `conf.py -> /srv/site/.env` would hand the host's secrets to the plugin as "source", a
# `*.py` FIFO would block the host forever in open(), and a link to /dev/zero would fill its
# memory. Hence, below the plugin's root directory:
#
# - every path component is opened relative to its parent's descriptor with O_NOFOLLOW, so
#   no symbolic link is followed even if one appears between a check and the open;
# - a symbolic link, FIFO, socket or device is an error naming it, never skipped: what runs
#   must not depend on what was silently left out;
# - files are opened O_NONBLOCK (a FIFO swapped in after the lstat cannot block the open),
#   must be regular by fstat, and are read only when fstat's size is within the cap, and
#   then at most cap + 1 bytes, so a file that grows meanwhile is still bounded.
#
# The root itself is what the operator named, and it may be reached through symbolic links
# (operators link /srv/plugins/x to /opt/x-1.2): that choice is theirs, not the plugin's.

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_READ_CHUNK = 64 * 1024
_SPECIAL = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class PluginDir:
    """A plugin's root directory, opened once; every lookup below it follows no symlink.

    ``who`` starts every error (``Plugin "x"``); ``shown`` prefixes the relative paths that
    errors name (a package directory reports ``pkg/conf.py``). Use as a context manager.
    """

    def __init__(self, root: Path, who: str, plugin_id: str | None, *, shown: str = "") -> None:
        self.root = root
        self.who = who
        self.plugin_id = plugin_id
        self.shown = shown
        # The root may be a symlink (the operator's choice, see above): no O_NOFOLLOW here.
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def __enter__(self) -> PluginDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def error(self, rel: str, problem: str, todo: str) -> ManifestError:
        return ManifestError(
            f"{self.who}: {self.shown}{rel} {problem}; {todo}", plugin_id=self.plugin_id
        )

    def _refusal(self, rel: str, mode: int) -> ManifestError:
        if stat.S_ISLNK(mode):
            return self.error(
                rel,
                "is a symbolic link",
                "plugin files must be regular files inside the plugin directory (symbolic "
                "links are never followed): replace the link with a copy of what it points "
                "to, or remove it",
            )
        kind = _SPECIAL.get(stat.S_IFMT(mode), "not a regular file or directory")
        return self.error(
            rel,
            f"is {kind}",
            "plugin files must be regular files (no FIFOs, sockets or devices): remove it "
            "from the plugin directory",
        )

    def _lstat(self, parent_fd: int, name: str, rel: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(
                rel, f"cannot be read ({exc.strerror})", "check the plugin directory's permissions"
            ) from None

    def _open_parent(self, parts: list[str]) -> int:
        """A new descriptor of the directory holding ``parts[-1]``; -1 if a component is missing."""
        fd = os.dup(self._fd)
        try:
            for i, name in enumerate(parts[:-1]):
                rel = "/".join(parts[: i + 1])
                st = self._lstat(fd, name, rel)
                if st is None:
                    os.close(fd)
                    return -1
                if not stat.S_ISDIR(st.st_mode):
                    if stat.S_ISREG(st.st_mode):
                        os.close(fd)
                        return -1  # "a/b" where a is a file: b does not exist
                    raise self._refusal(rel, st.st_mode)
                try:
                    child = os.open(name, _O_DIR, dir_fd=fd)
                except OSError as exc:
                    # Swapped for a link or removed after the lstat: never followed.
                    raise self._open_failure(fd, name, rel, exc) from None
                os.close(fd)
                fd = child
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd

    def _open_failure(self, parent_fd: int, name: str, rel: str, exc: OSError) -> ManifestError:
        """Why opening ``rel`` failed after its lstat passed: it was swapped meanwhile."""
        # O_NOFOLLOW reports a link as ELOOP, and as ENOTDIR together with O_DIRECTORY.
        if exc.errno == errno.ELOOP:
            return self._refusal(rel, stat.S_IFLNK)
        try:
            mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            return self._refusal(rel, mode)
        return self.error(
            rel,
            f"cannot be read ({exc.strerror})",
            "check that nothing changes the plugin directory while it loads",
        )

    @staticmethod
    def _parts(rel: str) -> list[str]:
        return [p for p in rel.split("/") if p not in ("", ".")]

    def kind(self, rel: str) -> str | None:
        """``"file"``, ``"dir"`` or ``None`` (missing); anything else is refused."""
        parts = self._parts(rel)
        if not parts:
            return "dir"
        fd = self._open_parent(parts)
        if fd < 0:
            return None
        try:
            st = self._lstat(fd, parts[-1], rel)
        finally:
            os.close(fd)
        if st is None:
            return None
        if stat.S_ISREG(st.st_mode):
            return "file"
        if stat.S_ISDIR(st.st_mode):
            return "dir"
        raise self._refusal(rel, st.st_mode)

    def listdir(self, rel: str, limit: int) -> list[tuple[str, str]]:
        """``(name, "file" | "dir")`` of every entry of directory ``rel``, sorted by name.

        Any other kind of entry is refused, whatever its name: the listing skips nothing.
        More than ``limit`` entries raises :class:`_TooMany`.
        """
        parts = self._parts(rel)
        fd = self._open_parent(parts) if parts else os.dup(self._fd)
        try:
            if parts:
                if fd < 0:
                    raise self.error(rel, "does not exist", "check the plugin directory")
                try:
                    child = os.open(parts[-1], _O_DIR, dir_fd=fd)
                except OSError as exc:
                    raise self._open_failure(fd, parts[-1], rel, exc) from None
                os.close(fd)
                fd = child
            out: list[tuple[str, str]] = []
            # scandir on a descriptor: the entries' lstat is relative to it, never a path.
            with os.scandir(fd) as entries:
                for entry in entries:
                    if len(out) >= limit:
                        raise _TooMany()
                    path = f"{rel}/{entry.name}" if parts else entry.name
                    mode = entry.stat(follow_symlinks=False).st_mode
                    if stat.S_ISREG(mode):
                        out.append((entry.name, "file"))
                    elif stat.S_ISDIR(mode):
                        out.append((entry.name, "dir"))
                    else:
                        raise self._refusal(path, mode)
            return sorted(out)
        finally:
            if fd >= 0:
                os.close(fd)

    def read(self, rel: str, limit: int, too_large: Callable[[int], ManifestError]) -> bytes:
        """The bytes of regular file ``rel``; ``too_large(size)`` if it exceeds ``limit``."""
        parts = self._parts(rel)
        fd = self._open_parent(parts) if parts else -1
        if fd < 0:
            raise self.error(rel, "does not exist", "check the plugin directory")
        try:
            st = self._lstat(fd, parts[-1], rel)
            if st is None:
                raise self.error(rel, "does not exist", "check the plugin directory")
            if not stat.S_ISREG(st.st_mode):
                raise self._refusal(rel, st.st_mode)  # before open: never open a device
            if st.st_size > limit:
                raise too_large(st.st_size)
            try:
                file_fd = os.open(parts[-1], _O_FILE, dir_fd=fd)
            except OSError as exc:
                raise self._open_failure(fd, parts[-1], rel, exc) from None
        finally:
            os.close(fd)
        try:
            st = os.fstat(file_fd)  # what was opened, whatever the lstat saw
            if not stat.S_ISREG(st.st_mode):
                raise self._refusal(rel, st.st_mode)
            if st.st_size > limit:
                raise too_large(st.st_size)
            data = bytearray()
            while len(data) <= limit:
                chunk = os.read(file_fd, min(_READ_CHUNK, limit + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise self.error(
                rel, f"cannot be read ({exc.strerror})", "check the plugin directory's permissions"
            ) from None
        finally:
            os.close(file_fd)
        if len(data) > limit:
            raise too_large(len(data))  # it grew after the fstat
        return bytes(data)

    def read_text(self, rel: str, limit: int, too_large: Callable[[int], ManifestError]) -> str:
        data = self.read(rel, limit, too_large)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(
                rel, f"is not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8"
            ) from None


class _TooMany(Exception):
    """A directory listing passed its entry limit (turned into a ManifestError by callers)."""


def open_plugin_dir(
    root: Path, who: str, plugin_id: str | None, *, shown: str = "", missing: str
) -> PluginDir:
    """:class:`PluginDir` for ``root``, or a ManifestError (``missing``) if it is no directory."""
    try:
        return PluginDir(root, who, plugin_id, shown=shown)
    except OSError as exc:
        raise ManifestError(f"{missing} ({exc.strerror})", plugin_id=plugin_id) from None


def _dict_code(files: dict[Any, Any], descriptor: PluginDescriptor) -> PluginCode:
    pid = descriptor.id
    clean: dict[str, str] = {}
    for key, text in files.items():
        if type(key) is not str or type(text) is not str:
            raise ManifestError(
                f"Plugin {pid}: source files must map relative paths (str) to source (str)",
                plugin_id=pid,
            )
        parts = key.split("/")
        if (
            not key.endswith(".py")
            or key == "__init__.py"
            or not all(_SEGMENT_RE.match(p) for p in [*parts[:-1], parts[-1][:-3]])
        ):
            raise ManifestError(
                f'Plugin {pid}: invalid source file name "{key}": use relative paths such '
                'as "plugin.py" or "helpers/util.py" made of valid module names',
                plugin_id=pid,
            )
        clean[key] = text
    if not clean:
        raise ManifestError(f"Plugin {pid}: no source files given", plugin_id=pid)
    wanted = descriptor.entrypoint
    candidates = [wanted, f"{wanted}.py"] if wanted else []
    candidates.append("plugin.py")
    entry = next((c for c in candidates if c in clean), None)
    if entry is None and len(clean) == 1:
        entry = next(iter(clean))
    if entry is None:
        raise ManifestError(
            f"Plugin {pid}: cannot tell which file is the entry among {', '.join(sorted(clean))}; "
            "name it plugin.py or set entrypoint in the descriptor",
            plugin_id=pid,
        )
    return PluginCode("files", files=clean, entry=entry)


def sandbox_files(code: PluginCode, pid: str) -> tuple[dict[str, str], str]:
    """``(files, entry module name)`` for the sandbox; module paths are found, not imported.

    A bundle past the sandbox compiler's size limit is refused here, before it is shipped
    to a worker that would refuse it anyway.
    """
    if code.kind == "files":
        files, entry = code.files, code.entry_module
    elif code.kind == "module" and code.module:
        files, entry = _find_module_files(code.module, pid)
    else:
        raise ManifestError(
            f"Plugin {pid}: a ready-made plugin definition can only run trusted; give the "
            "sandbox source code (a path, a module path, source text or a {path: source} dict)",
            plugin_id=pid,
        )
    # surrogatepass: only counting here; the sandbox host reports unencodable text by file.
    total = sum(len(text.encode("utf-8", "surrogatepass")) for text in files.values())
    if total > SANDBOX_MAX_SOURCE_BYTES:
        raise ManifestError(
            f"Plugin {pid} cannot run sandboxed. The plugin source is too large: {total} bytes "
            f"(the limit is {SANDBOX_MAX_SOURCE_BYTES} bytes); move data out of its modules, "
            "or add it trusted if you trust its code (emdash plugins add --trusted PATH; in "
            "Python: add_plugin(..., trusted=True))",
            plugin_id=pid,
        )
    return files, entry


def _find_module_files(dotted: str, pid: str) -> tuple[dict[str, str], str]:
    """Find ``a.b.c``'s top-level package (or module) on sys.path without executing it.

    The package directory is the root (it may be reached through symlinks, as installed
    packages sometimes are); nothing below it is followed.
    """
    top = dotted.partition(".")[0]
    missing = f'Plugin {pid}: module "{dotted}" was not found on sys.path'
    for entry in sys.path:
        base = Path(entry or ".")
        package = base / top
        if package.is_dir():
            with _open_code_dir(package.resolve(), pid, shown=top + "/", missing=missing) as tree:
                if tree.kind("__init__.py") == "file":
                    files = collect_files(tree, "", pid, prefix=top + "/")
                    if module_name_in(files, dotted):
                        return files, dotted
        single = base / f"{top}.py"
        if top == dotted and os.path.lexists(single):
            with _open_code_dir(base.resolve(), pid, missing=missing) as tree:
                if tree.kind(single.name) == "file":
                    return {
                        single.name: _decode(
                            tree,
                            single.name,
                            tree.read(single.name, MAX_TOTAL_BYTES, _too_large_module(pid, single)),
                        )
                    }, dotted
    raise ManifestError(missing, plugin_id=pid)


def _too_large_module(pid: str, path: Path) -> Callable[[int], ManifestError]:
    def build(size: int) -> ManifestError:
        return ManifestError(
            f"Plugin {pid}: {path} is {size} bytes, more than the "
            f"{MAX_TOTAL_BYTES // (1024 * 1024)} MB a plugin's source may have",
            plugin_id=pid,
        )

    return build


def module_name_in(files: dict[str, str], dotted: str) -> bool:
    return any(module_name(rel) == dotted for rel in files)


# -- native loading -------------------------------------------------------------------


@dataclass
class LoadedCode:
    """A native plugin's definition, and how to forget its modules again."""

    definition: PluginDefinition
    importer: FilesImporter | None = None

    def unload(self) -> None:
        if self.importer is not None:
            self.importer.unload()


def load_native(code: PluginCode, pid: str) -> LoadedCode:
    """Run a plugin's entry module in-process and return its definition."""
    if code.kind == "definition" and code.definition is not None:
        return LoadedCode(code.definition)
    if code.kind == "module" and code.module:
        try:
            module = importlib.import_module(code.module)
        except ModuleNotFoundError as exc:
            if exc.name and code.module.startswith(exc.name):
                raise ManifestError(
                    f'Plugin {pid}: module "{code.module}" was not found; check entrypoint '
                    "and that its package is installed or on sys.path",
                    plugin_id=pid,
                ) from None
            raise _load_error(pid, code.module, exc) from exc
        except Exception as exc:
            raise _load_error(pid, code.module, exc) from exc
        return LoadedCode(_definition_of(module, pid))
    importer = FilesImporter(pid, code.files, code.origin)
    try:
        module = importer.import_entry(code.entry_module)
        definition = _definition_of(module, pid)
    except BaseException:
        importer.unload()
        raise
    return LoadedCode(definition, importer)


def _definition_of(module: types.ModuleType, pid: str) -> PluginDefinition:
    try:
        plugin = module.plugin
    except AttributeError:
        raise ManifestError(
            f"Plugin {pid}: the entry module does not bind a module-level `plugin` "
            "(plugin = define_plugin(hooks=..., routes=...))",
            plugin_id=pid,
        ) from None
    return _coerce(plugin, pid)


def _coerce(obj: Any, pid: str) -> PluginDefinition:
    try:
        return coerce_definition(obj)
    except ManifestError as exc:
        raise ManifestError(f"Plugin {pid}: {exc.message}", plugin_id=pid) from None


def _load_error(pid: str, where: str, exc: BaseException) -> PluginError:
    return PluginError(
        f"Plugin {pid} raised {type(exc).__name__} while loading {where}: {exc}",
        plugin_id=pid,
        error_type=type(exc).__name__,
        traceback_text="".join(traceback.format_exception(exc)),
    )


class FilesImporter:
    """Imports one plugin's files under a private package name (see the module docstring)."""

    def __init__(self, pid: str, files: dict[str, str], origin: Path | None) -> None:
        self.pid = pid
        self.root = f"_emdash_plugin_{next(_counter)}_{pid.replace('-', '_')}"
        self._origin = origin
        self._sources: dict[str, tuple[str, str]] = {}  # internal name -> (relpath, source)
        self._packages: set[str] = {""}
        for rel, text in files.items():
            name = module_name(rel)
            self._sources[name] = (rel, text)
            if rel.endswith("__init__.py"):
                self._packages.add(name)
            parts = name.split(".")
            for i in range(1, len(parts)):
                self._packages.add(".".join(parts[:i]))  # implicit (namespace) packages
        self._top = {n.split(".")[0] for n in [*self._sources, *self._packages] if n}
        self._lock = threading.RLock()
        self._filenames: list[str] = []
        self._builtins = dict(vars(builtins))
        self._builtins["__import__"] = self._import
        self._builtins["print"] = self._print

    def _print(
        self, *objects: Any, sep: Any = " ", end: Any = "\n", file: Any = None, flush: bool = False
    ) -> None:
        """``print()`` in the plugin's files: its log at info level, marked ``print:``.

        The same rule as sandboxed plugins (``emdash._shared._worker_dispatch``), so output
        that shows in one mode shows in the other: ``emdash run-hook`` / ``route`` /
        ``serve`` print the plugin's log lines. ``print(..., file=f)`` writes to ``f`` as
        usual (trusted code may write where it likes).
        """
        if file is not None:
            builtins.print(*objects, sep=sep, end=end, file=file, flush=flush)
            return
        text = (" " if sep is None else str(sep)).join(str(o) for o in objects)
        text += "\n" if end is None else str(end)
        logger = logging.getLogger("emdash.plugins").getChild(self.pid)
        for line in text.removesuffix("\n").split("\n"):
            shown = "print: " + clean_text(line, limit=4096)
            logger.info("[plugin:%s] %s", self.pid, shown)
            invocation_logs.note("info", shown)  # the invocation's audit record, as ctx.log

    def import_entry(self, name: str) -> types.ModuleType:
        try:
            return self._load(name)
        except ManifestError as exc:
            if f"Plugin {self.pid}" in exc.message:
                raise
            # define_plugin() does not know whose module calls it: name the plugin.
            raise ManifestError(f"Plugin {self.pid}: {exc.message}", plugin_id=self.pid) from None
        except PluginError:
            raise
        except Exception as exc:
            raise _load_error(self.pid, self._sources.get(name, (name,))[0], exc) from exc

    def unload(self) -> None:
        with self._lock:
            for key in [k for k in sys.modules if k == self.root or k.startswith(self.root + ".")]:
                del sys.modules[key]
            for filename in self._filenames:
                linecache.cache.pop(filename, None)

    def _full(self, name: str) -> str:
        return f"{self.root}.{name}" if name else self.root

    def _load(self, name: str) -> types.ModuleType:
        with self._lock:
            existing = sys.modules.get(self._full(name))
            if existing is not None:
                return existing
            if name not in self._sources and name not in self._packages:
                raise ModuleNotFoundError(
                    f"No module named '{name}' in plugin {self.pid}", name=name
                )
            parent = self._load(name.rpartition(".")[0]) if name else None
            full = self._full(name)
            module = types.ModuleType(full)
            is_package = name in self._packages
            rel, text = self._sources.get(name, ("", ""))
            filename = (
                str(self._origin / rel)
                if self._origin is not None and rel
                else f"<plugin {self.pid}>/{rel or name.replace('.', '/') + '/__init__.py'}"
            )
            module.__file__ = filename
            module.__package__ = full if is_package else full.rpartition(".")[0]
            module.__dict__["__builtins__"] = self._builtins
            if is_package:
                module.__path__ = []
            sys.modules[full] = module
            try:
                if text:
                    # Tracebacks and inspect show the lines of the text that was read and
                    # run, never the disk's: linecache would otherwise open the path itself,
                    # following whatever link or FIFO stands there by then. mtime None keeps
                    # linecache.checkcache from ever dropping (and re-reading) the entry.
                    linecache.cache[filename] = (
                        len(text),
                        None,
                        text.splitlines(keepends=True),
                        filename,
                    )
                    self._filenames.append(filename)
                    exec(compile(text, filename, "exec", dont_inherit=True), module.__dict__)
            except BaseException:
                sys.modules.pop(full, None)
                raise
            if parent is not None:
                setattr(parent, name.rpartition(".")[2], module)
            return module

    def _import(
        self,
        name: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level > 0:
            package = (globals or {}).get("__package__") or ""
            if package != self.root and not package.startswith(self.root + "."):
                return builtins.__import__(name, globals, locals, fromlist, level)
            parts = package[len(self.root) + 1 :].split(".") if package != self.root else []
            if level - 1 > len(parts):
                raise ImportError(f"attempted relative import beyond the top of plugin {self.pid}")
            base = parts[: len(parts) - (level - 1)]
            target = ".".join([*base, name] if name else base)
            return self._from(target, fromlist)
        top = name.partition(".")[0]
        if top not in self._top:
            return builtins.__import__(name, globals, locals, fromlist, level)
        if fromlist:
            return self._from(name, fromlist)
        self._load(name)
        return self._load(top)

    def _from(self, target: str, fromlist: Any) -> types.ModuleType:
        module = self._load(target)
        for item in fromlist or ():
            sub = f"{target}.{item}" if target else str(item)
            if (
                item != "*"
                and not hasattr(module, item)
                and (sub in self._sources or sub in self._packages)
            ):
                self._load(sub)
        return module
