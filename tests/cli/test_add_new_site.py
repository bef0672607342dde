"""``emdash plugins add`` where no site exists yet: it says it created one, and a plugin it
refuses leaves nothing behind (a new user's first ``add`` is often in the wrong directory)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from emdash.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_add_without_a_site_says_it_created_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plugins", "add", "--trusted", "hello"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Added plugin-hello ")
    assert f"Created {tmp_path / 'emdash.toml'}: a new site (database emdash.db)" in result.stderr
    assert (tmp_path / "emdash.toml").exists() and (tmp_path / "emdash.db").exists()
    # A second add into the site it made does not say so again.
    shutil.copytree(EXAMPLES / "forms", tmp_path / "forms")
    again = CliRunner().invoke(main, ["plugins", "add", "--trusted", "forms"])
    assert again.exit_code == 0, again.output
    assert "Created" not in again.stderr


def test_a_refused_plugin_leaves_no_new_site_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "emdash-plugin.toml").write_text('id = "broken"\nentrypoint = "plugin.py"\n')
    (broken / "plugin.py").write_text("from emdash import define_plugin\nplugin = 1\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plugins", "add", "--trusted", "broken"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_a_refused_plugin_keeps_an_existing_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["plugins", "add", "--trusted", "hello"]).exit_code == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "emdash-plugin.toml").write_text('id = "broken"\nentrypoint = "plugin.py"\n')
    (broken / "plugin.py").write_text("plugin = 1\n")
    assert CliRunner().invoke(main, ["plugins", "add", "--trusted", "broken"]).exit_code == 1
    assert (tmp_path / "emdash.db").exists() and (tmp_path / "emdash.toml").exists()
    listed = CliRunner().invoke(main, ["plugins", "list"])
    assert "plugin-hello" in listed.stdout
