"""JSON-Schema validation of route input, safe to run on schemas written by untrusted plugins.

The host validates route input in both modes (EmDash's isolates never do). For a sandboxed
plugin the schema is the plugin's, and the input may come from anyone (public routes), so
two keywords need care:

- ``pattern`` / ``patternProperties`` are regular expressions the *host* would run on
  attacker-chosen text. With Python's ``re`` a catastrophic-backtracking pattern holds the
  GIL for minutes. Untrusted schemas run them through the ``regex`` engine with a per-match
  timeout (and the GIL released), inside a budget per validation; a pattern that cannot be
  decided in time is a validation failure, never a stalled host.
- ``$ref`` / ``$dynamicRef`` must point inside the schema (``#...``), so the validator never
  looks anywhere else.

Trusted plugins' schemas are the operator's own code and use jsonschema unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import regex  # type: ignore[import-untyped]

from ._errors import ManifestError

__all__ = ["check_schema", "make_validator"]

PATTERN_TIMEOUT_S = 0.05
"""Longest time one pattern match may take."""
PATTERN_BUDGET_S = 0.25
"""Longest time all pattern matches of one validation may take together."""
MAX_SCHEMA_DEPTH = 32


def check_schema(plugin_id: str, route: str, schema: dict[str, Any], *, trusted: bool) -> None:
    """Refuse an invalid schema, or one an untrusted plugin may not hand the host."""

    def refuse(why: str) -> ManifestError:
        return ManifestError(
            f"Plugin {plugin_id} route {route!r} declares an invalid JSON Schema input: {why}",
            plugin_id=plugin_id,
        )

    if not trusted:
        _walk_untrusted(schema, 0, refuse)
        for pattern in _patterns(schema):
            try:
                regex.compile(pattern)
            except (regex.error, TypeError) as exc:
                raise refuse(f"pattern {pattern!r} is not a valid regular expression ({exc})") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise refuse(exc.message) from None


def make_validator(schema: dict[str, Any], *, trusted: bool) -> Any:
    """A jsonschema validator for one validation; bounded regexes for untrusted schemas."""
    base = jsonschema.validators.validator_for(schema)
    if trusted:
        return base(schema)
    budget = _Budget()

    def pattern(validator: Any, patrn: str, instance: Any, _schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "string"):
            return
        found = budget.search(patrn, instance)
        if found is None:
            yield jsonschema.ValidationError(
                f"{_short(instance)} could not be checked against {patrn!r} in time"
            )
        elif not found:
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(
        validator: Any, properties: dict[str, Any], instance: Any, _schema: Any
    ) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in properties.items():
            for key, value in instance.items():
                found = budget.search(patrn, key)
                if found is None:
                    yield jsonschema.ValidationError(
                        f"property {_short(key)} could not be checked against {patrn!r} in time"
                    )
                elif found:
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    bounded = jsonschema.validators.extend(
        base, {"pattern": pattern, "patternProperties": pattern_properties}
    )
    return bounded(schema)


class _Budget:
    """Time left for the regular expressions of one validation."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + PATTERN_BUDGET_S

    def search(self, pattern: str, text: str) -> bool | None:
        """True/False for a decided match, None when it could not be decided in time."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            # concurrent=True releases the GIL while matching: other host threads run on.
            hit = regex.search(
                pattern, text, timeout=min(PATTERN_TIMEOUT_S, left), concurrent=True
            )
        except TimeoutError:
            return None
        return hit is not None


def _walk_untrusted(node: Any, depth: int, refuse: Any) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise refuse(f"it nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if type(node) is dict:
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and not (
                type(value) is str and value.startswith("#")
            ):
                raise refuse(
                    f'"{key}": {value!r} is not a reference inside the schema (sandboxed '
                    "plugins may only use local references such as '#/$defs/x')"
                )
            _walk_untrusted(value, depth + 1, refuse)
    elif type(node) is list:
        for item in node:
            _walk_untrusted(item, depth + 1, refuse)


def _patterns(node: Any) -> Iterator[Any]:
    if type(node) is dict:
        for key, value in node.items():
            if key == "pattern":
                yield value
            elif key == "patternProperties" and type(value) is dict:
                yield from value
            yield from _patterns(value)
    elif type(node) is list:
        for item in node:
            yield from _patterns(item)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
