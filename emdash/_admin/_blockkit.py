"""The Block Kit schema, enforced on the host: what an ``admin`` route may answer.

Everything a plugin's ``admin`` route returns is hostile input (a sandboxed plugin may be
taken over; a native one may have a bug), and the admin UI turns it into HTML. So the host
validates the *whole* response before anyone sees it, deny-by-default:

- the response is exact JSON data (``dict``/``list``/``str``/``int``/``float``/``bool``/
  ``None``, finite numbers), at most :data:`MAX_RESPONSE_BYTES` encoded, and is *copied*
  first (a native handler could keep a reference and mutate it while we look);
- every block and element type is from the closed lists below, every field is known
  (an unknown field is refused, not ignored: a renderer that grows a feature later must
  not meet a field a plugin smuggled in earlier), required fields are present;
- lists and texts have upper bounds (the ``MAX_*`` constants; EmDash sets none, so these
  are ours and documented in docs/admin.md); nesting of container blocks is bounded;
- URLs (links, images, media) are ``https://``/``http://`` with a host, or a site path
  (``/x``, never ``//x``): ``javascript:``, ``data:`` and every other scheme are refused;
- texts carry no control characters other than tab and newline and no bidirectional
  overrides (a label must read as what it is);
- ids (``action_id``, ``block_id``...) use a small character set: they come back in
  interactions and end up in HTML attributes and form field names.

A refusal raises :class:`AdminResponseError` naming the plugin and the exact path of the
offending value (``blocks[3].elements[1].url``). Messages never echo a plugin's text
beyond a short ``ascii()`` rendering of an unknown type name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox._jsonrule import exact_copy

from .._shared._errors import EmDashError, clean_text

__all__ = [
    "MAX_BLOCKS",
    "MAX_RESPONSE_BYTES",
    "AdminInteractionError",
    "AdminResponseError",
    "BLOCK_TYPES",
    "ELEMENT_TYPES",
    "check_url",
    "validate_blocks",
    "validate_response",
]

# -- limits (ours: EmDash's validator has none) -----------------------------------------
MAX_RESPONSE_BYTES = 256 * 1024  # the whole response, encoded as JSON
MAX_BLOCKS = 200  # blocks in one response, nested ones included
MAX_DEPTH = 3  # container blocks (columns, accordion, tab) inside each other
MAX_ELEMENTS = 25  # elements of an actions block / an empty block's actions
MAX_FORM_FIELDS = 50
MAX_OPTIONS = 100
MAX_TABLE_COLUMNS = 20
MAX_TABLE_ROWS = 200
MAX_ROW_KEYS = 50
MAX_ITEMS = 50  # stats items, fields pairs
MAX_PANELS = 10
MAX_SERIES = 10
MAX_POINTS = 2000  # per series
MAX_ID = 128
MAX_LABEL = 200  # labels, titles, header text, option labels
MAX_TEXT = 4000  # section / context text, descriptions
MAX_CELL = 1000  # a table cell, a stat or field value
MAX_CODE = 20_000
MAX_URL = 2048
MAX_VALUE_DEPTH = 8  # free JSON values (button values, initial values)
MAX_TOAST = 500

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{3,8}$")
_MIME_RE = re.compile(r"^[a-z]+/[a-z0-9.+*-]+$")
# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides and
# isolates (U+202A-U+202E, U+2066-U+2069) that make text display as something else.
_BAD_TEXT_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class AdminResponseError(EmDashError):
    """A plugin's admin route answered something that is not valid Block Kit.

    ``path`` locates the offending value (``blocks[3].elements[1].url``); ``problem`` says
    what is wrong with it. Nothing of the response is shown when this is raised.
    """

    def __init__(self, plugin_id: str, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        where = f"{path}: " if path else ""
        super().__init__(
            f'Plugin "{plugin_id}" returned an invalid admin response: {where}{problem}. '
            "Nothing of it is shown; fix the plugin's admin route (emdash help admin lists "
            "the blocks, their fields and limits).",
            plugin_id=plugin_id,
        )


class AdminInteractionError(EmDashError):
    """An interaction handed to ``rt.admin`` is malformed (a bug of the caller, the UI)."""


class _Invalid(Exception):
    """Internal: one problem at one path; turned into AdminResponseError at the top."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


class _State:
    __slots__ = ("blocks",)

    def __init__(self) -> None:
        self.blocks = 0


Check = Callable[[Any, str, _State, int], None]


def _shown(value: Any) -> str:
    """A short, inert rendering of a plugin-chosen name for an error message."""
    if type(value) is str:
        return clean_text(ascii(value[:40]), limit=48)
    return f"<{type(value).__name__}>"


# -- leaf checks -------------------------------------------------------------------------


def _text(limit: int, *, empty: bool = True) -> Check:
    def check(value: Any, path: str, st: _State, depth: int) -> None:
        if type(value) is not str:
            raise _Invalid(path, f"must be a string, not {type(value).__name__}")
        if not empty and not value.strip():
            raise _Invalid(path, "must not be empty")
        if len(value) > limit:
            raise _Invalid(path, f"is {len(value)} characters long; at most {limit} allowed")
        if _BAD_TEXT_RE.search(value):
            raise _Invalid(
                path, "contains control or bidirectional-override characters; remove them"
            )

    return check


def _ident(value: Any, path: str, st: _State, depth: int) -> None:
    if type(value) is not str or not value:
        raise _Invalid(path, "must be a non-empty string")
    if len(value) > MAX_ID or not _ID_RE.fullmatch(value):
        raise _Invalid(
            path,
            f'must be 1-{MAX_ID} characters of letters, digits, "_", ".", ":", "/" and "-", '
            "starting with a letter or digit",
        )


def _enum(*values: str) -> Check:
    def check(value: Any, path: str, st: _State, depth: int) -> None:
        if type(value) is not str or value not in values:
            raise _Invalid(path, f"must be one of {', '.join(values)}")

    return check


def _number(value: Any, path: str, st: _State, depth: int) -> None:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _Invalid(path, "must be a finite number")


def _int(low: int, high: int) -> Check:
    def check(value: Any, path: str, st: _State, depth: int) -> None:
        if type(value) is not int or not low <= value <= high:
            raise _Invalid(path, f"must be an integer from {low} to {high}")

    return check


def _bool(value: Any, path: str, st: _State, depth: int) -> None:
    if type(value) is not bool:
        raise _Invalid(path, "must be true or false")


def _scalar(limit: int) -> Check:
    """A displayed value: a string (bounded), a finite number, a boolean or null."""
    text = _text(limit)

    def check(value: Any, path: str, st: _State, depth: int) -> None:
        if type(value) is str:
            text(value, path, st, depth)
        elif type(value) in (int, float):
            _number(value, path, st, depth)
        elif value is not None and type(value) is not bool:
            raise _Invalid(path, "must be a string, a number, a boolean or null")

    return check


def check_url(value: Any) -> str | None:
    """Why ``value`` is not an acceptable link or image URL, or ``None`` when it is."""
    if type(value) is not str or not value:
        return "must be a non-empty string"
    if len(value) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    # Whitespace and controls first: browsers drop them ("java\tscript:"), so a check on
    # the scheme alone would be a check on a different string than the one rendered.
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value) or "\\" in value:
        return "contains whitespace, control characters or backslashes"
    if value.startswith("/"):
        if value.startswith("//"):
            return 'is protocol-relative ("//host"); give https://host/... or a site path'
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        return "must be an https:// or http:// URL with a host, or a site path starting with /"
    return None


def _url(value: Any, path: str, st: _State, depth: int) -> None:
    problem = check_url(value)
    if problem is not None:
        raise _Invalid(path, problem)


def _json(value: Any, path: str, st: _State, depth: int) -> None:
    """A free JSON value (a button's value, an initial value): exact types, bounded depth."""
    _json_at(value, path, 0)


def _json_at(value: Any, path: str, level: int) -> None:
    if level > MAX_VALUE_DEPTH:
        raise _Invalid(path, f"nests deeper than {MAX_VALUE_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):
            raise _Invalid(path, "must be a finite number")
        return
    if kind is str:
        if len(value) > MAX_TEXT:
            raise _Invalid(path, f"is longer than {MAX_TEXT} characters")
        return
    if kind is list:
        for i, item in enumerate(value):
            _json_at(item, f"{path}[{i}]", level + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _Invalid(path, "object keys must be strings")
            _json_at(item, f"{path}.{_key(key)}", level + 1)
        return
    raise _Invalid(path, f"must be JSON data, not {kind.__name__}")


def _key(key: str) -> str:
    return key if key.isidentifier() and len(key) <= 40 else f"[{_shown(key)}]"


# -- composite checks --------------------------------------------------------------------


def _list(item: Check, limit: int, *, least: int = 0) -> Check:
    def check(value: Any, path: str, st: _State, depth: int) -> None:
        if type(value) is not list:
            raise _Invalid(path, f"must be a list, not {type(value).__name__}")
        if len(value) > limit:
            raise _Invalid(path, f"has {len(value)} entries; at most {limit} allowed")
        if len(value) < least:
            raise _Invalid(path, f"needs at least {least} entries")
        for i, entry in enumerate(value):
            item(entry, f"{path}[{i}]", st, depth)

    return check


def _object(fields: Mapping[str, Check], required: frozenset[str] = frozenset()) -> Check:
    def check(value: Any, path: str, st: _State, depth: int) -> None:
        _fields(value, path, st, depth, fields, required)

    return check


def _fields(
    value: Any,
    path: str,
    st: _State,
    depth: int,
    fields: Mapping[str, Check],
    required: frozenset[str],
) -> None:
    if type(value) is not dict:
        raise _Invalid(path, f"must be an object, not {type(value).__name__}")
    for key in value:
        if type(key) is not str or key not in fields:
            raise _Invalid(
                path,
                f"unknown field {_shown(key)} (allowed: {', '.join(sorted(fields))})",
            )
    for key in sorted(required):
        if key not in value:
            raise _Invalid(path, f'the field "{key}" is required')
    for key, check in fields.items():
        if key in value and not (value[key] is None and key not in required):
            check(value[key], f"{path}.{key}" if path else key, st, depth)


_LABEL = _text(MAX_LABEL, empty=False)
_OPT_LABEL = _text(MAX_LABEL)
_TEXT = _text(MAX_TEXT)
_OPTION = _object({"label": _LABEL, "value": _text(MAX_LABEL)}, frozenset({"label", "value"}))
_OPTIONS = _list(_OPTION, MAX_OPTIONS, least=1)
_CONDITION_FIELDS: dict[str, Check] = {"field": _ident, "eq": _scalar(MAX_LABEL)}


def _condition(value: Any, path: str, st: _State, depth: int) -> None:
    if type(value) is dict and "neq" in value:
        fields: dict[str, Check] = {"field": _ident, "neq": _scalar(MAX_LABEL)}
        _fields(value, path, st, depth, fields, frozenset({"field", "neq"}))
    else:
        _fields(value, path, st, depth, _CONDITION_FIELDS, frozenset({"field", "eq"}))


_CONFIRM = _object(
    {
        "title": _LABEL,
        "text": _TEXT,
        "confirm": _LABEL,
        "deny": _LABEL,
        "style": _enum("danger"),
    },
    frozenset({"title", "text", "confirm", "deny"}),
)

# Element fields beyond type/action_id/label. `description` on inputs is our extension (the
# generated settings form uses it); `condition` applies to inputs placed in a form.
_INPUT_COMMON: dict[str, Check] = {"description": _TEXT, "condition": _condition}
ELEMENT_FIELDS: dict[str, dict[str, Check]] = {
    "button": {
        "style": _enum("primary", "danger", "secondary"),
        "value": _json,
        "confirm": _CONFIRM,
    },
    "text_input": {
        **_INPUT_COMMON,
        "placeholder": _OPT_LABEL,
        "initial_value": _text(MAX_TEXT),
        "multiline": _bool,
    },
    "number_input": {
        **_INPUT_COMMON,
        "initial_value": _number,
        "min": _number,
        "max": _number,
    },
    "select": {
        **_INPUT_COMMON,
        "options": _OPTIONS,
        "initial_value": _text(MAX_LABEL),
        "optionsRoute": _ident,
    },
    "toggle": {**_INPUT_COMMON, "initial_value": _bool},
    "secret_input": {**_INPUT_COMMON, "placeholder": _OPT_LABEL, "has_value": _bool},
    "checkbox": {
        **_INPUT_COMMON,
        "options": _OPTIONS,
        "initial_value": _list(_text(MAX_LABEL), MAX_OPTIONS),
    },
    "date_input": {**_INPUT_COMMON, "initial_value": _text(32)},
    "combobox": {**_INPUT_COMMON, "options": _OPTIONS, "initial_value": _text(MAX_LABEL)},
    "radio": {**_INPUT_COMMON, "options": _OPTIONS, "initial_value": _text(MAX_LABEL)},
    "repeater": {
        "fields": lambda v, p, s, d: _list(_repeater_field, MAX_FORM_FIELDS, least=1)(v, p, s, d),
        "item_label": _OPT_LABEL,
        "min_items": _int(0, 100),
        "max_items": _int(1, 100),
    },
    "media_picker": {
        **_INPUT_COMMON,
        "mime_type_filter": lambda v, p, s, d: _pattern(v, p, _MIME_RE, "a MIME type like image/*"),
        "initial_value": _url,
    },
}
ELEMENT_TYPES = tuple(ELEMENT_FIELDS)
_REPEATER_KINDS = ("text_input", "number_input", "select", "toggle")


def _pattern(value: Any, path: str, pattern: re.Pattern[str], what: str) -> None:
    if type(value) is not str or len(value) > MAX_LABEL or not pattern.fullmatch(value):
        raise _Invalid(path, f"must be {what}")


def _element(value: Any, path: str, st: _State, depth: int, kinds: tuple[str, ...]) -> None:
    if type(value) is not dict:
        raise _Invalid(path, f"must be an element object, not {type(value).__name__}")
    kind = value.get("type")
    if type(kind) is not str or kind not in kinds:
        raise _Invalid(
            f"{path}.type", f"unknown element type {_shown(kind)} (allowed: {', '.join(kinds)})"
        )
    fields = {"type": _enum(kind), "action_id": _ident, "label": _LABEL, **ELEMENT_FIELDS[kind]}
    _fields(value, path, st, depth, fields, frozenset({"type", "action_id", "label"}))
    _check_choices(value, path)
    _check_range(value, path)


def _any_element(value: Any, path: str, st: _State, depth: int) -> None:
    _element(value, path, st, depth, ELEMENT_TYPES)


def _form_field(value: Any, path: str, st: _State, depth: int) -> None:
    _element(value, path, st, depth, tuple(k for k in ELEMENT_TYPES if k != "button"))


def _repeater_field(value: Any, path: str, st: _State, depth: int) -> None:
    _element(value, path, st, depth, _REPEATER_KINDS)


def _check_choices(value: dict[str, Any], path: str) -> None:
    """Option values unique; an initial value among them (EmDash's validateBlocks rule)."""
    options = value.get("options")
    if options is None:
        return
    seen: set[str] = set()
    for i, opt in enumerate(options):
        if opt["value"] in seen:
            raise _Invalid(f"{path}.options[{i}].value", "repeats an earlier option's value")
        seen.add(opt["value"])
    initial = value.get("initial_value")
    wanted = initial if type(initial) is list else [] if initial is None else [initial]
    for item in wanted:
        if item not in seen:
            raise _Invalid(f"{path}.initial_value", "must be the value of one of the options")


def _check_range(value: dict[str, Any], path: str) -> None:
    low, high = value.get("min"), value.get("max")
    if low is not None and high is not None and low > high:
        raise _Invalid(f"{path}.min", "is greater than max")
    low_items, high_items = value.get("min_items"), value.get("max_items")
    if low_items is not None and high_items is not None and low_items > high_items:
        raise _Invalid(f"{path}.min_items", "is greater than max_items")


# -- blocks ------------------------------------------------------------------------------


def _blocks(limit: int) -> Check:
    """A list of nested blocks, one container level deeper."""

    def check(value: Any, path: str, st: _State, depth: int) -> None:
        if depth + 1 > MAX_DEPTH:
            raise _Invalid(path, f"container blocks nest deeper than {MAX_DEPTH} levels")
        _list(lambda v, p, s, d: _block(v, p, s, depth + 1), limit)(value, path, st, depth)

    return check


_TABLE_COLUMN = _object(
    {
        "key": _ident,
        "label": _OPT_LABEL,
        "format": _enum("text", "badge", "relative_time", "number", "code"),
        "sortable": _bool,
    },
    frozenset({"key", "label"}),
)


def _table_row(value: Any, path: str, st: _State, depth: int) -> None:
    if type(value) is not dict:
        raise _Invalid(path, f"must be an object, not {type(value).__name__}")
    if len(value) > MAX_ROW_KEYS:
        raise _Invalid(path, f"has {len(value)} keys; at most {MAX_ROW_KEYS} allowed")
    cell = _scalar(MAX_CELL)
    for key, item in value.items():
        if type(key) is not str or len(key) > MAX_ID:
            raise _Invalid(path, f"keys must be strings of at most {MAX_ID} characters")
        cell(item, f"{path}.{_key(key)}", st, depth)


_POINT = _list(_number, 2, least=2)
_SERIES = _object(
    {
        "name": _LABEL,
        "data": _list(_POINT, MAX_POINTS),
        "color": lambda v, p, s, d: _pattern(v, p, _COLOR_RE, "a hex colour like #3366ff"),
    },
    frozenset({"name", "data"}),
)


def _custom_options(value: Any, path: str, st: _State, depth: int) -> None:
    # Chart-library options (EmDash passes them to ECharts in the browser). The admin runs
    # no script: it reads the data part (title, axis categories, series) and draws it on
    # the server; the rest is ignored. Bounded JSON like any free value.
    if type(value) is not dict:
        raise _Invalid(path, f"must be an object, not {type(value).__name__}")
    _json(value, path, st, depth)


def _chart_config(value: Any, path: str, st: _State, depth: int) -> None:
    if type(value) is dict and value.get("chart_type") == "custom":
        custom: dict[str, Check] = {
            "chart_type": _enum("custom"),
            "options": _custom_options,
            "height": _int(50, 1000),
        }
        _fields(value, path, st, depth, custom, frozenset({"chart_type", "options"}))
        return
    if type(value) is dict and value.get("chart_type") != "timeseries":
        raise _Invalid(f"{path}.chart_type", 'must be "timeseries" or "custom"')
    fields: dict[str, Check] = {
        "chart_type": _enum("timeseries"),
        "series": _list(_SERIES, MAX_SERIES, least=1),
        "style": _enum("line", "bar"),
        "x_axis_name": _OPT_LABEL,
        "y_axis_name": _OPT_LABEL,
        "height": _int(50, 1000),
        "gradient": _bool,
    }
    _fields(value, path, st, depth, fields, frozenset({"chart_type", "series"}))


def _panel(value: Any, path: str, st: _State, depth: int) -> None:
    fields = {"label": _LABEL, "blocks": _blocks(MAX_BLOCKS)}
    _fields(value, path, st, depth, fields, frozenset({"label", "blocks"}))


def _columns(value: Any, path: str, st: _State, depth: int) -> None:
    _list(_blocks(MAX_BLOCKS), 3, least=2)(value, path, st, depth)


def _submit(value: Any, path: str, st: _State, depth: int) -> None:
    fields = {"label": _LABEL, "action_id": _ident}
    _fields(value, path, st, depth, fields, frozenset({"label", "action_id"}))


# type -> (fields beyond type/block_id, required fields)
BLOCK_FIELDS: dict[str, tuple[dict[str, Check], frozenset[str]]] = {
    "header": ({"text": _LABEL}, frozenset({"text"})),
    "section": ({"text": _TEXT, "accessory": _any_element}, frozenset({"text"})),
    "divider": ({}, frozenset()),
    "fields": (
        {
            "fields": _list(
                _object(
                    {"label": _LABEL, "value": _scalar(MAX_CELL)}, frozenset({"label", "value"})
                ),
                MAX_ITEMS,
            )
        },
        frozenset({"fields"}),
    ),
    "table": (
        {
            "columns": _list(_TABLE_COLUMN, MAX_TABLE_COLUMNS, least=1),
            "rows": _list(_table_row, MAX_TABLE_ROWS),
            "next_cursor": _text(MAX_TEXT),
            "page_action_id": _ident,
            "empty_text": _OPT_LABEL,
        },
        frozenset({"columns", "rows", "page_action_id"}),
    ),
    "actions": ({"elements": _list(_any_element, MAX_ELEMENTS, least=1)}, frozenset({"elements"})),
    "stats": (
        {
            "items": _list(
                _object(
                    {
                        "label": _LABEL,
                        "value": _scalar(MAX_CELL),
                        "description": _TEXT,
                        "trend": _enum("up", "down", "neutral"),
                    },
                    frozenset({"label", "value"}),
                ),
                MAX_ITEMS,
            )
        },
        frozenset({"items"}),
    ),
    "form": (
        {"fields": _list(_form_field, MAX_FORM_FIELDS), "submit": _submit},
        frozenset({"fields", "submit"}),
    ),
    "image": ({"url": _url, "alt": _OPT_LABEL, "title": _OPT_LABEL}, frozenset({"url", "alt"})),
    "context": ({"text": _TEXT}, frozenset({"text"})),
    "columns": ({"columns": _columns}, frozenset({"columns"})),
    "chart": ({"config": _chart_config}, frozenset({"config"})),
    "banner": (
        {"title": _OPT_LABEL, "description": _TEXT, "variant": _enum("default", "alert", "error")},
        frozenset(),
    ),
    "meter": (
        {
            "label": _LABEL,
            "value": _number,
            "max": _number,
            "min": _number,
            "custom_value": _OPT_LABEL,
        },
        frozenset({"label", "value"}),
    ),
    "code": (
        {"code": _text(MAX_CODE), "language": _enum("ts", "tsx", "jsonc", "bash", "css")},
        frozenset({"code"}),
    ),
    "empty": (
        {
            "title": _LABEL,
            "description": _TEXT,
            "command_line": _text(MAX_LABEL),
            "size": _enum("sm", "base", "lg"),
            "actions": _list(_any_element, MAX_ELEMENTS),
        },
        frozenset({"title"}),
    ),
    "accordion": (
        {"label": _LABEL, "blocks": _blocks(MAX_BLOCKS), "default_open": _bool},
        frozenset({"label", "blocks"}),
    ),
    "tab": (
        {"panels": _list(_panel, MAX_PANELS, least=1), "default_tab": _int(0, MAX_PANELS - 1)},
        frozenset({"panels"}),
    ),
}
BLOCK_TYPES = tuple(BLOCK_FIELDS)


def _block(value: Any, path: str, st: _State, depth: int) -> None:
    st.blocks += 1
    if st.blocks > MAX_BLOCKS:
        raise _Invalid(path, f"the response has more than {MAX_BLOCKS} blocks (nested included)")
    if type(value) is not dict:
        raise _Invalid(path, f"must be a block object, not {type(value).__name__}")
    kind = value.get("type")
    if type(kind) is not str or kind not in BLOCK_FIELDS:
        raise _Invalid(
            f"{path}.type",
            f"unknown block type {_shown(kind)} (allowed: {', '.join(BLOCK_TYPES)})",
        )
    extra, required = BLOCK_FIELDS[kind]
    fields = {"type": _enum(kind), "block_id": _ident, **extra}
    _fields(value, path, st, depth, fields, required | {"type"})
    if kind == "meter":
        _check_range(value, path)
    if kind == "tab" and value.get("default_tab") is not None:
        if value["default_tab"] >= len(value["panels"]):
            raise _Invalid(f"{path}.default_tab", "names a panel that does not exist")
    if kind == "form":
        _check_unique_fields(value, path)


def _check_unique_fields(form: dict[str, Any], path: str) -> None:
    """A form's inputs are its submitted keys: two with one action_id would collide."""
    seen: set[str] = set()
    for i, item in enumerate(form["fields"]):
        if item["action_id"] in seen:
            raise _Invalid(f"{path}.fields[{i}].action_id", "repeats another field's action_id")
        seen.add(item["action_id"])


_TOAST = _object(
    {"message": _text(MAX_TOAST, empty=False), "type": _enum("success", "error", "info")},
    frozenset({"message", "type"}),
)


def _copy(plugin_id: str, data: Any) -> Any:
    """A private copy of ``data`` as exact JSON, bounded in size (or AdminResponseError)."""
    try:
        # Measured first, so an oversized answer (a sandboxed one may be up to a worker
        # frame, megabytes) is refused before a second copy of it is made.
        text = json.dumps(data, allow_nan=False, ensure_ascii=False)
        # surrogatepass: a lone surrogate is refused below, with its path.
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_RESPONSE_BYTES:
            raise AdminResponseError(
                plugin_id, "", f"is {size} bytes as JSON; at most {MAX_RESPONSE_BYTES} allowed"
            )
        del text
        # The project's exact-JSON rule, not a json round trip: a native handler's dict may
        # have a key 1 (json writes "1", and {1: .., "1": ..} with a duplicate key), an
        # integer past int64 or a lone surrogate (UTF-8 cannot carry it: the page's
        # encoding would raise outside EmDashError). It reads dict/list subclasses through
        # the base type, so the copy holds builtin types only.
        return exact_copy(data)
    except (TypeError, ValueError, RecursionError) as exc:
        # TypeError: not JSON (a set, an object); ValueError: NaN, a cycle, or NotExactJSON,
        # which says what and where ("$.blocks[0].text").
        raise AdminResponseError(
            plugin_id, "", f"is not JSON data ({clean_text(str(exc), limit=160)})"
        ) from None


def validate_blocks(plugin_id: str, blocks: Any) -> list[dict[str, Any]]:
    """Validate a list of blocks; return a private copy (raises :class:`AdminResponseError`)."""
    data = _copy(plugin_id, blocks)
    try:
        _list(lambda v, p, s, d: _block(v, p, s, 0), MAX_BLOCKS)(data, "blocks", _State(), 0)
    except _Invalid as bad:
        raise AdminResponseError(plugin_id, bad.path, bad.problem) from None
    result: list[dict[str, Any]] = data
    return result


def validate_response(plugin_id: str, data: Any) -> dict[str, Any]:
    """Validate an ``admin`` route's answer; return ``{"blocks": [...], "toast": ... | None}``.

    The result is a private copy holding only validated data. Raises
    :class:`AdminResponseError` naming the plugin and the path of the first problem.
    """
    copied = _copy(plugin_id, data)
    if type(copied) is not dict:
        raise AdminResponseError(
            plugin_id,
            "",
            f'must be an object {{"blocks": [...], "toast": ...}}, not {type(copied).__name__} '
            "(return bk.response([...]))",
        )
    fields: dict[str, Check] = {
        "blocks": lambda v, p, s, d: _list(lambda b, q, t, e: _block(b, q, t, 0), MAX_BLOCKS)(
            v, p, s, d
        ),
        "toast": _TOAST,
    }
    try:
        _fields(copied, "", _State(), 0, fields, frozenset({"blocks"}))
    except _Invalid as bad:
        raise AdminResponseError(plugin_id, bad.path, bad.problem) from None
    return {"blocks": copied["blocks"], "toast": copied.get("toast")}
