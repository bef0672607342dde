"""Output helpers for the ``emdash`` CLI: JSON encoding, plain-text tables, error lines."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .._shared._errors import EmDashError

__all__ = [
    "DISTRIBUTION",
    "JsonParam",
    "SafeGroup",
    "echo_json",
    "fail",
    "fail_route",
    "format_table",
    "json_text",
    "route_name",
    "to_plain",
]

#: The distribution's name on the package index (the import name is ``emdash``; the
#: index's ``emdash`` is an unrelated project). Hints that say what to install use it.
DISTRIBUTION = "emdash-runtime"

# The paths a route is served at (emdash._asgi._app.PREFIXES), for route_name().
_ROUTE_PREFIXES = ("/_emdash/api/plugins/", "/api/plugins/")


def to_plain(value: Any) -> Any:
    """Make ``value`` JSON-encodable: errors become ``{"type", "message"}``, objects a repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    return repr(value)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(to_plain(value), indent=2, ensure_ascii=False, sort_keys=False))


def json_text(value: Any) -> str:
    """One-line JSON of ``value`` (for values printed inside human output)."""
    return json.dumps(to_plain(value), ensure_ascii=False)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned plain-text table; ``columns`` is ``[(key, header), ...]``."""
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append([_cell(row.get(key)) for key, _ in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 70 else text[:67] + "..."


_LOCATION = re.compile(r"^([\w./-]+\.(?:py|toml)(?::\d+)?): ")


def problem_line(line: str, severity: str) -> str:
    """``FILE:LINE: severity: message`` (the compilers' form), or ``severity: message``."""
    match = _LOCATION.match(line)
    if match is None:
        return f"{severity}: {line}"
    return f"{match.group(1)}: {severity}: {line[match.end() :]}"


def fail(message: str, code: int = 1) -> None:
    """Print one error line to stderr and exit with ``code`` (no traceback)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def installed_version() -> str:
    """This installation's version, from the package metadata when it is installed."""
    from importlib import metadata

    # An environment installed before the distribution was renamed knows it as "emdash".
    for name in (DISTRIBUTION, "emdash"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from .. import __version__

    return __version__


def route_name(plugin_id: str, given: str) -> str:
    """The route name in what a user typed: ``NAME``, ``/NAME``, or the route's path or URL
    (``/_emdash/api/plugins/ID/NAME``); a path naming another plugin is a usage error."""
    path = given.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    for prefix in _ROUTE_PREFIXES:
        if path.startswith((prefix, prefix[1:])):
            owner, _, name = path.removeprefix("/").removeprefix(prefix[1:]).partition("/")
            if owner != plugin_id:
                raise click.BadParameter(
                    f"the path {given!r} is a route of plugin {owner!r}, not {plugin_id!r}",
                    param_hint="ROUTE",
                )
            return name
    return path.removeprefix("/")


def fail_route(exc: Exception, plugin_id: str, name: str) -> None:
    """A route's refusal as one line, then each schema error (``path: message``) on its own."""
    code = getattr(exc, "code", "")
    status = getattr(exc, "status", "")
    message = error_line(exc)
    if plugin_id not in message:  # the plugin's own refusals and input errors name neither
        message = f"route {plugin_id}/{name}: {message}"
    click.echo(f"Error: {message} ({code}, HTTP {status})", err=True)
    details = getattr(exc, "details", None)
    if isinstance(details, list):
        for item in details[:50]:
            if isinstance(item, dict):
                where = "/".join(str(p) for p in item.get("path") or []) or "(input)"
                click.echo(f"  {where}: {item.get('message', '')}", err=True)
            else:
                click.echo(f"  {item}", err=True)
    sys.exit(1)


def error_line(exc: EmDashError | Exception) -> str:
    message = exc.message if isinstance(exc, EmDashError) else str(exc)
    return " ".join(message.split())


if TYPE_CHECKING:
    _ParamBase = click.ParamType[Any, Any]  # generic from click 8.3 on
else:
    _ParamBase = click.ParamType


class JsonParam(_ParamBase):
    """A command-line value that must be JSON text (``--event '{"a": 1}'``)."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            self.fail(f"not valid JSON ({exc}): {value!r}", param, ctx)


class SafeGroup(click.Group):
    """A click group that turns emdash errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from sandbox import SandboxError

        try:
            return super().invoke(ctx)
        except (EmDashError, SandboxError) as exc:
            problems = getattr(exc, "problems", None)
            if isinstance(problems, list) and len(problems) > 1:
                # An invalid descriptor with several problems: one per line.
                headline = getattr(exc, "headline", "Invalid plugin descriptor")
                click.echo(f"Error: {headline}: {len(problems)} problems:", err=True)
                for problem in problems:
                    click.echo(f"  {' '.join(str(problem).split())}", err=True)
            else:
                click.echo(f"Error: {error_line(exc)}", err=True)
            ctx.exit(1)


def audit_table(rows: Sequence[dict[str, Any]]) -> str:
    """The audit log as a table, newest first."""
    return format_table(
        [{**r, "what": f"{r.get('kind', '')} {r.get('name', '')}".strip()} for r in rows],
        [
            ("at", "TIME"),
            ("pluginId", "PLUGIN"),
            ("what", "HOOK/ROUTE"),
            ("outcome", "OUTCOME"),
            ("durationMs", "MS"),
            ("cpuMs", "CPU MS"),
            ("error", "ERROR"),
        ],
    )


def audit_with_logs(rows: Sequence[dict[str, Any]]) -> str:
    """One line per record, newest first, each followed by its log lines, indented."""
    out = []
    for r in rows:
        head = (
            f"{r.get('at', '')}  {r.get('pluginId', '')}  {r.get('kind', '')} "
            f"{r.get('name', '')}  {r.get('outcome', '')}"
        )
        if r.get("error"):
            head += f"  {_cell(r['error'])}"
        out.append(head)
        for line in r.get("logs") or []:
            message = " ".join(str(line.get("message", "")).split())
            if len(message) > 300:
                message = message[:297] + "..."
            out.append(f"    {line.get('level', ''):<5} {message}")
    return "\n".join(out)
