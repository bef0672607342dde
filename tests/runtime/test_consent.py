"""Consent: the access approved at add is recorded; a descriptor that grows is refused until
upgraded; upgrades keep data and state. Both modes, real sandbox workers, real SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import emdash
from emdash import ConsentRequiredError, NotFoundError, Runtime
from emdash._runtime._consent import AccessDiff, Approval
from emdash.testing import Mode, PluginHarness

MODES = pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "native"])

CODE = """
from emdash import define_plugin

VERSION = "{version}"

def install(event, ctx):
    ctx.kv.set("installs", (ctx.kv.get("installs") or 0) + 1)

def hi(route_ctx, ctx):
    return {{"version": VERSION, "installs": ctx.kv.get("installs"), "note": ctx.kv.get("note")}}

plugin = define_plugin(hooks={{"plugin:install": install}}, routes={{"hi": hi}})
"""


def write_plugin(
    directory: Path,
    *,
    version: str = "1.0.0",
    capabilities: tuple[str, ...] = ("network:request",),
    hosts: tuple[str, ...] = ("api.example.com",),
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "emdash-plugin.toml").write_text(
        f'id = "grow"\nversion = "{version}"\nentrypoint = "plugin.py"\n'
        f"capabilities = {json.dumps(list(capabilities))}\n"
        f"allowedHosts = {json.dumps(list(hosts))}\n"
    )
    (directory / "plugin.py").write_text(CODE.format(version=version))
    return directory


@MODES
def test_a_grown_descriptor_is_refused_until_upgraded(tmp_path: Path, trusted: bool) -> None:
    db, plugin = tmp_path / "site.db", write_plugin(tmp_path / "grow")
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=trusted)
        rt.store.kv_entries.set("grow", "note", "kept")
        approved = json.loads(rt.store.plugin_registry.get("grow")["approved"])  # type: ignore[index]
        assert approved == {
            "capabilities": ["network:request"],
            "allowedHosts": ["api.example.com"],
        }

    # The author (or anyone with write access to the directory) edits the descriptor.
    write_plugin(
        plugin,
        version="1.1.0",
        capabilities=("network:request:unrestricted", "users:read"),
        hosts=("api.example.com", "evil.example.net"),
    )
    with Runtime(db) as rt:
        with pytest.raises(ConsentRequiredError) as info:
            rt.add_plugin(plugin, trusted=trusted)
        assert info.value.plugin_id == "grow"
        assert str(info.value) == (
            'Plugin "grow" now asks for more access than was approved: capabilities '
            "network:request:unrestricted, users:read; allowed hosts evil.example.net. Review "
            "and approve it with: emdash plugins upgrade grow (from Python: "
            "rt.upgrade_plugin(path, approve=True))"
        )
        assert isinstance(info.value, emdash.ManifestError)
        assert rt.plugins() == []

        plan = rt.upgrade_plan(plugin)
        assert (plan.old_version, plan.new_version, plan.needs_consent) == ("1.0.0", "1.1.0", True)
        assert plan.diff.lines() == [
            "+ capability network:request:unrestricted",
            "+ capability users:read",
            "+ host evil.example.net",
        ]
        with pytest.raises(ConsentRequiredError):
            rt.upgrade_plugin(plugin)  # approve defaults to False

        info2 = rt.upgrade_plugin(plugin, approve=True)
        assert info2.trusted is trusted and info2.enabled
        # Data kept, no second install (EmDash has no upgrade hook; the plugin stays installed).
        assert rt.invoke_route("grow", "hi") == {"version": "1.1.0", "installs": 1, "note": "kept"}
        assert rt.store.plugin_registry.get("grow")["version"] == "1.1.0"  # type: ignore[index]

    with Runtime(db) as rt:  # approved now: later boots load it
        rt.add_plugin(plugin, trusted=trusted)
        assert rt.invoke_route("grow", "hi")["version"] == "1.1.0"


@MODES
def test_upgrade_swaps_a_loaded_plugin_in_place(tmp_path: Path, trusted: bool) -> None:
    plugin = write_plugin(tmp_path / "grow")
    with Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(plugin, trusted=trusted)
        assert rt.invoke_route("grow", "hi")["version"] == "1.0.0"
        rt.disable_plugin("grow")

        # Same access, new code: no consent needed; the disabled state is kept.
        write_plugin(plugin, version="2.0.0")
        assert not rt.upgrade_plan(plugin).needs_consent
        info = rt.upgrade_plugin(plugin)
        assert rt.get_plugin("grow") is info and not info.enabled
        rt.enable_plugin("grow")
        assert rt.invoke_route("grow", "hi") == {"version": "2.0.0", "installs": 1, "note": None}

        # Growing while loaded needs consent too; refused, the loaded code stays.
        write_plugin(plugin, version="3.0.0", capabilities=("network:request", "users:read"))
        with pytest.raises(ConsentRequiredError, match="capabilities users:read"):
            rt.upgrade_plugin(plugin)
        assert rt.invoke_route("grow", "hi")["version"] == "2.0.0"
        rt.upgrade_plugin(plugin, approve=True)
        assert rt.invoke_route("grow", "hi")["version"] == "3.0.0"

        # Upgrading with the very same files twice keeps the plugin working (a sandboxed
        # reload of identical code shares its workers; they must not be closed).
        rt.upgrade_plugin(plugin)
        assert rt.invoke_route("grow", "hi")["version"] == "3.0.0"


@MODES
def test_asking_for_less_is_accepted_and_recorded(tmp_path: Path, trusted: bool) -> None:
    db = tmp_path / "site.db"
    plugin = write_plugin(tmp_path / "grow", hosts=("api.example.com", "cdn.example.com"))
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=trusted)
    write_plugin(plugin, capabilities=(), hosts=())
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=trusted)  # silently accepted
        approved = Approval.from_json(rt.store.plugin_registry.get("grow")["approved"])  # type: ignore[index]
        assert approved == Approval((), ())
    write_plugin(plugin)  # growing back to what was once approved asks again
    with Runtime(db) as rt, pytest.raises(ConsentRequiredError):
        rt.add_plugin(plugin, trusted=trusted)


def test_hosts_covered_by_an_approved_entry_need_no_consent() -> None:
    def added(approved: list[str], wanted: list[str]) -> list[str]:
        diff = AccessDiff.between(Approval((), tuple(approved)), Approval((), tuple(wanted)))
        return list(diff.added_hosts)

    assert added(["*.example.com"], ["api.example.com", "example.com", "*.a.example.com"]) == []
    assert added(["*"], ["anything.net", "x.org:8443"]) == []
    assert added(["api.example.com"], ["api.example.com:8443"]) == []
    assert added(["api.example.com:443"], ["api.example.com", "api.example.com:8443"]) == [
        "api.example.com",
        "api.example.com:8443",
    ]
    assert added(["*.example.com"], ["*", "example.net"]) == ["*", "example.net"]
    assert added(["api.example.com"], ["*.api.example.com"]) == ["*.api.example.com"]


def test_upgrading_a_plugin_never_installed_says_what_to_do(tmp_path: Path) -> None:
    with Runtime(tmp_path / "site.db") as rt, pytest.raises(NotFoundError) as info:
        rt.upgrade_plugin(write_plugin(tmp_path / "grow"), approve=True)
    assert "emdash plugins add PATH" in str(info.value)


def test_a_row_from_before_consent_records_what_it_asks_then(tmp_path: Path) -> None:
    db, plugin = tmp_path / "site.db", write_plugin(tmp_path / "grow")
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=True)
    with sqlite3.connect(db) as conn:  # as a database written before migration 9 left it
        conn.execute("UPDATE _emdash_plugins SET approved = NULL")
    conn.close()
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=True)
        assert rt.store.plugin_registry.get("grow")["approved"] is not None  # type: ignore[index]


@pytest.mark.parametrize("mode", ["sandboxed", "native"])
def test_the_harness_on_a_kept_database_asks_for_consent_too(tmp_path: Path, mode: Mode) -> None:
    db, plugin = tmp_path / "site.db", write_plugin(tmp_path / "grow")
    with PluginHarness(plugin, sandbox=mode, database=db) as h:
        assert h.route("hi")["installs"] == 1
    with pytest.raises(ConsentRequiredError, match="capabilities users:read"):
        PluginHarness(plugin, sandbox=mode, database=db, capabilities=["users:read"])
    with PluginHarness(plugin, sandbox=mode, database=db, capabilities=[]) as h:  # less: fine
        assert h.route("hi")["installs"] == 1


def test_an_unreadable_recorded_approval_is_an_error_not_a_blank_cheque(tmp_path: Path) -> None:
    db, plugin = tmp_path / "site.db", write_plugin(tmp_path / "grow")
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=True)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE _emdash_plugins SET approved = '[1]'")
    conn.close()
    with Runtime(db) as rt, pytest.raises(emdash.ConfigError) as info:
        rt.add_plugin(plugin, trusted=True)
    assert "emdash plugins remove grow" in str(info.value)
