"""Consent against a hostile descriptor author: spellings that must not widen access
unseen, and the sandbox limits a descriptor sets for itself."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from emdash import ConsentRequiredError, Limits, ManifestError, PluginDescriptor, Runtime
from emdash._runtime._consent import AccessDiff, Approval

CODE = """
from emdash import define_plugin

def hi(route_ctx, ctx):
    return {"ok": True}

plugin = define_plugin(routes={"hi": hi})
"""


def desc(**fields: Any) -> PluginDescriptor:
    return PluginDescriptor.from_dict({"id": "grow", **fields})


def diff(approved: dict[str, Any], wanted: dict[str, Any]) -> AccessDiff:
    return AccessDiff.between(Approval.of(desc(**approved)), Approval.of(desc(**wanted)))


# -- spellings (these held: each is a regression guard) -------------------------------------


def test_a_deprecated_alias_is_compared_by_its_canonical_name() -> None:
    grown = diff({"capabilities": ["network:request"]}, {"capabilities": ["network:fetch:any"]})
    assert grown.added_capabilities == ("network:request:unrestricted",)


def test_case_and_whitespace_variants_of_a_capability_are_not_capabilities() -> None:
    for name in ("Users:Read", " users:read", "users:read ", "USERS:READ"):
        with pytest.raises(ManifestError, match="Invalid capability"):
            desc(capabilities=[name])


@pytest.mark.parametrize(
    ("approved", "wanted", "needs_consent"),
    [
        (["api.example.com"], ["API.Example.COM."], False),  # normalised, same host
        (["api.example.com:443"], ["api.example.com"], True),  # any port is wider
        (["api.example.com"], ["api.example.com:8443"], False),  # any port covers it
        (["*.example.com"], ["example.com:8443"], False),  # the apex is covered at run time too
        (["*.example.com"], ["*"], True),
        (["*.example.com"], ["*.com"], True),
        (["example.com"], ["*.example.com"], True),
        (["api.example.com"], ["api.example.com.evil.net"], True),
        (["*.example.com"], ["evilexample.com"], True),
    ],
)
def test_host_coverage(approved: list[str], wanted: list[str], needs_consent: bool) -> None:
    caps = ["network:request"]
    grown = diff(
        {"capabilities": caps, "allowedHosts": approved},
        {"capabilities": caps, "allowedHosts": wanted},
    )
    assert grown.escalates is needs_consent


# -- limits: a descriptor sets its own sandbox limits ---------------------------------------


def test_raised_limits_need_consent() -> None:
    # The docs say the operator approves a descriptor's [limits] with it; the approval did
    # not record them, so an edit on disk raised CPU, memory and wall time silently.
    grown = AccessDiff.between(
        Approval.of(desc()),
        Approval.of(desc(limits={"cpu_ms": 600_000, "memory_mb": 16_384, "wall_ms": 50})),
        default_limits=Limits(),
    )
    assert grown.escalates
    assert grown.raised_limits == ("cpu_ms 50 -> 600000", "memory_mb 128 -> 16384")
    assert "+ limits cpu_ms 50 -> 600000" in grown.lines()


def test_turning_fresh_worker_off_needs_consent_and_lower_limits_do_not() -> None:
    approved = Approval.of(desc(limits={"fresh_worker": True, "cpu_ms": 100}))
    off = AccessDiff.between(approved, Approval.of(desc(limits={"cpu_ms": 100})))
    assert off.raised_limits == ("fresh_worker true -> false",)
    lower = AccessDiff.between(
        approved, Approval.of(desc(limits={"fresh_worker": True, "cpu_ms": 60}))
    )
    assert not lower.escalates and lower.changed
    # Dropping the descriptor's limits leaves the operator's own defaults: no consent.
    dropped = AccessDiff.between(approved, Approval.of(desc()), default_limits=Limits())
    assert not dropped.escalates and dropped.changed


def test_limits_within_the_site_defaults_need_no_consent() -> None:
    same = AccessDiff.between(
        Approval.of(desc()),
        Approval.of(desc(limits={"cpu_ms": 200})),
        default_limits=Limits(cpu_ms=500),
    )
    assert not same.escalates and same.changed


def test_an_approval_records_limits_and_reads_rows_without_them() -> None:
    approval = Approval.of(desc(limits={"cpu_ms": 200}))
    again = Approval.from_json(approval.to_json())
    assert again == approval and again.limits is not None and again.limits["cpu_ms"] == 200
    # Without a [limits] table nothing is written: the site's defaults apply.
    assert json.loads(Approval.of(desc()).to_json()) == {"capabilities": [], "allowedHosts": []}
    for bad in ('{"capabilities": [], "allowedHosts": [], "limits": {"cpu_ms": "x"}}',):
        with pytest.raises(ValueError):
            Approval.from_json(bad)


def write_plugin(directory: Path, limits: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "emdash-plugin.toml").write_text(
        'id = "grow"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n' + limits
    )
    (directory / "plugin.py").write_text(CODE)
    return directory


@pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "native"])
def test_a_descriptor_edited_to_raise_its_limits_is_refused_until_upgraded(
    tmp_path: Path, trusted: bool
) -> None:
    db, plugin = tmp_path / "site.db", write_plugin(tmp_path / "grow")
    with Runtime(db) as rt:
        rt.add_plugin(plugin, trusted=trusted)
    write_plugin(plugin, "[limits]\ncpu_ms = 600000\nwall_ms = 3600000\n")
    with Runtime(db) as rt:
        with pytest.raises(ConsentRequiredError, match="limits cpu_ms 50 -> 600000"):
            rt.add_plugin(plugin, trusted=trusted)
        plan = rt.upgrade_plan(plugin)
        assert plan.needs_consent
        assert "  + limits wall_ms 30000 -> 3600000" in plan.lines()
        rt.upgrade_plugin(plugin, approve=True, trusted=trusted)
        assert rt.invoke_route("grow", "hi") == {"ok": True}
    # closing(): a connection's own context manager commits but does not close it.
    with closing(sqlite3.connect(db)) as conn:
        (text,) = conn.execute("SELECT approved FROM _emdash_plugins").fetchone()
    assert json.loads(text)["limits"]["cpu_ms"] == 600_000


# -- upgrading a loaded plugin: the same load checks as add, and nothing half-done ----------

PUBLIC_ADMIN = (
    "from emdash import define_plugin, RouteConfig\n"
    "plugin = define_plugin(routes={'hi': lambda r, c: {'ok': 2}, "
    "'admin': RouteConfig(lambda r, c: {'secret': 1}, public=True)})\n"
)


@pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "native"])
def test_an_in_place_upgrade_runs_the_admin_surface_check_of_add(
    tmp_path: Path, trusted: bool
) -> None:
    # add refuses a public "admin" route; an upgrade of a loaded plugin skipped the check,
    # so new code could publish its admin answers to anyone.
    plugin = write_plugin(tmp_path / "grow")
    with Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(plugin, trusted=trusted)
        before = rt.store.plugin_registry.get("grow")
        (plugin / "plugin.py").write_text(PUBLIC_ADMIN)
        with pytest.raises(ManifestError, match='"admin" route public'):
            rt.upgrade_plugin(plugin, approve=True, trusted=trusted)
        assert rt.invoke_route("grow", "hi") == {"ok": True}  # the old code still serves
        assert rt.store.plugin_registry.get("grow") == before


@pytest.mark.parametrize("trusted", [False, True], ids=["sandboxed", "native"])
def test_an_upgrade_that_fails_to_load_records_no_approval(tmp_path: Path, trusted: bool) -> None:
    plugin = write_plugin(tmp_path / "grow")
    with Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(plugin, trusted=trusted)
        rt.store.kv_entries.set("grow", "note", "kept")
        before = rt.store.plugin_registry.get("grow")
        write_plugin(plugin, "[limits]\ncpu_ms = 9000\n")
        (plugin / "plugin.py").write_text("plugin = 1\n")  # not a define_plugin result
        with pytest.raises(ManifestError):
            rt.upgrade_plugin(plugin, approve=True, trusted=trusted)
        assert rt.store.plugin_registry.get("grow") == before
        assert rt.invoke_route("grow", "hi") == {"ok": True}
        assert rt.store.kv_entries.get("grow", "note") == "kept"


# -- the review itself: what the operator reads must be what is approved ---------------------


@pytest.mark.parametrize(
    "version",
    [
        "1.0.0\x1b[8m",  # SGR "conceal": the "+ capability" lines after it would not show
        "1.0.0\n  access unchanged",  # a forged review line
        "1.0.0\u202e",  # right-to-left override
        "1.0.0 (no new access)",
    ],
)
def test_a_version_cannot_carry_text_into_the_upgrade_review(version: str) -> None:
    # The version is printed in the review ("grow: version 1.0.0 -> ...") that the operator
    # approves from; only the semver prefix was checked, so anything could follow it.
    with pytest.raises(ManifestError, match="Invalid plugin version"):
        desc(version=version)


@pytest.mark.parametrize("version", ["1.0.0", "1.0.0-rc.1", "1.0.0+build.5", "2.1.0rc1"])
def test_ordinary_versions_still_load(version: str) -> None:
    assert desc(version=version).version == version
