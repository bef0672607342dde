"""Opaque keyset cursors that follow the requested order (asc, desc, mixed, with NULLs).

EmDash's storage cursor is always ``(created_at, id) > (v, id)``, whatever ``orderBy`` says,
so any other order pages wrongly (spec §5). Here the cursor carries the last row's value of
*every* order key plus its id, and the next page is everything strictly after that tuple in
the very order the query sorts by:

    k1 after v1
    OR (k1 IS v1 AND k2 after v2)
    OR ...
    OR (k1 IS v1 AND ... AND id after last_id)

"after" is defined from SQLite's own total order, so the predicate and ``ORDER BY`` always
agree, also on mixed types: NULL < numbers < text (< blob), ``NULLS FIRST`` when ascending
and ``NULLS LAST`` when descending. So ascending, after a non-NULL ``v`` is ``k > v`` (NULLs
cannot follow) and after NULL is ``k IS NOT NULL``; descending, after ``v`` is
``k < v OR k IS NULL`` and nothing at this level is after NULL. ``IS`` is NULL-safe equality.
The order expressions carry no column affinity, so SQLite compares the values as they are.

The cursor text is URL-safe base64 of JSON ``{"c": context, "o": [[name, dir], ...],
"v": [values..., id]}``. ``c`` and ``o`` must equal the current query's, so a cursor from a
different collection or a different ``order_by`` is refused. If the values would make the
cursor longer than 4096 characters (a long string in an ordered field), the cursor holds
the row id instead (``"r": id``) and the values are read back from that row.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._shared._errors import BridgeError, InvalidCursorError
from ._db import storage_error

__all__ = [
    "MAX_CURSOR_CHARS",
    "ROW_OVERHEAD_BYTES",
    "Keyset",
    "OrderKey",
    "bounded_rows",
    "clamp_limit",
]

#: Bytes counted per row on top of its stored text: the JSON punctuation and field names
#: around each item of a result (``{"key":..,"value":..}``), rounded up generously.
ROW_OVERHEAD_BYTES = 64

MAX_CURSOR_CHARS = 4096
_B64_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ORDER BY key: its public name (in the cursor), trusted SQL expression, direction."""

    name: str
    expr: str
    desc: bool = False

    @property
    def direction(self) -> str:
        return "desc" if self.desc else "asc"


def clamp_limit(limit: object, *, default: int = 50, maximum: int = 100) -> int:
    """Page size: ``default`` when absent or not a number, else clamped to ``[1, maximum]``."""
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        return default
    if isinstance(limit, float):
        if not math.isfinite(limit):
            return maximum if limit > 0 else 1
        limit = int(limit)
    return max(1, min(int(limit), maximum))


class Keyset:
    """The order of one query (its keys, id last) and its cursors."""

    def __init__(self, context: str, keys: Sequence[OrderKey]) -> None:
        if not keys or keys[-1].name != "id":
            raise ValueError("a keyset must end with the unique id key")
        self.context = context
        self.keys = tuple(keys)
        self._signature = [[k.name, k.direction] for k in self.keys]

    # -- SQL ---------------------------------------------------------------------------

    def order_sql(self) -> str:
        return ", ".join(f"{k.expr} {'DESC' if k.desc else 'ASC'}" for k in self.keys)

    def select_sql(self) -> str:
        return ", ".join(f"{k.expr} AS _k{i}" for i, k in enumerate(self.keys))

    def values_of(self, row: dict[str, Any]) -> list[Any]:
        return [row[f"_k{i}"] for i in range(len(self.keys))]

    def predicate(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """SQL that is true exactly for rows after ``values`` in this order."""
        clauses: list[str] = []
        params: list[Any] = []
        for i, key in enumerate(self.keys):
            after = _after(key, values[i])
            if after is None:
                continue
            parts = [f"{k.expr} IS ?" for k in self.keys[:i]]
            clause_params = list(values[:i])
            parts.append(after[0])
            clause_params.extend(after[1])
            clauses.append("(" + " AND ".join(parts) + ")")
            params.extend(clause_params)
        if not clauses:
            return "0", []
        return "(" + " OR ".join(clauses) + ")", params

    # -- cursor text -------------------------------------------------------------------

    def encode(self, values: Sequence[Any]) -> str:
        payload = {"c": self.context, "o": self._signature, "v": list(values)}
        text = _b64(payload)
        if len(text) > MAX_CURSOR_CHARS:
            text = _b64({"c": self.context, "o": self._signature, "r": values[-1]})
            if len(text) > MAX_CURSOR_CHARS:  # ids are at most 1024 chars: cannot happen
                raise InvalidCursorError("Cannot build a pagination cursor for this row")
        return text

    def decode(
        self, cursor: object, lookup: Callable[[str], list[Any] | None] | None = None
    ) -> list[Any]:
        """The order values a cursor stands for, or ``InvalidCursorError``."""
        payload = _unb64(cursor)
        if (
            payload is None
            or payload.get("c") != self.context
            or payload.get("o") != self._signature
        ):
            raise _invalid(cursor)
        if set(payload) == {"c", "o", "v"}:
            values = payload["v"]
            if not isinstance(values, list) or len(values) != len(self.keys):
                raise _invalid(cursor)
            if not all(_plain_value(v) for v in values) or type(values[-1]) is not str:
                raise _invalid(cursor)
            return values
        if set(payload) == {"c", "o", "r"} and type(payload["r"]) is str and lookup is not None:
            found = lookup(payload["r"])
            if found is not None:
                return found
        raise _invalid(cursor)


def _after(key: OrderKey, value: Any) -> tuple[str, list[Any]] | None:
    if not key.desc:
        if value is None:
            return f"{key.expr} IS NOT NULL", []
        return f"{key.expr} > ?", [value]
    if value is None:
        return None  # NULLs sort last when descending: nothing follows at this level
    return f"({key.expr} < ? OR {key.expr} IS NULL)", [value]


def _plain_value(value: Any) -> bool:
    if value is None or type(value) is str:
        return True
    if type(value) is int:
        return _INT_MIN <= value <= _INT_MAX
    return type(value) is float and math.isfinite(value)


def _b64(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii")


def _unb64(cursor: object) -> dict[str, Any] | None:
    if type(cursor) is not str or not cursor or len(cursor) > MAX_CURSOR_CHARS:
        return None
    if not _B64_RE.fullmatch(cursor):
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor)
    except (binascii.Error, ValueError):
        return None
    # Only the canonical encoding of those bytes is accepted (no alternative spellings).
    if base64.urlsafe_b64encode(raw).decode("ascii") != cursor:
        return None
    try:
        payload = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a cursor")


def _invalid(cursor: object) -> InvalidCursorError:
    text = cursor if isinstance(cursor, str) else repr(cursor)
    return InvalidCursorError(f"Invalid pagination cursor: {text[:47]}...")


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    has_more: bool
    cursor: str | None


def fetch_page(
    db: Any,
    keyset: Keyset,
    *,
    columns: str,
    table: str,
    scope: tuple[str, Sequence[Any]],
    filters: tuple[str, Sequence[Any]] = ("1", ()),
    id_expr: str = "id",
    limit: object = None,
    cursor: object = None,
    default_limit: int = 50,
    size_expr: str | None = None,
    budget: int | None = None,
    what: str = "list",
    plugin_id: str | None = None,
    versions: Sequence[str] | None = None,
) -> Page:
    """One page of ``SELECT columns FROM table WHERE scope AND filters`` in keyset order.

    ``versions``: the version scopes the page depends on inside an invocation (default:
    the tables it reads). ``scope`` bounds what a cursor may refer to (the plugin and collection); ``filters`` is
    the caller's where clause. All SQL fragments are built by the store, never by callers'
    data; values travel as parameters. Fetches ``limit + 1`` rows to learn ``has_more``.
    """
    size = clamp_limit(limit, default=default_limit)
    scope_sql, scope_params = scope
    filter_sql, filter_params = filters
    sized = f", {size_expr} AS _size" if size_expr is not None else ""
    sql = (
        f"SELECT {columns}, {keyset.select_sql()}{sized} FROM {table} "
        f"WHERE ({scope_sql}) AND ({filter_sql})"
    )
    params: list[Any] = [*scope_params, *filter_params]
    if cursor is not None:

        def lookup(row_id: str) -> list[Any] | None:
            found = db.row(
                f"SELECT {keyset.select_sql()} FROM {table} WHERE ({scope_sql}) AND {id_expr} = ?",
                [*scope_params, row_id],
                scopes=versions,
            )
            return None if found is None else keyset.values_of(found)

        after_sql, after_params = keyset.predicate(keyset.decode(cursor, lookup))
        sql += f" AND {after_sql}"
        params.extend(after_params)
    sql += f" ORDER BY {keyset.order_sql()} LIMIT ?"
    params.append(size + 1)
    if size_expr is None:
        rows = db.rows(sql, params, scopes=versions)
        has_more = len(rows) > size
        rows = rows[:size]
    else:
        # Bounded in bytes *before* the rows are built: the stored text's length comes from
        # SQL, and rows stop before the budget is exceeded (the page then ends early, with
        # a cursor), so a page of 100 one-megabyte documents never reaches memory at once.
        rows, cut = bounded_rows(
            db, sql, params, budget=budget, what=what, plugin_id=plugin_id, scopes=versions
        )
        has_more = cut or len(rows) > size
        rows = rows[:size]
    next_cursor = keyset.encode(keyset.values_of(rows[-1])) if has_more else None
    return Page(rows, has_more, next_cursor)


def bounded_rows(
    db: Any,
    sql: str,
    params: Sequence[Any],
    *,
    budget: int | None,
    what: str,
    plugin_id: str | None = None,
    used: int = 0,
    scopes: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Rows of ``sql`` (which selects a ``_size`` column: the stored bytes of the row) in
    order, stopping before their sizes (plus :data:`ROW_OVERHEAD_BYTES` each) would pass
    ``budget - used``. Returns ``(rows, cut)``; ``cut`` says that rows were left out. Each
    row keeps its ``_size``.

    Rows are read one at a time from the SQLite cursor, never all at once, so what a
    result costs the host is bounded by the budget plus one row (a stored value is at most
    ``MAX_DOC_BYTES``), whatever the table holds. A first row that alone is over the budget
    is a ``BridgeError`` saying so (it cannot be returned in any page).
    """
    from ._values import MAX_RESULT_BYTES

    limit = MAX_RESULT_BYTES if budget is None else budget
    out: list[dict[str, Any]] = []
    with db.lock:
        replayed = db.note_read(sql, scopes)
        try:
            cur = db.conn.execute(sql, params)
        except BaseException:
            if replayed:
                db.end_read()
            raise
        try:
            names = [d[0] for d in cur.description]
            while True:
                raw = cur.fetchone()
                if raw is None:
                    return out, False
                row = dict(zip(names, raw, strict=True))
                cost = int(row["_size"] or 0) + ROW_OVERHEAD_BYTES
                if used + cost > limit:
                    if not out and used == 0:
                        raise BridgeError(
                            f"{what}: one item is {cost} bytes, more than the {limit}-byte "
                            "limit of one result; it cannot be read through this call",
                            plugin_id=plugin_id,
                        )
                    return out, True
                used += cost
                out.append(row)
        except sqlite3.Error as exc:  # a damaged page met while reading (IntegrityError: n/a)
            raise storage_error(exc, db.path) from exc
        finally:
            cur.close()
            if replayed:
                db.end_read()
