"""Members of typing: the names authors put in annotations, and nothing that acts.

The real generic aliases are doors. ``typing.Mapping`` forwards every unknown attribute to
``collections.abc.Mapping``, so ``typing.MutableMapping.update(x, data)`` ran the ABC's mixin
method on *any* ``x`` (``x[k] = v`` past the sandbox's ``_write_`` guard),
``typing.Generator.close(obj)`` called ``obj.throw(GeneratorExit)`` and so handed plugins the
one exception class they must not have, and ``typing.Dict.update``/``typing.List.append`` are
the unbound methods of ``dict``/``list``. So every alias here is an :class:`AnnotationOnly`:
subscriptable, usable with ``|``/``Optional``/``Union``, ``isinstance``-able like the real one
(the check is delegated to the origin class), and otherwise inert - no attribute leads
anywhere.

``Optional``/``Union``/``Literal``/``Final``/``ClassVar``/``NoReturn``/``Any`` are the real
special forms (they forward nothing). ``TypeVar`` and ``cast`` are real. ``Generic``/
``Protocol``/``NamedTuple``/``TypedDict`` need class machinery the sandbox does not allow;
``get_type_hints`` evaluates strings and is never exposed; ``overload`` registers into a
process-wide table.
"""

from __future__ import annotations

import collections.abc
import typing
from typing import Any, NoReturn

_NOT_A_BASE = "is for annotations only; sandboxed classes cannot inherit from it"


_STAND_IN_TYPES = frozenset({"GuardedType", "_StrType", "_DictType", "_BytesType"})


def _type_repr(obj: object) -> str:
    """How typing prints a parameter: ``int``, ``typing.Any``, ``...``, ``[int, str]``."""
    if obj is Ellipsis:
        return "..."
    if type(obj) is list:
        return "[" + ", ".join(_type_repr(item) for item in obj) + "]"
    if type(type(obj)) is type and type(obj).__name__ in _STAND_IN_TYPES:
        # The sandbox's builtins ``str``, ``list``... are stand-ins that name their type
        # through __mro_entries__; print them as that type.
        (obj,) = obj.__mro_entries__(())  # type: ignore[attr-defined]
    if isinstance(obj, type):
        if obj.__module__ == "builtins":
            return obj.__qualname__
        return f"{obj.__module__}.{obj.__qualname__}"
    return repr(obj)


class AnnotationOnly:
    """An inert stand-in for a typing generic alias (``typing.Mapping``, ``typing.List``...).

    ``Name[params]`` returns another stand-in (for annotations); ``isinstance(x, Name)``
    asks the origin class, like the real alias does; there is no other public attribute.
    """

    __slots__ = ("_name", "_origin", "_params")
    _name: str
    _origin: type
    _params: tuple[Any, ...] | None

    def __init__(self, name: str, origin: type, params: tuple[Any, ...] | None = None) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_origin", origin)
        object.__setattr__(self, "_params", params)

    def __getitem__(self, params: Any) -> AnnotationOnly:
        if self._params is not None:
            raise TypeError(f"{self!r} is already subscripted")
        return AnnotationOnly(
            self._name, self._origin, params if type(params) is tuple else (params,)
        )

    def __instancecheck__(self, obj: object) -> bool:
        self._refuse_subscripted()
        return isinstance(obj, self._origin)

    def __subclasscheck__(self, cls: type) -> bool:
        self._refuse_subscripted()
        return issubclass(cls, self._origin)

    def _refuse_subscripted(self) -> None:
        if self._params is not None:
            raise TypeError("Subscripted generics cannot be used with class and instance checks")

    # A run-time Union object, not an annotation (X | Y would call these methods again).
    def __or__(self, other: Any) -> Any:
        return typing.Union[self, other]  # noqa: UP007

    def __ror__(self, other: Any) -> Any:
        return typing.Union[other, self]  # noqa: UP007

    def __mro_entries__(self, bases: tuple[object, ...]) -> NoReturn:
        raise TypeError(f"{self!r} {_NOT_A_BASE}")

    def __repr__(self) -> str:
        if self._params is None:
            return f"typing.{self._name}"
        return f"typing.{self._name}[{', '.join(_type_repr(p) for p in self._params)}]"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"typing.{self._name} is read-only")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"typing.{self._name} is read-only")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"typing.{self._name} cannot be pickled or copied")


# name -> the class isinstance() checks against (what the real alias's __origin__ is)
_ALIASES: dict[str, type] = {
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
    "Set": set,
    "FrozenSet": frozenset,
    "Callable": collections.abc.Callable,  # type: ignore[dict-item]
    "Iterable": collections.abc.Iterable,
    "Iterator": collections.abc.Iterator,
    "Generator": collections.abc.Generator,
    "Sequence": collections.abc.Sequence,
    "MutableSequence": collections.abc.MutableSequence,
    "Mapping": collections.abc.Mapping,
    "MutableMapping": collections.abc.MutableMapping,
    "MutableSet": collections.abc.MutableSet,
}

_REAL = ("Any", "Optional", "Union", "Literal", "Final", "ClassVar", "NoReturn", "TypeVar", "cast")


def typing_members() -> dict[str, object]:
    members: dict[str, object] = {
        name: AnnotationOnly(name, origin) for name, origin in _ALIASES.items()
    }
    members.update({name: getattr(typing, name) for name in _REAL})
    members["TYPE_CHECKING"] = False
    return members
