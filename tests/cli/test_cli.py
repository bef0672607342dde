"""The emdash CLI, driven through click's runner against a real site on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from emdash._cli._config import load_config
from emdash.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory with an emdash.toml and copies of two example plugins."""
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n\n[site]\nname = "CLI site"\n')
    for name in ("hello", "forms"):
        shutil.copytree(EXAMPLES / name, tmp_path / name)
    return tmp_path


def run(site: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--config", str(site / "emdash.toml"), *args], catch_exceptions=False
    )


def test_add_list_route_disable_enable_remove(site: Path) -> None:
    empty = run(site, "plugins", "list")
    assert empty.exit_code == 0
    assert empty.stdout == "No plugins installed. Add one with: emdash plugins add PATH\n"

    added = run(site, "plugins", "add", str(site / "hello"))
    assert added.exit_code == 0, added.output
    assert added.stdout == "Added plugin-hello 0.1.0 (sandboxed)\n"
    trusted = run(site, "plugins", "add", str(site / "forms"), "--trusted")
    assert trusted.exit_code == 0, trusted.output
    assert trusted.stdout == "Added forms 0.1.0 (trusted (in-process))\n"
    assert trusted.stderr == (
        "Note: trusted plugins run with the host's full privileges; capabilities are advisory "
        "for them.\n"
    )
    assert [(p.path, p.trusted) for p in load_config(site / "emdash.toml").plugins] == [
        ("hello", False),
        ("forms", True),
    ]

    listed = run(site, "plugins", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["mode"], r["enabled"]) for r in rows] == [
        ("plugin-hello", "sandboxed", True),
        ("forms", "trusted", True),
    ]
    assert rows[0]["hooks"] == ["content:afterSave"]
    assert rows[1]["routes"] == ["admin", "submissions/delete", "submissions/list", "submit"]
    table = run(site, "plugins", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "VERSION", "MODE", "ENABLED", "STATE", "HOOKS", "ROUTES"]
    assert table[2].split()[:5] == ["plugin-hello", "0.1.0", "sandboxed", "yes", "ok"]

    recent = run(site, "route", "plugin-hello", "recent")
    assert recent.exit_code == 0
    assert json.loads(recent.stdout) == {"events": []}

    hook = run(
        site,
        "--json",
        "run-hook",
        "content:afterSave",
        "--event",
        '{"content": {"id": "abc"}, "collection": "posts", "isNew": true}',
    )
    assert hook.exit_code == 0, hook.output
    outcome = json.loads(hook.stdout)
    assert outcome["hook"] == "content:afterSave"
    assert [(r["plugin"], r["success"]) for r in outcome["results"]] == [("plugin-hello", True)]
    events = json.loads(run(site, "route", "plugin-hello", "recent").stdout)["events"]
    assert [e["data"]["contentId"] for e in events] == ["abc"]

    disabled = run(site, "plugins", "disable", "plugin-hello")
    assert disabled.stdout == "plugin-hello disabled\n"
    assert load_config(site / "emdash.toml").plugins[0].enabled is False
    assert run(site, "plugins", "disable", "plugin-hello").stdout == (
        "plugin-hello is already disabled\n"
    )
    gone = run(site, "route", "plugin-hello", "recent")
    assert gone.exit_code == 1
    assert gone.stderr == (
        'Error: Plugin route not found: "plugin-hello/recent": plugin plugin-hello is '
        "disabled; enable it to call its routes (NOT_FOUND, HTTP 404)\n"
    )
    assert run(site, "plugins", "enable", "plugin-hello").stdout == "plugin-hello enabled\n"
    # The data survived the disable/enable round trip (same database).
    assert len(json.loads(run(site, "route", "plugin-hello", "recent").stdout)["events"]) == 1

    removed = run(site, "plugins", "remove", "plugin-hello", "--delete-data")
    assert removed.stdout == "Removed plugin-hello and deleted its data\n"
    assert [p.path for p in load_config(site / "emdash.toml").plugins] == ["forms"]

    log = json.loads(run(site, "audit-log", "--json", "--plugin", "plugin-hello").stdout)
    names = [(r["kind"], r["name"], r["outcome"]) for r in log]
    assert ("route", "recent", "ok") in names
    assert ("hook", "content:afterSave", "ok") in names


def test_re_adding_with_an_existing_id_is_refused(site: Path) -> None:
    assert run(site, "plugins", "add", str(site / "hello")).exit_code == 0
    again = run(site, "plugins", "add", str(site / "hello"))
    assert again.exit_code == 1
    assert again.stderr.startswith("Error: ")
    assert "already" in again.stderr
    assert len(load_config(site / "emdash.toml").plugins) == 1


def test_run_hook_table_and_targeted_lifecycle(site: Path) -> None:
    run(site, "plugins", "add", str(site / "forms"))
    result = run(site, "run-hook", "plugin:activate", "--plugin", "forms")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PLUGIN", "OK", "MS", "CPU", "MS", "ERROR"]
    assert lines[2].split()[:2] == ["forms", "yes"]
    assert lines[-1] == "value: null"
    nobody = run(site, "run-hook", "comment:afterCreate", "--event", "{}")
    assert nobody.stdout == "No enabled plugin handles comment:afterCreate.\n"


def test_bad_input_is_one_clear_line(site: Path) -> None:
    bad_json = run(site, "run-hook", "cron", "--event", "{nope")
    assert bad_json.exit_code == 2
    assert "Invalid value for '--event': not valid JSON" in bad_json.stderr
    not_object = run(site, "run-hook", "cron", "--event", "[1]")
    assert not_object.exit_code == 2
    assert "the event must be a JSON object" in not_object.stderr
    unknown_hook = run(site, "run-hook", "content:afterExplode")
    assert unknown_hook.exit_code == 2
    missing = run(site, "route", "nope", "x")
    assert missing.exit_code == 1
    assert missing.stderr.startswith(
        'Error: Plugin route not found: "nope/x": no plugin with that id is added to this site'
    )
    no_such = run(site, "plugins", "remove", "nope")
    assert no_such.exit_code == 1
    assert no_such.stderr == (
        f'Error: No plugin with id "nope" in {(site / "emdash.toml").resolve()} '
        "(installed: none); see: emdash plugins list\n"
    )


def test_missing_or_invalid_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "x.toml"), "plugins", "list"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Config file {tmp_path / 'x.toml'} does not exist; create it or drop --config\n"
    )
    (tmp_path / "bad.toml").write_text("sandbx = true\n")
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "bad.toml"), "audit-log"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Invalid config file {tmp_path / 'bad.toml'}: sandbx: unknown key (check the "
        "spelling; see: emdash help config)\n"
    )
    assert "Traceback" not in result.output


def test_a_plugin_that_fails_to_load_is_not_added(site: Path) -> None:
    broken = site / "broken"
    broken.mkdir()
    (broken / "emdash-plugin.toml").write_text('id = "broken"\nentrypoint = "plugin.py"\n')
    (broken / "plugin.py").write_text("import socket\nplugin = None\n")
    result = run(site, "plugins", "add", str(broken))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert 'Import of "socket" is not allowed in sandboxed plugins' in result.stderr
    assert load_config(site / "emdash.toml").plugins == []


def test_check_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    plugin = tmp_path / "bad"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        'id = "bad"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
    )
    (plugin / "plugin.py").write_text(
        "from emdash import define_plugin\n"
        "x = eval('1')\n"
        "y = ().__class__\n"
        "plugin = define_plugin()\n"
    )
    (plugin / "helpers.py").write_text("def _hidden():\n    return 1\n")
    result = CliRunner().invoke(main, ["check", str(plugin)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        'helpers.py:1: error: "_hidden" is an invalid variable name because it starts with "_"'
        "; rename it without the leading underscore",
        "plugin.py:2: error: Eval calls are not allowed; there is no eval, exec or compile in "
        "sandboxed plugins",
        'plugin.py:3: error: "__class__" is an invalid attribute name because it starts with "_".',
        "bad: 3 error(s), 0 warning(s); emdash plugins add would refuse it",
    ]

    report = json.loads(CliRunner().invoke(main, ["check", "--json", str(plugin)]).stdout)
    assert report["ok"] is False
    assert report["id"] == "bad"
    assert report["files"] == 2
    assert len(report["errors"]) == 3


def test_check_accepts_every_example(tmp_path: Path) -> None:
    for name in (
        "hello",
        "seo-check",
        "audit-trail",
        "og-metadata",
        "webhook-notifier",
        "forms",
        "malicious",
    ):
        result = CliRunner().invoke(main, ["check", str(EXAMPLES / name)])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("OK: ")
        assert " loads sandboxed" in result.stdout


def test_check_refuses_a_bad_descriptor_and_oversized_source(tmp_path: Path) -> None:
    plugin = tmp_path / "p"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text('id = "p"\ncolor = "red"\n')
    result = CliRunner().invoke(main, ["check", str(plugin)])
    assert result.exit_code == 1
    assert "color: unknown field" in result.stderr
    (plugin / "emdash-plugin.toml").write_text('id = "p"\nentrypoint = "plugin.py"\n')
    (plugin / "plugin.py").write_text("x = 1\n" + "# padding\n" * 120_000)
    result = CliRunner().invoke(main, ["check", str(plugin)])
    assert result.exit_code == 1
    assert "The plugin source is too large: 1200006 bytes (the limit is 1000000 bytes)" in (
        result.stderr
    )


def test_doctor_reports_this_machine() -> None:
    result = CliRunner().invoke(main, ["doctor", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    assert report["sandbox"]["available"] is True  # the suite runs where sandboxing works
    assert report["python"]["audited"] is True
    assert report["restrictedpython"].startswith("9.")
    text = CliRunner().invoke(main, ["doctor"]).stdout
    assert text.splitlines()[0] == "sandbox:          available"
    assert text.splitlines()[1].strip().startswith("(Linux ")
    assert text.splitlines()[-1] == "OK: untrusted plugins will run sandboxed on this machine."


def test_global_json_flag_applies_to_subcommands(site: Path) -> None:
    run(site, "plugins", "add", str(site / "hello"))
    run(site, "route", "plugin-hello", "recent")
    rows = json.loads(run(site, "--json", "plugins", "list").stdout)
    assert rows[0]["id"] == "plugin-hello"
    log = json.loads(run(site, "--json", "audit-log", "--limit", "1").stdout)
    assert len(log) == 1


def test_doctor_names_the_memory_bugs_of_this_interpreter() -> None:
    import sandbox

    report = json.loads(CliRunner().invoke(main, ["doctor", "--json"]).stdout)
    expected = [b.ident for b in sandbox.INTERPRETER_BUGS if sandbox.interpreter_has_bug(b)]
    assert [b["id"] for b in report["python"]["memory_bugs"]] == expected
    assert expected  # every claimed interpreter has at least the unfixed C-stack bugs
    text = CliRunner().invoke(main, ["doctor"]).stdout
    for bug in report["python"]["memory_bugs"]:
        line = next(line for line in text.splitlines() if f"memory bug:     {bug['id']}" in line)
        assert ("closed by the sandbox" in line) is bug["closed"]
