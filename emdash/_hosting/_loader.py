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
"""

from __future__ import annotations

import builtins
import importlib
import itertools
import linecache
import re
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._model._descriptor import PluginDescriptor
from .._shared._errors import ManifestError, PluginError
from .._shared._plugin_api import PluginDefinition, coerce_definition

__all__ = ["FilesImporter", "LoadedCode", "PluginCode", "load_native", "locate", "module_name"]

MAX_FILES = 1000
MAX_TOTAL_BYTES = 16 * 1024 * 1024
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
        return _path_code(Path(source), pid)
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


def _path_code(path: Path, pid: str) -> PluginCode:
    path = path.expanduser().resolve()
    if path.is_dir():
        if (path / "__init__.py").is_file():
            if not _SEGMENT_RE.match(path.name):
                raise ManifestError(
                    f"Plugin {pid}: package directory {path} is not a valid module name",
                    plugin_id=pid,
                )
            files = collect_files(path, pid, prefix=path.name + "/")
            return PluginCode("files", files=files, entry=f"{path.name}/__init__.py",
                              origin=path.parent)
        if not (path / "plugin.py").is_file():
            raise ManifestError(
                f"Plugin {pid}: directory {path} has no plugin.py (or __init__.py) entry "
                "module; point entrypoint at the entry file instead",
                plugin_id=pid,
            )
        return PluginCode("files", files=collect_files(path, pid), entry="plugin.py",
                          origin=path)
    if not path.is_file():
        raise ManifestError(f"Plugin {pid}: code not found at {path}", plugin_id=pid)
    if path.suffix != ".py":
        raise ManifestError(f"Plugin {pid}: entry file {path} is not a .py file", plugin_id=pid)
    if not _SEGMENT_RE.match(path.stem):
        raise ManifestError(
            f"Plugin {pid}: entry file name {path.name} is not a valid module name "
            "(use letters, digits and _)",
            plugin_id=pid,
        )
    files = collect_files(path.parent, pid)
    files.setdefault(path.name, _read(path, pid))
    return PluginCode("files", files=files, entry=path.name, origin=path.parent)


def collect_files(root: Path, pid: str, *, prefix: str = "") -> dict[str, str]:
    """The ``.py`` files of ``root`` and its packages, keyed by relative POSIX path.

    Only subdirectories with an ``__init__.py`` are entered (never through a symlink);
    names that are not valid module names are skipped; an oversized tree is refused
    rather than truncated.
    """
    out: dict[str, str] = {}
    total = 0
    stack = [(root, prefix)]
    while stack:
        directory, rel = stack.pop()
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            raise ManifestError(
                f"Plugin {pid}: cannot read {directory}: {exc.strerror}", plugin_id=pid
            ) from None
        for entry in entries:
            if entry.is_dir():
                # Only regular packages: a stray venv/ or docs/ beside the entry is not
                # the plugin's code and must not be read (or sent to the sandbox).
                if (
                    not entry.is_symlink()
                    and _SEGMENT_RE.match(entry.name)
                    and (entry / "__init__.py").is_file()
                ):
                    stack.append((entry, f"{rel}{entry.name}/"))
                continue
            if entry.suffix != ".py" or not _SEGMENT_RE.match(entry.stem):
                continue
            text = _read(entry, pid)
            total += len(text)
            out[f"{rel}{entry.name}"] = text
            if len(out) > MAX_FILES or total > MAX_TOTAL_BYTES:
                raise ManifestError(
                    f"Plugin {pid}: {root} holds more than {MAX_FILES} modules or "
                    f"{MAX_TOTAL_BYTES // (1024 * 1024)} MB of source; point entrypoint at "
                    "the plugin's own directory",
                    plugin_id=pid,
                )
    return out


def _read(path: Path, pid: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"Plugin {pid}: cannot read {path}: {exc}", plugin_id=pid) from None


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
    """``(files, entry module name)`` for the sandbox; module paths are found, not imported."""
    if code.kind == "files":
        return code.files, code.entry_module
    if code.kind == "module" and code.module:
        return _find_module_files(code.module, pid)
    raise ManifestError(
        f"Plugin {pid}: a ready-made plugin definition can only run trusted; give the "
        "sandbox source code (a path, a module path, source text or a {path: source} dict)",
        plugin_id=pid,
    )


def _find_module_files(dotted: str, pid: str) -> tuple[dict[str, str], str]:
    """Find ``a.b.c``'s top-level package (or module) on sys.path without executing it."""
    top = dotted.partition(".")[0]
    for entry in sys.path:
        base = Path(entry or ".")
        package = base / top
        if (package / "__init__.py").is_file():
            files = collect_files(package, pid, prefix=top + "/")
            if module_name_in(files, dotted):
                return files, dotted
        single = base / f"{top}.py"
        if single.is_file() and top == dotted:
            return {single.name: _read(single, pid)}, dotted
    raise ManifestError(
        f'Plugin {pid}: module "{dotted}" was not found on sys.path', plugin_id=pid
    )


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

    def import_entry(self, name: str) -> types.ModuleType:
        try:
            return self._load(name)
        except (ManifestError, PluginError):
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
                str(self._origin / rel) if self._origin is not None and rel
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
                    if self._origin is None:
                        # In-memory source: let tracebacks and inspect show its lines.
                        linecache.cache[filename] = (
                            len(text), None, text.splitlines(keepends=True), filename,
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
            parts = package[len(self.root) + 1:].split(".") if package != self.root else []
            if level - 1 > len(parts):
                raise ImportError(
                    f"attempted relative import beyond the top of plugin {self.pid}"
                )
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
            if item != "*" and not hasattr(module, item) and (
                sub in self._sources or sub in self._packages
            ):
                self._load(sub)
        return module
