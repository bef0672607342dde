"""Worker-side entry points for sandboxed plugins (a shared module, run inside workers).

The host loads this file, as source, into the sandbox fork server as a *prelude*; the
supervisor then calls its functions by name as ``fn(entry_module, host_call, *args)``:

- :func:`load` once per worker, right after the plugin's modules were loaded; it reads the
  module-level ``plugin``, remembers the definition and returns its hook/route settings as
  plain data (the host validates that reply: it comes from untrusted territory).
- :func:`invoke_hook` / :func:`invoke_route` per invocation (a route's input is first
  validated against its JSON Schema, here, under the plugin's limits); they build the ``ctx`` with
  :func:`emdash._shared._context.make_context` around ``host_call`` (so every ctx call is a bridge
  RPC) and call the plugin's handler.

Nothing here is a security boundary: a plugin that broke out of the language layer could
call ``host_call`` directly, and the host-side bridge checks every call anyway. It imports
only shared modules, never host code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sandbox._print as _print_sink
from sandbox._jsonrule import NotExactJSON, exact_copy

from ._context import make_context
from ._errors import ManifestError, PluginRouteError, SandboxViolation
from ._plugin_api import PluginDefinition, coerce_definition
from ._route_input import check_input_schema, validate_input

HostCall = Callable[[str, dict[str, Any]], Any]

# One worker serves one plugin, so module-level state is per plugin. The dict lives in this
# prelude module, whose globals are unreachable from restricted code (no `_` attributes).
_STATE: dict[str, Any] = {}


def load(entry: Any, host_call: HostCall, info: dict[str, Any]) -> dict[str, Any]:
    """Read the entry module's ``plugin`` and return its hook/route settings."""
    plugin_id = info["plugin"]["id"]
    try:
        plugin = entry.plugin
    except AttributeError:
        raise ManifestError(
            f"Plugin {plugin_id}: the entry module does not bind a module-level `plugin` "
            "(plugin = define_plugin(hooks=..., routes=...))",
            plugin_id=plugin_id,
        ) from None
    definition = coerce_definition(plugin)
    for name, config in definition.routes.items():
        if type(config.input) is dict:
            check_input_schema(plugin_id, name, config.input)
        elif config.input is not None:
            raise ManifestError(
                f"Plugin {plugin_id} route {name!r}: a sandboxed route's input must be a "
                "JSON Schema (a dict); pydantic models and callables work in trusted plugins",
                plugin_id=plugin_id,
            )
    _STATE["definition"] = definition
    _STATE["info"] = info
    return definition.manifest()


def _definition() -> PluginDefinition:
    definition = _STATE.get("definition")
    if definition is None:
        raise ManifestError("The plugin was not loaded in this worker")
    return definition  # type: ignore[no-any-return]


def invoke_hook(entry: Any, host_call: HostCall, name: str, event: Any) -> Any:
    """Run the plugin's handler for hook ``name``; ``None`` when it has none."""
    config = _definition().hooks.get(name)
    if config is None:
        return None
    # set_sink and try/finally rather than `with _PrintToLog(...)`: two Python calls less
    # on every invocation, the same restore on every exit.
    previous = _print_sink.set_sink(_PrintToLog(host_call)._write)
    try:
        value = config.handler(event, make_context(host_call, _STATE["info"]))
    finally:
        _print_sink.set_sink(previous)
    return _result(value, "hook", name)


def invoke_route(entry: Any, host_call: HostCall, name: str, route_ctx: Any) -> Any:
    """Run the plugin's handler for route ``name`` as ``handler(route_ctx, ctx)``."""
    config = _definition().routes.get(name)
    if config is None:
        raise PluginRouteError("NOT_FOUND", f"Route not found: {name}", 404)
    if type(config.input) is dict and type(route_ctx) is dict:
        validate_input(config.input, route_ctx.get("input"))
    previous = _print_sink.set_sink(_PrintToLog(host_call)._write)
    try:
        value = config.handler(route_ctx, make_context(host_call, _STATE["info"]))
    finally:
        _print_sink.set_sink(previous)
    return _result(value, "route", name)


# A line of print output longer than this is sent in pieces (the host cuts log lines anyway).
_PRINT_LINE_MAX = 4096


class _PrintToLog:
    """``print()`` during one invocation becomes ``ctx.log.info("print: ...")`` lines.

    The same rule as natively (``emdash._hosting._loader.FilesImporter``): each ``print``
    call's text, less its final newline, is one log line per line of it, at info level and
    marked ``print:``. Each line is one ``log`` host call, so it is bounded like every
    ``ctx.log`` line (per-invocation line cap, past which each line costs a subrequest; the
    plugin's log-bytes quota; cleaning and cutting on the host). Print output at import
    time (outside any invocation) has no host call to go to and is dropped.
    """

    __slots__ = ("_call", "_previous")

    def __init__(self, host_call: HostCall) -> None:
        self._call = host_call
        self._previous: Callable[[str], None] | None = None

    def __enter__(self) -> _PrintToLog:
        self._previous = _print_sink.set_sink(self._write)
        return self

    def __exit__(self, *exc: object) -> None:
        _print_sink.set_sink(self._previous)

    def _write(self, text: str) -> None:
        for line in text.removesuffix("\n").split("\n"):
            for start in range(0, max(len(line), 1), _PRINT_LINE_MAX):
                piece = line[start : start + _PRINT_LINE_MAX]
                self._call("log", {"level": "info", "msg": "print: " + piece})


def _result(value: Any, kind: str, name: str) -> Any:
    """The handler's result held to the exact-JSON rule, here under the plugin's limits.

    The worker's encoder would turn ``{1: .., "1": ..}`` into a duplicate JSON key and the
    host's decoder would turn ``2**64 + 1`` into a float: both silently. Refusing here gives
    the plugin author the reason (a ``SandboxViolation``, as for any result that is not
    JSON, with the path); the host holds what arrives to the same rule anyway
    (``sandbox._protocol``).
    """
    if value is None or type(value) in (str, bool, float):
        return value
    try:
        return exact_copy(value)
    except NotExactJSON as exc:
        raise SandboxViolation(
            # kind and name apart: the text is built only when it is needed
            f"the {kind} {name} result is not JSON-serialisable without loss: {exc}"
        ) from None
