"""Members of the numeric shims: math, decimal, statistics, random, bisect, heapq.

``random`` is special: the module-level functions of the real ``random`` module share one
process-global generator. In a worker forked from a fork server that state is *inherited*, so
every worker of every plugin would start from the same state (predictable output), and
``seed()``/``getstate()``/``setstate()`` would let one caller read or fix it for everyone
(escape corpus 071). Each bundle therefore gets its own ``random.Random`` seeded from
``os.urandom`` when it is loaded, and only sampling functions are exposed, as closures (no
bound methods whose ``__self__`` is the generator).
"""

from __future__ import annotations

import bisect
import decimal
import heapq
import math
import os
import random
import statistics
from collections.abc import Callable
from typing import Any


def math_members() -> dict[str, object]:
    # Every public name of math is a C function or a float constant: nothing to hide.
    return {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}


def decimal_members() -> dict[str, object]:
    names = (
        "Decimal",
        "Context",
        "localcontext",
        "DecimalException",
        "InvalidOperation",
        "DivisionByZero",
        "Inexact",
        "Rounded",
        "Subnormal",
        "Overflow",
        "Underflow",
        "Clamped",
        "FloatOperation",
        "ROUND_UP",
        "ROUND_DOWN",
        "ROUND_CEILING",
        "ROUND_FLOOR",
        "ROUND_HALF_UP",
        "ROUND_HALF_DOWN",
        "ROUND_HALF_EVEN",
        "ROUND_05UP",
        "MAX_PREC",
        "MAX_EMAX",
        "MIN_EMIN",
    )
    # Left out: getcontext/setcontext and BasicContext/DefaultContext/ExtendedContext. They
    # hand out shared, mutable context objects; localcontext(prec=...) covers the use cases.
    return {name: getattr(decimal, name) for name in names}


def statistics_members() -> dict[str, object]:
    # NormalDist is left out: NormalDist.samples() draws from the process-global generator.
    names = [name for name in statistics.__all__ if name != "NormalDist"]
    return {name: getattr(statistics, name) for name in names}


def bisect_members() -> dict[str, object]:
    return {name: getattr(bisect, name) for name in dir(bisect) if not name.startswith("_")}


def heapq_members() -> dict[str, object]:
    return {name: getattr(heapq, name) for name in heapq.__all__}


_RANDOM_FUNCTIONS = (
    "random",
    "uniform",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "gauss",
    "normalvariate",
    "lognormvariate",
    "expovariate",
    "vonmisesvariate",
    "gammavariate",
    "triangular",
    "betavariate",
    "paretovariate",
    "weibullvariate",
    "getrandbits",
    "randbytes",
)


def _closure(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _new_random(seed: int | float | str | bytes | None = None) -> random.Random:
    """``random.Random(seed)``: a private generator the plugin fully owns."""
    return random.Random(seed)


_new_random.__name__ = _new_random.__qualname__ = "Random"


def random_members(seed: int | None = None) -> dict[str, object]:
    """Sampling functions over a fresh generator (``seed`` for reproducible tests)."""
    if seed is None:
        seed = int.from_bytes(os.urandom(32), "big")
    rng = random.Random(seed)
    members: dict[str, object] = {
        name: _closure(getattr(rng, name), name) for name in _RANDOM_FUNCTIONS
    }
    members["Random"] = _new_random
    return members
