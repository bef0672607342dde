"""Loading a sandboxed plugin is budgeted and counted; repeated limit kills back off; failed
invocations are audited with the host's CPU figure.

Real runtime, real SQLite, real forked workers. The plugin has CPU-heavy module-level code
(it runs again in every worker the host starts) and a route that always exceeds its
``cpu_ms``: before, each invocation made the host fork a worker and re-run that module code.
Verdicts are structural (which error, how many loads, which audit rows); the back-off is
held in place by freezing the pool's tracker clock, never by timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import ManifestError, PluginDescriptor
from emdash._shared._errors import CpuLimitExceeded, SandboxUnavailableError

PLUGIN = """
from emdash import define_plugin, RouteConfig

# Module-level work: paid again by every new worker.
TABLE = [i * i % 7 for i in range(20000)]

def burn(route_ctx, ctx):
    while True:
        pass

def fine(route_ctx, ctx):
    return len(TABLE)

def after_save(event, ctx):
    while True:
        pass

plugin = define_plugin(
    hooks={"content:afterSave": after_save},
    routes={"burn": RouteConfig(burn, public=True), "fine": RouteConfig(fine, public=True)},
)
"""


def _rows(rt: emdash.Runtime, pid: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in rt.audit_log(limit=500, plugin_id=pid) if r["kind"] == kind]


def _add(rt: emdash.Runtime, pid: str, **limits: Any) -> Any:
    return rt.add_plugin(
        {"id": pid, "capabilities": ["content:read"], "limits": {"cpu_ms": 50, **limits}},
        source={"plugin.py": PLUGIN},
        trusted=False,
    )


def test_loads_are_counted_and_audited(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1) as rt:
        info = _add(rt, "loader")
        host = info.host
        assert host.limits.load_cpu_ms == 2_000  # the default
        assert host._sb_limits.load_cpu_ms == 2_000  # and what the workers get
        assert host.loads == 1 and host.load_cpu_ms > 0
        (row,) = _rows(rt, "loader", "load")
        assert (row["name"], row["outcome"], row["limit"]) == ("load", "ok", None)
        assert row["cpuMs"] is not None and row["cpuMs"] > 0
        assert rt.invoke_route("loader", "fine") == 20000
        assert host.loads == 1  # a served call loads nothing


def test_a_cpu_limit_failure_is_audited_with_the_hosts_cpu_figure(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1) as rt:
        _add(rt, "burner")
        with pytest.raises(CpuLimitExceeded):
            rt.invoke_route("burner", "burn")
        (row,) = _rows(rt, "burner", "route")
        assert (row["name"], row["outcome"], row["limit"]) == ("burn", "limit", "cpu_ms")
        assert row["cpuMs"] is not None and row["cpuMs"] >= 50
        # The same for a hook (the pipeline's audit): afterSave errors do not stop the save.
        rt.content.create("posts", {"title": "x"})
        (hook,) = _rows(rt, "burner", "hook")
        assert (hook["name"], hook["outcome"], hook["limit"]) == (
            "content:afterSave",
            "limit",
            "cpu_ms",
        )
        assert hook["cpuMs"] is not None and hook["cpuMs"] >= 50


def test_repeated_cpu_limit_kills_back_off_and_name_the_plugin(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1) as rt:
        info = _add(rt, "always")
        pool = info.host._pool
        frozen = pool._crashes.clock()
        pool._crashes.clock = lambda: frozen  # the back-off cannot expire during the test
        for _ in range(4):  # three free limit kills, then one that counts
            with pytest.raises(CpuLimitExceeded):
                rt.invoke_route("always", "burn")
        loads = info.host.loads
        assert loads == 4  # the first worker and one per kill, each audited
        assert len(_rows(rt, "always", "load")) == 4
        for _ in range(3):
            with pytest.raises(SandboxUnavailableError) as err:
                rt.invoke_route("always", "burn")
            message = str(err.value)
            assert message.startswith("Plugin sandbox unavailable for always: ")
            assert "(repeated CPU-time limit kills); backing off: a new worker starts in " in (
                message
            )
            # When the back-off ends (the tracker's clock is frozen: the full first delay).
            assert err.value.retry_after_s == 1.0  # type: ignore[attr-defined]
        # Failing fast: no new worker, no module code run again.
        assert info.host.loads == loads and pool.worker_pids() == []
        assert not info.host.is_healthy()


def test_module_code_over_its_load_budget(tmp_path: Path) -> None:
    heavy = "x = 0\nwhile True:\n    x += 1\n"
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1) as rt:
        with pytest.raises(CpuLimitExceeded) as err:
            rt.add_plugin(
                {"id": "heavy", "limits": {"load_cpu_ms": 100}},
                source={"plugin.py": heavy},
                trusted=False,
            )
        message = str(err.value)
        assert message.startswith("Plugin heavy exceeded its load CPU limit of 100ms")
        assert "raise limits.load_cpu_ms in the plugin descriptor" in message
        (row,) = _rows(rt, "heavy", "load")
        assert (row["outcome"], row["limit"]) == ("limit", "load_cpu_ms")
        assert row["cpuMs"] is not None and row["cpuMs"] >= 100


def test_the_runtime_default_limits_apply(tmp_path: Path) -> None:
    limits = emdash.Limits(load_cpu_ms=750)
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1, limits=limits) as rt:
        info = rt.add_plugin(
            {"id": "plain", "capabilities": ["content:read"]},
            source={"plugin.py": PLUGIN},
            trusted=False,
        )
        host: Any = info.host
        assert host._sb_limits.load_cpu_ms == 750


@pytest.mark.parametrize("bad", [0, -1, 60_001, 1.5])
def test_load_cpu_ms_is_validated(bad: Any) -> None:
    with pytest.raises(ManifestError, match="load_cpu_ms"):
        PluginDescriptor.load({"id": "p", "limits": {"load_cpu_ms": bad}})
