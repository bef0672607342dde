"""The storage query language (docs/plugin-reference.md, queries): ``where`` and ``order_by`` to SQL.

Only fields named by a declared index (plain, unique, or a part of a composite one) can be
filtered or ordered on. Every field name is checked against ``^[a-zA-Z][a-zA-Z0-9_]*$``
before it is placed in a JSON path literal, and every value is a bound parameter.

Comparisons are typed by the operand, and by the stored JSON type too, so that a filter
never matches a value of another kind by accident (EmDash compares a raw ``json_extract``,
where ``{"lt": "m"}`` also matches every number because numbers sort before text):

    null            value is null or missing
    "s"             stored string equal to s
    3 / 2.5         stored number numerically equal
    true / false    stored boolean
    {"in": [...]}   any of the listed scalars (each compared as above); [] matches nothing
    {"startsWith"}  stored string with that literal, case-sensitive prefix (escaped LIKE,
                    plus an exact-case check because SQLite's LIKE folds ASCII case)
    {"gt","gte","lt","lte"}  each bound numeric if its operand is a number (only numbers
                    match), textual if it is a string (only strings match); AND-ed

Operator detection order is ``in``, then ``startsWith``, then range; an object mixing
them, an unknown key, or a bad operand is ``Unknown filter type for field '<f>'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._shared._errors import BridgeError, StorageQueryError
from ._cursor import OrderKey
from ._dialect import ORDER_KEY_MARK
from ._values import FIELD_RE, finite_number

__all__ = ["compile_order", "compile_where", "field_expr"]

_RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_NUMERIC_TYPES = "('integer','real')"
MAX_IN_VALUES = 1000


def field_expr(field: str) -> str:
    """The expression declared indexes are built on (must match them character for character)."""
    return f"json_extract(data, '$.{_checked(field)}')"


def _type_expr(field: str) -> str:
    return f"json_type(data, '$.{_checked(field)}')"


def _checked(field: str) -> str:
    if type(field) is not str or not FIELD_RE.fullmatch(field):
        raise StorageQueryError(
            f"Invalid field name '{str(field)[:128]}': use letters, digits and '_', "
            "starting with a letter (at most 128 characters).",
            field=str(field)[:128],
        )
    return field


def _not_indexed(
    field: str, *, ordering: bool, plugin_id: str, collection: str
) -> StorageQueryError:
    shown = str(field)[:128]
    verb = "order by" if ordering else "query on"
    return StorageQueryError(
        f"Cannot {verb} non-indexed field '{shown}'.",
        field=shown,
        suggestion=(
            f"Add '{shown}' to storage.{collection}.indexes in plugin '{plugin_id}' "
            "to enable this query."
        ),
        plugin_id=plugin_id,
    )


def compile_where(
    where: object, *, queryable: frozenset[str], plugin_id: str, collection: str
) -> tuple[str, list[Any]]:
    """SQL (AND of one condition per key) and its parameters; ``"1"`` when empty."""
    if where is None:
        return "1", []
    if not isinstance(where, Mapping):
        raise BridgeError("Parameter where must be an object when provided", plugin_id=plugin_id)
    # Check every field first, so the error names the first bad field, not a later one.
    for field in where:
        if field not in queryable or type(field) is not str:
            raise _not_indexed(field, ordering=False, plugin_id=plugin_id, collection=collection)
        _checked(field)
    parts: list[str] = []
    params: list[Any] = []
    for field, value in where.items():
        sql, p = _condition(field, value, plugin_id)
        parts.append(sql)
        params.extend(p)
    return (" AND ".join(parts) or "1"), params


def compile_order(
    order_by: object, *, queryable: frozenset[str], plugin_id: str, collection: str
) -> list[OrderKey]:
    """Order keys for ``{"field": "asc"|"desc", ...}``, in the mapping's order."""
    if order_by is None:
        return []
    if not isinstance(order_by, Mapping):
        raise BridgeError(
            'Parameter orderBy must be an object mapping field to "asc"|"desc"',
            plugin_id=plugin_id,
        )
    keys: list[OrderKey] = []
    for field, direction in order_by.items():
        if field not in queryable or type(field) is not str:
            raise _not_indexed(field, ordering=True, plugin_id=plugin_id, collection=collection)
        if direction not in ("asc", "desc") or type(direction) is not str:
            raise BridgeError(
                'Parameter orderBy must be an object mapping field to "asc"|"desc"',
                plugin_id=plugin_id,
            )
        keys.append(OrderKey(field, field_expr(field) + ORDER_KEY_MARK, direction == "desc"))
    return keys


def _unknown(field: str, plugin_id: str) -> StorageQueryError:
    return StorageQueryError(
        f"Unknown filter type for field '{field}'", field=field, plugin_id=plugin_id
    )


def _scalar(field: str, value: Any, plugin_id: str) -> tuple[str, list[Any]]:
    e, t = field_expr(field), _type_expr(field)
    if value is None:
        return f"{e} IS NULL", []
    if isinstance(value, bool):
        return f"({e} = ? AND {t} = '{'true' if value else 'false'}')", [int(value)]
    if finite_number(value):
        return f"({e} = ? AND {t} IN {_NUMERIC_TYPES})", [_number(value)]
    if isinstance(value, str):
        return f"({e} = ? AND {t} = 'text')", [str.__str__(value)]
    raise _unknown(field, plugin_id)


def _condition(field: str, value: Any, plugin_id: str) -> tuple[str, list[Any]]:
    if not isinstance(value, Mapping):
        return _scalar(field, value, plugin_id)
    keys = set(value)
    if "in" in keys:
        if keys != {"in"} or not isinstance(value["in"], list | tuple):
            raise _unknown(field, plugin_id)
        return _in(field, list(value["in"]), plugin_id)
    if "startsWith" in keys:
        prefix = value["startsWith"]
        if keys != {"startsWith"} or not isinstance(prefix, str):
            raise _unknown(field, plugin_id)
        prefix = str.__str__(prefix)
        e, t = field_expr(field), _type_expr(field)
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return (
            f"({t} = 'text' AND {e} LIKE ? ESCAPE '\\' AND substr({e}, 1, ?) = ?)",
            [escaped + "%", len(prefix), prefix],
        )
    if not keys or not keys <= _RANGE_OPS.keys():
        raise _unknown(field, plugin_id)
    parts: list[str] = []
    params: list[Any] = []
    e, t = field_expr(field), _type_expr(field)
    for op in ("gt", "gte", "lt", "lte"):
        if op not in keys:
            continue
        bound = value[op]
        if finite_number(bound):
            parts.append(f"({t} IN {_NUMERIC_TYPES} AND {e} {_RANGE_OPS[op]} ?)")
            params.append(_number(bound))
        elif isinstance(bound, str):
            parts.append(f"({t} = 'text' AND {e} {_RANGE_OPS[op]} ?)")
            params.append(str.__str__(bound))
        else:
            raise _unknown(field, plugin_id)
    return "(" + " AND ".join(parts) + ")", params


def _in(field: str, values: list[Any], plugin_id: str) -> tuple[str, list[Any]]:
    if not values:
        return "0", []  # SQLite would also match nothing for IN (); Postgres would fail
    if len(values) > MAX_IN_VALUES:
        raise StorageQueryError(
            f"Too many values in 'in' filter for field '{field}': {len(values)} "
            f"(at most {MAX_IN_VALUES})",
            field=field,
            plugin_id=plugin_id,
        )
    e, t = field_expr(field), _type_expr(field)
    numbers = [_number(v) for v in values if finite_number(v)]
    texts = [str.__str__(v) for v in values if isinstance(v, str)]
    bools = {int(v) for v in values if isinstance(v, bool)}
    has_null = any(v is None for v in values)
    if len(numbers) + len(texts) + sum(isinstance(v, bool) for v in values) + sum(
        v is None for v in values
    ) != len(values):
        raise _unknown(field, plugin_id)
    parts: list[str] = []
    params: list[Any] = []
    if numbers:
        parts.append(f"({t} IN {_NUMERIC_TYPES} AND {e} IN ({', '.join('?' * len(numbers))}))")
        params.extend(numbers)
    if texts:
        parts.append(f"({t} = 'text' AND {e} IN ({', '.join('?' * len(texts))}))")
        params.extend(texts)
    for b in sorted(bools):
        parts.append(f"({e} = ? AND {t} = '{'true' if b else 'false'}')")
        params.append(b)
    if has_null:
        parts.append(f"{e} IS NULL")
    return "(" + " OR ".join(parts) + ")", params


def _number(value: Any) -> int | float:
    # Plain int/float for the driver (an int subclass with a lying __index__ stays outside).
    return int.__int__(value) if isinstance(value, int) else float.__float__(value)
