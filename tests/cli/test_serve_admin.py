"""``emdash serve``'s app: what a site admin changes in the admin UI survives a restart.

The app is the one ``serve`` runs (:func:`emdash._cli._main.site_app`), over a real site on
disk, driven through the admin UI's forms; "a restart" is the next CLI command, which loads
the site from ``emdash.toml`` again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from emdash._cli._config import load_config, open_runtime
from emdash._cli._main import site_app
from emdash.asgi import create_app
from emdash.cli import main

from ..asgi.admin_client import ADMIN, AdminClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "serve-token-0123456789abcdef"


def run(site: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--config", str(site / "emdash.toml"), *args], catch_exceptions=False
    )


def make_site(tmp_path: Path) -> Path:
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
    assert run(tmp_path, "plugins", "add", "--trusted", str(tmp_path / "hello")).exit_code == 0
    return tmp_path


def test_disabling_in_the_admin_ui_is_written_to_the_config(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    config = load_config(site / "emdash.toml")
    with open_runtime(config) as rt:
        client = AdminClient(site_app(config, rt, TOKEN))
        assert client.sign_in(TOKEN).status_code == 303
        client.get("plugins")
        assert client.post("plugins/plugin-hello/disable").status_code == 303
        assert "Plugin plugin-hello disabled." in client.get("plugins").text
    assert load_config(site / "emdash.toml").plugins[0].enabled is False
    # The next start loads it disabled (before, emdash.toml turned it back on).
    listed = run(site, "--json", "plugins", "list")
    assert '"enabled": false' in listed.stdout

    config = load_config(site / "emdash.toml")
    with open_runtime(config) as rt:
        client = AdminClient(site_app(config, rt, TOKEN))
        client.sign_in(TOKEN)
        client.get("plugins")
        client.post("plugins/plugin-hello/enable")
    assert load_config(site / "emdash.toml").plugins[0].enabled is True


def test_a_toggle_that_cannot_be_recorded_says_so(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    config = load_config(site / "emdash.toml")

    def refuse(plugin_id: str, enabled: bool) -> None:
        raise OSError(30, "Read-only file system")

    with open_runtime(config) as rt:
        client = AdminClient(create_app(rt, token=TOKEN, on_plugin_toggled=refuse))
        client.sign_in(TOKEN)
        client.get("plugins")
        r = client.post("plugins/plugin-hello/disable")
        assert r.status_code == 303 and r.headers["location"] == ADMIN + "plugins"
        page = client.get("plugins").text
        assert not rt.get_plugin("plugin-hello").enabled
    assert "Plugin plugin-hello disabled until the site restarts" in page
    assert "Read-only file system" in page
    assert "emdash plugins disable plugin-hello" in page
