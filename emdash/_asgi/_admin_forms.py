"""A submitted plugin form, read back on the server: typed values, offered choices, field
conditions and repeaters.

The renderer (:mod:`._admin_html`) remembers what each form it drew offered (its field
types, the option values of every select, radio and checkbox, field conditions,
repeaters and how many items each showed) under a random key in the session. What the
browser posts is then hostile input read against that record, never trusted for its
shape:

- a field the form did not show is ignored; a value is typed by its element's type;
- a select, radio or checkbox value the form did not offer is refused with a field error
  and the plugin is not called (a forged POST must not hand a plugin a value its own UI
  could never produce: plugins check the values they expect, not the ones they ruled out);
- a field whose ``condition`` does not hold for the submitted values is dropped, as the
  client-side admin drops a hidden field: the plugin sees what its form declared;
- a repeater's items come back as a list of objects, blank items left out, its
  ``min_items``/``max_items`` checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "NOT_OFFERED",
    "condition_holds",
    "convert",
    "read_form",
]

NOT_OFFERED = "the value sent is not one of the offered options; choose one from the list"
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_RE = re.compile(r"[+-]?[0-9]{1,18}")


def convert(kind: str, sent: list[str] | None) -> Any:
    """A field's value typed by its element type (the plugin validates the rest)."""
    values = sent or []
    if kind == "toggle":
        return "true" in values
    if kind == "checkbox":
        return values
    last = values[-1] if values else ""
    if kind == "number_input":
        # ASCII decimal notation only (int() also takes "1_0" and other scripts' digits,
        # and makes a 4000-digit integer no sandbox frame can carry): an integer of up to
        # 18 digits stays one (within int64), anything longer is a float, if finite.
        text = last.strip()
        if not _NUMBER_RE.fullmatch(text):
            return None
        if _INT_RE.fullmatch(text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else None
    return last


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a toggle's True must not satisfy {"eq": 1}.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def condition_holds(condition: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether ``{field, eq}`` / ``{field, neq}`` holds for the form's ``values``.

    A checkbox's value is a list: ``eq`` holds when the list holds the value. A field the
    form does not have has no value (``None``)."""
    current = values.get(str(condition.get("field")))
    if "neq" in condition:
        return not condition_holds(
            {"field": condition.get("field"), "eq": condition["neq"]}, values
        )
    wanted = condition.get("eq")
    if isinstance(current, list):
        return any(_same(item, wanted) for item in current)
    return _same(current, wanted)


def _offered(value: Any, allowed: list[Any], *, may_be_blank: bool) -> bool:
    """Whether every value sent is an offered one. Nothing chosen is fine for a radio
    group and checkboxes (browsers send nothing then); a select always sends one of its
    options, so a blank one came from somewhere else, unless a blank option was offered."""
    if value in (None, "", []) and may_be_blank:
        return True
    sent = value if isinstance(value, list) else [value]
    return all(isinstance(item, str) and item in allowed for item in sent)


def _blank(value: Any) -> bool:
    return value is None or value is False or value == "" or value == []


def read_form(
    spec: Mapping[str, Any], form: Mapping[str, list[str]], *, keep_inapplicable: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, errors)`` for a remembered form ``spec`` and the posted ``form``.

    ``values`` maps each field's action id to its typed value (fields whose condition does
    not hold left out); ``errors`` maps a field's action id to what is wrong with it. With
    any error the submission must not reach the plugin. ``keep_inapplicable`` keeps the
    fields whose condition does not hold (to refill a form shown again, never to send).
    """
    fields: Mapping[str, str] = spec.get("fields") or {}
    choices: Mapping[str, list[Any]] = spec.get("choices") or {}
    repeaters: Mapping[str, Mapping[str, Any]] = spec.get("repeaters") or {}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for aid, kind in fields.items():
        if kind == "repeater":
            items, problem = _read_repeater(aid, repeaters.get(aid) or {}, form)
            values[aid] = items
            if problem:
                errors[aid] = problem
            continue
        value = convert(kind, form.get(f"f.{aid}"))
        if aid in choices and not _offered(value, choices[aid], may_be_blank=kind != "select"):
            errors[aid] = NOT_OFFERED
            value = [] if kind == "checkbox" else ""
        values[aid] = value
    conditions: Mapping[str, Mapping[str, Any]] = spec.get("conditions") or {}
    # Evaluated against the submitted values, all at once: a condition reads the value the
    # user chose, not one a previous condition already removed.
    dropped = [aid for aid, cond in conditions.items() if not condition_holds(cond, values)]
    for aid in dropped:
        if not keep_inapplicable:
            values.pop(aid, None)
        errors.pop(aid, None)  # a value that does not apply is not sent, so not checked
    return values, errors


def _read_repeater(
    aid: str, rep: Mapping[str, Any], form: Mapping[str, list[str]]
) -> tuple[list[dict[str, Any]], str | None]:
    sub: Mapping[str, str] = rep.get("fields") or {}
    choices: Mapping[str, list[Any]] = rep.get("choices") or {}
    shown = rep.get("items")
    count = shown if isinstance(shown, int) and 0 <= shown <= 100 else 0
    items: list[dict[str, Any]] = []
    problem: str | None = None
    for i in range(count):
        item = {s: convert(kind, form.get(f"f.{aid}.{i}.{s}")) for s, kind in sub.items()}
        if all(_blank(v) for v in item.values()):
            continue  # an empty row of the form, not an item
        for s, value in item.items():
            # A repeater row's select offers a blank "(none)" first (see the renderer).
            if s in choices and not _offered(value, choices[s], may_be_blank=True):
                problem = f"item {i + 1}: {NOT_OFFERED}"
                item[s] = ""
        items.append(item)
    low, high = rep.get("min"), rep.get("max")
    if problem is None and isinstance(low, int) and len(items) < low:
        problem = f"needs at least {low} item{'s' if low != 1 else ''}; fill in more rows"
    if problem is None and isinstance(high, int) and len(items) > high:
        problem = f"takes at most {high} item{'s' if high != 1 else ''}"
    return items, problem
