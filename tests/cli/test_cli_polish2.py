"""Follow-ups of a new user's review: every problem of a descriptor one per line, a hook
failure printed once, and hints that point to what a pip-installed user has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from emdash._cli import _help
from emdash._cli._help import TOPICS
from emdash.cli import main

ROOT = Path(__file__).resolve().parents[2]

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


def _message_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings (what it can print)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_messages_point_to_emdash_help_never_to_a_file_a_wheel_lacks() -> None:
    # The rule (emdash._cli._help): docs/*.md, SECURITY.md and the README are not in a
    # wheel, so a message names `emdash help TOPIC` instead. The escape corpus's source
    # notes are data for the suite's maintainers and the doc generator names its files.
    exempt = {"_selfaudit/_corpus", "_docgen", "_cli/_help.py", "_cli/_scaffold.py"}
    offenders = []
    for package in ("emdash", "sandbox", "stdlib_shims"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT / package).as_posix()
            if package == "emdash" and any(rel.startswith(e) for e in exempt):
                continue
            for line, text in _message_strings(path):
                if re.search(r"docs/|\w\.md\b|\bREADME\b", text):
                    offenders.append(f"{package}/{rel}:{line}: {text[:80]!r}")
    assert offenders == []


def test_emdash_help_lists_topics_and_shows_them(tmp_path: Path) -> None:
    listing = CliRunner().invoke(main, ["help"])
    assert listing.exit_code == 0
    for name, topic in TOPICS.items():
        assert name in listing.stdout
        assert (ROOT / topic.file).is_file(), topic.file  # every topic has its document
    admin = CliRunner().invoke(main, ["help", "admin"])
    assert admin.stdout.startswith("# The plugin admin: Block Kit pages, widgets and settings")
    wrong = CliRunner().invoke(main, ["help", "admn"])
    assert wrong.exit_code == 2 and 'did you mean "admin"' in wrong.stderr


def test_help_without_the_documents_says_where_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wheel installed by pip: the package's parent is site-packages, without our docs
    # (another distribution's README.md there must not be shown as ours).
    (tmp_path / "README.md").write_text("# someone else's\n")
    monkeypatch.setattr(_help, "_source_root", lambda: tmp_path)
    text = _help.render_help("config")
    assert "someone else's" not in text
    assert text.startswith("config: emdash.toml and the commands (the README). This installation")
    assert "pip download --no-deps --no-binary :all: emdash-runtime" in text
