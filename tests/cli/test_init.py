"""``emdash init NAME``: the new plugin's own tests pass, in both modes, out of the box."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from emdash.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
    )


def test_init_writes_a_plugin_whose_tests_pass(tmp_path: Path) -> None:
    made = run("-m", "emdash", "init", "word-count", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    plugin = tmp_path / "word-count"
    assert made.stdout.splitlines()[0] == f"Created plugin word-count in {Path('word-count')}"
    assert sorted(str(p.relative_to(plugin)) for p in plugin.rglob("*") if p.is_file()) == [
        "README.md",
        "emdash-plugin.toml",
        "plugin.py",
        "tests/test_plugin.py",
    ]
    assert "both_modes" in (plugin / "tests" / "test_plugin.py").read_text()

    # The generated tests, run by pytest as the author would run them (a separate process,
    # in the plugin's directory: no conftest or settings of this repository apply).
    tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=plugin)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "4 passed" in tested.stdout  # two tests, sandboxed and native

    checked = run("-m", "emdash", "check", ".", cwd=plugin)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""  # not even a warning
    assert checked.stdout.startswith("OK: word-count 0.1.0 (1 files, ")


def test_init_refuses_a_bad_name_and_an_existing_directory(tmp_path: Path) -> None:
    bad = CliRunner().invoke(main, ["init", "Word Count", "--dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert bad.stderr.startswith('Error: "Word Count" is not a valid plugin id: ')
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    taken = CliRunner().invoke(main, ["init", "taken", "--dir", str(tmp_path)])
    assert taken.exit_code == 1
    assert "already exists and is not empty" in taken.stderr
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def test_the_readme_adds_the_plugin_from_the_site_not_from_its_own_directory(
    tmp_path: Path,
) -> None:
    # `emdash plugins add .` inside the plugin made the plugin directory a site: its
    # emdash.toml, database and media would have travelled with the plugin's files.
    assert CliRunner().invoke(main, ["init", "notes", "--dir", str(tmp_path)]).exit_code == 0
    readme = (tmp_path / "notes" / "README.md").read_text()
    assert "emdash plugins add ." not in readme
    assert "emdash plugins add path/to/notes" in readme
    assert "from your site's directory" in readme
