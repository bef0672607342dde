"""The plugin author's API: ``define_plugin``, ``HookConfig``, ``RouteConfig``.

This module is shared, as source, by the host and by sandbox workers (where plugins import it
as ``emdash``), so a plugin definition means the same thing in both modes. It therefore
imports only the standard library and other shared modules (``_errors``,
``_hooks_catalog``), and every class uses ``__slots__``: sandboxed code reaches these objects,
and must find nothing on them but the public, plain-data fields it set itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._blocks import blocks
from ._errors import (
    BridgeError,
    CapabilityError,
    EmDashError,
    HttpAccessError,
    InvalidCursorError,
    ManifestError,
    NotFoundError,
    PluginRouteError,
    QuotaExceededError,
    StorageError,
    StorageQueryError,
)
from ._hooks_catalog import HOOK_NAMES, HOOKS
from ._suggest import did_you_mean

__all__ = [
    "JSON",
    "BridgeError",
    "CapabilityError",
    "Context",
    "EmDashError",
    "HookConfig",
    "HookName",
    "HttpAccessError",
    "InvalidCursorError",
    "NotFoundError",
    "PluginDefinition",
    "PluginRouteError",
    "QuotaExceededError",
    "RouteConfig",
    "StorageError",
    "StorageQueryError",
    "blocks",
    "define_plugin",
]

Handler = Callable[..., Any]

# Annotation names for plugin code, so `def on_save(event: JSON, ctx: Context)` runs in
# both modes. Type checkers and trusted plugins get the real types from the ``emdash``
# package (emdash.Context is the ctx class, emdash.JSON and emdash.HookName precise
# aliases). Inside a sandbox worker the ``emdash`` module plugins import is a facade of
# *this* module's ``__all__``, and there the three names are ``typing.Any``: real aliases
# are doors (``list[JSON].append`` is ``list.append``, a Literal forwards attributes to its
# origin) and the ctx class would hand plugin code property objects with ``fget``.
Context: Any = Any
JSON: Any = Any
HookName: Any = Any

ERROR_POLICIES = ("abort", "continue")
_ROUTE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/")


def check_route_name(name: object) -> str:
    """A route name: 1-128 of ``[A-Za-z0-9_/-]``, starting with a letter or digit.

    The name ends up in URLs, log lines and audit rows, so it gets the same treatment as
    every other plugin-provided name: a closed character set, checked with an exact type.
    The host applies it natively, in the worker (:meth:`PluginDefinition.manifest`), and to
    what a worker reports (a worker may have been taken over).
    """
    if (
        type(name) is not str
        or not name
        or len(name) > 128
        or not name[0].isascii()
        or not name[0].isalnum()
        or not set(name) <= _ROUTE_NAME_CHARS
    ):
        shown = ascii(name[:64]) if isinstance(name, str) else f"<{type(name).__name__}>"
        raise ManifestError(
            f'Invalid route name {shown}: use 1-128 letters, digits, "_", "-" and "/", '
            "starting with a letter or digit"
        )
    return name


class HookConfig:
    """A hook handler plus its pipeline settings.

    ``priority``: lower runs first (default 100). ``timeout_ms``: per-invocation limit
    (default 5000). ``dependencies``: plugin ids whose handler for the same hook must run
    first. ``error_policy``: ``"abort"`` (default) re-raises and fails the operation,
    ``"continue"`` records the error and goes on. ``exclusive``: provider pattern (one
    selected plugin handles the hook).
    """

    __slots__ = ("handler", "priority", "timeout_ms", "dependencies", "error_policy", "exclusive")

    def __init__(
        self,
        handler: Handler,
        priority: float = 100,
        timeout_ms: int = 5000,
        dependencies: list[str] | tuple[str, ...] = (),
        error_policy: str = "abort",
        exclusive: bool = False,
    ) -> None:
        if not callable(handler):
            raise ManifestError("HookConfig handler must be callable")
        if type(priority) not in (int, float) or not math.isfinite(priority):
            raise ManifestError(f"Invalid hook priority {priority!r}: must be a finite number")
        if type(timeout_ms) is not int or timeout_ms <= 0:
            raise ManifestError(
                f"Invalid hook timeout_ms {timeout_ms!r}: must be a positive integer (milliseconds)"
            )
        if error_policy not in ERROR_POLICIES:
            raise ManifestError(
                f'Invalid error_policy "{error_policy}": must be "abort" or "continue"'
            )
        if type(exclusive) is not bool:
            raise ManifestError('Invalid "exclusive" value in hook config: must be a boolean')
        deps = list(dependencies)
        if not all(type(d) is str for d in deps):
            raise ManifestError("Hook dependencies must be a list of plugin ids (strings)")
        self.handler = handler
        self.priority = priority
        self.timeout_ms = timeout_ms
        self.dependencies = tuple(deps)
        self.error_policy = error_policy
        self.exclusive = exclusive

    def meta(self) -> dict[str, Any]:
        """Everything but the handler, as plain JSON data."""
        return {
            "priority": self.priority,
            "timeout_ms": self.timeout_ms,
            "dependencies": list(self.dependencies),
            "error_policy": self.error_policy,
            "exclusive": self.exclusive,
        }

    def __repr__(self) -> str:
        return f"HookConfig(priority={self.priority}, timeout_ms={self.timeout_ms}, error_policy={self.error_policy!r}, exclusive={self.exclusive})"


class RouteConfig:
    """A route handler plus its settings.

    ``public``: reachable without authentication (default: private). ``input``: a JSON
    Schema (dict) the host validates the input against in both modes; trusted plugins may
    also pass a pydantic model class or a callable that returns the validated input.
    ``permission``: the minimum role permission for private routes (default
    ``plugins:manage``). ``cache_control``: a Cache-Control header for public GET routes.
    """

    __slots__ = ("handler", "public", "input", "permission", "cache_control")

    def __init__(
        self,
        handler: Handler,
        public: bool = False,
        input: Any = None,
        permission: str | None = None,
        cache_control: str | None = None,
    ) -> None:
        if not callable(handler):
            raise ManifestError("RouteConfig handler must be callable")
        if type(public) is not bool:
            raise ManifestError("RouteConfig public must be a boolean")
        if permission is not None and type(permission) is not str:
            raise ManifestError("RouteConfig permission must be a string")
        if cache_control is not None and (type(cache_control) is not str or not cache_control):
            raise ManifestError("RouteConfig cache_control must be a non-empty string")
        self.handler = handler
        self.public = public
        self.input = input
        self.permission = permission
        self.cache_control = cache_control

    def meta(self) -> dict[str, Any]:
        """Settings as plain data; a non-JSON-Schema ``input`` is reported as ``None``."""
        schema = self.input if type(self.input) is dict else None
        return {
            "public": self.public,
            "input": schema,
            "permission": self.permission,
            "cache_control": self.cache_control,
        }


class PluginDefinition:
    """What ``define_plugin`` returns: the plugin's hooks and routes.

    Identity and the trust contract (id, version, capabilities, storage, allowed hosts) live
    in the descriptor, never here.
    """

    __slots__ = ("hooks", "routes")

    def __init__(self) -> None:
        self.hooks: dict[str, HookConfig] = {}
        self.routes: dict[str, RouteConfig] = {}

    def add_hook(self, name: str, value: Handler | HookConfig) -> None:
        if type(name) is not str or name not in HOOKS:
            # One suggestion, not the 25 names: the reference lists them all.
            raise ManifestError(
                f'unknown hook "{name}"{did_you_mean(name, HOOK_NAMES)}; '
                "hook names are case-sensitive, such as content:beforeSave"
            )
        if name in self.hooks:
            raise ManifestError(f'Plugin declares hook "{name}" twice; one handler per hook')
        self.hooks[name] = value if isinstance(value, HookConfig) else HookConfig(value)

    def add_route(self, name: str, value: Handler | RouteConfig) -> None:
        check_route_name(name)
        if name in self.routes:
            raise ManifestError(f'Plugin declares route "{name}" twice')
        self.routes[name] = value if isinstance(value, RouteConfig) else RouteConfig(value)

    def hook(self, name: str, **settings: Any) -> Callable[[Handler], Handler]:
        """Decorator form: ``@plugin.hook("content:afterSave", priority=50)``."""

        def register(fn: Handler) -> Handler:
            self.add_hook(name, HookConfig(fn, **settings))
            return fn

        return register

    def route(self, name: str, **settings: Any) -> Callable[[Handler], Handler]:
        """Decorator form: ``@plugin.route("status", public=True)``."""

        def register(fn: Handler) -> Handler:
            self.add_route(name, RouteConfig(fn, **settings))
            return fn

        return register

    def manifest(self) -> dict[str, Any]:
        """Hook and route settings as plain JSON data (what a worker reports to the host).

        Route names are checked again here: ``definition.routes`` is a plain dict that
        plugin code can assign to directly, past :meth:`add_route`.
        """
        for name in self.routes:
            check_route_name(name)
        return {
            "hooks": {name: cfg.meta() for name, cfg in self.hooks.items()},
            "routes": {name: cfg.meta() for name, cfg in self.routes.items()},
        }

    def __repr__(self) -> str:
        return f"PluginDefinition(hooks={sorted(self.hooks)}, routes={sorted(self.routes)})"


_IDENTITY_FIELDS = ("id", "version", "capabilities", "allowed_hosts", "allowedHosts", "storage")


def define_plugin(
    hooks: Mapping[str, Handler | HookConfig] | None = None,
    routes: Mapping[str, Handler | RouteConfig] | None = None,
    **unexpected: Any,
) -> PluginDefinition:
    """Define a plugin's hooks and routes.

    ``hooks`` maps hook names to a handler ``(event, ctx)`` or a :class:`HookConfig`;
    ``routes`` maps route names to a handler ``(route_ctx, ctx)`` or a :class:`RouteConfig`.
    Both may be empty and filled later with the ``@plugin.hook`` / ``@plugin.route``
    decorators. Bind the result to a module-level name ``plugin``.
    """
    if unexpected:
        names = ", ".join(sorted(unexpected))
        if any(k in _IDENTITY_FIELDS for k in unexpected):
            raise ManifestError(
                f"define_plugin() got {names}: identity and capabilities belong in the plugin "
                "descriptor (emdash-plugin.toml), not in code. Pass only hooks= and routes=."
            )
        raise ManifestError(f"define_plugin() got unexpected arguments: {names}")
    definition = PluginDefinition()
    for name, value in (hooks or {}).items():
        definition.add_hook(name, value)
    for route_name, route in (routes or {}).items():
        definition.add_route(route_name, route)
    return definition


def coerce_definition(obj: Any) -> PluginDefinition:
    """Accept a ``define_plugin`` result or the standard format ``{"hooks":..., "routes":...}``."""
    if isinstance(obj, PluginDefinition):
        for name in obj.routes:  # names assigned directly to ``obj.routes`` skip add_route
            check_route_name(name)
        return obj
    if type(obj) is dict:
        extra = set(obj) - {"hooks", "routes"}
        if extra:
            raise ManifestError(
                f"plugin dict may only contain 'hooks' and 'routes' (got {', '.join(sorted(extra))}); "
                "identity and capabilities belong in the descriptor"
            )
        return define_plugin(hooks=obj.get("hooks"), routes=obj.get("routes"))
    raise ManifestError(
        "The entry module must bind `plugin` to define_plugin(...) or to a dict with "
        f"'hooks' and/or 'routes' (got {type(obj).__name__})"
    )
