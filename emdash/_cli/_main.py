"""The ``emdash`` command line.

Every command that touches a site reads its ``emdash.toml`` (``--config``, default
``./emdash.toml``; without one, a site in the current directory with no plugins). Commands
with structured output accept ``--json``. Errors print as one line on stderr and exit 1; bad
usage exits 2 (click's convention).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .._shared._hooks_catalog import HOOK_NAMES
from . import _output as out
from ._config import (
    SiteConfig,
    add_plugin_entry,
    find_entry,
    load_config,
    open_runtime,
    remove_plugin_entry,
    set_plugin_enabled,
)

__all__ = ["main"]


class _State:
    def __init__(self, config_path: Path | None, as_json: bool) -> None:
        self.config_path = config_path
        self.as_json = as_json
        self._config: SiteConfig | None = None

    def config(self) -> SiteConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def _json_flag(fn: Any) -> Any:
    """Add ``--json`` to a command; it ORs with the global ``emdash --json``."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _wants_json(ctx: click.Context, as_json: bool) -> bool:
    return as_json or ctx.find_object(_State).as_json  # type: ignore[union-attr]


def _state(ctx: click.Context) -> _State:
    state = ctx.find_object(_State)
    assert state is not None
    return state


@click.group(cls=out.SafeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Site config file (default: ./emdash.toml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON where output is structured.")
@click.version_option(package_name="emdash")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """emdash: the EmDash CMS plugin runtime, with sandboxed untrusted plugins."""
    ctx.obj = _State(config_path, as_json)


# -- demo / doctor / check / audit -----------------------------------------------------------


@main.command()
@click.option("--trusted", is_flag=True, help="Run the example plugins in-process (trusted).")
@click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Build the demo site in this directory and keep it.",
)
def demo(trusted: bool, keep: Path | None) -> None:
    """Run a demo site on embedded SQLite with the example plugins."""
    from ._demo import run_demo

    run_demo(force_trusted=trusted, directory=keep)


@main.command()
@click.option(
    "--database",
    "database",
    type=click.Path(dir_okay=False),
    help="Also check this site database (emdash's, PRAGMA quick_check).",
)
@click.option("--check-db", is_flag=True, help="Also check the site's database (from emdash.toml).")
@_json_flag
@click.pass_context
def doctor(ctx: click.Context, database: str | None, check_db: bool, as_json: bool) -> None:
    """Check that this machine can sandbox plugins, and report versions; optionally check
    a site database for damage."""
    from ._doctor import check_database, diagnose, render, render_database

    report = diagnose()
    password = None
    if check_db and database is None:
        config = _state(ctx).config()
        database = config.database_path()
        password = config.database_secret()
    db_report = None
    if database is not None and database != ":memory:":
        db_report = check_database(database, password)
        report["database"] = db_report
        report["ok"] = report["ok"] and db_report["ok"]
    if _wants_json(ctx, as_json):
        out.echo_json(report)
    else:
        click.echo(render(report))
        if db_report is not None:
            click.echo(render_database(db_report))
    if not report["ok"]:
        sys.exit(1)


@main.command()
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@_json_flag
@click.pass_context
def check(ctx: click.Context, path: Path, as_json: bool) -> None:
    """Validate a plugin directory: descriptor, size, and the sandbox's restricted compile."""
    from ._check import check_plugin

    report = check_plugin(path)
    if _wants_json(ctx, as_json):
        out.echo_json(report)
    else:
        who = report.get("id") or str(path)
        if report["ok"]:
            click.echo(
                f"OK: {who} {report.get('version', '')} ({report['files']} files, "
                f"{report['bytes']} bytes) compiles for the sandbox"
            )
        else:
            click.echo(f"{who}: {len(report['errors'])} problem(s)", err=True)
            for line in report["errors"]:
                click.echo(f"  {line}", err=True)
    if not report["ok"]:
        sys.exit(1)


@main.command()
@click.option(
    "--class",
    "classes",
    multiple=True,
    metavar="NAME",
    help="Only this escape class (repeatable): import, builtins, attr, frame, format, "
    "guardshadow, class, exc, syntax, shim, iter, ctx, serial, os, dos.",
)
@_json_flag
@click.pass_context
def audit(ctx: click.Context, classes: tuple[str, ...], as_json: bool) -> None:
    """Run the escape corpus against this installation and print a per-class report.

    Every payload runs through the public API of the installed package: a fresh runtime per
    class, real sandbox workers, a victim plugin whose data must stay untouched. The report
    says which layer stopped each payload and lists every payload that got past the
    language layer with the layer that contained it. Exits 1 if any payload was not
    stopped the way the threat model requires (see SECURITY.md).
    """
    from .._selfaudit._runner import run_audit

    def progress(_result: object) -> None:
        click.echo(".", nl=False, err=True)

    try:
        report = run_audit(classes=list(classes) or None, progress=progress)
    except ValueError as exc:  # an unknown --class name
        out.fail(str(exc))
    click.echo("", err=True)
    if _wants_json(ctx, as_json):
        out.echo_json(report.to_json())
    else:
        click.echo(report.render())
    sys.exit(report.exit_code)


# -- plugins ---------------------------------------------------------------------------------


@main.group()
def plugins() -> None:
    """List, add, remove, enable and disable the site's plugins."""


@plugins.command("list")
@_json_flag
@click.pass_context
def plugins_list(ctx: click.Context, as_json: bool) -> None:
    """Show the installed plugins."""
    config = _state(ctx).config()
    with open_runtime(config) as rt:
        rows = [_plugin_row(p) for p in rt.plugins()]
    if _wants_json(ctx, as_json):
        out.echo_json(rows)
    elif not rows:
        click.echo("No plugins installed. Add one with: emdash plugins add PATH")
    else:
        click.echo(
            out.format_table(
                rows,
                [
                    ("id", "ID"),
                    ("version", "VERSION"),
                    ("mode", "MODE"),
                    ("enabled", "ENABLED"),
                    ("hooks", "HOOKS"),
                    ("routes", "ROUTES"),
                ],
            )
        )


@plugins.command("add")
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--trusted",
    is_flag=True,
    help="Run in-process with full host privileges (only for code you trust).",
)
@click.pass_context
def plugins_add(ctx: click.Context, path: Path, trusted: bool) -> None:
    """Install the plugin in directory PATH (sandboxed unless --trusted)."""
    config = _state(ctx).config()
    # Load it into the site first: a plugin that does not load is never written to the config.
    with open_runtime(config) as rt:
        rt.add_plugin(path, trusted=trusted)
    descriptor = add_plugin_entry(config, path, trusted=trusted)
    mode = "trusted (in-process)" if trusted else "sandboxed"
    click.echo(f"Added {descriptor.id} {descriptor.version} ({mode})")
    if trusted:
        click.echo(
            "Note: trusted plugins run with the host's full privileges; capabilities are "
            "advisory for them.",
            err=True,
        )


@plugins.command("remove")
@click.argument("plugin_id")
@click.option("--delete-data", is_flag=True, help="Also delete the plugin's KV and storage.")
@click.pass_context
def plugins_remove(ctx: click.Context, plugin_id: str, delete_data: bool) -> None:
    """Uninstall a plugin (fires plugin:uninstall)."""
    config = _state(ctx).config()
    find_entry(config, plugin_id)
    with open_runtime(config) as rt:
        rt.remove_plugin(plugin_id, delete_data=delete_data)
    remove_plugin_entry(config, plugin_id)
    click.echo(f"Removed {plugin_id}" + (" and deleted its data" if delete_data else ""))


@plugins.command("enable")
@click.argument("plugin_id")
@click.pass_context
def plugins_enable(ctx: click.Context, plugin_id: str) -> None:
    """Enable a plugin (fires plugin:activate)."""
    _toggle(ctx, plugin_id, True)


@plugins.command("disable")
@click.argument("plugin_id")
@click.pass_context
def plugins_disable(ctx: click.Context, plugin_id: str) -> None:
    """Disable a plugin (fires plugin:deactivate)."""
    _toggle(ctx, plugin_id, False)


def _toggle(ctx: click.Context, plugin_id: str, enabled: bool) -> None:
    config = _state(ctx).config()
    index = find_entry(config, plugin_id)
    word = "enabled" if enabled else "disabled"
    if config.plugins[index].enabled is enabled:
        click.echo(f"{plugin_id} is already {word}")
        return
    with open_runtime(config) as rt:
        if enabled:
            rt.enable_plugin(plugin_id)
        else:
            rt.disable_plugin(plugin_id)
    set_plugin_enabled(config, plugin_id, enabled)
    click.echo(f"{plugin_id} {word}")


# -- run-hook / route / audit-log / serve ----------------------------------------------------


@main.command("run-hook")
@click.argument("name", type=click.Choice(HOOK_NAMES))
@click.option(
    "--event", type=out.JsonParam(), default="{}", show_default=True, help="The event, as JSON."
)
@click.option("--plugin", "plugin_id", help="Only this plugin's handler.")
@_json_flag
@click.pass_context
def run_hook(
    ctx: click.Context, name: str, event: Any, plugin_id: str | None, as_json: bool
) -> None:
    """Run hook NAME through the pipeline and print the outcome."""
    if not isinstance(event, dict):
        raise click.BadParameter("the event must be a JSON object", param_hint="--event")
    config = _state(ctx).config()
    with open_runtime(config) as rt:
        outcome = rt.run_hook(name, event, plugin_id=plugin_id)
    results = [
        {
            "plugin": r.plugin_id,
            "success": r.success,
            "duration_ms": r.duration_ms,
            "cpu_ms": r.cpu_ms,
            "value": r.value,
            "error": None if r.error is None else out.error_line(r.error),
        }
        for r in outcome.results
    ]
    if _wants_json(ctx, as_json):
        out.echo_json(
            {
                "hook": outcome.hook,
                "value": outcome.value,
                "cancelled_by": outcome.cancelled_by,
                "results": results,
            }
        )
        return
    if not results:
        click.echo(f"No enabled plugin handles {name}.")
        return
    click.echo(
        out.format_table(
            results,
            [
                ("plugin", "PLUGIN"),
                ("success", "OK"),
                ("duration_ms", "MS"),
                ("cpu_ms", "CPU MS"),
                ("error", "ERROR"),
            ],
        )
    )
    if outcome.cancelled_by:
        click.echo(f"Cancelled by {outcome.cancelled_by}")
    click.echo("value: " + out.json_text(outcome.value))


@main.command()
@click.argument("plugin_id")
@click.argument("name")
@click.option(
    "--input", "route_input", type=out.JsonParam(), default=None, help="The route input, as JSON."
)
@click.pass_context
def route(ctx: click.Context, plugin_id: str, name: str, route_input: Any) -> None:
    """Call route NAME of plugin PLUGIN_ID and print its data as JSON."""
    config = _state(ctx).config()
    with open_runtime(config) as rt:
        data = rt.invoke_route(plugin_id, name, input=route_input)
    out.echo_json(data)


@main.command("audit-log")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--plugin", "plugin_id", help="Only this plugin's invocations.")
@_json_flag
@click.pass_context
def audit_log(ctx: click.Context, limit: int, plugin_id: str | None, as_json: bool) -> None:
    """Show the newest plugin invocations (hooks and routes) with outcome and timing."""
    config = _state(ctx).config()
    with open_runtime(config) as rt:
        rows = rt.audit_log(limit=limit, plugin_id=plugin_id)
    if _wants_json(ctx, as_json):
        out.echo_json(rows)
    elif not rows:
        click.echo("The audit log is empty.")
    else:
        click.echo(out.audit_table(rows))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the plugin routes at /_emdash/api/plugins/<id>/<route> (development server)."""
    try:
        import uvicorn
    except ImportError:
        out.fail("uvicorn is not installed; install it with: pip install 'emdash[serve]'")
    from .._asgi._app import create_app

    config = _state(ctx).config()
    token = config.token()
    with open_runtime(config) as rt:
        app = create_app(rt, token=token)
        if token is None:
            click.echo("Note: no api_token in the config: private routes answer 401.", err=True)
        click.echo(f"Serving plugin routes on http://{host}:{port}/_emdash/api/plugins/", err=True)
        uvicorn.run(app, host=host, port=port, log_level="info")


def _plugin_row(plugin: Any) -> dict[str, Any]:
    # PluginInfo is a read-only mapping of plain data (id, version, mode, enabled, ...).
    return dict(plugin)
