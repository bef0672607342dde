"""The builtins sandboxed code sees: a vetted set, built fresh for every bundle.

Fresh, because a shared builtins dict is shared state: RP's module-level ``safe_builtins``/
``safe_globals`` let a ``global`` in one plugin be read by another (086), and anything one
bundle could mutate would leak into the next. The dict itself is never reachable from plugin
code (``__builtins__`` is a ``_``-name), but building it per bundle costs microseconds and
removes the question.

What is in it, and why the shape:

* Immutable value types (``int``, ``str``, ``float``...) are the real types. ``str.format``
  is refused by ``_getattr_``; plugins cannot subclass any of them (``plugin_metaclass``).
* Containers whose constructors iterate in C (``list``, ``tuple``, ``dict``, ``set``,
  ``frozenset``, ``bytes``) are ``GuardedType`` stand-ins that apply the ``_getiter_``
  policy first (RP 9.0 dropped ``sorted``/``tuple``/``zip``/``bytes`` for this reason) and
  still work with ``isinstance`` through ``__instancecheck__``. Iterating builtins
  (``sorted``, ``min``, ``zip``...) are wrapped the same way.
* ``getattr``/``hasattr``/``setattr``/``delattr``/``pow`` are the guarded versions.
* Refused builtins (``eval``, ``type``, ``object``, ``id``, ``open``...) are present as
  ``ForbiddenBuiltin`` stubs so misuse fails with a message that says what to do instead.
* Only ``Exception`` classes: no ``BaseException``, ``SystemExit``, ``KeyboardInterrupt``,
  ``GeneratorExit`` (a plugin must not pose as a shutdown, 056) and no ``ExceptionGroup``
  (CVE-2025-22153).
* ``UnicodeError`` (to catch) but none of its constructible subclasses: see
  ``_UNICODE_ERRORS`` below (an interpreter memory-safety bug).
* ``map``/``filter``/``zip``/``enumerate`` build nesting-bounded iterators (see
  ``stdlib_shims._functional``: deep chains of them overflow the C stack).
* ``repr``/``ascii``/``str``/``format`` return text without heap addresses (see
  ``_guards.scrub_text``); ``str`` is a ``GuardedType`` stand-in for that reason.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

from stdlib_shims._functional import (
    MAX_ITERATOR_NESTING,
    BoundedIterType,
    check_nesting,
    nesting_depth,
)

from ._guards import (
    PRIMITIVE_TYPES,
    ForbiddenBuiltin,
    PrintCollector,
    bounded_pow,
    check_iterable,
    checked_store_key,
    format_value,
    guarded_apply,
    guarded_getattr,
    guarded_getitem,
    guarded_inplacevar,
    guarded_iter,
    guarded_iter_unpack_sequence,
    guarded_mod,
    guarded_slice_write,
    guarded_unpack_sequence,
    guarded_write,
    plugin_metaclass,
    safe_delattr,
    safe_getattr,
    safe_hasattr,
    safe_setattr,
    scrub_text,
)


class GuardedType:
    """A builtin container type whose constructor runs the ``_getiter_`` policy first.

    ``isinstance(x, list)`` and ``issubclass`` work (``__instancecheck__``), ``list[int]``
    works in annotations, but ``class L(list)`` does not: a ``GuardedType`` is no class.
    """

    __slots__ = ("_real",)

    def __init__(self, real: type) -> None:
        self._real = real

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        for arg in args:
            check_iterable(arg)
        return self._real(*args, **kwargs)

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, self._real)

    def __subclasscheck__(self, subclass: object) -> bool:
        return issubclass(unwrap_type(subclass), self._real)

    def __getitem__(self, item: object) -> Any:
        # list[int] -> types.GenericAlias, for annotations.
        return self._real[item]  # type: ignore[index]

    def __or__(self, other: object) -> Any:
        # str | None -> types.UnionType, for annotations.
        return self._real | unwrap_type(other)

    def __ror__(self, other: object) -> Any:
        return unwrap_type(other) | self._real

    def __mro_entries__(self, bases: tuple[object, ...]) -> tuple[type]:
        # class S(str): the metaclass sees (and refuses) the real base.
        return (self._real,)

    def __repr__(self) -> str:
        return f"<class {self._real.__name__!r}>"


class _DictType(GuardedType):
    __slots__ = ()

    def fromkeys(self, iterable: Iterable[Any], value: Any = None, /) -> dict[Any, Any]:
        """``dict.fromkeys`` (iterates its argument)."""
        return dict.fromkeys(guarded_iter(iterable), value)


_NOTHING: Any = object()


class _StrType(GuardedType):
    """``str``: ``str(obj)`` without heap addresses; ``str.lower`` & co. still readable."""

    __slots__ = ()

    def __call__(self, obj: Any = _NOTHING, /, *args: Any, **kwargs: Any) -> Any:
        if obj is _NOTHING:
            # str(), str(object=x), str(object=b, encoding=...)
            return (
                self(kwargs.pop("object"), *args, **kwargs)
                if "object" in kwargs
                else str(*args, **kwargs)
            )
        if type(obj) in PRIMITIVE_TYPES:
            # str(5), str(b"x", "utf-8"): nothing to remove (the hot path: no *args copy).
            return str(obj, *args, **kwargs) if args or kwargs else str(obj)
        if args or kwargs:
            return scrub_text(str(obj, *args, **kwargs))
        return scrub_text(str(obj))

    def __getattr__(self, name: str) -> Any:
        # Reached through _getattr_ only, which has already refused "_"-names and
        # format/format_map, and checks the value it gets (unbound methods of str are fine).
        return getattr(str, name)


class _BytesType(GuardedType):
    __slots__ = ()

    def fromhex(self, string: str, /) -> bytes:
        """``bytes.fromhex``."""
        return bytes.fromhex(string)


def unwrap_type(obj: object) -> Any:
    """The real type behind a ``GuardedType`` (anything else is returned unchanged)."""
    return obj._real if isinstance(obj, GuardedType) else obj


def _safe_issubclass(cls: object, classinfo: Any, /) -> bool:
    """``issubclass`` that accepts the ``GuardedType`` stand-ins as its first argument."""
    return issubclass(unwrap_type(cls), classinfo)


# Wrappers of builtins that iterate their arguments in C. Each runs the _getiter_ policy
# (guarded_iter/check_iterable) on what it is given, then calls the real builtin.


def _sorted(
    iterable: Iterable[Any], /, *, key: Callable[[Any], Any] | None = None, reverse: bool = False
) -> list[Any]:
    return sorted(guarded_iter(iterable), key=key, reverse=reverse)


def _reversed(sequence: Any, /) -> Any:
    check_iterable(sequence)
    return reversed(sequence)


# Nesting-bounded versions of the lazy wrappers: their instances are subclasses that record
# how deep their chain is (see stdlib_shims._functional). Written out rather than through
# the generic BoundedIterType.__call__: enumerate(), zip() and map() are on hot paths.
_ENUMERATE: Any = BoundedIterType(enumerate)._tracked
_ZIP: Any = BoundedIterType(zip)._tracked
_MAP: Any = BoundedIterType(map)._tracked
_FILTER: Any = BoundedIterType(filter)._tracked


def _enumerate(iterable: Iterable[Any], start: int = 0) -> Any:
    it = guarded_iter(iterable)
    depth = nesting_depth(it) + 1
    if depth > MAX_ITERATOR_NESTING:
        check_nesting("enumerate", it)  # raises, with the message
    obj = _ENUMERATE(it, start)
    obj._nesting = depth
    return obj


def _zip(*iterables: Iterable[Any], strict: bool = False) -> Any:
    its = [guarded_iter(it) for it in iterables]
    depth = check_nesting("zip", *its)
    obj = _ZIP(*its, strict=strict)
    obj._nesting = depth
    return obj


def _map(
    function: Callable[..., Any], iterable: Iterable[Any], /, *iterables: Iterable[Any]
) -> Any:
    it = guarded_iter(iterable)
    if iterables:
        its = [it, *(guarded_iter(other) for other in iterables)]
        depth = check_nesting("map", *its)
        obj = _MAP(function, *its)
    else:
        depth = nesting_depth(it) + 1
        if depth > MAX_ITERATOR_NESTING:
            check_nesting("map", it)
        obj = _MAP(function, it)
    obj._nesting = depth
    return obj


def _filter(function: Callable[[Any], Any] | None, iterable: Iterable[Any], /) -> Any:
    it = guarded_iter(iterable)
    depth = nesting_depth(it) + 1
    if depth > MAX_ITERATOR_NESTING:
        check_nesting("filter", it)
    obj = _FILTER(function, it)
    obj._nesting = depth
    return obj


def _sum(iterable: Iterable[Any], /, start: Any = 0) -> Any:
    return sum(guarded_iter(iterable), start)


def _any(iterable: Iterable[Any], /) -> bool:
    return any(guarded_iter(iterable))


def _all(iterable: Iterable[Any], /) -> bool:
    return all(guarded_iter(iterable))


def _min(*args: Any, **kwargs: Any) -> Any:
    # min(iterable) iterates; min(a, b, ...) compares its arguments and iterates nothing.
    if len(args) == 1:
        return min(guarded_iter(args[0]), **kwargs)
    return min(*args, **kwargs)


def _max(*args: Any, **kwargs: Any) -> Any:
    if len(args) == 1:
        return max(guarded_iter(args[0]), **kwargs)
    return max(*args, **kwargs)


def _iter(obj: Any, *sentinel: Any) -> Any:
    if sentinel:
        return iter(obj, *sentinel)  # iter(callable, sentinel) iterates nothing
    return guarded_iter(obj)


def _repr(obj: object, /) -> str:
    text = repr(obj)
    return text if type(obj) in PRIMITIVE_TYPES else scrub_text(text)


def _ascii(obj: object, /) -> str:
    text = ascii(obj)
    return text if type(obj) in PRIMITIVE_TYPES else scrub_text(text)


def _format(value: object, format_spec: str = "", /) -> str:
    # The builtin: format(value, spec) has no field lookup, unlike str.format.
    text = format(value, format_spec)
    return text if type(value) in PRIMITIVE_TYPES else scrub_text(text)


_WRAPPERS: dict[str, Callable[..., Any]] = {
    "sorted": _sorted,
    "reversed": _reversed,
    "enumerate": _enumerate,
    "zip": _zip,
    "map": _map,
    "filter": _filter,
    "sum": _sum,
    "any": _any,
    "all": _all,
    "min": _min,
    "max": _max,
    "iter": _iter,
    "repr": _repr,
    "ascii": _ascii,
    "format": _format,
    "issubclass": _safe_issubclass,
    "getattr": safe_getattr,
    "hasattr": safe_hasattr,
    "setattr": safe_setattr,
    "delattr": safe_delattr,
    "pow": bounded_pow,
}
for _public_name, _wrapper in _WRAPPERS.items():
    # repr() and tracebacks show the builtin's name, not ours.
    _wrapper.__name__ = _wrapper.__qualname__ = _public_name

_REAL_NAMES = (
    "bool",
    "int",
    "float",
    "complex",
    "range",
    "slice",
    "len",
    "abs",
    "round",
    "divmod",
    "callable",
    "chr",
    "ord",
    "hex",
    "oct",
    "bin",
    "isinstance",  # works with GuardedType and ForbiddenBuiltin via __instancecheck__
    "next",
    "property",
    "staticmethod",
    "classmethod",
)

_EXCEPTIONS = (
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "ImportError",
    "IndexError",
    "KeyError",
    "LookupError",
    "ModuleNotFoundError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "UnboundLocalError",
    "UnicodeError",  # for `except`; it cannot be subclassed (plugin_metaclass)
    "ValueError",
    "ZeroDivisionError",
)

# CPython gh-123378 (unfixed in the 3.11.7 we run on): str() of a UnicodeDecodeError,
# UnicodeEncodeError or UnicodeTranslateError whose start/end lie outside its object reads
# memory out of bounds - str(UnicodeDecodeError("utf-8", b"x", -24, -23, "r")) prints the
# heap in front of the bytes object, one byte per offset. A plugin that chooses start/end
# (by calling a constructor, or by setting .start on an instance of its own subclass) reads
# the worker's heap; seccomp and the empty worker are the last line behind that, not a
# reason to allow it. So plugins get neither the constructors nor subclassing (UnicodeError
# is refused as a base in plugin_metaclass); the exceptions the interpreter raises for
# them carry consistent offsets, can still be caught as UnicodeError and their attributes
# cannot be written (_write_ refuses host exception instances).
# Revisit on CPython >= 3.12.6 / 3.11.10, where gh-123378 is fixed (start/end are clamped).
_UNICODE_ERRORS = ("UnicodeDecodeError", "UnicodeEncodeError", "UnicodeTranslateError")
_NO_UNICODE_ERROR = "catch UnicodeError instead (plugins cannot create Unicode errors)"

_NO_CODE = "code cannot be generated or run from strings"
_NO_INTROSPECTION = "introspection of the interpreter is not available"
_FORBIDDEN: dict[str, str] = {
    "eval": _NO_CODE,
    "exec": _NO_CODE,
    "compile": _NO_CODE,
    "type": 'use isinstance() to check types, and the "class" statement to define them',
    "object": 'define classes without a base class ("class A:")',
    "super": "call the base class explicitly: Base.method(self, ...)",
    "id": "object addresses are not disclosed",
    "hash": "hash values are not disclosed",
    "vars": _NO_INTROSPECTION,
    "dir": _NO_INTROSPECTION,
    "globals": _NO_INTROSPECTION,
    "locals": _NO_INTROSPECTION,
    "open": "plugins have no file system; use the storage and KV services of ctx",
    "input": "plugins have no console",
    "breakpoint": "plugins cannot be debugged interactively",
    "help": "plugins have no console",
    "exit": "return from the handler instead",
    "quit": "return from the handler instead",
    "memoryview": "use bytes",
    "bytearray": "use bytes",
    "aiter": "async code is not supported",
    "anext": "async code is not supported",
    "BaseException": "derive exceptions from Exception",
    "SystemExit": "return from the handler instead",
    "KeyboardInterrupt": "derive exceptions from Exception",
    "GeneratorExit": "derive exceptions from Exception",
    "ExceptionGroup": "exception groups are not supported",
    "BaseExceptionGroup": "exception groups are not supported",
    **{name: _NO_UNICODE_ERROR for name in _UNICODE_ERRORS},
}


def make_builtins(import_hook: Callable[..., Any]) -> dict[str, Any]:
    """A fresh builtins dict for one bundle, with ``import_hook`` as ``__import__``."""
    # An allowlist built from names, never a copy of the real builtins minus a denylist: a
    # builtin added by a future CPython stays out until someone reviews it.
    table: dict[str, Any] = {
        "True": True,
        "False": False,
        "None": None,
        "Ellipsis": Ellipsis,
        "NotImplemented": NotImplemented,
    }
    for name in _REAL_NAMES + _EXCEPTIONS:
        table[name] = getattr(builtins, name)
    table.update(_WRAPPERS)
    for name, real in (("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
        table[name] = GuardedType(real)
    table["str"] = _StrType(str)
    table["dict"] = _DictType(dict)
    table["bytes"] = _BytesType(bytes)
    # New wrapper instances per bundle: nothing here is shared with another bundle.
    for name, hint in _FORBIDDEN.items():
        table[name] = ForbiddenBuiltin(name, hint)
    # The hooks RestrictedPython's rewritten code calls. Plugin code cannot name them: every
    # "_"-name is a compile error, so it cannot rebind or read them either.
    table.update(
        {
            "__build_class__": builtins.__build_class__,
            "__metaclass__": plugin_metaclass,
            "__import__": import_hook,
            "_getattr_": guarded_getattr,
            "_getitem_": guarded_getitem,
            "_getiter_": guarded_iter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_write_": guarded_write,
            "_slice_write_": guarded_slice_write,
            "_store_key_": checked_store_key,
            "_format_value_": format_value,
            "_mod_": guarded_mod,
            "_inplacevar_": guarded_inplacevar,
            "_apply_": guarded_apply,
            "_print_": PrintCollector,
        }
    )
    return table
