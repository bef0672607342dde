"""The audit records the host's measurement of a sandboxed plugin's CPU time, never the
figure its worker reports about itself (which a worker that broke out can forge).

Real runtime, real workers. The breakout is played by the sandbox's test seam (plain Python
in the plugin's own worker, ``raw_exec_for_tests``), which patches the worker's own CPU
report to zero for every later call, as escaped native code could.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import emdash

PLUGIN = """
from emdash import define_plugin, RouteConfig

def burn(route_ctx, ctx):
    total = 0
    for i in range(300000):
        total += i % 7
    return total

plugin = define_plugin(routes={"burn": RouteConfig(burn, public=True)})
"""

# Constant clocks: every later call reports 0 ms and 0 KB (the worker reads its CPU time
# at the start of an operation with _process_cpu and at the end, with its peak RSS, with
# resource.getrusage).
FORGE_SELF_REPORTS = """
import types
import sandbox._worker as w
zero = types.SimpleNamespace(ru_utime=0.0, ru_stime=0.0, ru_maxrss=0)
w.resource = types.SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda who: zero)
w._process_cpu = lambda: 0.0
result = 'patched'
"""


def test_the_audit_records_the_hosts_cpu_figure(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1) as rt:
        rt._sandbox_support().allow_raw_exec_for_tests = True
        info = rt.add_plugin(
            {"id": "burner", "limits": {"cpu_ms": 5000}},
            source={"plugin.py": PLUGIN},
            trusted=False,
        )
        pool = info.host._pool  # type: ignore[attr-defined]
        (pid,) = pool.worker_pids()
        forged = pool.raw_exec_for_tests(FORGE_SELF_REPORTS)
        assert forged.value == "patched"
        # From now on this worker claims 0 ms and 0 KB for everything it does.
        lie = pool.raw_exec_for_tests("result = sum(range(300000))")
        assert lie.worker_cpu_ms == 0.0 and lie.cpu_ms > 0.0
        rt.invoke_route("burner", "burn")
        assert pool.worker_pids() == [pid]  # the same, lying, worker ran the route
        (record,) = rt.audit_log(limit=1, plugin_id="burner")
        assert (record["kind"], record["name"], record["outcome"]) == ("route", "burn", "ok")
        # 300 000 loop turns under the language layer's guards: milliseconds of CPU, which
        # the worker reported as 0.
        assert record["cpuMs"] is not None and record["cpuMs"] >= 1.0


COUNTER = """
from emdash import define_plugin, RouteConfig

calls = []

def count(route_ctx, ctx):
    calls.append(1)
    return len(calls)

plugin = define_plugin(routes={"count": RouteConfig(count, public=True)})
"""


def test_limits_fresh_worker_runs_each_invocation_in_a_new_worker(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db", worker_pool_size=1) as rt:
        rt.add_plugin(
            {"id": "fresh", "limits": {"fresh_worker": True}},
            source={"plugin.py": COUNTER},
            trusted=False,
        )
        rt.add_plugin({"id": "warm"}, source={"plugin.py": COUNTER}, trusted=False)
        # Module state never survives an invocation of the fresh plugin.
        assert [rt.invoke_route("fresh", "count") for _ in range(3)] == [1, 1, 1]
        assert [rt.invoke_route("warm", "count") for _ in range(3)] == [1, 2, 3]


def test_fresh_worker_is_a_strict_bool() -> None:
    desc = emdash.PluginDescriptor.from_dict({"id": "x", "limits": {"fresh_worker": True}})
    assert desc.limits is not None and desc.limits.fresh_worker is True
    assert emdash.Limits().fresh_worker is False
    with pytest.raises(emdash.ManifestError, match="limits.fresh_worker"):
        emdash.PluginDescriptor.from_dict({"id": "x", "limits": {"fresh_worker": "yes"}})


RAISER = """
from emdash import define_plugin, RouteConfig

def fail(route_ctx, ctx):
    total = 0
    for i in range(100000):
        total += i
    raise ValueError("no")

plugin = define_plugin(routes={"fail": RouteConfig(fail, public=True)})
"""


def test_a_failed_invocation_carries_the_hosts_cpu_figure(tmp_path: Path) -> None:
    # For the audit of failed invocations: the emdash error carries the host's measurement.
    with emdash.Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin({"id": "raiser"}, source={"plugin.py": RAISER}, trusted=False)
        with pytest.raises(emdash.PluginError) as info:
            rt.invoke_route("raiser", "fail")
        cpu = getattr(info.value, "cpu_ms", None)
        assert isinstance(cpu, float) and cpu > 0.0
