"""What the ``emdash`` commands show of the logs: plugin log lines and host warnings.

A plugin's ``ctx.log`` lines (and its ``print()`` output, which both modes turn into
``print:`` lines at info level) are logged under ``emdash.plugins.<id>``; the host's own
messages under the other ``emdash.*`` loggers. The CLI prints them on stderr, so that stdout
keeps only the command's result (``emdash route ... | jq`` still works):

- by default, plugin lines from info up and host messages from warning up;
- ``--log-level LEVEL`` (debug, info, warn, error, off) sets the threshold of both;
- ``-v`` is ``--log-level debug``.

:class:`LogCapture` also keeps the plugin lines of one command, for ``--json`` results.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import click

__all__ = ["LEVELS", "LogCapture", "configure", "hide_hook_failures"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_PLUGINS = "emdash.plugins"
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


class _StderrHandler(logging.Handler):
    """Writes through click, so that the CLI's test runner and pipes see the same text."""

    def __init__(self, plugin_level: int, host_level: int) -> None:
        super().__init__(logging.DEBUG)
        self.plugin_level = plugin_level
        self.host_level = host_level

    def emit(self, record: logging.LogRecord) -> None:
        plugin = record.name == _PLUGINS or record.name.startswith(_PLUGINS + ".")
        if record.levelno < (self.plugin_level if plugin else self.host_level):
            return
        try:
            level = _NAMES.get(record.levelno, record.levelname.lower())
            message = record.getMessage()
            if min(self.plugin_level, self.host_level) > logging.DEBUG:
                # A failure's message carries the plugin's traceback after its first line:
                # shown with -v / --log-level debug, and kept in the audit log either way.
                message = message.split("\n", 1)[0]
            click.echo(f"log {level:<5} {message}", err=True)
        except Exception:
            self.handleError(record)


class LogCapture(logging.Handler):
    """Collects the plugin log lines logged while it is installed (for ``--json``)."""

    #: One command's worth; a flood is cut, not buffered.
    MAX_LINES = 10_000

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) >= self.MAX_LINES:
            return
        name = record.name
        self.lines.append(
            {
                "plugin": name[len(_PLUGINS) + 1 :] if name.startswith(_PLUGINS + ".") else None,
                "level": _NAMES.get(record.levelno, record.levelname.lower()),
                "message": record.getMessage(),
            }
        )

    def __enter__(self) -> LogCapture:
        logging.getLogger(_PLUGINS).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(_PLUGINS).removeHandler(self)


class _HookFailures(logging.Filter):
    """Drops the pipeline's "handler failed" records: ``run-hook`` reports each failure
    itself (its ERROR column, or the ``Error:`` line of an aborting hook), so the log line
    would print the same error a second time."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        return not (msg.startswith('[hooks] Plugin "%s"') and "handler failed" in msg)


@contextlib.contextmanager
def hide_hook_failures() -> Iterator[None]:
    """While inside, the stderr handler leaves out hook-failure records (see above)."""
    handlers = [h for h in logging.getLogger("emdash").handlers if isinstance(h, _StderrHandler)]
    dropper = _HookFailures()
    for handler in handlers:
        handler.addFilter(dropper)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(dropper)


def configure(ctx: click.Context, level_name: str | None, verbose: bool) -> None:
    """Install the stderr handler for this command; it is removed when the command ends."""
    if verbose:
        level_name = "debug"
    plugin_level = LEVELS[level_name] if level_name else logging.INFO
    host_level = LEVELS[level_name] if level_name else logging.WARNING
    root = logging.getLogger("emdash")
    handler = _StderrHandler(plugin_level, host_level)
    previous = root.level
    root.addHandler(handler)
    # The logger must pass what the handler may print; the handler does the filtering.
    root.setLevel(min(plugin_level, host_level))

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous)

    ctx.call_on_close(restore)
