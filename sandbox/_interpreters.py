"""CPython memory-safety bugs reachable from sandboxed plugin code, and what we do about each.

One table, as data, so that SECURITY.md, the tests and ``emdash doctor`` tell the same
story. A bug belongs here when restricted code (after the compiler and the guards) could
trigger it on an interpreter version the project claims (``requires-python``); each entry
says which versions have it, how plugin code would reach it and which check closes it
whatever the interpreter. The process layer (seccomp, rlimits, an empty worker) stays
behind every entry: these are the reasons it exists, not replacements for it.

``affected(bug)`` answers for the running interpreter, so a report can say "present here,
closed by ..." rather than only "present in some versions".
"""

from __future__ import annotations

import sys
from typing import NamedTuple


class InterpreterBug(NamedTuple):
    """A CPython memory bug that plugin code could reach, and how the sandbox closes it."""

    ident: str  # "gh-120298"
    kind: str  # "use-after-free", "out-of-bounds write", ...
    fixed_in: tuple[tuple[int, int, int], ...]  # first fixed release per affected minor version
    reach: str  # how plugin code would trigger it
    handling: str  # what the sandbox does about it, whatever the interpreter
    closed: bool  # True if the language layer makes it unreachable (else only contained)


#: Versions are (major, minor, micro). A minor version missing from ``fixed_in`` is affected
#: if it is older than every listed fix (3.11 for the list bugs: its backport came only in a
#: late security release, after the 3.11.7 we run on), otherwise not; an empty ``fixed_in``
#: means affected everywhere (or not tracked upstream).
INTERPRETER_BUGS: tuple[InterpreterBug, ...] = (
    InterpreterBug(
        ident="gh-120298",
        kind="use-after-free (list rich comparison)",
        fixed_in=((3, 12, 5), (3, 13, 0)),
        reach="a class whose __lt__ empties the list holding its operand and returns NotImplemented; "
        "list < list or sorted() then hands the freed object to another class's __gt__",
        handling="plugin classes may define only __init__ and __contains__ (compiler and class "
        "creation refuse every comparison method)",
        closed=True,
    ),
    InterpreterBug(
        ident="gh-120384",
        kind="out-of-bounds write (extended-slice assignment)",
        fixed_in=((3, 12, 5), (3, 13, 0)),
        reach="x[::2] = generator, where the generator shrinks x while the list consumes it",
        handling="subscript stores with a slice consume the value into a tuple first; a slice "
        "object with a step as a computed index is refused",
        closed=True,
    ),
    InterpreterBug(
        ident="gh-123378",
        kind="out-of-bounds read (str() of Unicode errors)",
        fixed_in=((3, 11, 10), (3, 12, 6), (3, 13, 0)),
        reach="str(UnicodeDecodeError(..., start, end, ...)) with start/end outside the object",
        handling="the Unicode error constructors are not builtins of plugins and UnicodeError "
        "cannot be subclassed",
        closed=True,
    ),
    InterpreterBug(
        ident="CVE-2025-22153",
        kind="type confusion (except* with a non-group exception)",
        fixed_in=(),
        reach="try/except* and ExceptionGroup subclasses (RestrictedPython advisory)",
        handling="the compiler refuses except*; ExceptionGroup is neither a builtin nor a base",
        closed=True,
    ),
    InterpreterBug(
        ident="c-stack-iterators",
        kind="C stack overflow (nested lazy iterators; unfixed in 3.11-3.13)",
        fixed_in=(),
        reach="100 000 nested map()/enumerate()/itertools objects, then next()",
        handling="map/filter/zip/enumerate and every itertools constructor record the depth of "
        "their chain and refuse more than 32 levels (RecursionError)",
        closed=True,
    ),
    InterpreterBug(
        ident="c-stack-generators",
        kind="C stack overflow (very deep generator chains, when run or dropped)",
        fixed_in=(),
        reach="~120 000 generators each wrapping the next (g = wrap(g) in a loop), then dropped",
        handling="not closed at the language layer (no guard runs when a generator is created): "
        "the worker dies of SIGSEGV, the host reports WorkerCrashed and applies crash back-off",
        closed=False,
    ),
)


def affected(bug: InterpreterBug, version: tuple[int, ...] | None = None) -> bool:
    """True if ``version`` (default: the running interpreter) has ``bug``.

    An empty ``fixed_in`` means "unfixed in every version we claim".
    """
    current = tuple((version if version is not None else sys.version_info)[:3])
    if not bug.fixed_in:
        return True
    for fixed in bug.fixed_in:
        if current[:2] == fixed[:2]:
            return current < fixed
    # A minor version the table does not name: older than the first listed fix is affected.
    return current < min(bug.fixed_in)
