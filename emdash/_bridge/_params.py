"""Validation of bridge call parameters: hostile input, exact types, EmDash's texts.

Every bridge call's ``params`` first goes through :func:`plain_params`, which walks the
whole value once and rebuilds it from exact builtin types (``type(x) is str``, never
``isinstance``), with a nesting-depth and total-size cap. After that, nothing a plugin
defined (a ``str`` subclass with a lying ``__eq__``, a ``dict`` whose ``items`` changes
between calls) can reach a service. :class:`Params` then reads individual parameters with
the exact messages of EmDash's sandbox bridge.
"""

from __future__ import annotations

import math
from typing import Any

from sandbox._jsonrule import INT_MAX, INT_MIN, MAX_DEPTH

from .._shared._errors import BridgeError

__all__ = ["MAX_BATCH", "MAX_DEPTH", "MAX_REQUEST_CHARS", "Params", "plain_params"]

# MAX_DEPTH (64 levels) and the int64 range are the exact-JSON rule of sandbox._jsonrule,
# the same bound the worker applies before sending and the host when decoding its frames.
# Whole request, in characters of strings plus a few per scalar: room for a 10 MiB upload
# as base64 (13.4 M chars); each stored value is further capped at 1 MiB by the store.
MAX_REQUEST_CHARS = 16 * 1024 * 1024
MAX_BATCH = 100


def plain_params(params: Any, pid: str) -> dict[str, Any]:
    """A fresh copy of ``params`` made of exact JSON types, or ``BridgeError``."""
    if type(params) is not dict:
        raise BridgeError("Bridge request body must be a JSON object", plugin_id=pid)
    # Fast path, same result: a flat object (ASCII str keys; values exact str, int within
    # int64, bool or None: kv.get, kv.set of a scalar, most calls) is checked and costed in
    # one loop and copied shallowly (its values are immutable). Anything else, or anything
    # this loop does not accept, takes the full walk below, which raises the exact errors.
    cost = 2
    for k, v in params.items():
        kind = type(v)
        if type(k) is not str or not k.isascii():
            break
        if kind is str:
            cost += len(v) + 2
        elif kind is int and INT_MIN <= v <= INT_MAX:
            cost += 8
        elif v is None or kind is bool:
            cost += 1
        else:
            break
        cost += len(k) + 2
    else:
        if cost <= MAX_REQUEST_CHARS:
            return dict(params)
    budget = [MAX_REQUEST_CHARS]
    out = _plain(params, 0, budget, pid)
    assert type(out) is dict
    return out


def _plain(value: Any, depth: int, budget: list[int], pid: str) -> Any:
    kind = type(value)
    if value is None or kind is bool:
        cost: int = 1
    elif kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise BridgeError(
                "Bridge request contains an integer outside the exact range [-2**63, 2**63 - 1] "
                "(it would not survive JSON and SQLite unchanged); send it as a string",
                plugin_id=pid,
            )
        cost = 8
    elif kind is float:
        if not math.isfinite(value):
            raise BridgeError("Bridge request contains NaN or Infinity (not JSON)", plugin_id=pid)
        cost = 8
    elif kind is str:
        cost = len(value) + 2
    elif kind is list or kind is dict:
        if depth >= MAX_DEPTH:
            raise BridgeError(
                f"Bridge request is nested too deeply (more than {MAX_DEPTH} levels)",
                plugin_id=pid,
            )
        cost = 2
    else:
        raise BridgeError(
            f"Bridge request contains a {kind.__name__}, which is not JSON data", plugin_id=pid
        )
    budget[0] -= cost
    if budget[0] < 0:
        raise BridgeError(
            f"Bridge request is too large (more than {MAX_REQUEST_CHARS} characters)",
            plugin_id=pid,
        )
    if kind is list:
        return [_plain(v, depth + 1, budget, pid) for v in value]
    if kind is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise BridgeError("Bridge request has a non-string object key", plugin_id=pid)
            if not k.isascii() and not _utf8_ok(k):
                raise BridgeError(
                    "Bridge request has an object key with a lone surrogate", plugin_id=pid
                )
            budget[0] -= len(k) + 2
            out[k] = _plain(v, depth + 1, budget, pid)
        return out
    return value


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Params:
    """Typed access to one call's (already plain) parameters."""

    __slots__ = ("_data", "pid")

    def __init__(self, data: dict[str, Any], pid: str) -> None:
        self._data = data
        self.pid = pid

    def error(self, message: str) -> BridgeError:
        return BridgeError(message, plugin_id=self.pid)

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None

    def value(self, key: str) -> Any:
        """Any JSON value (``None`` when absent)."""
        return self._data.get(key)

    def req_str(self, key: str) -> str:
        value = self._data.get(key)
        if type(value) is not str:
            raise self.error(f"Missing required string parameter: {key}")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is not None and type(value) is not str:
            raise self.error(f"Parameter {key} must be a string when provided")
        return value

    def req_obj(self, key: str) -> dict[str, Any]:
        value = self._data.get(key)
        if type(value) is not dict:
            raise self.error(f"Missing required object parameter: {key}")
        return value

    def opt_obj(self, key: str) -> dict[str, Any] | None:
        value = self._data.get(key)
        if value is not None and type(value) is not dict:
            raise self.error(f"Parameter {key} must be an object when provided")
        return value

    def str_list(self, key: str, *, batch: bool = False) -> list[str]:
        value = self._data.get(key)
        if type(value) is not list or not all(type(v) is str for v in value):
            raise self.error(f"Parameter {key} must be an array of strings")
        if batch:
            self.check_batch(value)
        return value

    def obj_list(self, key: str, *, batch: bool = False) -> list[dict[str, Any]]:
        value = self._data.get(key)
        if type(value) is not list or not all(type(v) is dict for v in value):
            raise self.error(f"Parameter {key} must be an array of objects")
        if batch:
            self.check_batch(value)
        return value

    def id_data_list(self, key: str, message: str, *, batch: bool = False) -> list[dict[str, Any]]:
        """``[{"id": str, "data": ...}]``; ``message`` is the method-specific §4.4 text."""
        value = self._data.get(key)
        if type(value) is not list or not all(
            type(v) is dict and type(v.get("id")) is str and "data" in v for v in value
        ):
            raise self.error(message)
        if batch:
            self.check_batch(value)
        return value

    def check_batch(self, items: list[Any]) -> None:
        if len(items) > MAX_BATCH:
            raise self.error(f"Batch size {len(items)} exceeds maximum of {MAX_BATCH}")

    def limit(self, key: str = "limit") -> int | None:
        """A page size: a non-number is treated as absent (as EmDash does); floats floor."""
        value = self._data.get(key)
        if type(value) is int:
            return value
        if type(value) is float:
            return int(value)
        return None

    def order_by(self, key: str = "orderBy") -> dict[str, str] | None:
        value = self._data.get(key)
        if value is None:
            return None
        if type(value) is not dict or not all(v in ("asc", "desc") for v in value.values()):
            raise self.error(f'Parameter {key} must be an object mapping field to "asc"|"desc"')
        return value
