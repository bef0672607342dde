"""Repeated limit kills back off like crashes; every load is budgeted and reported.

A plugin whose handler always exceeds its CPU limit used to make the host fork a worker and
re-run the plugin's module-level code for every invocation. Real confined workers here; the
back-off window is crossed by moving the supervisor's clock forward (never by sleeping), and
every verdict is structural: which error, how many workers were forked, which pids live.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import (
    CpuLimitExceeded,
    LoadReport,
    MemoryLimitExceeded,
    SandboxLimits,
    SandboxUnavailableError,
    WallTimeExceeded,
    WorkerPool,
)
from sandbox._supervisor import _CrashTracker

SPIN = "while True:\n    pass\n"
TIGHT = SandboxLimits(cpu_ms=20, memory_mb=64, wall_ms=5_000)


class Clock:
    """``time.monotonic`` plus an offset a test moves forward to cross a window."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def echo(pool: WorkerPool, sb: SimpleNamespace, value: Any) -> Any:
    return pool.call("sbtest:echo", [value], on_host_call=sb.no_host_calls).value


def test_repeated_cpu_limit_kills_back_off_and_fail_fast(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    clock = Clock()
    # A long first delay: once backed off, the pool stays so until the clock is moved.
    sup = make_supervisor(clock=clock, backoff_base_s=30.0, crash_window_s=60.0)
    reports: list[LoadReport] = []
    pool = sup.load("burner", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, on_load=reports.append)
    assert pool.workers_started == 1
    # The allowance (3) costs nothing; the 4th kill is counted and starts the back-off.
    for n in range(4):
        with pytest.raises(CpuLimitExceeded):
            pool.raw_exec_for_tests(SPIN, limits=TIGHT)
        assert pool.worker_pids() == []
        # Each kill was followed by exactly one new worker for the next call, no more.
        assert pool.workers_started == n + 1
    assert pool._crashes.limit_kills == 4 and pool._crashes.count == 1
    assert not pool.is_healthy()
    # Backed off: calls fail at once, with no fork and no module code run.
    for _ in range(5):
        with pytest.raises(SandboxUnavailableError) as info:
            echo(pool, sb, "refused")
        message = str(info.value)
        assert message.startswith(
            "the sandbox worker for burner was killed 4 times by its CPU-time limit within "
            "60 seconds (repeated CPU-time limit kills); backing off: a new worker starts in "
        )
        assert message.endswith(
            "ms (attempt 1/5). Make the plugin stay within its CPU-time limit or raise that limit."
        )
    assert pool.workers_started == 4 and pool.worker_pids() == []
    retry = info.value.retry_after_s  # type: ignore[attr-defined]
    assert 0 < retry <= 30.0
    # Every worker forked was a load, reported with the host's figure.
    assert [r.outcome for r in reports] == ["ok"] * 4
    assert all(r.cpu_ms is not None and r.cpu_ms > 0 for r in reports)
    # After the window the pool recovers: a new worker, and an honest call is served.
    clock.offset += 61.0
    assert pool.is_healthy()
    assert echo(pool, sb, "back") == "back"
    assert pool.workers_started == 5 and len(pool.worker_pids()) == 1
    assert pool._crashes.count == 0
    pool.close()


def test_repeated_limit_kills_end_in_refusal_until_the_window_passes(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    clock = Clock()
    # No delay between attempts (base 0): the give-up window is what stops it.
    sup = make_supervisor(clock=clock, backoff_base_s=0.0, crash_window_s=60.0)
    pool = sup.load("hopeless", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    for _ in range(3 + 6):  # the allowance, then more than crash_limit (5) counted kills
        with pytest.raises(CpuLimitExceeded):
            pool.raw_exec_for_tests(SPIN, limits=TIGHT)
    started = pool.workers_started
    with pytest.raises(SandboxUnavailableError) as info:
        echo(pool, sb, "refused")
    message = str(info.value)
    assert message.startswith(
        "the sandbox worker for hopeless was killed 9 times by its CPU-time limit within 60 "
        "seconds (repeated CPU-time limit kills); no new worker starts and calls fail for "
        "another "
    )
    assert pool.workers_started == started
    clock.offset += 61.0
    assert echo(pool, sb, "back") == "back"
    pool.close()


def test_an_occasional_limit_kill_costs_nothing(make_supervisor: Any, sb: SimpleNamespace) -> None:
    sup = make_supervisor(backoff_base_s=30.0)
    pool = sup.load("occasional", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    for _ in range(3):
        with pytest.raises(CpuLimitExceeded):
            pool.raw_exec_for_tests(SPIN, limits=TIGHT)
        assert echo(pool, sb, "fine") == "fine"
    assert pool._crashes.count == 0 and pool.is_healthy()
    pool.close()


def test_memory_limit_kills_count_too(make_supervisor: Any, sb: SimpleNamespace) -> None:
    sup = make_supervisor(backoff_base_s=30.0, limit_kill_allowance=0)
    pool = sup.load("hungry", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    with pytest.raises(MemoryLimitExceeded):
        pool.raw_exec_for_tests("x = bytearray(1024 * 1024 * 1024)\n")
    with pytest.raises(SandboxUnavailableError) as info:
        echo(pool, sb, "refused")
    assert "(repeated memory limit kills)" in str(info.value)
    pool.close()


def test_wall_limit_kills_count_too(make_supervisor: Any, sb: SimpleNamespace) -> None:
    sup = make_supervisor(backoff_base_s=30.0, limit_kill_allowance=0)
    pool = sup.load("sleepy", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    short = SandboxLimits(cpu_ms=250, memory_mb=64, wall_ms=200)
    with pytest.raises(WallTimeExceeded):
        pool.raw_exec_for_tests("import time\ntime.sleep(30)\n", limits=short)
    with pytest.raises(SandboxUnavailableError) as info:
        echo(pool, sb, "refused")
    assert "(repeated wall-time limit kills)" in str(info.value)
    assert pool.workers_started == 1
    pool.close()


def test_a_cpu_limit_error_carries_a_cpu_figure_of_at_least_the_limit(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    # Killed by its own timer: the dead worker's clock cannot be read, and it used the
    # limit at least. The host application records this figure (audit).
    with pytest.raises(CpuLimitExceeded) as info:
        pool.raw_exec_for_tests(SPIN, limits=TIGHT)
    assert info.value.cpu_ms >= 20  # type: ignore[attr-defined]


# --- loads ---------------------------------------------------------------------------------


def test_module_code_over_its_load_budget_is_reported_and_counted(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    sup = make_supervisor()
    reports: list[LoadReport] = []
    limits = SandboxLimits(cpu_ms=50, memory_mb=64, wall_ms=5_000, load_cpu_ms=100)
    with pytest.raises(CpuLimitExceeded) as info:
        sup.load("heavy", {"plugin.py": SPIN}, "plugin.py", limits=limits, on_load=reports.append)
    assert str(info.value).startswith(
        "loading the code for heavy (its module-level code and init) exceeded its load "
        "CPU-time limit of 100ms"
    )
    (report,) = reports
    assert report.outcome == "limit" and report.cpu_ms is not None and report.cpu_ms >= 100


def test_the_default_load_budget_is_two_seconds() -> None:
    assert SandboxLimits().load_cpu_ms == 2_000


# --- the tracker's policy, alone ---------------------------------------------------------------


def test_tracker_allowance_then_backoff_then_window() -> None:
    now = [100.0]
    tracker = _CrashTracker(5, 60.0, 1.0, 30.0, allowance=3, clock=lambda: now[0])
    for _ in range(3):
        tracker.record("cpu")
        assert tracker.blocked("p") is None
    tracker.record("cpu")
    assert "new worker starts in 1000ms (attempt 1/5)" in (tracker.blocked("p") or "")
    now[0] += 1.5
    assert tracker.blocked("p") is None
    # A crash is never free, and keeps its own wording.
    tracker.record()
    assert (tracker.blocked("p") or "").startswith("the sandbox worker for p crashed;")
    now[0] += 61.0
    assert tracker.blocked("p") is None and tracker.limit_kills == 0
    tracker.record()
    assert tracker.blocked("p") is not None  # crashes are not subject to the allowance
