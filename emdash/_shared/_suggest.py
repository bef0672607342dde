"""``did you mean``: the closest known name to a misspelt one (shared: runs in workers too).

Used for hook names (``content:beforesave``), CLI arguments and route names. The standard
library's ``difflib`` does the matching; case differences count as the closest match,
since they are the commonest slip (``beforesave`` for ``beforeSave``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """``' (did you mean "x"?)'`` for the closest of ``known``, or ``""`` if none is close."""
    if type(name) is not str or not name or len(name) > 200:
        return ""
    choices = list(known)
    folded = {k.lower(): k for k in choices}
    match = folded.get(name.lower())
    if match is None:
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
        match = close[0] if close else None
    return f' (did you mean "{match}"?)' if match is not None else ""
