"""Each audit record keeps its invocation's log lines (bounded), in both modes; the CLI shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import emdash
from emdash._bridge._invocation_logs import MAX_LINES
from emdash._store import Store
from emdash._store._db import Db
from emdash._store._migrations import MIGRATIONS, migrate
from emdash.cli import main

SOURCE = """
from emdash import define_plugin


def saved(event, ctx):
    ctx.log.info("saved", {"id": event["content"]["id"]})
    print("printed")


def chatty(route_ctx, ctx):
    for i in range(route_ctx["input"]["n"]):
        ctx.log.debug("line " + str(i))
    return "ok"


def failing(route_ctx, ctx):
    ctx.log.error("about to fail")
    raise ValueError("nope")


plugin = define_plugin(
    hooks={"content:afterSave": saved},
    routes={"chatty": chatty, "failing": failing},
)
"""
SAVE = {"content": {"id": "c1", "title": "T"}, "collection": "posts", "isNew": True}


def write_plugin(root: Path) -> Path:
    plugin = root / "talker"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        'id = "talker"\nentrypoint = "plugin.py"\ncapabilities = ["content:read"]\n'
    )
    (plugin / "plugin.py").write_text(SOURCE)
    return plugin


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "native"])
def test_audit_records_keep_their_log_lines(tmp_path: Path, sandboxed: bool) -> None:
    plugin = write_plugin(tmp_path)
    with emdash.Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(plugin, trusted=not sandboxed)
        rt.run_hook("content:afterSave", SAVE)
        assert rt.invoke_route("talker", "chatty", input={"n": 3}) == "ok"
        with pytest.raises(emdash.PluginError):
            rt.invoke_route("talker", "failing")
        assert rt.invoke_route("talker", "chatty", input={"n": MAX_LINES + 10}) == "ok"
        rows = rt.audit_log(limit=10)  # newest first

    by_call = [(r["kind"], r["name"], r["logs"]) for r in rows if r["kind"] in ("hook", "route")]
    assert by_call[3] == (
        "hook",
        "content:afterSave",
        [
            {"level": "info", "message": 'saved {"id": "c1"}'},
            {"level": "info", "message": "print: printed"},
        ],
    )
    assert by_call[2] == (
        "route",
        "chatty",
        [{"level": "debug", "message": f"line {i}"} for i in range(3)],
    )
    assert by_call[1] == ("route", "failing", [{"level": "error", "message": "about to fail"}])
    # Bounded: MAX_LINES lines kept, and a note of what was cut.
    kind, name, kept = by_call[0]
    assert (kind, name, len(kept)) == ("route", "chatty", MAX_LINES + 1)
    assert kept[-1] == {
        "level": "warn",
        "message": "(10 more line(s) not kept in the audit log: at most 50 lines and 8000 "
        "characters per invocation)",
    }


def test_audit_log_command_shows_the_lines(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path)
    config = tmp_path / "emdash.toml"
    config.write_text('database = "site.db"\n')

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    run("plugins", "add", str(plugin))
    run(
        "run-hook",
        "content:afterSave",
        "--event",
        '{"content": {"id": "c1"}, "collection": "posts"}',
    )
    lines = run("audit-log", "--logs", "--plugin", "talker").splitlines()
    # Opening the site for the command audits a load (sandboxed plugins): find the hook.
    (at,) = [
        i for i, line in enumerate(lines) if line.endswith("  talker  hook content:afterSave  ok")
    ]
    assert lines[at + 1 : at + 3] == ['    info  saved {"id": "c1"}', "    info  print: printed"]


def test_migration_11_adds_the_column_to_an_older_site(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Db(path)
    migrate(db, [m for m in MIGRATIONS if m[0] < 11])  # a site from before audit log lines
    with db.transaction():
        db.execute(
            "INSERT INTO _emdash_audit (at, plugin_id, kind, name, outcome, duration_ms) "
            "VALUES ('2026-01-01T00:00:00.000Z', 'p', 'hook', 'h', 'ok', 1.0)"
        )
    db.close()
    with Store(path) as store:
        (row,) = store.audit_records.list()
        assert row["logs"] == []
        store.audit_records.record(
            "p", "hook", "h", "ok", 1.0, logs='[{"level": "info", "message": "x"}]'
        )
        store.audit_records.flush()
        assert store.audit_records.list()[0]["logs"] == [{"level": "info", "message": "x"}]
