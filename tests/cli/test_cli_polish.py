"""The CLI as a plugin author meets it: log lines, hints that name commands, route paths,
cron, and commands that never create a site by looking at one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from emdash.cli import main

from .test_cli_process import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SAVE = '{"content": {"id": "c1", "title": "T"}, "collection": "posts", "isNew": true}'

ECHO = """
from emdash import RouteConfig, define_plugin


def saved(event, ctx):
    ctx.log.info("saw", {"id": event["content"]["id"]})
    ctx.log.debug("details")
    print("printed", event["content"]["id"])


def method(route_ctx, ctx):
    ctx.log.info("called with " + route_ctx["request"]["method"])
    return {"method": route_ctx["request"]["method"], "input": route_ctx["input"]}


plugin = define_plugin(
    hooks={"content:afterSave": saved},
    routes={
        "method": method,
        "strict": RouteConfig(
            method,
            input={
                "type": "object",
                "properties": {"n": {"type": "integer"}, "s": {"type": "string"}},
                "required": ["n", "s"],
            },
        ),
    },
)
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    plugin = tmp_path / "echo"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        'id = "echo"\nentrypoint = "plugin.py"\ncapabilities = ["content:read"]\n'
    )
    (plugin / "plugin.py").write_text(ECHO)
    assert run(tmp_path, "plugins", "add", str(plugin)).exit_code == 0
    return tmp_path


def run(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "emdash.toml"), *args])


def test_run_hook_shows_the_plugins_log_lines_on_stderr(site: Path) -> None:
    result = run(site, "run-hook", "content:afterSave", "--event", SAVE)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        'log info  [plugin:echo] saw {"id": "c1"}',
        "log info  [plugin:echo] print: printed c1",
    ]
    assert "echo    yes" in result.stdout

    verbose = run(site, "-v", "run-hook", "content:afterSave", "--event", SAVE)
    assert "log debug [plugin:echo] details" in verbose.stderr.splitlines()

    quiet = run(site, "--log-level", "off", "run-hook", "content:afterSave", "--event", SAVE)
    assert quiet.exit_code == 0 and quiet.stderr == ""

    as_json = json.loads(
        run(site, "--json", "run-hook", "content:afterSave", "--event", SAVE).stdout
    )
    assert as_json["logs"] == [
        {"plugin": "echo", "level": "info", "message": '[plugin:echo] saw {"id": "c1"}'},
        {"plugin": "echo", "level": "info", "message": "[plugin:echo] print: printed c1"},
    ]


def test_a_failing_handlers_traceback_shows_only_with_verbose(site: Path) -> None:
    plugin = site / "boom"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        'id = "boom"\nentrypoint = "plugin.py"\ncapabilities = ["content:read"]\n'
    )
    (plugin / "plugin.py").write_text(
        "from emdash import define_plugin\n\n"
        "def saved(event, ctx):\n"
        '    raise ValueError("no luck")\n\n'
        'plugin = define_plugin(hooks={"content:afterSave": saved})\n'
    )
    assert run(site, "plugins", "add", str(plugin)).exit_code == 0
    plain = run(site, "run-hook", "content:afterSave", "--event", SAVE)
    # Printed once (as the Error: line), not also as a log line before it.
    assert (plain.stdout + plain.stderr).count("no luck") == 1, plain.stderr
    assert plain.stderr.endswith(
        "Error: Plugin boom raised ValueError during hook:content:afterSave: no luck\n"
    )
    assert "Traceback" not in plain.stderr
    verbose = run(site, "-v", "run-hook", "content:afterSave", "--event", SAVE)
    assert "Traceback (most recent call last)" in verbose.stderr


def test_run_hook_suggests_instead_of_listing_every_hook(site: Path) -> None:
    result = run(site, "run-hook", "content:beforesave")
    assert result.exit_code == 2
    assert 'unknown hook "content:beforesave" (did you mean "content:beforeSave"?)' in (
        result.stderr
    )
    assert "plugin:uninstall" not in result.stderr  # not the 25 names
    help_text = run(site, "run-hook", "--help").stdout
    assert "plugin:uninstall" not in help_text and "HOOK" in help_text
    cron = run(site, "run-hook", "cron")
    assert cron.exit_code == 2
    assert "cron is a cron hook: it runs one plugin's handler; name it with --plugin ID" in (
        cron.stderr
    )


def test_route_takes_the_path_a_user_types_and_a_method(site: Path) -> None:
    for given in (
        "method",
        "/method",
        "/_emdash/api/plugins/echo/method",
        "http://x/_emdash/api/plugins/echo/method?a=1",
    ):
        result = run(site, "route", "echo", given, "--input", '{"a": 1}')
        assert result.exit_code == 0, (given, result.output)
        assert json.loads(result.stdout) == {"method": "POST", "input": {"a": 1}}
    got = run(site, "route", "echo", "method", "--method", "get")
    assert json.loads(got.stdout) == {"method": "GET", "input": None}
    other = run(site, "route", "echo", "/_emdash/api/plugins/forms/submit")
    assert other.exit_code == 2
    assert "is a route of plugin 'forms', not 'echo'" in other.stderr


def test_route_errors_name_the_route_and_list_schema_problems(site: Path) -> None:
    bad = run(site, "route", "echo", "strict", "--input", '{"n": "x"}')
    assert bad.exit_code == 1
    assert bad.stderr.splitlines() == [
        "Error: route echo/strict: Invalid request body (VALIDATION_ERROR, HTTP 400)",
        "  (input): 's' is a required property",
        "  n: 'x' is not of type 'integer'",
    ]
    missing = run(site, "route", "echo", "nope")
    assert missing.stderr == (
        'Error: Plugin route not found: "echo/nope": plugin echo has no route of that name '
        "(its routes: method, strict) (NOT_FOUND, HTTP 404)\n"
    )


def test_a_second_plugin_with_the_same_id_gets_a_cli_hint(site: Path) -> None:
    copy = site / "echo2"
    shutil.copytree(site / "echo", copy)
    result = run(site, "plugins", "add", str(copy))
    assert result.exit_code == 1
    assert result.stderr.endswith("remove it first with: emdash plugins remove echo\n")
    assert "remove_plugin(" not in result.stderr


def test_cron_list_and_tick(tmp_path: Path) -> None:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    shutil.copytree(EXAMPLES / "forms", tmp_path / "forms")
    assert run(tmp_path, "plugins", "add", str(tmp_path / "forms")).exit_code == 0
    listed = json.loads(run(tmp_path, "--json", "cron", "list").stdout)
    assert [(t["plugin"], t["name"], t["schedule"]) for t in listed] == [
        ("forms", "cleanup", "@weekly")
    ]
    assert run(tmp_path, "cron", "tick").stdout == "Nothing was due.\n"
    ticked = run(tmp_path, "--json", "cron", "tick", "--at", "2031-01-01T00:00:00")
    runs = json.loads(ticked.stdout)["runs"]
    assert [(r["plugin"], r["name"], r["success"], r["outcome"]) for r in runs] == [
        ("forms", "cleanup", True, "rescheduled")
    ]
    unknown = run(tmp_path, "cron", "list", "--plugin", "nope")
    assert unknown.exit_code == 1 and 'No plugin with id "nope"' in unknown.stderr


def emdash(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emdash", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_read_only_commands_create_no_site(tmp_path: Path) -> None:
    for args in (("plugins", "list"), ("audit-log",), ("cron", "list"), ("--version",)):
        result = emdash(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert list(tmp_path.iterdir()) == [], args
    assert emdash("plugins", "list", cwd=tmp_path).stdout.startswith("No plugins installed.")
    assert emdash("--version", cwd=tmp_path).stdout.startswith("emdash, version ")


def test_a_short_api_token_from_the_environment_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\napi_token = { "$env" = "TOK" }\n')
    result = emdash("serve", "--port", "0", cwd=tmp_path, env={"TOK": "short"})
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'emdash.toml'}: api_token (environment variable TOK) is 5 "
        "characters; it must be at least 16 (a long random string)\n"
    )
    (tmp_path / "emdash.toml").write_text('database = "site.db"\napi_token = "short"\n')
    literal = emdash("serve", "--port", "0", cwd=tmp_path)
    assert literal.returncode == 1 and len(literal.stderr.splitlines()) == 1
    assert "api_token must be at least 16 characters" in literal.stderr


def test_serve_shows_the_plugins_log_lines(site: Path) -> None:
    # A top-level key must come before the [[plugins]] tables the fixture's add wrote.
    text = (site / "emdash.toml").read_text()
    (site / "emdash.toml").write_text('api_token = { "$env" = "TOK" }\n' + text)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emdash", "serve", "--port", str(port)],
        cwd=site,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOK": "serve-test-token-0123456789"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/_emdash/api/plugins/echo/method"
        with httpx.Client(trust_env=False, timeout=30) as client:
            for _ in range(600):  # until the server listens (or has died)
                try:
                    answer = client.put(
                        url, headers={"authorization": "Bearer serve-test-token-0123456789"}
                    )
                    break
                except httpx.ConnectError:
                    assert proc.poll() is None, proc.communicate()
                    time.sleep(0.1)
            else:
                raise AssertionError("the server never listened")
        assert answer.json()["data"]["method"] == "PUT"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "log info  [plugin:echo] called with PUT" in err.splitlines()


FAILING_TASK = """
from emdash import define_plugin


def install(event, ctx):
    ctx.cron.schedule("boom", "@hourly")


def task(event, ctx):
    raise ValueError("the task failed on purpose")


plugin = define_plugin(hooks={"plugin:install": install, "cron": task})
"""


def test_cron_tick_reports_a_failing_task_once_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    plugin = tmp_path / "boom"
    plugin.mkdir()
    (plugin / "plugin.py").write_text(FAILING_TASK)
    (plugin / "emdash-plugin.toml").write_text(
        'id = "boom"\nversion = "1.0.0"\nentrypoint = "plugin.py"\ncapabilities = []\n'
    )
    assert run(tmp_path, "plugins", "add", str(plugin)).exit_code == 0
    ticked = run(tmp_path, "cron", "tick", "--at", "2031-01-01T00:00:00")
    assert ticked.exit_code == 0
    # The table has the (shortened) error; stderr has it once, in full, naming the task.
    assert "rescheduled" in ticked.stdout
    assert ticked.stderr.count("the task failed on purpose") == 1
    assert 'task "boom" of plugin "boom" failed' in ticked.stderr
