"""Consent through the CLI against a plugin author who edits files on disk: the id of an
installed plugin, and the descriptor between the upgrade review and its approval."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import tarfile
from contextlib import closing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from emdash import ConsentRequiredError
from emdash._cli import _install
from emdash._cli._config import load_config, open_runtime
from emdash._cli._main import main
from emdash._hosting._bundle import extract_bundle, open_bundle
from emdash._shared._errors import EmDashError

CODE = """
from emdash import define_plugin

def hi(route_ctx, ctx):
    return {"ok": True}

plugin = define_plugin(routes={"hi": hi})
"""


def write_plugin(directory: Path, plugin_id: str, capabilities: list[str]) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "emdash-plugin.toml").write_text(
        f'id = "{plugin_id}"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
        f"capabilities = {json.dumps(capabilities)}\n"
    )
    (directory / "plugin.py").write_text(CODE)


def run(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "emdash.toml"), *args])


def registry(site: Path) -> dict[str, str | None]:
    with closing(sqlite3.connect(site / "site.db")) as db:  # closes, not only commits
        return dict(db.execute("SELECT id, approved FROM _emdash_plugins").fetchall())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    write_plugin(tmp_path / "grow", "grow", ["content:read"])
    added = run(tmp_path, "plugins", "add", str(tmp_path / "grow"))
    assert added.exit_code == 0, added.output
    return tmp_path


def test_changing_the_id_on_disk_does_not_install_a_new_plugin_without_consent(
    site: Path,
) -> None:
    # The author renames the plugin and asks for more: before, every later command loaded
    # it as a brand-new plugin "grown" and recorded users:read as approved, silently.
    write_plugin(site / "grow", "grown", ["content:read", "users:read"])
    # Left out of the site (see test_cli_unloaded), with the reason and the fix.
    listed = run(site, "plugins", "list")
    assert listed.exit_code == 0, listed.output
    assert "failed to load (emdash plugins show grow)" in listed.stdout
    for command in (["plugins", "show", "grow"], ["route", "grown", "hi"]):
        result = run(site, *command)
        assert '"grow"' in result.output and '"grown"' in result.output
        assert "emdash plugins remove grow" in result.output
    assert run(site, "route", "grown", "hi").exit_code == 1
    assert set(registry(site)) == {"grow"}  # nothing approved for "grown"


def test_the_id_is_pinned_in_emdash_toml_and_the_hint_works(site: Path) -> None:
    config = load_config(site / "emdash.toml")
    assert [entry.id for entry in config.plugins] == ["grow"]
    write_plugin(site / "grow", "grown", ["users:read"])
    refused = run(site, "route", "grow", "hi")
    assert refused.exit_code == 1 and 'Put id = "grow" back' in refused.output
    assert "Traceback" not in refused.output
    write_plugin(site / "grow", "grow", ["content:read"])  # what the hint says
    removed = run(site, "plugins", "remove", "grow")
    assert removed.exit_code == 0, removed.output
    assert load_config(site / "emdash.toml").plugins == []
    assert registry(site) == {}  # loaded again, so uninstalled properly


def test_an_entry_without_a_pinned_id_still_loads(site: Path) -> None:
    # Hand-written entries (and sites from before the pin) have no id: they load as before.
    (site / "emdash.toml").write_text('database = "site.db"\n[[plugins]]\npath = "grow"\n')
    result = run(site, "route", "grow", "hi")
    assert result.exit_code == 0, result.output


def test_the_upgrade_applies_exactly_what_was_reviewed(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The review shows "+ capability media:read"; while the operator reads it the author
    # adds users:read too. The approval must be what was shown, or nothing.
    write_plugin(site / "grow", "grow", ["content:read", "media:read"])

    def operator_confirms(*_args: object, **_kwargs: object) -> bool:
        write_plugin(site / "grow", "grow", ["content:read", "media:read", "users:read"])
        return True

    monkeypatch.setattr(click, "confirm", operator_confirms)
    config = load_config(site / "emdash.toml")
    with pytest.raises(EmDashError, match="changed while the upgrade was reviewed"):
        _install.upgrade(config, "grow", None, yes=False)
    approved = registry(site)["grow"]
    assert approved is not None and "users:read" not in approved
    assert "media:read" not in approved  # nothing was approved at all


def test_a_crash_between_the_file_swap_and_the_approval_fails_closed(tmp_path: Path) -> None:
    # The upgrade swaps the files in first and records the approval second. A process that
    # dies in between leaves new files under the old approval: every load checks again,
    # so the wider descriptor is refused until it is reviewed, never loaded unapproved.
    def bundle(path: Path, capabilities: list[str]) -> Path:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, text in (
                (
                    "emdash-plugin.toml",
                    'id = "grow"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
                    f"capabilities = {json.dumps(capabilities)}\n",
                ),
                ("plugin.py", CODE),
            ):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        path.write_bytes(gzip.compress(raw.getvalue()))
        return path

    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    added = run(tmp_path, "plugins", "add", str(bundle(tmp_path / "g1.tgz", ["content:read"])))
    assert added.exit_code == 0, added.output
    config = load_config(tmp_path / "emdash.toml")
    staged, _ = extract_bundle(
        open_bundle(bundle(tmp_path / "g2.tgz", ["users:read"])), tmp_path / "plugins"
    )
    _install._swap_in(config, "grow", staged, config.plugin_path(config.plugins[0]))
    # ... the process dies here ...
    with pytest.raises(ConsentRequiredError, match="users:read"):
        open_runtime(load_config(tmp_path / "emdash.toml")).close()
    approved = registry(tmp_path)["grow"]
    assert approved is not None and "users:read" not in approved


def test_an_upgrade_pins_the_id_of_an_entry_written_by_hand(site: Path) -> None:
    (site / "emdash.toml").write_text('database = "site.db"\n[[plugins]]\npath = "grow"\n')
    write_plugin(site / "grow", "grow", ["content:read", "media:read"])
    upgraded = run(site, "plugins", "upgrade", "grow", "--yes")
    assert upgraded.exit_code == 0, upgraded.output
    assert [e.id for e in load_config(site / "emdash.toml").plugins] == ["grow"]
