"""``admin.settingsSchema``: the settings a plugin declares, checked when the descriptor loads.

``{key: {"type": ..., "label": ..., "description"?, "required"?, ...}}`` with the field
types of EmDash's auto-settings:

=========  ==================================================================
type       extra fields
=========  ==================================================================
string     ``default`` (str), ``multiline`` (bool), ``placeholder``
number     ``default``, ``min``, ``max`` (finite numbers; min <= default <= max)
boolean    ``default`` (bool)
select     ``options`` ``[{value, label}]`` (1-100, unique values), ``default``
secret     none: a secret has no default and is never shown again
url        ``default`` (an http(s) URL), ``placeholder``
email      ``default``, ``placeholder``
=========  ==================================================================

``required`` (bool) is an extension: saving refuses to leave such a field empty.
Keys are identifiers (they become the kv key ``settings:<key>`` and a form field name).
Unknown types and unknown fields are errors, so a typo never silently drops a setting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "FIELD_TYPES",
    "MAX_SETTINGS",
    "MAX_SETTING_TEXT",
    "SettingsSchemaError",
    "check_settings_schema",
]

FIELD_TYPES = ("string", "number", "boolean", "select", "secret", "url", "email")
MAX_SETTINGS = 50
MAX_SETTING_TEXT = 4000  # a saved string value, in characters (a Block Kit text's limit)
_KEY_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
# What the settings page cannot show (the Block Kit rule for text): C0 controls but tab
# and newline, DEL, C1 controls, bidirectional overrides and isolates.
_BAD_TEXT_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_COMMON = {"type", "label", "description", "required"}
_EXTRA: dict[str, set[str]] = {
    "string": {"default", "multiline", "placeholder"},
    "number": {"default", "min", "max"},
    "boolean": {"default"},
    "select": {"options", "default"},
    "secret": set(),
    "url": {"default", "placeholder"},
    "email": {"default", "placeholder"},
}


def _is_number(value: Any) -> bool:
    if type(value) is int:
        # Before math.isfinite, which raises OverflowError past a float's range.
        return _INT_MIN <= value <= _INT_MAX
    return type(value) is float and math.isfinite(value)


def _text(value: Any, what: str, limit: int, empty: bool = True) -> None:
    if type(value) is not str or (not empty and not value.strip()) or len(value) > limit:
        raise ValueError(
            f"{what} must be a{'' if empty else ' non-empty'} string of at most {limit} characters"
        )
    if _BAD_TEXT_RE.search(value):
        # Refused here, once, rather than by the Block Kit check at every settings page
        # view (where the page would show an error instead of the form).
        raise ValueError(
            f"{what} must not contain control characters or bidirectional overrides; remove them"
        )


class SettingsSchemaError(ValueError):
    """Every problem of a settings schema, not only the first: ``problems`` is a list of
    ``(path, message)``, ``path`` relative to ``admin.settingsSchema`` (``"a.label"``)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class _Problems:
    """Collects what each independent check raises, with the field path it concerns."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def check(self, path: str, fn: Callable[..., None], *args: Any) -> bool:
        try:
            fn(*args)
        except ValueError as exc:
            self.found.append((path, str(exc)))
            return False
        return True


def check_settings_schema(schema: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Raise :class:`SettingsSchemaError` (a ``ValueError`` listing every problem, each a
    sentence naming the key) for an invalid schema; else return it."""
    problems = _Problems()
    if len(schema) > MAX_SETTINGS:
        problems.found.append(
            ("", f"declares {len(schema)} settings; at most {MAX_SETTINGS} allowed")
        )
    for key, spec in schema.items():
        if not _KEY_RE.fullmatch(key) or len(key) > 64:
            problems.found.append(
                (
                    key,
                    f"setting key {key!r} must be 1-64 letters, digits and '_', starting "
                    "with a letter",
                )
            )
            continue
        _check_field(problems, key, spec)
    if problems.found:
        raise SettingsSchemaError(problems.found)
    return schema


def _check_field(problems: _Problems, key: str, spec: dict[str, Any]) -> None:
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        # Every other check depends on the type: this one alone is reported for the key.
        problems.found.append(
            (
                f"{key}.type",
                f'setting "{key}": type must be one of {", ".join(FIELD_TYPES)} (got {kind!r})',
            )
        )
        return
    unknown = set(spec) - _COMMON - _EXTRA[kind]
    if unknown:
        allowed = ", ".join(sorted(_COMMON | _EXTRA[kind]))
        problems.found.append(
            (
                f"{key}.{sorted(unknown)[0]}",
                f'setting "{key}": unknown field(s) {", ".join(sorted(unknown))} for type '
                f"{kind} (allowed: {allowed})",
            )
        )
    problems.check(f"{key}.label", _text, spec.get("label"), f'setting "{key}": label', 200, False)
    for name, limit in (("description", 1000), ("placeholder", 200)):
        if name in spec:
            problems.check(f"{key}.{name}", _text, spec[name], f'setting "{key}": {name}', limit)
    for flag in ("required", "multiline"):
        if flag in spec and type(spec[flag]) is not bool:
            problems.found.append(
                (f"{key}.{flag}", f'setting "{key}": {flag} must be true or false')
            )
    default = spec.get("default")
    if kind in ("string", "url", "email") and "default" in spec:
        problems.check(
            f"{key}.default", _text, default, f'setting "{key}": default', MAX_SETTING_TEXT
        )
    elif kind == "boolean" and "default" in spec and type(default) is not bool:
        problems.found.append((f"{key}.default", f'setting "{key}": default must be true or false'))
    elif kind == "number":
        _check_number(problems, key, spec)
    elif kind == "select":
        _check_select(problems, key, spec)


def _check_number(problems: _Problems, key: str, spec: dict[str, Any]) -> None:
    valid = True
    for name in ("default", "min", "max"):
        if name in spec and not _is_number(spec[name]):
            valid = False
            problems.found.append(
                (
                    f"{key}.{name}",
                    f'setting "{key}": {name} must be a finite number (an integer within int64)',
                )
            )
    if not valid:
        return  # comparing them would compare the wrong things
    low, high, default = spec.get("min"), spec.get("max"), spec.get("default")
    if low is not None and high is not None and low > high:
        problems.found.append((f"{key}.min", f'setting "{key}": min is greater than max'))
    if default is not None and (
        (low is not None and default < low) or (high is not None and default > high)
    ):
        problems.found.append((f"{key}.default", f'setting "{key}": default is outside min..max'))


def _check_select(problems: _Problems, key: str, spec: dict[str, Any]) -> None:
    options = spec.get("options")
    if type(options) is not list or not 1 <= len(options) <= 100:
        problems.found.append(
            (
                f"{key}.options",
                f'setting "{key}": a select needs options: a list of 1-100 {{value, label}}',
            )
        )
        return
    seen: set[str] = set()
    for i, opt in enumerate(options):
        where = f"{key}.options[{i}]"
        if type(opt) is not dict or set(opt) != {"value", "label"}:
            problems.found.append(
                (where, f'setting "{key}": options[{i}] must be {{value, label}}')
            )
            continue
        value_ok = problems.check(
            f"{where}.value",
            _text,
            opt["value"],
            f'setting "{key}": options[{i}].value',
            200,
            False,
        )
        problems.check(
            f"{where}.label",
            _text,
            opt["label"],
            f'setting "{key}": options[{i}].label',
            200,
            False,
        )
        if value_ok and opt["value"] in seen:
            problems.found.append(
                (
                    f"{where}.value",
                    f'setting "{key}": options[{i}] repeats the value {opt["value"]!r}',
                )
            )
        if value_ok:
            seen.add(opt["value"])
    default = spec.get("default")
    if "default" in spec and (not isinstance(default, str) or default not in seen):
        problems.found.append(
            (f"{key}.default", f'setting "{key}": default must be the value of one of the options')
        )
