"""Members of functools, itertools and collections (typing: see ``_typing``).

functools gets our own ``partial`` and ``lru_cache``/``cache``:

* The real ``functools.partial`` exposes ``.func``, ``.args`` and ``.keywords``: public
  attributes that unwrap whatever a host handed out as a partial (escape-classes 022). Ours
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
"""

from __future__ import annotations

import collections
import functools
import itertools
import types
from collections.abc import Callable, Iterable
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


def itertools_members() -> dict[str, object]:
    # All public names are C iterator types; none resolves attributes or imports.
    return {name: getattr(itertools, name) for name in dir(itertools) if not name.startswith("_")}


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
