"""JSON-Schema checks of route input, shared by the host and sandbox workers.

The host validates the input of trusted plugins' routes. A sandboxed plugin's schema is
validated **inside its worker**, under its CPU, memory and wall limits: the schema is the
plugin's own choice and the input may come from anyone (public routes), and validation
cost is theirs to pick (``pattern`` with catastrophic backtracking, quadratic
``uniqueItems``, ``anyOf`` fan-out, self-referencing ``$ref``). Run on the host, any of them
would stall it; in the worker they can only exhaust the plugin's own budget. Validation
protects the plugin's handler, not the host, so running it in the plugin's process loses
nothing. Both sides use these two functions, so the error texts are the same in both modes.

This module is loaded into workers as a prelude: it imports only the standard library,
``jsonschema`` (preloaded in the fork server by this import) and ``_errors``.
"""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]

from ._errors import ManifestError, PluginRouteError

__all__ = ["MAX_DETAILS", "check_input_schema", "validate_input"]

MAX_DETAILS = 50


def check_input_schema(plugin_id: str, route: str, schema: dict[str, Any]) -> None:
    """Raise :class:`ManifestError` when ``schema`` is not a valid JSON Schema."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ManifestError(
            f"Plugin {plugin_id} route {route!r} declares an invalid JSON Schema input: "
            f"{exc.message}",
            plugin_id=plugin_id,
        ) from None


def validate_input(schema: dict[str, Any], value: Any) -> None:
    """Raise ``PluginRouteError("VALIDATION_ERROR", "Invalid request body", 400, details)``.

    ``details`` is a list of ``{"path": [...], "message": str}``, at most ``MAX_DETAILS``.
    """
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    if problems:
        raise PluginRouteError(
            "VALIDATION_ERROR",
            "Invalid request body",
            400,
            [
                {"path": [str(p) for p in e.absolute_path], "message": e.message}
                for e in problems[:MAX_DETAILS]
            ],
        )
