"""The log lines of one invocation, kept (bounded) for its audit record.

The pipeline and ``Runtime.invoke_route`` open a :func:`capture` around each handler
invocation; the bridge's ``log`` method (:func:`note`) adds every line it accepted from the
plugin (after its per-invocation cap, quota and cleaning), in both modes. The capture is a
context variable: a native handler runs in a copy of the caller's context (its thread
pool task), and a sandboxed worker's host calls are served on the invoking thread, so both
reach the capture of their own invocation and of no other.

What is kept is bounded twice more, for the audit table: :data:`MAX_LINES` lines and
:data:`MAX_CHARS` characters per invocation; what is cut is counted, and said so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = [
    "MAX_CHARS",
    "MAX_LINES",
    "InvocationLogs",
    "begin",
    "capture",
    "current_stored",
    "end",
    "note",
]

MAX_LINES = 50
MAX_CHARS = 8000


class InvocationLogs:
    """The kept lines of one invocation: ``[(level, message)]`` and how many were cut."""

    __slots__ = ("_chars", "cut", "lines")

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.cut = 0
        self._chars = 0

    def add(self, level: str, message: str) -> None:
        if len(self.lines) >= MAX_LINES or self._chars + len(message) > MAX_CHARS:
            self.cut += 1
            return
        self.lines.append((level, message))
        self._chars += len(message)

    def stored(self) -> str | None:
        """The JSON text the audit record keeps (``None`` when nothing was logged)."""
        if not self.lines and not self.cut:
            return None
        items = [{"level": level, "message": message} for level, message in self.lines]
        if self.cut:
            items.append(
                {
                    "level": "warn",
                    "message": f"({self.cut} more line(s) not kept in the audit log: at most "
                    f"{MAX_LINES} lines and {MAX_CHARS} characters per invocation)",
                }
            )
        return json.dumps(items, ensure_ascii=False)


_CURRENT: ContextVar[InvocationLogs | None] = ContextVar("emdash_invocation_logs", default=None)


@contextmanager
def capture() -> Iterator[InvocationLogs]:
    """Collect the log lines of the invocation run inside this block."""
    logs = InvocationLogs()
    token = _CURRENT.set(logs)
    try:
        yield logs
    finally:
        _CURRENT.reset(token)


def begin() -> tuple[InvocationLogs, Token[InvocationLogs | None]]:
    """:func:`capture` without the context manager, for the per-call hot path (a
    generator-based context manager costs six Python calls per invocation): the caller
    must pass the token to :func:`end` in a ``finally``."""
    logs = InvocationLogs()
    return logs, _CURRENT.set(logs)


def end(token: Token[InvocationLogs | None]) -> None:
    """Close what :func:`begin` opened."""
    _CURRENT.reset(token)


def note(level: str, message: str) -> None:
    """Keep one accepted log line for the current invocation's audit record, if any."""
    logs = _CURRENT.get()
    if logs is not None:
        logs.add(level, message)


def current_stored() -> str | None:
    """The current invocation's lines as its audit record keeps them (``None``: none, or no
    invocation is being captured). The store calls it when an invocation's commit writes
    its own audit record (``AuditRecords.current_logs``)."""
    logs = _CURRENT.get()
    return None if logs is None else logs.stored()
