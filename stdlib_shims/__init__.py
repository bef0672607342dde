"""Curated facades of standard-library modules that sandboxed plugins may import.

``SHIMS`` maps an importable name (``"json"``, ``"urllib.parse"``...) to a read-only
``Facade`` built once, at import time. Plugins never receive a real module object: see
``_facade`` for why, and each ``_*.py`` for what every shim leaves out and why.

``random`` is not in ``SHIMS``: every loaded bundle gets its own generator from
``make_random()`` (a generator built in the fork server would be cloned, state and all, into
every worker). ``preload()`` must run before workers are forked and confined.

Deliberately absent: ``dataclasses`` (it generates methods with ``exec`` under the real
builtins, writes dunders such as ``__setattr__`` onto plugin classes outside the sandbox's
class checks, and ``asdict``/``replace`` run ``copy.deepcopy``, i.e. the pickle reduce
protocol, on plugin objects), ``copy`` (same protocol), ``operator`` (``attrgetter``/
``methodcaller`` resolve names outside every guard), ``logging`` (``Logger.manager`` and
handler streams reach host state), ``enum``/``abc`` (metaclass machinery and process-wide
registries), ``zoneinfo`` (reads the time-zone database from disk) and ``os``/``sys``/``io``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from ._crypto import hashlib_members, hmac_members, secrets_members, uuid_members
from ._facade import Facade, facade_members, facade_name, make_facade
from ._functional import collections_members, functools_members, itertools_members
from ._numbers import (
    bisect_members,
    decimal_members,
    heapq_members,
    math_members,
    random_members,
    statistics_members,
)
from ._preload import preload
from ._text import (
    base64_members,
    html_members,
    json_members,
    re_members,
    string_members,
    textwrap_members,
    urllib_parse_members,
)
from ._time import datetime_members, time_members
from ._typing import typing_members

__all__ = [
    "RANDOM_NAME",
    "SHIMS",
    "SHIM_NAMES",
    "Facade",
    "facade_members",
    "facade_name",
    "make_facade",
    "make_random",
    "preload",
]

_BUILDERS: dict[str, Callable[[], dict[str, object]]] = {
    "base64": base64_members,
    "bisect": bisect_members,
    "collections": collections_members,
    "datetime": datetime_members,
    "decimal": decimal_members,
    "functools": functools_members,
    "hashlib": hashlib_members,
    "heapq": heapq_members,
    "hmac": hmac_members,
    "html": html_members,
    "itertools": itertools_members,
    "json": json_members,
    "math": math_members,
    "re": re_members,
    "secrets": secrets_members,
    "statistics": statistics_members,
    "string": string_members,
    "textwrap": textwrap_members,
    "time": time_members,
    "typing": typing_members,
    "urllib.parse": urllib_parse_members,
    "uuid": uuid_members,
}

#: The name under which ``make_random()`` facades are imported.
RANDOM_NAME = "random"


def _build() -> Mapping[str, Facade]:
    shims = {name: make_facade(name, build()) for name, build in _BUILDERS.items()}
    # "import urllib.parse" binds the package "urllib", so it needs a facade too; its only
    # member is the parse facade (the real package would reach urllib.request/error).
    shims["urllib"] = make_facade("urllib", {"parse": shims["urllib.parse"]})
    return MappingProxyType(dict(sorted(shims.items())))


SHIMS: Mapping[str, Facade] = _build()

#: Every importable shim name, "random" included.
SHIM_NAMES: frozenset[str] = frozenset(SHIMS) | {RANDOM_NAME}


def make_random(seed: int | None = None) -> Facade:
    """A ``random`` facade over a fresh generator (seeded from ``os.urandom`` by default)."""
    return make_facade(RANDOM_NAME, random_members(seed))
