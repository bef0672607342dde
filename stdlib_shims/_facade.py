"""The facade type: a read-only, opaque namespace that stands in for a module.

Why not hand plugins the real module objects? Because a module is a door to everything it
imported: ``json.codecs.open``, ``re.enum.bltns.eval``, ``re.copyreg.dispatch_table`` and
``datetime.sys`` (3.11) each reach the file system or ``eval`` in one attribute chain, none of
which starts with ``_``. A facade only holds the members we put in it, by value, so the chain
ends at the member: there is no ``codecs``, ``sys`` or ``builtins`` to walk into.

Design points, each closing a known escape:

* ``__slots__`` holds the members, so there is no ``__dict__`` to enumerate or mutate, and no
  ``__getattr__`` hook: a ``__getattr__`` that forwards to a hidden object leaks that object
  through ``AttributeError.obj`` (CVE-2024-47532).
* ``__setattr__``/``__delattr__`` raise, so even host-side code cannot poison a shared facade
  by accident (the sandbox's ``_write_`` guard refuses the write before it gets here).
* No ``__name__`` on instances: ``from <facade> import x`` falls back to
  ``sys.modules[f"{module.__name__}.x"]`` when ``x`` is missing, which would hand out a real
  submodule (``from json import decoder``). Without ``__name__`` that fallback fails.
* Not iterable, opaque ``repr``, not picklable: nothing enumerates or serialises the contents.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from typing import Any, NoReturn


class Facade:
    """Base class of every sandboxed module namespace (one generated subclass per module)."""

    __slots__ = ()

    # Set on each generated subclass; a class attribute, so instances stay slot-only.
    _facade_name: str = "facade"

    # ``iter(facade)`` must fail: there is nothing to enumerate.
    __iter__ = None

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f'The sandboxed module "{self._facade_name}" is read-only')

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f'The sandboxed module "{self._facade_name}" is read-only')

    def __repr__(self) -> str:
        return f"<sandboxed module {self._facade_name!r}>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # Pickling would serialise a reference to the generated class; copying would create
        # a second, unfrozen instance. Neither has a use.
        raise TypeError(f'The sandboxed module "{self._facade_name}" cannot be pickled or copied')


def make_facade(name: str, members: Mapping[str, object]) -> Facade:
    """Build a frozen facade called ``name`` exposing exactly ``members``.

    Member names must be public identifiers: a facade never carries ``_``-prefixed names,
    which the sandbox would refuse to read anyway.
    """
    for member in members:
        if (
            type(member) is not str
            or not member.isidentifier()
            or member.startswith("_")
            or keyword.iskeyword(member)
        ):
            raise ValueError(f"Invalid member name {member!r} for sandboxed module {name!r}")
    namespace: dict[str, Any] = {
        "__slots__": tuple(members),
        "_facade_name": name,
        "__module__": __name__,
    }
    cls = type(f"sandboxed:{name}", (Facade,), namespace)
    instance: Facade = object.__new__(cls)
    for member, value in members.items():
        # Facade.__setattr__ refuses every write; the slots are filled once, here.
        object.__setattr__(instance, member, value)
    return instance


def facade_members(facade: Facade) -> frozenset[str]:
    """The member names of ``facade`` (host-side helper for import checks and tests)."""
    slots: tuple[str, ...] = type(facade).__slots__
    return frozenset(slots)


def facade_name(facade: Facade) -> str:
    """The module name ``facade`` stands in for."""
    return facade._facade_name
