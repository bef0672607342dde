"""The four limits on real workers: CPU, wall time, memory (subrequests are the host's).

Resource bombs (escape class ``dos``) must end with a limit error while the supervisor
keeps serving; after every kill the pool serves the next call from a fresh worker.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import (
    CpuLimitExceeded,
    MemoryLimitExceeded,
    SandboxLimits,
    WallTimeExceeded,
    WorkerPool,
)


def still_serves(pool: WorkerPool, sb: SimpleNamespace) -> None:
    assert pool.call("sbtest:invoke", ["add", 20, 22], on_host_call=sb.no_host_calls).value == 42


# --- CPU ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "while True:\n    pass\n",
        # one long C call: no Python-level check could interrupt it, the kernel does
        "x = 10 ** 10 ** 7\n",
    ],
    ids=["busy loop", "single C call"],
)
def test_cpu_bombs_are_killed(source: str, pool: WorkerPool, sb: SimpleNamespace) -> None:
    (pid,) = pool.worker_pids()
    epoch = pool.epoch
    with pytest.raises(CpuLimitExceeded) as info:
        pool.raw_exec_for_tests(source)
    assert str(info.value) == (
        f"the sandboxed call for {pool.key} exceeded its CPU-time limit of 250ms; "
        "the worker was killed"
    )
    assert info.value.limit_ms == 250  # type: ignore[attr-defined]
    assert not sb.proc_exists(pid)
    assert pool.epoch == epoch + 1
    still_serves(pool, sb)


def test_per_call_cpu_limit(pool: WorkerPool, sb: SimpleNamespace) -> None:
    tight = SandboxLimits(cpu_ms=30, memory_mb=64, wall_ms=5_000)
    with pytest.raises(CpuLimitExceeded) as info:
        pool.raw_exec_for_tests("while True:\n    pass\n", limits=tight)
    assert info.value.limit_ms == 30  # type: ignore[attr-defined]
    still_serves(pool, sb)


def test_cpu_is_measured_per_call(pool: WorkerPool, sb: SimpleNamespace) -> None:
    # Calls that each use most of the budget, more than it in total: the timer is
    # re-armed for every call, and the report covers the call's own CPU time.
    spin = "import time\nend = time.process_time() + 0.15\nwhile time.process_time() < end:\n    pass\n"
    for _ in range(3):
        assert pool.raw_exec_for_tests(spin).cpu_ms >= 150
    still_serves(pool, sb)


def test_cpu_spent_while_the_host_answers_does_not_count(pool: WorkerPool) -> None:
    def slow_host(method: str, params: dict[str, Any]) -> Any:
        end = time.process_time() + 0.3  # host CPU, longer than the worker's budget
        while time.process_time() < end:
            pass
        return "answered"

    result = pool.call("sbtest:wait_for_host", [], on_host_call=slow_host)
    assert result.value == "answered"


# --- wall time ---------------------------------------------------------------------------


def test_wall_limit_kills_the_worker(pool: WorkerPool, sb: SimpleNamespace) -> None:
    (pid,) = pool.worker_pids()
    short = SandboxLimits(cpu_ms=250, memory_mb=64, wall_ms=200)
    with pytest.raises(WallTimeExceeded) as info:
        pool.raw_exec_for_tests("import time\ntime.sleep(30)\n", limits=short)
    assert str(info.value) == (
        f"the sandboxed call for {pool.key} exceeded its wall-time limit of 200ms; "
        "the worker was killed, so nothing it scheduled will run"
    )
    assert (info.value.limit_ms, info.value.kind) == (200, "wall")  # type: ignore[attr-defined]
    # dead and reaped by the time the caller sees the error
    assert not sb.proc_exists(pid)
    assert pid not in pool.worker_pids()
    still_serves(pool, sb)


def test_timeout_shorter_than_the_wall_limit_is_reported_as_timeout(pool: WorkerPool) -> None:
    with pytest.raises(WallTimeExceeded) as info:
        pool.raw_exec_for_tests("import time\ntime.sleep(30)\n", timeout_ms=150)
    assert str(info.value) == (
        f"the sandboxed call for {pool.key} exceeded its timeout of 150ms; "
        "the worker was killed, so nothing it scheduled will run"
    )
    assert (info.value.limit_ms, info.value.kind) == (150, "timeout")  # type: ignore[attr-defined]


def test_timeout_longer_than_the_wall_limit_leaves_the_wall_limit_binding(pool: WorkerPool) -> None:
    short = SandboxLimits(cpu_ms=250, memory_mb=64, wall_ms=150)
    with pytest.raises(WallTimeExceeded) as info:
        pool.raw_exec_for_tests("import time\ntime.sleep(30)\n", limits=short, timeout_ms=10_000)
    assert (info.value.limit_ms, info.value.kind) == (150, "wall")  # type: ignore[attr-defined]


def test_no_side_effect_lands_after_the_deadline(pool: WorkerPool, sb: SimpleNamespace) -> None:
    effects: list[tuple[str, dict[str, Any]]] = []
    with pytest.raises(WallTimeExceeded):
        pool.call(
            "sbtest:sleep_then_call",
            [0.4],
            on_host_call=lambda m, p: effects.append((m, p)),
            timeout_ms=150,
        )
    time.sleep(0.6)  # longer than the plugin meant to sleep
    assert effects == []
    # the same call with time to spare does call the host
    assert (
        pool.call(
            "sbtest:sleep_then_call", [0.01], on_host_call=lambda m, p: effects.append((m, p))
        ).value
        == "slept"
    )
    assert effects == [("effect", {"after": 0.01})]


def test_time_spent_in_host_calls_counts_against_the_wall_limit(pool: WorkerPool) -> None:
    def slow_host(method: str, params: dict[str, Any]) -> Any:
        time.sleep(0.3)
        return "late"

    with pytest.raises(WallTimeExceeded) as info:
        pool.call("sbtest:wait_for_host", [], on_host_call=slow_host, timeout_ms=100)
    assert info.value.kind == "timeout"  # type: ignore[attr-defined]


# --- memory ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "x = bytearray(8 << 30)\n",
        "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n",
    ],
    ids=["8 GiB at once", "gradual growth"],
)
def test_memory_bombs_raise_memory_limit_exceeded(
    source: str, pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = pool.worker_pids()
    with pytest.raises(MemoryLimitExceeded) as info:
        pool.raw_exec_for_tests(source)
    assert str(info.value) == (
        f"the sandboxed code for {pool.key} exceeded its memory limit of 64 MB; "
        "the worker was replaced"
    )
    assert info.value.limit_mb == 64  # type: ignore[attr-defined]
    assert not sb.proc_exists(pid)
    still_serves(pool, sb)


def test_a_worker_that_caught_memory_error_is_recycled(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = pool.worker_pids()
    epoch = pool.epoch
    source = (
        "chunks = []\ntry:\n    while True:\n        chunks.append(b'x' * (1 << 20))\n"
        "except MemoryError:\n    pass\nresult = len(chunks) > 16\n"
    )
    result = pool.raw_exec_for_tests(source)
    assert result.value is True  # the call itself succeeded...
    assert result.rss_kb > 32 * 1024
    assert pool.epoch == epoch + 1  # ...but its bloated worker was replaced
    assert not sb.proc_exists(pid)
    still_serves(pool, sb)


def test_a_small_call_keeps_its_worker(pool: WorkerPool, sb: SimpleNamespace) -> None:
    (pid,) = pool.worker_pids()
    epoch = pool.epoch
    result = pool.raw_exec_for_tests("result = len(b'x' * (1 << 20))\n")
    assert result.value == 1 << 20
    assert pool.worker_pids() == [pid] and pool.epoch == epoch


def test_sigxcpu_ignore_and_double_fork_fail(pool: WorkerPool, sb: SimpleNamespace) -> None:
    source = (
        "import os, signal, errno\nresult = []\n"
        "for attempt in (lambda: signal.signal(signal.SIGXCPU, signal.SIG_IGN), os.setsid,"
        " os.fork, lambda: os.fork() or os.fork()):\n"
        "    try:\n        attempt()\n        result.append('OK')\n"
        "    except OSError as exc:\n        result.append(errno.errorcode[exc.errno])\n"
    )
    assert pool.raw_exec_for_tests(source).value == ["EPERM"] * 4
    still_serves(pool, sb)
