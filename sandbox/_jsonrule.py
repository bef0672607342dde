"""The exact-JSON rule: what a value must be to cross every boundary of the system unchanged.

A value travels through several encoders and decoders: the standard library's ``json`` in
workers, ``orjson`` on the host, SQLite's JSON functions in the store, and whatever JSON
parser an HTTP client uses. Each one has its own idea of the edges, and at each edge one of
them silently changes the value instead of failing:

- integers: Python has no bound, orjson decodes anything beyond 64 bits as a *float*
  (``2**64 + 1`` comes back as ``1.8446744073709552e+19``) and cannot encode it at all,
  SQLite's ``json_extract`` turns integers beyond int64 into reals. The range that survives
  every step is int64, ``[-(2**63), 2**63 - 1]``;
- object keys: ``json.dumps`` turns ``1``, ``1.0``, ``True`` and ``None`` keys into strings, so
  ``{1: "a", "1": "b"}`` is written with a duplicate key and every decoder keeps only one of
  the two values. Keys must be strings, and distinct as strings;
- nesting: orjson refuses to encode past 255 levels but decodes up to 1024, so the host
  could accept from a worker what its own encoder then fails on. One bound,
  :data:`MAX_DEPTH` containers, is used for what a worker may send, what the host decodes,
  what the bridge accepts and what anonymous HTTP input may contain;
- strings: a lone surrogate is not Unicode text, UTF-8 cannot carry it (orjson refuses it,
  SQLite would store replacement bytes);
- floats: NaN and infinities are not JSON.

This module is the one statement of that rule. It imports only the standard library: the
host uses it (frame decoding, bridge, store, ASGI) and so do the shared modules that run in
workers (``emdash._shared``), which may import it like ``sandbox._errors``.

Two entry points:

- :func:`check_decoded` for a value a JSON decoder just produced (exact builtin types only,
  string keys by construction): depth, integer range, lone surrogates. Cheap: one walk,
  no copy.
- :func:`exact_copy` for a value made by Python code (a plugin's result or ``ctx`` call
  parameters): a copy made only of exact builtin types, read through the builtin types' own
  C methods so that no method a plugin defined runs, or :class:`NotExactJSON` saying what is
  wrong and where.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "NotExactJSON",
    "check_decoded",
    "exact_copy",
    "is_exact_int",
]

#: Deepest nesting of arrays/objects a value may have (a scalar alone has depth 0).
MAX_DEPTH = 64
#: The integers every encoder/decoder on the path carries exactly (int64).
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_INF = math.inf


class NotExactJSON(ValueError):
    """A value breaks the exact-JSON rule; the message says what and where (``$.a[3]``)."""


def is_exact_int(value: int) -> bool:
    return INT_MIN <= value <= INT_MAX


def _where(path: tuple[Any, ...]) -> str:
    out = "$"
    for step in path[:12]:
        out += f"[{step}]" if type(step) is int else f".{str(step)[:40]}"
    return out + ("..." if len(path) > 12 else "")


def _int_error(value: int, path: tuple[Any, ...]) -> NotExactJSON:
    digits = len(str(abs(value))) if value.bit_length() < 4000 else "thousands of"
    return NotExactJSON(
        f"integer at {_where(path)} ({digits} digits) is outside the exact range "
        f"[-2**63, 2**63 - 1]; store it as a string"
    )


def _depth_error(path: tuple[Any, ...], max_depth: int) -> NotExactJSON:
    return NotExactJSON(
        f"value is nested more than {max_depth} levels deep (at {_where(path)}); flatten it"
    )


def _surrogate_error(path: tuple[Any, ...]) -> NotExactJSON:
    return NotExactJSON(
        f"string at {_where(path)} contains a lone surrogate, which is not Unicode text"
    )


def _text_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_decoded(
    value: Any, *, max_depth: int = MAX_DEPTH, ints: bool = True, strings: bool = True
) -> None:
    """Raise :class:`NotExactJSON` unless a *decoded* JSON value obeys the rule.

    Only for what a JSON decoder returned (dict/list/str/int/float/bool/None, string keys):
    anything else is refused too, but by type name only. Iterative, so a value nested
    far deeper than the bound costs no recursion. ``ints=False`` skips the integer range
    (for data that is only ever re-encoded by Python's own ``json``, such as error details);
    ``strings=False`` skips the surrogate check (orjson never decodes one).
    """
    if type(value) is dict or type(value) is list:
        stack: list[tuple[Any, int]] = [(value, 0)]
    else:
        _scalar(value, ints, strings)
        return
    # Containers only go on the stack; scalars are checked where they are met (no path is
    # kept on this hot path, so errors do not say where).
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth >= max_depth:
            raise _depth_error((), max_depth)
        if type(item) is dict:
            if strings:
                for key in item:
                    if not _text_ok(key):
                        raise _surrogate_error(())
            children: Any = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
            elif kind is str:
                if strings and not _text_ok(child):
                    raise _surrogate_error(())
            elif kind is int:
                if ints and not INT_MIN <= child <= INT_MAX:
                    raise _int_error(child, ())
            else:
                _scalar(child, ints, strings)


def _scalar(value: Any, ints: bool, strings: bool) -> None:
    kind = type(value)
    if kind is str:
        if strings and not _text_ok(value):
            raise _surrogate_error(())
    elif kind is int:
        if ints and not INT_MIN <= value <= INT_MAX:
            raise _int_error(value, ())
    elif kind is float:
        if value != value or value in (_INF, -_INF):
            raise NotExactJSON("NaN and infinities are not JSON numbers")
    elif value is not None and kind is not bool:
        raise NotExactJSON(f"a {kind.__name__} is not JSON data")


def exact_copy(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of ``value`` made only of exact JSON types, or :class:`NotExactJSON`.

    Accepts ``str``/``int``/``float``/``bool``/``None``, lists and tuples (as lists) and
    dicts with *string* keys, subclasses included: those are read through the base type
    (``str.__str__(x)``, ``int.__int__(x)``, ``dict.items(x)``, ``list.copy(x)``), never
    through a method the value's class defines, so no plugin code runs here. Refused, with
    the path in the message: a non-string key (``json`` would silently turn ``1`` into
    ``"1"``), two keys equal as strings, an integer outside int64, NaN/infinity, a lone
    surrogate, nesting deeper than ``max_depth``, a cycle, any other type.
    """
    return _copy(value, 0, (), max_depth, set())


def _copy(value: Any, depth: int, path: tuple[Any, ...], max_depth: int, open_ids: set[int]) -> Any:
    kind = type(value)
    if kind is str:
        if not _text_ok(value):
            raise _surrogate_error(path)
        return value
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _int_error(value, path)
        return value
    if value is None or kind is bool:
        return value
    if kind is float:
        if value != value or value in (_INF, -_INF):
            raise NotExactJSON(f"number at {_where(path)} is NaN or infinite (not JSON)")
        return value
    if issubclass(kind, str):
        return _copy(str.__str__(value), depth, path, max_depth, open_ids)
    if issubclass(kind, int):  # bool cannot be subclassed
        return _copy(int.__int__(value), depth, path, max_depth, open_ids)
    if issubclass(kind, float):
        return _copy(float.__float__(value), depth, path, max_depth, open_ids)
    is_dict = issubclass(kind, dict)
    if not (is_dict or issubclass(kind, (list, tuple))):
        raise NotExactJSON(f"a {kind.__name__} at {_where(path)} is not JSON data")
    if depth >= max_depth:
        raise _depth_error(path, max_depth)
    marker = id(value)
    if marker in open_ids:
        raise NotExactJSON(f"circular reference at {_where(path)}")
    open_ids.add(marker)
    try:
        if is_dict:
            out: dict[str, Any] = {}
            for key, item in list(dict.items(value)):
                if type(key) is not str:
                    if not isinstance(key, str):
                        plain = key is None or type(key) in (int, float, bool)
                        shown = repr(key)[:40] if plain else f"<{type(key).__name__}>"
                        raise NotExactJSON(
                            f"object key {shown} at {_where(path)} is not a string; JSON keys "
                            "are strings (convert it yourself, so that two keys cannot collide)"
                        )
                    key = str.__str__(key)
                if not _text_ok(key):
                    raise _surrogate_error(path)
                if key in out:
                    raise NotExactJSON(f"duplicate object key {key[:40]!r} at {_where(path)}")
                out[key] = _copy(item, depth + 1, (*path, key), max_depth, open_ids)
            return out
        items = (
            list.copy(value) if issubclass(kind, list) else tuple.__getitem__(value, slice(None))
        )
        return [
            _copy(item, depth + 1, (*path, i), max_depth, open_ids) for i, item in enumerate(items)
        ]
    finally:
        open_ids.discard(marker)
