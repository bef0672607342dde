"""The ``emdash`` command line.

Every command that touches a site reads its ``emdash.toml`` (``--config``, default
``./emdash.toml``; without one, a site in the current directory with no plugins). Commands
with structured output accept ``--json``. Errors print as one line on stderr and exit 1; bad
usage exits 2 (click's convention).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._shared._errors import EmDashError
from .._shared._hooks_catalog import HOOK_NAMES, HOOKS
from .._shared._suggest import did_you_mean
from .._store._audit import AUDIT_KINDS
from . import _output as out
from ._config import (
    DEFAULT_CONFIG_NAME,
    SiteConfig,
    add_plugin_entry,
    check_new_entry,
    entry_id,
    find_entry,
    load_config,
    open_runtime,
    remove_new_site,
    remove_plugin_entry,
    set_plugin_enabled,
    site_exists,
)
from ._logs import LEVELS as LOG_LEVELS
from ._logs import LogCapture, hide_hook_failures
from ._logs import configure as configure_logs
from ._output import DISTRIBUTION, route_name
from ._unloaded import Unloaded

if TYPE_CHECKING:
    from .._runtime._runtime import Runtime

__all__ = ["main"]


class _State:
    def __init__(self, config_path: Path | None, as_json: bool, debug: bool = False) -> None:
        self.config_path = config_path
        self.as_json = as_json
        #: -v / --log-level debug: failures also show the plugin's traceback.
        self.debug = debug
        self._config: SiteConfig | None = None
        #: Configured plugins this command runs without (see emdash._cli._unloaded).
        self.unloaded: list[Unloaded] = []

    def config(self) -> SiteConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def _open(ctx: click.Context, config: SiteConfig) -> Runtime:
    """The site, with every plugin that loads; the others are left out with a warning
    (a site is never held down by one plugin: README, "When a plugin does not load")."""
    return open_runtime(config, unloaded=_state(ctx).unloaded)


def _check_loaded(ctx: click.Context, plugin_id: str | None) -> None:
    """A command aimed at a plugin that was left out says why and what fixes it."""
    for item in _state(ctx).unloaded:
        if item.plugin_id == plugin_id:
            out.fail(f"plugin {plugin_id} is not loaded: {item.error} (fix: {item.hint})")


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
@click.option(
    "--log-level",
    type=click.Choice(sorted(LOG_LEVELS), case_sensitive=False),
    help="Show log lines from this level on, on stderr (default: plugins' from info, "
    "the host's from warn).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show every log line (--log-level debug).")
@click.version_option(version=out.installed_version(), prog_name="emdash")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: Path | None,
    as_json: bool,
    log_level: str | None,
    verbose: bool,
) -> None:
    """emdash: the EmDash CMS plugin runtime, with sandboxed untrusted plugins.

    Plugin log lines (ctx.log, and print() output as "print:" lines) show on stderr.
    """
    ctx.obj = _State(config_path, as_json, verbose or (log_level or "").lower() == "debug")
    configure_logs(ctx, log_level and log_level.lower(), verbose)


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
@click.option("--trusted", is_flag=True, help="Check it as `plugins add --trusted` would load it.")
@_json_flag
@click.pass_context
def check(ctx: click.Context, path: Path, trusted: bool, as_json: bool) -> None:
    """Check a plugin directory (or bundle) as `emdash plugins add` would, plus run-time
    warnings.

    Runs the same load as `plugins add` (descriptor, size, restricted compile, allowed
    imports, the `plugin` binding, hook names and capabilities, route schemas) on a
    throwaway in-memory site, then warns about what only fails when it runs. One problem
    per line as FILE:LINE: MESSAGE; exits 1 on errors, 0 with warnings only.
    """
    from ._check import check_plugin

    report = check_plugin(path, trusted=trusted)
    if _wants_json(ctx, as_json):
        out.echo_json(report)
    else:
        who = report.get("id") or str(path)
        if report.get("sha256"):
            click.echo(f"Bundle {path.name}: sha256 {report['sha256']}", err=True)
        for line in report["errors"]:
            click.echo(out.problem_line(line, "error"), err=True)
        for line in report["warnings"]:
            click.echo(out.problem_line(line, "warning"), err=True)
        if report["ok"]:
            mode = "trusted (in-process)" if trusted else "sandboxed"
            warned = len(report["warnings"])
            click.echo(
                f"OK: {who} {report.get('version', '')} ({report['files']} files, "
                f"{report['bytes']} bytes) loads {mode}"
                + (f", {warned} warning(s)" if warned else "")
            )
        else:
            click.echo(
                f"{who}: {len(report['errors'])} error(s), {len(report['warnings'])} "
                "warning(s); emdash plugins add would refuse it",
                err=True,
            )
    if not report["ok"]:
        sys.exit(1)


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(path_type=Path, file_okay=False),
    default=".",
    help="Create the plugin directory in this directory (default: here).",
)
def init(name: str, parent: Path) -> None:
    """Create plugin NAME: descriptor, plugin.py, tests that pass, and a README."""
    from ._scaffold import scaffold

    target = scaffold(name, parent)
    click.echo(f"Created plugin {name} in {target}")
    click.echo(f"Next: cd {target} && pytest tests && emdash check .")


@main.command("help")
@click.argument("topic", required=False)
def help_(topic: str | None) -> None:
    """Show a documentation TOPIC (without one: the list of topics)."""
    from ._help import TOPICS, render_help

    if topic is not None and topic not in TOPICS:
        raise click.BadParameter(
            f"unknown topic {topic!r}{did_you_mean(topic, list(TOPICS))}; the topics: "
            + ", ".join(TOPICS),
            param_hint="TOPIC",
        )
    click.echo(render_help(topic))


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
    stopped the way the threat model requires (see: emdash help security).
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
    """Show the configured plugins and their state (read-only: creates and installs
    nothing). The full lists of a plugin: emdash plugins show ID, or --json."""
    from ._listing import HOOKS_WIDTH, ROUTES_WIDTH, abbreviate, plugin_rows, state_text

    rows = plugin_rows(_state(ctx).config())
    if _wants_json(ctx, as_json):
        out.echo_json(rows)
        return
    if not rows:
        click.echo("No plugins installed. Add one with: emdash plugins add PATH")
        return
    shortened = False
    table = []
    for row in rows:
        hooks, cut_hooks = abbreviate(row["hooks"], HOOKS_WIDTH, "hooks")
        routes, cut_routes = abbreviate(row["routes"], ROUTES_WIDTH, "routes")
        shortened = shortened or cut_hooks or cut_routes
        table.append({**row, "hooks": hooks, "routes": routes, "state": state_text(row)})
    click.echo(
        out.format_table(
            table,
            [
                ("id", "ID"),
                ("version", "VERSION"),
                ("mode", "MODE"),
                ("enabled", "ENABLED"),
                ("state", "STATE"),
                ("hooks", "HOOKS"),
                ("routes", "ROUTES"),
            ],
        )
    )
    if shortened:
        click.echo("Every hook and route: emdash plugins show ID (or plugins list --json)")


@plugins.command("show")
@click.argument("plugin_id", metavar="ID")
@_json_flag
@click.pass_context
def plugins_show(ctx: click.Context, plugin_id: str, as_json: bool) -> None:
    """Show one plugin in full: state, mode, version, approved access, bundle digest,
    hooks, routes, storage collections and cron tasks (read-only)."""
    from ._listing import plugin_detail, render_detail

    row = plugin_detail(_state(ctx).config(), plugin_id)
    if _wants_json(ctx, as_json):
        out.echo_json(row)
    else:
        click.echo(render_detail(row))


@plugins.command("add")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--trusted",
    is_flag=True,
    help="Run in-process with full host privileges (only for code you trust).",
)
@click.pass_context
def plugins_add(ctx: click.Context, path: Path, trusted: bool) -> None:
    """Install the plugin in directory PATH, or from a bundle (.tar.gz, .tgz, .tar, .zip)
    unpacked into plugins/ (sandboxed unless --trusted)."""
    from ._install import add_bundle, is_bundle

    config = _state(ctx).config()
    if not is_bundle(path) and not path.is_dir():
        out.fail(f"{path} is neither a plugin directory nor a bundle (.tar.gz, .tgz, .tar, .zip)")
    # No emdash.toml and no database here: this add creates the site.
    new_site = config.source is None and not site_exists(config)
    try:
        if is_bundle(path):
            descriptor, _sha = add_bundle(config, path, trusted=trusted)
        else:
            check_new_entry(config, path)
            # Load it into the site first: a plugin that does not load is never written to
            # the config.
            with _open(ctx, config) as rt:
                added = rt.add_plugin(path, trusted=trusted)
            descriptor = add_plugin_entry(config, path, trusted=trusted, plugin_id=added.plugin_id)
    except BaseException:
        if new_site:
            remove_new_site(config)  # a refused plugin leaves no half-made site behind
        raise
    mode = "trusted (in-process)" if trusted else "sandboxed"
    click.echo(f"Added {descriptor.id} {descriptor.version} ({mode})")
    if config.source is None:
        click.echo(
            f"Created {config.base_dir / DEFAULT_CONFIG_NAME}: a new site (database "
            f"{Path(config.database_path()).name}) in {config.base_dir}. Run emdash from "
            "this directory, or pass --config PATH, to use it.",
            err=True,
        )
    if trusted:
        click.echo(
            "Note: trusted plugins run with the host's full privileges; capabilities are "
            "advisory for them.",
            err=True,
        )


@plugins.command("upgrade")
@click.argument("plugin_id")
@click.argument("source", required=False, type=click.Path(path_type=Path, exists=True))
@click.option("--yes", "-y", is_flag=True, help="Approve without asking (for scripts).")
@click.pass_context
def plugins_upgrade(ctx: click.Context, plugin_id: str, source: Path | None, yes: bool) -> None:
    """Review and approve a plugin's new version or access: from SOURCE (a directory or a
    bundle), or from its own directory as edited on disk. Keeps the plugin's data."""
    from ._install import upgrade

    upgrade(_state(ctx).config(), plugin_id, source, yes=yes)


@plugins.command("remove")
@click.argument("plugin_id")
@click.option("--delete-data", is_flag=True, help="Also delete the plugin's KV and storage.")
@click.pass_context
def plugins_remove(ctx: click.Context, plugin_id: str, delete_data: bool) -> None:
    """Uninstall a plugin (fires plugin:uninstall).

    A plugin that does not load is taken out of emdash.toml only: its uninstall hook
    cannot run, so its install record and data stay in the database (adding it again
    finds them; to delete them, fix it, add it, and remove it with --delete-data)."""
    config = _state(ctx).config()
    find_entry(config, plugin_id)
    with _open(ctx, config) as rt:
        left_out = next((u for u in _state(ctx).unloaded if u.plugin_id == plugin_id), None)
        if left_out is None:
            rt.remove_plugin(plugin_id, delete_data=delete_data)
        elif delete_data:
            out.fail(
                f"plugin {plugin_id} is not loaded ({left_out.error}), so its uninstall hook "
                "cannot run and its data is not deleted; fix it first "
                f"({left_out.hint}), or remove it without --delete-data (its data stays)"
            )
    remove_plugin_entry(config, plugin_id)
    if left_out is not None:
        click.echo(
            f"Removed {plugin_id} from {config.source or DEFAULT_CONFIG_NAME}. It did not "
            "load, so its uninstall hook did not run: its data and install record stay in "
            "the database (adding it again finds them)."
        )
        return
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
    with _open(ctx, config) as rt:
        left_out = next((u for u in _state(ctx).unloaded if u.plugin_id == plugin_id), None)
        if left_out is None:
            if enabled:
                rt.enable_plugin(plugin_id)
            else:
                rt.disable_plugin(plugin_id)
    set_plugin_enabled(config, plugin_id, enabled)
    if left_out is not None:
        # Only the config changes: the plugin gets that state (and its activate or
        # deactivate hook runs) when it next loads.
        click.echo(
            f"{plugin_id} {word} in {config.source or DEFAULT_CONFIG_NAME}; it does not load "
            f"yet (fix: {left_out.hint}), and takes that state when it does"
        )
        return
    click.echo(f"{plugin_id} {word}")


# -- run-hook / route / audit-log / serve ----------------------------------------------------


@main.command("run-hook")
@click.argument("name", metavar="HOOK")
@click.option(
    "--event", type=out.JsonParam(), default="{}", show_default=True, help="The event, as JSON."
)
@click.option(
    "--plugin",
    "plugin_id",
    metavar="ID",
    help="Only this plugin's handler (needed for lifecycle, cron and exclusive hooks).",
)
@_json_flag
@click.pass_context
def run_hook(
    ctx: click.Context, name: str, event: Any, plugin_id: str | None, as_json: bool
) -> None:
    """Run HOOK (e.g. content:beforeSave) through the pipeline and print the outcome.

    The plugins' log lines show on stderr as they run (with --json: in "logs").
    """
    spec = HOOKS.get(name)
    if spec is None:
        raise click.BadParameter(
            f'unknown hook "{name}"{did_you_mean(name, HOOK_NAMES)}; hook names are '
            "case-sensitive (content:beforeSave, cron, page:metadata, ...)",
            param_hint="HOOK",
        )
    if not isinstance(event, dict):
        raise click.BadParameter("the event must be a JSON object", param_hint="--event")
    if plugin_id is None and spec.family in ("lifecycle", "cron", "exclusive"):
        raise click.BadParameter(
            f"{name} is a {spec.family} hook: it runs one plugin's handler; name it with "
            "--plugin ID (see: emdash plugins list)",
            param_hint="--plugin",
        )
    missing = [key for key in spec.event_keys if key not in event]
    if missing:
        # A real event always has them: a handler reading one would fail with a bare
        # KeyError, which reads like a plugin bug rather than a short --event.
        click.echo(
            f"warning: the {name} event has no {', '.join(missing)} (its keys: "
            f"{', '.join(spec.event_keys)}); handlers that read them will fail",
            err=True,
        )
    config = _state(ctx).config()
    # Each failure is reported once, below (ERROR column, or the Error: line of a hook
    # that aborts), not also as the pipeline's log line.
    with _open(ctx, config) as rt, LogCapture() as logs, hide_hook_failures():
        if plugin_id is not None:
            _check_loaded(ctx, plugin_id)
        try:
            outcome = rt.run_hook(name, event, plugin_id=plugin_id)
        except EmDashError as exc:
            _echo_traceback(ctx, exc)
            raise
    if not as_json and not _state(ctx).as_json:
        for r in outcome.results:
            if r.error is not None:
                _echo_traceback(ctx, r.error)
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
                "logs": logs.lines,
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
@click.argument("plugin_id", metavar="ID")
@click.argument("name", metavar="ROUTE")
@click.option(
    "--input", "route_input", type=out.JsonParam(), default=None, help="The route input, as JSON."
)
@click.option(
    "--method",
    type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE"], case_sensitive=False),
    default="POST",
    show_default=True,
    help="The request method the route sees (routeCtx.request.method).",
)
@click.pass_context
def route(ctx: click.Context, plugin_id: str, name: str, route_input: Any, method: str) -> None:
    """Call ROUTE of plugin ID and print its data as JSON.

    ROUTE is the route's name or its path (/_emdash/api/plugins/ID/ROUTE). The plugin's log
    lines show on stderr; a refused input lists every schema error.
    """
    from .._shared._errors import PluginRouteError

    name = route_name(plugin_id, name)
    config = _state(ctx).config()
    with _open(ctx, config) as rt:
        _check_loaded(ctx, plugin_id)
        try:
            data = rt.invoke_route(
                plugin_id, name, input=route_input, request={"method": method.upper()}
            )
        except PluginRouteError as exc:
            out.fail_route(exc, plugin_id, name)
    out.echo_json(data)


@main.group()
def cron() -> None:
    """List the plugins' scheduled tasks and run the due ones (a cron tick)."""


@cron.command("list")
@click.option("--plugin", "plugin_id", metavar="ID", help="Only this plugin's tasks.")
@_json_flag
@click.pass_context
def cron_list(ctx: click.Context, plugin_id: str | None, as_json: bool) -> None:
    """Show the scheduled tasks of the enabled plugins, by next run (read-only)."""
    from .._store._readonly import read_cron_tasks

    config = _state(ctx).config()
    # Read-only: the tasks are read from the database as it is (never created, nothing
    # installed, no plugin loaded). Disabled plugins' tasks are off there.
    if plugin_id is not None:
        find_entry(config, plugin_id)  # an unknown id is an error naming the installed ones
        ids = [plugin_id]
    else:
        ids = [entry_id(config, entry) for entry in config.plugins]
    database = config.database_path()
    rows = [{"plugin": pid, **task} for pid in ids for task in read_cron_tasks(database, pid)]
    rows.sort(key=lambda r: (r["nextRunAt"] or "", r["plugin"], r["name"]))
    if _wants_json(ctx, as_json):
        out.echo_json(rows)
    elif not rows:
        click.echo("No scheduled tasks.")
    else:
        click.echo(
            out.format_table(
                rows,
                [
                    ("plugin", "PLUGIN"),
                    ("name", "TASK"),
                    ("schedule", "SCHEDULE"),
                    ("nextRunAt", "NEXT RUN"),
                    ("lastRunAt", "LAST RUN"),
                ],
            )
        )


@cron.command("tick")
@click.option(
    "--at",
    "at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"]),
    help="Run what is due at this UTC time instead of now (e.g. 2030-01-01T00:00:00).",
)
@_json_flag
@click.pass_context
def cron_tick(ctx: click.Context, at: Any, as_json: bool) -> None:
    """Run every task that is due (and publish due scheduled content), once.

    A site runs this from the system's cron (e.g. every minute); the plugins' log lines
    show on stderr.
    """
    config = _state(ctx).config()
    # A failing task is reported by the scheduler's own line (it names the task) and in
    # the table; the pipeline's "handler failed" line would say the same a third time.
    with _open(ctx, config) as rt, LogCapture() as logs, hide_hook_failures():
        runs = _tick_without_left_out(ctx, rt, at)
    rows = [
        {
            "plugin": r.plugin_id,
            "name": r.name,
            "success": r.success,
            "outcome": r.outcome,
            "next_run_at": r.next_run_at,
            "error": r.error,
        }
        for r in runs
    ]
    if _wants_json(ctx, as_json):
        out.echo_json({"runs": rows, "logs": logs.lines})
    elif not rows:
        click.echo("Nothing was due.")
    else:
        click.echo(
            out.format_table(
                rows,
                [
                    ("plugin", "PLUGIN"),
                    ("name", "TASK"),
                    ("success", "OK"),
                    ("outcome", "OUTCOME"),
                    ("next_run_at", "NEXT RUN"),
                    ("error", "ERROR"),
                ],
            )
        )


@main.command("audit-log")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--plugin", "plugin_id", metavar="ID", help="Only this plugin's invocations.")
@click.option(
    "--kind",
    type=click.Choice(sorted(AUDIT_KINDS)),
    help="Only this kind of invocation (every command loads each sandboxed plugin: "
    "--kind route, --kind hook ... leave those out).",
)
@click.option("--logs", "show_logs", is_flag=True, help="Show each invocation's log lines.")
@_json_flag
@click.pass_context
def audit_log(
    ctx: click.Context,
    limit: int,
    plugin_id: str | None,
    kind: str | None,
    show_logs: bool,
    as_json: bool,
) -> None:
    """Show the newest plugin invocations (hooks and routes) with outcome and timing.

    Each record keeps its invocation's log lines (ctx.log and print, at most 50 lines);
    --logs shows them under it, --json has them in "logs".
    """
    from .._store._readonly import read_audit

    # Read-only: the database as it is (never created, nothing installed, no plugin
    # loaded, so this command adds no record of its own).
    database = _state(ctx).config().database_path()
    if kind is None:
        rows = read_audit(database, limit=limit, plugin_id=plugin_id)
    else:  # filtered here, over the newest 10000 records (as the admin UI does)
        newest = read_audit(database, limit=10_000, plugin_id=plugin_id)
        rows = [r for r in newest if r["kind"] == kind][:limit]
    if _wants_json(ctx, as_json):
        out.echo_json(rows)
    elif not rows and (plugin_id is not None or kind is not None):
        which = f"{kind} records" if kind else "records"
        if plugin_id is not None:
            which += f" for plugin {plugin_id} (plugin ids: emdash plugins list)"
        click.echo(f"No audit {which}.")
    elif not rows:
        click.echo("The audit log is empty.")
    elif show_logs:
        click.echo(out.audit_with_logs(rows))
    else:
        click.echo(out.audit_table(rows))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the plugin routes at /_emdash/api/plugins/<id>/<route> and the admin UI at
    /_emdash/admin/ (development server)."""
    try:
        import uvicorn
    except ImportError:
        out.fail(f"uvicorn is not installed; install it with: pip install '{DISTRIBUTION}[serve]'")
    config = _state(ctx).config()
    token = config.token()
    with _open(ctx, config) as rt:
        try:
            app = site_app(config, rt, token, _state(ctx).unloaded)
        except ValueError as exc:  # the token's own checks; the config's are ConfigErrors
            out.fail(f"{exc}; set a longer api_token in {config.source or 'emdash.toml'}")
        for item in _state(ctx).unloaded:
            # Loud, once more after the log lines: the site runs without these.
            click.echo(
                f"WARNING: plugin {item.plugin_id} is NOT loaded ({item.status}): its hooks "
                f"and routes are off. Fix: {item.hint}",
                err=True,
            )
        if token is None:
            click.echo(
                "Note: no api_token in the config: private routes answer 401 and nobody can "
                "sign in to the admin UI.",
                err=True,
            )
        click.echo(f"Serving plugin routes on http://{host}:{port}/_emdash/api/plugins/", err=True)
        if token is not None:
            click.echo(
                f"Admin UI: http://{host}:{port}/_emdash/admin/ (sign in with the api_token)",
                err=True,
            )
        uvicorn.run(app, host=host, port=port, log_level="info")


def _tick_without_left_out(ctx: click.Context, rt: Runtime, at: Any) -> Any:
    """A cron tick that leaves the tasks of plugins that did not load where they are.

    Run, such a task would fail ("no cron hook") and a one-shot task would be dropped
    after its retries: instead its tasks are switched off for the tick and back on
    after it, so they stay due and run at the first tick after the fix.
    """
    # Enabled plugins' tasks are always on; switching them on first also repairs a tick
    # that was killed before it could switch a left-out plugin's tasks back on.
    for info in rt.plugins():
        if info.enabled:
            rt.cron.set_plugin_enabled(info.plugin_id, True)
    # Back on after the tick only where the site's database has the plugin enabled (its
    # tasks' state follows that, whatever emdash.toml says until the plugin loads).
    left_out = [u.plugin_id for u in _state(ctx).unloaded]
    enabled = [pid for pid in left_out if (rt.store.plugin_registry.get(pid) or {}).get("enabled")]
    for pid in left_out:
        rt.cron.set_plugin_enabled(pid, False)
    try:
        return rt.cron.tick(at)
    finally:
        for pid in enabled:
            rt.cron.set_plugin_enabled(pid, True)


def site_app(
    config: SiteConfig, rt: Any, token: str | None, unloaded: list[Unloaded] | None = None
) -> Any:
    """The ASGI app ``serve`` runs for this site: a plugin enabled or disabled in the admin
    UI is written to the config file too, so the next start keeps it that way; plugins
    left out (``unloaded``) are listed on the admin UI's plugins page."""
    import threading

    from .._asgi._app import create_app

    # Toggles run in worker threads; the file edit is read-modify-write, so one at a time.
    edit = threading.Lock()

    def record(plugin_id: str, enabled: bool) -> None:
        with edit:
            set_plugin_enabled(config, plugin_id, enabled)

    return create_app(
        rt,
        token=token,
        on_plugin_toggled=record,
        unloaded_plugins=[u.as_dict() for u in unloaded or []],
    )


def _echo_traceback(ctx: click.Context, exc: BaseException) -> None:
    """With -v, a plugin failure's traceback (the log line that carried it is hidden)."""
    trace = getattr(exc, "traceback_text", None)
    if _state(ctx).debug and isinstance(trace, str) and trace:
        # Prefixed, as the pipeline's log does: the plugin controls its exception text.
        click.echo("".join(f"    | {line}\n" for line in trace.splitlines()), err=True, nl=False)
