"""Follow-ups of a new user's review: every problem of a descriptor one per line, a hook
failure printed once, and hints that point to what a pip-installed user has."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from emdash.cli import main

SCHEMA = """
[admin.settingsSchema.color]
type = "string"
label = ""

[admin.settingsSchema.level]
type = "number"
label = "Level"
min = 5
max = 1
"""


def run(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "emdash.toml"), *args])


def plugin(tmp_path: Path, code: str, extra: str = "", caps: str = "[]") -> Path:
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "emdash-plugin.toml").write_text(
        f'id = "p"\nversion = "1.0.0"\nentrypoint = "plugin.py"\ncapabilities = {caps}\n{extra}'
    )
    (directory / "plugin.py").write_text(code)
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    return directory


def test_check_and_add_print_every_settings_problem_on_its_own_line(tmp_path: Path) -> None:
    directory = plugin(tmp_path, "plugin = 1\n", SCHEMA)
    checked = run(tmp_path, "check", str(directory))
    assert checked.exit_code == 1
    assert checked.stderr.splitlines()[:2] == [
        'emdash-plugin.toml: error: admin.settingsSchema.color.label: setting "color": label '
        "must be a non-empty string of at most 200 characters",
        'emdash-plugin.toml: error: admin.settingsSchema.level.min: setting "level": min is '
        "greater than max",
    ]
    added = run(tmp_path, "plugins", "add", str(directory))
    assert added.exit_code == 1
    assert added.stderr.splitlines() == [
        'Error: Invalid plugin "p": 2 problems:',
        '  admin.settingsSchema.color.label: setting "color": label must be a non-empty '
        "string of at most 200 characters",
        '  admin.settingsSchema.level.min: setting "level": min is greater than max',
    ]


def test_a_hook_failure_that_does_not_abort_is_printed_once(tmp_path: Path) -> None:
    code = (
        "from emdash import define_plugin\n\ndef meta(event, ctx):\n"
        '    raise ValueError("no luck")\n\n'
        'plugin = define_plugin(hooks={"page:metadata": meta})\n'
    )
    directory = plugin(tmp_path, code)
    assert run(tmp_path, "plugins", "add", "--trusted", str(directory)).exit_code == 0
    result = run(tmp_path, "run-hook", "page:metadata", "--event", '{"page": {}}')
    assert result.exit_code == 0
    assert (result.stdout + result.stderr).count("no luck") == 1  # the ERROR column
    assert "Plugin p raised ValueError during hook:page:metadata: no luck" in result.stdout
