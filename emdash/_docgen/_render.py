"""Finding and rewriting the generated regions of a Markdown file.

A region is the text between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``
(each marker alone on its line). Everything outside the markers is hand-written and is
never touched. A region whose name has no renderer, a marker without its partner, or a
region that appears twice is an error: silently skipping it would leave stale text that
the freshness test could no longer see.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from . import _rules, _tables

__all__ = [
    "DOCS",
    "INTERPRETER_DEPENDENT",
    "REFERENCE_PYTHON",
    "REGIONS",
    "GeneratedRegionError",
    "render_file",
    "stale_files",
]

#: The files that hold generated regions, relative to the repository root.
DOCS: tuple[str, ...] = (
    "docs/plugin-reference.md",
    "docs/restricted-python.md",
    "docs/escape-corpus.md",
)

#: Region name -> renderer (the region's body, without the markers).
REGIONS: dict[str, Callable[[], str]] = {
    "hooks": _tables.hooks,
    "families": _tables.families,
    "capabilities": _tables.capabilities,
    "aliases": _tables.aliases,
    "ctx": _tables.ctx_members,
    "bridge-methods": _tables.bridge_methods,
    "descriptor": _tables.descriptor_fields,
    "limits": _tables.limits,
    "errors": _tables.errors,
    "route-errors": _tables.route_errors,
    "builtins": _tables.builtins,
    "modules": _tables.modules,
    "rules": _rules.rules,
    "corpus": _tables.corpus,
}

#: Regions whose content depends on the interpreter's version (``math`` gains functions
#: with each CPython release, and the shims pass its public names through). They are
#: rendered on the project's reference interpreter only; on any other one they are left as
#: they are, so ``make docs`` and the freshness test give the same answer on every
#: interpreter the project supports.
INTERPRETER_DEPENDENT: frozenset[str] = frozenset({"modules"})
REFERENCE_PYTHON: tuple[int, int] = (3, 11)

_MARKER = re.compile(r"^<!-- (/?)generated:([a-z][a-z0-9-]*) -->$", re.MULTILINE)


class GeneratedRegionError(Exception):
    """A docs file's markers are malformed or name an unknown region."""


def render_file(text: str, name: str = "<docs>") -> str:
    """``text`` with every generated region replaced by what its renderer gives now."""
    out: list[str] = []
    position = 0
    seen: set[str] = set()
    markers = list(_MARKER.finditer(text))
    index = 0
    while index < len(markers):
        opening = markers[index]
        closing_slash, region = opening.group(1), opening.group(2)
        line = text.count("\n", 0, opening.start()) + 1
        if closing_slash:
            raise GeneratedRegionError(
                f"{name}:{line}: closing marker for region {region!r} has no opening marker"
            )
        if index + 1 >= len(markers) or markers[index + 1].group(2) != region:
            raise GeneratedRegionError(
                f"{name}:{line}: region {region!r} is not closed by <!-- /generated:{region} -->"
            )
        closing = markers[index + 1]
        if not closing.group(1):
            raise GeneratedRegionError(f"{name}:{line}: region {region!r} is opened twice")
        if region in seen:
            raise GeneratedRegionError(f"{name}:{line}: region {region!r} appears twice")
        seen.add(region)
        renderer = REGIONS.get(region)
        if renderer is None:
            raise GeneratedRegionError(
                f"{name}:{line}: unknown generated region {region!r} "
                f"(known: {', '.join(sorted(REGIONS))})"
            )
        out.append(text[position : opening.end()])
        current = text[opening.end() : closing.start()]
        if region in INTERPRETER_DEPENDENT and sys.version_info[:2] != REFERENCE_PYTHON:
            out.append(current)
        else:
            out.append("\n" + renderer().strip("\n") + "\n")
        position = closing.start()
        index += 2
    out.append(text[position:])
    return "".join(out)


def stale_files(read: Callable[[str], str]) -> list[str]:
    """The names in :data:`DOCS` whose generated regions differ from a fresh rendering.

    ``read`` maps a name of :data:`DOCS` to the file's text (tests read the checkout).
    """
    return [name for name in DOCS if render_file(read(name), name) != read(name)]
