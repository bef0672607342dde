"""Where sandboxed ``print()`` output goes: a sink the host's worker code sets per call.

RestrictedPython turns ``print(...)`` into writes to a per-function collector whose text only
the function itself can read back (``printed``); without a sink, print output is silently
dropped, which surprises every author. The embedding code (emdash's worker dispatch) sets a
sink for the duration of one invocation and turns the text into log lines through its host
call, where they are bounded like every other log line.

This module holds only that one reference. Restricted code cannot reach it: its names start
with ``_`` or live in a module plugins cannot import, and the collector calls :func:`emit`
with text it has already bounded (``MAX_PRINT_CHARS`` per collector). Standard library only:
it is loaded into workers next to the shared preludes.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["emit", "set_sink"]

_sink: Callable[[str], None] | None = None


def set_sink(sink: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Send print text to ``sink`` (``None``: drop it); returns the previous sink."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def emit(text: str) -> None:
    """Hand ``text`` (one ``print`` call's output, newline included) to the sink, if any."""
    sink = _sink
    if sink is not None:
        sink(text)
