"""Members of functools, itertools and collections (typing: see ``_typing``).

functools gets our own ``partial`` and ``lru_cache``/``cache``:

* The real ``functools.partial`` exposes ``.func``, ``.args`` and ``.keywords``: public
  attributes that unwrap whatever a host handed out as a partial (escape corpus 022). Ours
  keeps them in private slots, which restricted code can never read.
* The real ``lru_cache`` wrapper carries ``__wrapped__`` and copies the wrapped function's
  ``__dict__``. Ours is an opaque callable with ``cache_info``/``cache_clear`` only.
* ``wraps`` is an identity decorator: copying ``__name__``/``__doc__``/``__wrapped__`` onto
  plugin functions would be host code writing attributes the sandbox forbids plugins to write.

collections' ``namedtuple`` is safe enough to offer: it validates every field name (an
identifier, not a keyword, no leading ``_``) before it builds code from them. Our wrapper
refuses ``rename``/``module`` and pins ``__module__`` to a name that is no real package.
Left out: ``collections.abc`` (``Mapping.register`` mutates process-wide ABC registries that
host code in the worker relies on), ``UserDict`` & co.

Lazy iterator wrappers (itertools here, ``map``/``filter``/``zip``/``enumerate`` in the
sandbox's builtins) are *nesting-bounded*. Each one's ``__next__`` calls the ``__next__`` of
the iterator it wraps in C, with no interpreter frame in between, so nothing counts the
depth: ``for _ in range(100_000): it = map(f, it)`` then ``next(it)`` overflows the C stack
and the worker dies of SIGSEGV (CPython checks recursion only where Python code or a builtin
function call sits between the levels). So every wrapper a plugin builds records how deep
its chain is and construction past ``MAX_ITERATOR_NESTING`` levels raises ``RecursionError``
with a message saying what to do. The bound is low because plugin generators between
wrappers reset the count (a generator is not a wrapper we build): what keeps the C stack
safe is "at most ``MAX_ITERATOR_NESTING`` C levels per interpreter frame", times the
recursion limit (1000) frames. Measured on CPython 3.11-3.13 with an 8 MiB stack: 56 C
levels per frame still fit, 64 do not; 32 leaves a margin of almost two.
"""

from __future__ import annotations

import collections
import functools
import itertools
import types
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn


class partial:  # noqa: N801 - mirrors functools.partial's name for plugin authors
    """``functools.partial`` whose callable and bound arguments cannot be read back."""

    __slots__ = ("_func", "_args", "_kwargs")

    def __init__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(func):
            raise TypeError("the first argument must be callable")
        for key in kwargs:
            # Restricted code cannot pass "_"-keywords (compile error, or the _apply_ guard);
            # refuse them here too so a partial can never smuggle one into a host function.
            if key.startswith("_"):
                raise TypeError(f'keyword argument "{key}" is not allowed')
        self._func = func
        self._args = args
        self._kwargs = kwargs

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self._func(*self._args, *args, **{**self._kwargs, **kwargs})

    def __repr__(self) -> str:
        return "<functools.partial object>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("partial objects of sandboxed code cannot be pickled or copied")


class _Cached:
    """Memoising wrapper returned by ``lru_cache``/``cache``: callable, nothing to unwrap."""

    __slots__ = ("_wrapper",)

    def __init__(self, func: Callable[..., Any], maxsize: int | None, typed: bool) -> None:
        self._wrapper = functools.lru_cache(maxsize=maxsize, typed=typed)(func)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Lets @lru_cache decorate methods, like the real wrapper does.
        return self if instance is None else types.MethodType(self, instance)

    def cache_info(self) -> Any:
        """Hits, misses, maxsize and current size (the real ``CacheInfo`` named tuple)."""
        return self._wrapper.cache_info()

    def cache_clear(self) -> None:
        """Forget every cached result."""
        self._wrapper.cache_clear()

    def __repr__(self) -> str:
        return "<cached function>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("cached functions of sandboxed code cannot be pickled or copied")


def lru_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """``functools.lru_cache``: usable as ``@lru_cache``, ``@lru_cache()`` or ``@lru_cache(n)``."""
    if callable(maxsize) and type(maxsize) is not bool:
        return _Cached(maxsize, 128, False)
    if maxsize is not None and type(maxsize) is not int:
        raise TypeError("maxsize must be an int or None")

    def decorator(func: Callable[..., Any]) -> _Cached:
        return _Cached(func, maxsize, bool(typed))

    return decorator


def cache(func: Callable[..., Any]) -> _Cached:
    """``functools.cache``: an unbounded ``lru_cache``."""
    return _Cached(func, None, False)


def wraps(wrapped: object, assigned: object = None, updated: object = None) -> Any:
    """``functools.wraps`` as an identity decorator (see the module docstring)."""

    def decorator(wrapper: Any) -> Any:
        return wrapper

    return decorator


def functools_members() -> dict[str, object]:
    return {
        "reduce": functools.reduce,
        "cmp_to_key": functools.cmp_to_key,
        "partial": partial,
        "lru_cache": lru_cache,
        "cache": cache,
        "wraps": wraps,
    }


# --------------------------------------------------------------------------------------
# Nesting-bounded lazy iterators (see the module docstring)
# --------------------------------------------------------------------------------------

#: Most lazy iterator wrappers one chain may nest (``map(f, map(f, ...))``).
MAX_ITERATOR_NESTING = 32

# Tracked subclass -> the real type it stands for. Subclasses of the C types inherit their
# C-level __next__ (no Python call per item); the one slot holds the depth of the chain.
_TRACKED: dict[type, type] = {}
# Objects whose type cannot be subclassed (itertools.tee's): depth by weak reference.
_WEAK_DEPTHS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_TEE_TYPE: type = type(itertools.tee(())[0])


def _tracked(real: type) -> type:
    tracked = type(
        real.__name__, (real,), {"__slots__": ("_nesting",), "__module__": real.__module__}
    )
    tracked.__qualname__ = real.__qualname__
    _TRACKED[tracked] = real
    return tracked


def nesting_depth(obj: object) -> int:
    """How many lazy iterator wrappers ``obj`` stacks (0 for anything else)."""
    kind = type(obj)
    if kind in _TRACKED:
        depth: int = obj._nesting  # type: ignore[attr-defined]
        return depth
    if kind is _TEE_TYPE:
        return _WEAK_DEPTHS.get(obj, 0)
    return 0


def check_nesting(name: str, *parts: object) -> int:
    """The depth of a new wrapper over ``parts``; raises past ``MAX_ITERATOR_NESTING``."""
    depth = 1 + max(map(nesting_depth, parts), default=0)
    if depth > MAX_ITERATOR_NESTING:
        raise RecursionError(
            f"{name}(): lazy iterators nested more than {MAX_ITERATOR_NESTING} levels deep "
            "(map, filter, zip, enumerate and itertools objects wrapping each other); "
            "materialise intermediate results with list() instead"
        )
    return depth


def bounded(tracked: type, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``tracked(*args, **kwargs)`` with its nesting depth recorded (or refused)."""
    depth = check_nesting(name, *args, *kwargs.values())
    obj = tracked(*args, **kwargs)
    obj._nesting = depth
    return obj


def _relay(iterator: Iterator[Any]) -> Iterator[Any]:
    # A Python frame between two C levels: the recursion limit counts it.
    yield from iterator


def _relay_each(source: Iterator[Any]) -> Iterator[Any]:
    for item in source:
        yield _relay(item) if nesting_depth(item) else item


class BoundedIterType:
    """Stands in for a lazy iterator type: calling it builds a nesting-bounded instance.

    ``isinstance(x, itertools.chain)`` works (``__instancecheck__``); the real type, which
    would build untracked instances, is never handed out.
    """

    __slots__ = ("_real", "_tracked")

    def __init__(self, real: type) -> None:
        self._real = real
        self._tracked = _tracked(real)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return bounded(self._tracked, self._real.__name__, args, kwargs)

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, self._real)

    def __repr__(self) -> str:
        return f"<class '{self._real.__module__}.{self._real.__qualname__}'>"


class _ChainType(BoundedIterType):
    __slots__ = ()

    def from_iterable(self, iterables: Iterable[Any], /) -> Any:
        """``itertools.chain.from_iterable``: the sub-iterables are taken lazily.

        A list or tuple of them is known up front (copied: the list could change later), so
        the depth counts its items. Anything lazier yields its sub-iterables only while the
        chain runs; those that are wrappers are relayed through a generator frame, which the
        recursion limit counts.
        """
        if type(iterables) in (list, tuple):
            items = tuple(iterables)
            depth = check_nesting("chain.from_iterable", *items)
            source: Any = items
        else:
            depth = check_nesting("chain.from_iterable", iterables)
            source = _relay_each(iter(iterables))
        obj = self._tracked.from_iterable(source)  # type: ignore[attr-defined]
        obj._nesting = depth
        return obj


def _tee(iterable: Iterable[Any], n: int = 2, /) -> tuple[Any, ...]:
    """``itertools.tee`` (its objects cannot be subclassed; their depth is kept weakly)."""
    depth = check_nesting("tee", iterable)
    copies = itertools.tee(iterable, n)
    for copy in copies:
        _WEAK_DEPTHS[copy] = depth
    return copies


_tee.__name__ = _tee.__qualname__ = "tee"


def _groupby(
    iterable: Iterable[Any], key: Callable[[Any], Any] | None = None
) -> Iterator[tuple[Any, Any]]:
    """``itertools.groupby`` whose groups count as wrappers of the chain they come from.

    A real group's ``__next__`` advances the groupby, which advances its iterable, all in
    C; a group is created by the C code itself, so it cannot carry a depth. Each group is
    handed out inside a tracked ``islice(group, None)`` (same items) one level deeper.
    This generator itself is a Python frame, which the recursion limit counts.
    """
    depth = check_nesting("groupby", iterable, key)  # now, not at the first next()
    return _groups(itertools.groupby(iterable, key), depth + 1)


def _groups(groups: Iterator[tuple[Any, Any]], depth: int) -> Iterator[tuple[Any, Any]]:
    for value, group in groups:
        tracked = _TRACKED_ISLICE(group, None)
        tracked._nesting = depth
        yield value, tracked


_groupby.__name__ = _groupby.__qualname__ = "groupby"

_TRACKED_ISLICE = _tracked(itertools.islice)

# Constructors that take no iterator (count, repeat) are wrapped too: the rule is simpler
# than the exceptions, and their objects then count as one level.
_ITERTOOLS_TYPES = tuple(
    name
    for name in dir(itertools)
    if not name.startswith("_") and name != "tee" and isinstance(getattr(itertools, name), type)
)


def itertools_members() -> dict[str, object]:
    members: dict[str, object] = {"tee": _tee, "groupby": _groupby}
    for name in _ITERTOOLS_TYPES:
        if name in members:
            continue
        real = getattr(itertools, name)
        members[name] = _ChainType(real) if real is itertools.chain else BoundedIterType(real)
    return members


def _namedtuple(
    typename: str,
    field_names: str | Iterable[str],
    *,
    defaults: Iterable[Any] | None = None,
) -> type:
    """``collections.namedtuple`` without ``rename``/``module``."""
    if type(typename) is not str:
        raise TypeError("namedtuple() typename must be a str")
    if type(field_names) is not str:
        names = list(field_names)
        if any(type(name) is not str for name in names):
            raise TypeError("namedtuple() field names must be str")
        field_names = names
    # "<sandboxed>" is not an importable name, so pickle/import fallbacks find nothing.
    return collections.namedtuple(typename, field_names, defaults=defaults, module="<sandboxed>")


_namedtuple.__name__ = _namedtuple.__qualname__ = "namedtuple"


def collections_members() -> dict[str, object]:
    return {
        "deque": collections.deque,
        "Counter": collections.Counter,
        "OrderedDict": collections.OrderedDict,
        "defaultdict": collections.defaultdict,
        "ChainMap": collections.ChainMap,
        "namedtuple": _namedtuple,
    }
