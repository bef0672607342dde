"""``emdash plugins add BUNDLE`` and ``emdash plugins upgrade``, as a user runs them: real
processes, real bundles, a real site (sandboxed plugins, SQLite on disk)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
from emdash import define_plugin

def install(event, ctx):
    ctx.kv.set("installs", (ctx.kv.get("installs") or 0) + 1)

def hi(route_ctx, ctx):
    return {{"version": "{version}", "installs": ctx.kv.get("installs")}}

plugin = define_plugin(hooks={{"plugin:install": install}}, routes={{"hi": hi}})
"""


def descriptor(version: str, capabilities: list[str]) -> str:
    return (
        f'id = "grow"\nversion = "{version}"\nentrypoint = "plugin.py"\n'
        f'capabilities = {json.dumps(capabilities)}\nallowedHosts = ["api.example.com"]\n'
    )


def bundle(
    path: Path, version: str, capabilities: list[str], extra: tarfile.TarInfo | None = None
) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in (
            ("grow/emdash-plugin.toml", descriptor(version, capabilities)),
            ("grow/plugin.py", CODE.format(version=version)),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return path


def emdash(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's emdash, in the child too
    return subprocess.run(
        [sys.executable, "-m", "emdash.cli", "--config", str(site / "emdash.toml"), *args],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def route(site: Path) -> dict[str, object]:
    result = emdash(site, "route", "grow", "hi")
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_bundle_install_consent_and_upgrade(tmp_path: Path) -> None:
    import hashlib

    site = tmp_path / "site"
    site.mkdir()
    (site / "emdash.toml").write_text('database = "site.db"\n')
    v1 = bundle(tmp_path / "grow-1.tar.gz", "1.0.0", ["network:request"])
    digest1 = hashlib.sha256(v1.read_bytes()).hexdigest()

    added = emdash(site, "plugins", "add", str(v1))
    assert added.returncode == 0, added.stderr
    assert added.stdout == "Added grow 1.0.0 (sandboxed)\n"
    assert f"Bundle grow-1.tar.gz: sha256 {digest1}" in added.stderr
    assert sorted(os.listdir(site / "plugins")) == ["grow"]
    assert 'path = "plugins/grow"' in (site / "emdash.toml").read_text()
    assert route(site) == {"version": "1.0.0", "installs": 1}

    # A new version asking for more: shown, and not applied without confirmation.
    v2 = bundle(tmp_path / "grow-2.tar.gz", "1.1.0", ["network:request", "users:read"])
    digest2 = hashlib.sha256(v2.read_bytes()).hexdigest()
    refused = emdash(site, "plugins", "upgrade", "grow", str(v2))
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[:5] == [
        "grow: version 1.0.0 -> 1.1.0",
        f"  bundle sha256 {digest1}",
        f"             -> {digest2}",
        "  + capability users:read",
        "grow asks for more access than was approved (+ lines above).",
    ]
    assert "Approve and upgrade? [y/N]" in refused.stdout
    assert route(site)["version"] == "1.0.0"
    assert sorted(os.listdir(site / "plugins")) == ["grow"]  # nothing staged is left

    upgraded = emdash(site, "plugins", "upgrade", "grow", str(v2), "--yes")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.splitlines()[-1] == "Upgraded grow 1.0.0 -> 1.1.0"
    assert route(site) == {"version": "1.1.0", "installs": 1}  # data kept, no reinstall
    assert sorted(os.listdir(site / "plugins")) == ["grow"]

    # Someone edits the installed descriptor: the plugin is refused until approved (the
    # rest of the site runs; the listing says what to do).
    text = (site / "plugins" / "grow" / "emdash-plugin.toml").read_text()
    grown = text.replace('"users:read"]', '"users:read", "network:request:unrestricted"]')
    (site / "plugins" / "grow" / "emdash-plugin.toml").write_text(grown)
    listed = emdash(site, "plugins", "list")
    assert listed.returncode == 0, listed.stderr
    assert "needs upgrade (emdash plugins upgrade grow)" in listed.stdout
    refused = emdash(site, "route", "grow", "hi")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        'Error: plugin grow is not loaded: Plugin "grow" now asks for more access than was '
        "approved: capabilities network:request:unrestricted. Review and approve it with: "
        "emdash plugins upgrade grow (from Python: rt.upgrade_plugin(path, approve=True)) "
        "(fix: emdash plugins upgrade grow)"
    )
    approved = emdash(site, "plugins", "upgrade", "grow", "--yes")
    assert approved.returncode == 0, approved.stderr
    assert "  + capability network:request:unrestricted" in approved.stdout
    assert emdash(site, "plugins", "list").returncode == 0


def test_a_hostile_bundle_installs_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "emdash.toml").write_text('database = "site.db"\n')
    link = tarfile.TarInfo("grow/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    evil = bundle(tmp_path / "evil.tgz", "1.0.0", [], extra=link)
    result = emdash(site, "plugins", "add", str(evil))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: Plugin bundle {evil}: member 'grow/passwd' is a symbolic link (to "
        "'/etc/passwd'); bundles may hold only regular files and directories. Replace links "
        "with copies of the files."
    )
    assert not (site / "plugins").exists() or os.listdir(site / "plugins") == []
    assert "plugins" not in (site / "emdash.toml").read_text().replace('"site.db"', "")


def test_an_upgrade_that_does_not_load_puts_the_old_copy_back(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "emdash.toml").write_text('database = "site.db"\n')
    assert (
        emdash(site, "plugins", "add", str(bundle(tmp_path / "g1.tgz", "1.0.0", []))).returncode
        == 0
    )
    broken = tmp_path / "g2.tgz"
    with tarfile.open(broken, "w:gz") as tar:
        for name, text in (
            ("emdash-plugin.toml", descriptor("2.0.0", [])),
            ("plugin.py", "import os\n"),  # refused by the sandbox's import rules
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = emdash(site, "plugins", "upgrade", "grow", str(broken), "--yes")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "grow" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(site / "plugins")) == ["grow"]
    assert route(site) == {"version": "1.0.0", "installs": 1}
