"""``JSON``: the values that cross every boundary of emdash (events, results, ctx calls)."""

from __future__ import annotations

from typing import TypeAlias, Union

__all__ = ["JSON"]

# What a hook event, a handler's result, a route's input and output, and every ctx call's
# parameters and answers are made of: exactly these builtin types (never subclasses), with
# string keys. Union[...] rather than `|` because the alias is recursive and must also be a
# real object at run time (users put it in annotations that typing.get_type_hints reads).
JSON: TypeAlias = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]  # noqa: UP007
