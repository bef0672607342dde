"""The import policy: what ``import`` means inside a sandboxed bundle.

``__import__`` is the one builtin through which a sandbox hands out whole namespaces, so it
is an allowlist with three sources, in this order of precedence (names never overlap; the
loader refuses bundles whose modules would shadow a shim or an exposed module):

1. the plugin's own modules, executed lazily on first import with fresh globals each;
2. the stdlib shims (``stdlib_shims.SHIMS`` plus this bundle's ``random``);
3. exposed preludes (``emdash`` -> a facade of ``emdash._shared._plugin_api.__all__``).

Everything it returns is a facade or a ``PluginModule``, never a real module. ``from m
import a, b`` is checked name by name *before* returning: CPython's ``IMPORT_FROM`` then
reads the names with a plain C ``getattr`` that no guard sees, and on a miss falls back to
``sys.modules[m.__name__ + "." + a]`` (which is why nothing we return has a real
``__name__``). Relative imports resolve inside the bundle only and never above its root.

C code also calls ``__import__``: ``PyImport_Import`` looks the builtin up in the *calling
frame's* builtins, so ``datetime.strptime`` called from plugin code asks *us* for
``_strptime`` (073). Those calls pass an empty ``list`` as fromlist (plugin imports pass a
tuple or None) and discard our return value in favour of ``sys.modules[name]``. We answer
them with ``None`` if the module is already loaded, which leaks nothing, and refuse them
otherwise: after seccomp, loading it would need the file system.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import CodeType
from typing import Any

from stdlib_shims import Facade, facade_members, make_facade

from ._compiler import is_package_code
from ._errors import SandboxViolation
from ._guards import PLUGIN_NAME_PREFIX, PluginModule

# ``from __future__ import annotations`` is the one future import the compiler accepts; at
# run time it is an ordinary import of "__future__" that must bind something.
_FUTURE = make_facade("__future__", {"annotations": "annotations"})


class BundleImporter:
    """Resolves and executes the imports of one bundle (one instance per ``load_bundle``)."""

    def __init__(
        self,
        code: Mapping[str, CodeType],
        shims: Mapping[str, Facade],
        exposed: Mapping[str, Facade],
    ) -> None:
        self._code = dict(code)
        self._shims = dict(shims)
        self._exposed = dict(exposed)
        self._builtins: dict[str, Any] = {}
        self._modules: dict[str, PluginModule] = {}
        # Globals dict identity -> module name, to know who is importing (relative imports).
        self._by_globals: dict[int, str] = {}
        # Packages: every proper prefix of a module name, and modules from __init__.py.
        self._packages: set[str] = set()
        for name, module_code in self._code.items():
            parts = name.split(".")
            self._packages.update(".".join(parts[:i]) for i in range(1, len(parts)))
            if is_package_code(module_code):
                self._packages.add(name)
        self._top_level = {name.split(".")[0] for name in self._code}
        # The bundle root, target of "from . import x" in a top-level module. It holds the
        # top-level modules once they are imported, and nothing else.
        self._root = PluginModule(PLUGIN_NAME_PREFIX.rstrip("."))

    def set_builtins(self, table: dict[str, Any]) -> None:
        """The builtins every plugin module executes with (built around ``import_hook``)."""
        self._builtins = table

    @property
    def allowed_modules(self) -> list[str]:
        """Importable non-plugin module names, for messages."""
        return sorted(set(self._shims) | set(self._exposed))

    # -- entry points --------------------------------------------------------------------

    def import_module(self, name: str) -> PluginModule:
        """Import plugin module ``name`` (host side; used for the entry module)."""
        return self._load(name)

    def import_hook(
        self,
        name: object,
        globals: object = None,
        locals: object = None,
        fromlist: object = (),
        level: object = 0,
    ) -> Any:
        """``__import__`` of the bundle."""
        if type(fromlist) is list and not fromlist and level == 0 and type(name) is str:
            return self._c_level_import(name)
        if type(name) is not str:
            raise SandboxViolation("Module names must be str")
        if type(level) is not int or level < 0:
            raise SandboxViolation("Invalid relative import level")
        names = self._check_fromlist(fromlist)
        if level > 0:
            return self._import_relative(name, names, level, globals)
        top = name.partition(".")[0]
        if top in self._top_level:
            return self._import_plugin(name, names)
        if name in self._shims or name in self._exposed:
            return self._import_facade(name, names)
        if name == "__future__" and names == ("annotations",):
            return _FUTURE
        raise SandboxViolation(
            f'Import of "{name}" is not allowed in sandboxed plugins. '
            f"Allowed modules: {', '.join(self.allowed_modules)} (and the plugin's own modules)"
        )

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _c_level_import(name: str) -> None:
        if name in sys.modules:
            return None  # the caller (C) reads sys.modules[name] itself
        raise SandboxViolation(
            f'The standard library needed module "{name}", which was not preloaded '
            "(call stdlib_shims.preload() before confining the worker)"
        )

    @staticmethod
    def _check_fromlist(fromlist: object) -> tuple[str, ...]:
        if fromlist is None:
            return ()
        if type(fromlist) is not tuple:
            raise SandboxViolation("Invalid import: the list of imported names must be a tuple")
        for item in fromlist:
            if type(item) is not str:
                raise SandboxViolation("Imported names must be str")
            if item == "*":
                raise SandboxViolation('"from ... import *" is not allowed in sandboxed plugins')
            if item.startswith("_"):
                raise SandboxViolation(
                    f'Importing "{item}" is not allowed (names starting with "_" are private)'
                )
        return fromlist

    def _import_facade(self, name: str, names: tuple[str, ...]) -> Facade:
        table = self._shims if name in self._shims else self._exposed
        target = table[name]
        for item in names:
            if item not in facade_members(target):
                provided = ", ".join(sorted(facade_members(target)))
                raise SandboxViolation(
                    f'Cannot import "{item}" from "{name}": the sandboxed "{name}" module '
                    f"provides only: {provided}"
                )
        if names:
            return target
        # "import urllib.parse" binds the top-level package, like CPython.
        return table[name.partition(".")[0]]

    def _import_plugin(self, name: str, names: tuple[str, ...]) -> PluginModule:
        module = self._load(name)
        if not names:
            return self._modules[name.partition(".")[0]]
        self._load_fromlist(module, name, names)
        return module

    def _load_fromlist(self, module: PluginModule, name: str, names: tuple[str, ...]) -> None:
        for item in names:
            submodule = f"{name}.{item}" if name else item
            if submodule in self._code or submodule in self._packages:
                self._load(submodule)
            elif item not in module.__dict__:
                where = f'plugin module "{name}"' if name else "the plugin's top-level package"
                raise ImportError(f'cannot import name "{item}" from {where}')

    def _import_relative(
        self, name: str, names: tuple[str, ...], level: int, importer_globals: object
    ) -> PluginModule:
        importer = self._by_globals.get(id(importer_globals))
        if (
            importer is None
            or self._modules.get(importer) is None
            or self._modules[importer].__dict__ is not importer_globals
        ):
            raise SandboxViolation(
                "Relative imports are only allowed inside the plugin's own modules"
            )
        # The package "." refers to: the importer itself if it is a package, else its parent.
        # The bundle root ("") acts as the package of top-level modules.
        package = importer if importer in self._packages else importer.rpartition(".")[0]
        for _ in range(level - 1):
            if not package:
                raise SandboxViolation(
                    f'Relative import "{"." * level}{name}" in plugin module "{importer}" '
                    "goes above the plugin's top-level package"
                )
            package = package.rpartition(".")[0]
        target = f"{package}.{name}" if package and name else (package or name)
        if not target:
            # "from . import x" at the bundle root.
            self._load_fromlist(self._root, "", names)
            return self._root
        if target.partition(".")[0] not in self._top_level:
            raise ModuleNotFoundError(f'No module named "{target}" in this plugin')
        module = self._load(target)
        if names:
            self._load_fromlist(module, target, names)
        return module

    def _load(self, name: str) -> PluginModule:
        """Return plugin module ``name``, executing it (and its parents) on first import."""
        loaded = self._modules.get(name)
        if loaded is not None:
            return loaded
        parent_name, _, child = name.rpartition(".")
        parent = self._load(parent_name) if parent_name else self._root
        code = self._code.get(name)
        if code is None and name not in self._packages:
            raise ModuleNotFoundError(f'No module named "{name}" in this plugin')
        module = PluginModule(PLUGIN_NAME_PREFIX + name)
        namespace = module.__dict__
        # Fresh globals per module: only its name and the bundle's builtins. The builtins
        # dict is shared by the bundle's modules, never with another bundle.
        namespace["__builtins__"] = self._builtins
        # Registered before execution, like sys.modules, so circular imports see the
        # partially initialised module instead of recursing.
        self._modules[name] = module
        self._by_globals[id(namespace)] = name
        if code is not None:
            try:
                exec(code, namespace)
            except BaseException:
                del self._modules[name]
                del self._by_globals[id(namespace)]
                raise
        # Bind the submodule on its parent after it loaded, as CPython does.
        parent.__dict__[child] = module
        return module
