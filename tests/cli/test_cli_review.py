"""Small CLI answers a new user met: an empty audit log for one plugin, a declined upgrade."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from emdash.cli import main

CODE = "from emdash import define_plugin\nplugin = define_plugin(routes={'hi': lambda r, c: 1})\n"


def run(site: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "emdash.toml"), *args], input=stdin)


def make_site(tmp_path: Path) -> Path:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    plugin = tmp_path / "grow"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text('id = "grow"\nentrypoint = "plugin.py"\n')
    (plugin / "plugin.py").write_text(CODE)
    assert run(tmp_path, "plugins", "add", "--trusted", str(plugin)).exit_code == 0
    return tmp_path


def test_audit_log_of_a_plugin_without_records_names_it(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    result = run(site, "audit-log", "--plugin", "gorw")
    assert result.exit_code == 0
    assert result.stdout == "No audit records for plugin gorw (plugin ids: emdash plugins list).\n"


def test_declining_an_upgrade_says_what_it_leaves(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    descriptor = site / "grow" / "emdash-plugin.toml"
    descriptor.write_text(descriptor.read_text() + 'capabilities = ["users:read"]\n')
    declined = run(site, "plugins", "upgrade", "grow", stdin="n\n")
    assert declined.exit_code == 1
    assert "  + capability users:read" in declined.stdout
    assert declined.stderr == (
        "Not upgraded. grow is refused at every start while its descriptor asks for more "
        "than was approved: approve it, or undo the descriptor change.\n"
    )
    listed = run(site, "plugins", "list")  # still refused, as it says (and listed)
    assert listed.exit_code == 0 and "needs upgrade (emdash plugins upgrade grow)" in listed.stdout
    assert run(site, "plugins", "upgrade", "grow", "--yes").exit_code == 0
    assert "needs upgrade" not in run(site, "plugins", "list").stdout


def test_audit_log_kind_leaves_out_the_loads(tmp_path: Path) -> None:
    # Every command loads each sandboxed plugin and audits it; --kind shows the calls only.
    site = make_site(tmp_path)
    (site / "emdash.toml").write_text(
        (site / "emdash.toml").read_text().replace("trusted = true", "trusted = false")
    )
    assert run(site, "route", "grow", "hi").exit_code == 0
    run(site, "plugins", "list")
    everything = json.loads(run(site, "--json", "audit-log").stdout)
    assert {r["kind"] for r in everything} >= {"load", "route"}
    routes = json.loads(run(site, "--json", "audit-log", "--kind", "route").stdout)
    assert [(r["kind"], r["name"]) for r in routes] == [("route", "hi")]
    assert run(site, "audit-log", "--kind", "cron").stdout == "No audit cron records.\n"
    none = run(site, "audit-log", "--kind", "cron", "--plugin", "grow")
    assert none.stdout == (
        "No audit cron records for plugin grow (plugin ids: emdash plugins list).\n"
    )
    assert run(site, "audit-log", "--kind", "bogus").exit_code == 2


def test_run_hook_warns_about_a_short_event(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    short = run(site, "run-hook", "content:afterSave", "--event", '{"content": {"id": "1"}}')
    assert short.exit_code == 0, short.output  # nobody handles it: the warning is all
    assert short.stderr == (
        "warning: the content:afterSave event has no collection, isNew (its keys: content, "
        "collection, isNew); handlers that read them will fail\n"
    )
    full = '{"content": {"id": "1"}, "collection": "posts", "isNew": true}'
    assert run(site, "run-hook", "content:afterSave", "--event", full).stderr == ""
