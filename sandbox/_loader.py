"""Loading: trusted preludes once per fork server, plugin bundles once per worker.

*Preludes* are host modules given as source text (e.g. ``emdash._shared._errors`` and
``emdash._shared._plugin_api``). They are trusted: compiled with the normal ``compile()``, executed
with the real builtins, before any confinement. Imports between them resolve inside the set
first (so the worker runs exactly the source the host shipped, whatever else is installed),
everything else through the real import system. They are not registered in
``sys.modules``: a host process that also imports the real package keeps its own copy.

Plugin code sees a prelude only through ``expose``: ``{"emdash": "emdash._shared._plugin_api"}``
makes ``import emdash`` return a facade holding exactly that module's ``__all__``.

*Bundles* are compiled plugin modules (``compile_bundle``). ``load_bundle`` executes the
entry module, and the others lazily on import, each with fresh globals, this bundle's own
builtins and a ``random`` generator of its own.
"""

from __future__ import annotations

import builtins
import sys
import types
from collections.abc import Mapping
from types import CodeType, MappingProxyType
from typing import Any

from stdlib_shims import RANDOM_NAME, SHIM_NAMES, SHIMS, Facade, make_facade, make_random, preload

from ._builtins import make_builtins
from ._compiler import module_name_for_path
from ._errors import SandboxError, SandboxViolation
from ._guards import PluginModule
from ._importer import BundleImporter

_RESERVED_NAMES = SHIM_NAMES | {"__future__"}


def _valid_module_name(name: object) -> bool:
    return type(name) is str and bool(name) and all(part.isidentifier() for part in name.split("."))


class Preludes:
    """Executed prelude modules and the facades plugins may import."""

    __slots__ = ("_modules", "_exposed")

    def __init__(
        self, modules: Mapping[str, types.ModuleType], exposed: Mapping[str, Facade]
    ) -> None:
        self._modules = dict(modules)
        self._exposed: Mapping[str, Facade] = MappingProxyType(dict(exposed))

    def get(self, name: str) -> types.ModuleType:
        """The prelude module called ``name``; ``KeyError`` if there is none."""
        try:
            return self._modules[name]
        except KeyError:
            raise KeyError(
                f'No prelude module named "{name}" (known: {", ".join(sorted(self._modules))})'
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    @property
    def names(self) -> list[str]:
        """Names of all prelude modules, including synthesised parent packages."""
        return sorted(self._modules)

    @property
    def exposed(self) -> Mapping[str, Facade]:
        """Importable name -> facade, as given to ``build_preludes(expose=...)``."""
        return self._exposed


class _PreludeLoader:
    """Executes prelude sources in dependency order, resolving imports among them first."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = dict(sources)
        self._modules: dict[str, types.ModuleType] = {}
        self._packages = {
            ".".join(name.split(".")[:i])
            for name in self._sources
            for i in range(1, name.count(".") + 1)
        }
        self._builtins = dict(vars(builtins))
        self._builtins["__import__"] = self._import

    @property
    def modules(self) -> dict[str, types.ModuleType]:
        return self._modules

    def _known(self, name: str) -> bool:
        return name in self._sources or name in self._packages

    def load(self, name: str) -> types.ModuleType:
        module = self._modules.get(name)
        if module is not None:
            return module  # loaded, or being loaded (circular import)
        parent_name, _, child = name.rpartition(".")
        parent = self.load(parent_name) if parent_name else None
        module = types.ModuleType(name)
        is_package = name in self._packages
        module.__package__ = name if is_package else parent_name
        if is_package:
            module.__path__ = []
        module.__dict__["__builtins__"] = self._builtins
        self._modules[name] = module
        source = self._sources.get(name)
        if source is not None:
            # Some stdlib helpers look their caller's module up in sys.modules while the
            # module executes (dataclasses resolves string annotations that way). Register
            # the prelude for the duration of its execution only, and only if the name is
            # free: a host process that also imports the real package must keep its own.
            registered = name not in sys.modules
            if registered:
                sys.modules[name] = module
            try:
                code = compile(source, f"<prelude {name}>", "exec", dont_inherit=True)
                exec(code, module.__dict__)
            except Exception as exc:
                del self._modules[name]
                raise SandboxError(
                    f'Prelude module "{name}" failed to load: {type(exc).__name__}: {exc}'
                ) from exc
            finally:
                if registered and sys.modules.get(name) is module:
                    del sys.modules[name]
        if parent is not None:
            setattr(parent, child, module)
        return module

    def _resolve(self, name: str, globals_: Mapping[str, Any] | None, level: int) -> str:
        if level == 0:
            return name
        package = (globals_ or {}).get("__package__") or ""
        base = package.split(".") if package else []
        if level - 1 > len(base):
            return name  # let the real importer report it
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, name] if name else base)

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        absolute = self._resolve(name, globals, level)
        if not absolute or not self._known(absolute):
            return builtins.__import__(name, globals, locals, fromlist, level)
        module = self.load(absolute)
        if not fromlist:
            return self.load(absolute.partition(".")[0])
        for item in fromlist:
            if self._known(f"{absolute}.{item}"):
                self.load(f"{absolute}.{item}")
        return module


def build_preludes(sources: Mapping[str, str], expose: Mapping[str, str]) -> Preludes:
    """Execute trusted host modules given as source text, in order, and build facades.

    ``sources``: module name -> source, e.g. ``{"emdash._shared._errors": src, ...}``.
    ``expose``: importable name -> prelude module name; plugin code importing the name gets
    a facade with exactly the names in that module's ``__all__``.
    """
    for name, source in sources.items():
        if not _valid_module_name(name):
            raise SandboxError(f"Invalid prelude module name {name!r}")
        if type(source) is not str:
            raise SandboxError(f'Prelude "{name}" must be given as source text (str)')
    loader = _PreludeLoader(sources)
    for name in sources:
        loader.load(name)
    exposed: dict[str, Facade] = {}
    for public, target in expose.items():
        if type(public) is not str or not public.isidentifier() or public.startswith("_"):
            raise SandboxError(f"Invalid exposed module name {public!r}: use a public identifier")
        if public in _RESERVED_NAMES:
            raise SandboxError(
                f'Exposed module "{public}" would shadow the sandboxed standard-library module of that name'
            )
        if target not in sources:
            raise SandboxError(
                f'Exposed module "{public}" refers to "{target}", which is not a prelude'
            )
        module = loader.modules[target]
        names = module.__dict__.get("__all__")
        if not isinstance(names, (list, tuple)) or any(type(n) is not str for n in names):
            raise SandboxError(
                f'Prelude "{target}" must define __all__ (a list of names) to be exposed'
            )
        missing = [n for n in names if n not in module.__dict__]
        if missing:
            raise SandboxError(
                f'Prelude "{target}" lists undefined names in __all__: {", ".join(missing)}'
            )
        exposed[public] = make_facade(public, {n: module.__dict__[n] for n in names})
    return Preludes(loader.modules, exposed)


def _entry_module_name(entry: str, code: Mapping[str, CodeType]) -> str:
    if entry in code:
        return entry
    if entry.endswith(".py") or "/" in entry:
        try:
            name = module_name_for_path(entry)
        except ValueError as exc:
            raise SandboxError(f'Invalid entry point "{entry}": {exc}') from None
        if name in code:
            return name
    known = ", ".join(sorted(code)) or "none"
    raise SandboxError(f'Entry module "{entry}" is not part of the plugin (its modules: {known})')


def load_bundle(
    code: Mapping[str, CodeType],
    entry: str,
    *,
    preludes: Preludes,
    rng_seed: int | None = None,
) -> PluginModule:
    """Execute the entry module of a compiled bundle and return it.

    ``code`` comes from ``compile_bundle``. ``entry`` is a module name (``"plugin"``) or a
    bundle path (``"plugin.py"``). The returned ``PluginModule`` is a real module object
    whose attributes are the entry module's globals (read ``plugin`` from it). Exceptions
    raised by the plugin's module code propagate unchanged; a refused action raises
    ``SandboxViolation``. ``rng_seed`` seeds this bundle's ``random`` (tests only).
    """
    if not isinstance(preludes, Preludes):
        raise SandboxError("preludes must come from build_preludes()")
    if type(entry) is not str:
        raise SandboxError("The entry point must be a module name (str)")
    for name, module_code in code.items():
        if not _valid_module_name(name) or type(module_code) is not CodeType:
            raise SandboxError(
                f"Invalid bundle module {name!r}: expected a name and a code object from compile_bundle()"
            )
    entry_name = _entry_module_name(entry, code)
    reserved = _RESERVED_NAMES | set(preludes.exposed)
    for name in code:
        top = name.partition(".")[0]
        if top in reserved:
            raise SandboxViolation(
                f'The plugin module "{name}" would shadow the sandboxed module "{top}"; rename it'
            )
    # Idempotent: a no-op in workers forked from a fork server that already preloaded;
    # makes in-process use (tests, the debugging bypass) behave like a worker.
    preload()
    shims: dict[str, Facade] = dict(SHIMS)
    shims[RANDOM_NAME] = make_random(rng_seed)
    importer = BundleImporter(code, shims, preludes.exposed)
    importer.set_builtins(make_builtins(importer.import_hook))
    return importer.import_module(entry_name)
