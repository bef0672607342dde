"""The host measures workers' CPU time from the kernel and enforces it, busy or idle.

Every test here runs real confined workers, and the "escaped" ones are raw-exec workers (the
``allow_raw_exec_for_tests`` seam: plain Python under the same confinement, as if the language
layer were broken): they disarm their own ``ITIMER_PROF``, forge their answers and their CPU
reports, and keep running after answering. No timing is asserted: waits have generous upper
bounds and every verdict is structural (which error, which pid, dead or alive, which figure).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import (
    CpuLimitExceeded,
    MemoryLimitExceeded,
    SandboxError,
    SandboxLimits,
    SubrequestLimitExceeded,
    Supervisor,
    WallTimeExceeded,
    WorkerCrashed,
    WorkerPool,
)
from sandbox._handle import process_cpu_clock
from sandbox._pool import CALL_CPU_SLACK_MS, IDLE_CPU_MS

LIMITS = SandboxLimits(cpu_ms=100, memory_mb=64, wall_ms=600_000)
GENEROUS_S = 60.0  # an upper bound on waiting, never a timing assertion

# How raw code writes on its channel: the serve loop's way (sendto on fd 0), the only one
# the seccomp allowlist leaves. detach(): the object must never close fd 0.
SEND = (
    "import socket, json\n"
    "def send(obj):\n"
    "    data = json.dumps(obj).encode()\n"
    "    chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)\n"
    "    try:\n"
    "        chan.sendall(len(data).to_bytes(4, 'big') + data)\n"
    "    finally:\n"
    "        chan.detach()\n"
)
DISARM = "import signal, time\nsignal.setitimer(signal.ITIMER_PROF, 0)\n"


def burn(ms: int) -> str:
    """Source that uses ``ms`` of its own CPU time (counted by the worker's CPU clock)."""
    return f"_t0 = time.process_time()\nwhile time.process_time() - _t0 < {ms / 1000}:\n    pass\n"


def forged_answer(cid: int, then: str) -> str:
    """Escaped code: timer off, 30 ms of CPU, a well-formed answer claiming 0 ms, then ``then``."""
    return (
        SEND
        + DISARM
        + burn(30)
        + f"send({{'op': 'result', 'id': {cid}, 'value': 'forged', 'cpu_ms': 0.0,"
        " 'rss_kb': 0})\n" + then
    )


SPIN_FOREVER = "while True:\n    pass\n"


def next_call_id(pool: WorkerPool) -> int:
    # Ids come from itertools.count; peeking is a test-only convenience.
    return int(repr(pool._ids).split("(")[1].rstrip(")"))


def wait_until(predicate: Any, what: str) -> None:
    end = time.monotonic() + GENEROUS_S
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"not within {GENEROUS_S:g}s: {what}")
        time.sleep(0.02)


def load(sup: Supervisor, sb: SimpleNamespace, key: str, **kwargs: Any) -> WorkerPool:
    return sup.load(key, sb.BUNDLE, sb.ENTRY, limits=LIMITS, pool_size=1, **kwargs)


def echo(pool: WorkerPool, sb: SimpleNamespace, value: Any) -> Any:
    return pool.call("sbtest:echo", [value], on_host_call=sb.no_host_calls).value


# --- the figure -----------------------------------------------------------------------------


def test_the_cpu_clock_is_the_workers(make_supervisor: Any, sb: SimpleNamespace) -> None:
    # The clock the host reads is the kernel's count for that process: the same figure
    # /proc/<pid>/schedstat shows (first field, ns), for a worker that is not running.
    pool = load(make_supervisor(), sb, "cpu:clock")
    (pid,) = pool.worker_pids()
    clock = process_cpu_clock(pid)
    wait_until(
        lambda: Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "S",
        "the worker sleeps in recv",
    )
    before = time.clock_gettime_ns(clock)
    schedstat = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    after = time.clock_gettime_ns(clock)
    assert 0 < before <= schedstat <= after


def test_a_call_reports_the_hosts_figure_not_the_workers(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    sup = make_supervisor()
    sup._watch_stop.set()  # only the call's own measurement is looked at here
    pool = load(sup, sb, "cpu:figure")
    result = pool.raw_exec_for_tests(forged_answer(next_call_id(pool), then="result = 'late'\n"))
    # The worker claimed 0 ms; the host counted the 30 ms it burned before answering.
    assert result.value == "forged"
    assert result.worker_cpu_ms == 0.0
    assert result.cpu_ms >= 30.0


# --- an escaped worker that keeps running after answering -------------------------------------


def test_a_worker_spinning_after_its_answer_is_killed_by_the_watch(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # The breakout of the issue: timer disarmed, a well-formed answer, then CPU forever while
    # the pool thinks the worker idle. The supervisor's watch kills it (no call needed),
    # counts a crash, and the next call gets a new worker.
    pool = load(make_supervisor(), sb, "cpu:idle")
    (pid,) = pool.worker_pids()
    result = pool.raw_exec_for_tests(forged_answer(next_call_id(pool), then=SPIN_FOREVER))
    assert result.value == "forged" and result.cpu_ms >= 30.0
    wait_until(lambda: not sb.proc_exists(pid), "the spinning worker is killed")
    wait_until(lambda: pool._crashes.count == 1, "the kill counts as a crash")
    assert echo(pool, sb, "next") == "next"
    (new_pid,) = pool.worker_pids()
    assert new_pid != pid


def test_an_idle_burner_is_caught_when_a_call_takes_it(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # Without the watch (stopped, as if the host stalled), the call that takes the worker
    # reads its clock first: it used CPU while idle, so it is killed and replaced, and the
    # call runs in a new worker.
    sup = make_supervisor()
    sup._watch_stop.set()
    pool = load(sup, sb, "cpu:checkout")
    (pid,) = pool.worker_pids()
    pool.raw_exec_for_tests(
        forged_answer(next_call_id(pool), then=burn(IDLE_CPU_MS * 5) + "time.sleep(3600)\n")
    )
    worker = pool._idle[0]
    wait_until(
        lambda: (worker.cpu_ns() or 0) - worker.idle_cpu_ns > IDLE_CPU_MS * 1e6,
        "it burned CPU while idle",
    )
    assert echo(pool, sb, "after") == "after"
    (new_pid,) = pool.worker_pids()
    assert new_pid != pid and not sb.proc_exists(pid)
    assert pool._crashes.count == 1


def test_a_call_over_its_cpu_budget_is_refused_at_its_end(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # Timer disarmed, 3x the budget burned, then a normal answer: the host's measurement says
    # it is over, so the answer is not used, the worker is killed (a crash) and replaced.
    sup = make_supervisor()
    sup._watch_stop.set()  # the end-of-call check on its own
    pool = load(sup, sb, "cpu:end")
    (pid,) = pool.worker_pids()
    over = 3 * LIMITS.cpu_ms + CALL_CPU_SLACK_MS
    with pytest.raises(CpuLimitExceeded) as info:
        pool.raw_exec_for_tests(DISARM + burn(over) + "result = 'too late'\n")
    assert "exceeded its CPU-time limit of 100ms (the host measured" in str(info.value)
    assert getattr(info.value, "cpu_ms", 0) > LIMITS.cpu_ms
    assert not sb.proc_exists(pid)
    assert pool._crashes.count == 1
    assert echo(pool, sb, "next") == "next"
    assert pool.worker_pids() != [pid]


def test_a_busy_worker_over_budget_is_killed_before_its_wall_deadline(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # Timer disarmed and a loop that never answers, with a ten-minute wall limit: the watch
    # sees the call's CPU pass its budget and kills the worker; the call reports the CPU
    # limit (not a wall timeout, not "stopped").
    pool = load(make_supervisor(), sb, "cpu:busy")
    (pid,) = pool.worker_pids()
    with pytest.raises(CpuLimitExceeded) as info:
        pool.raw_exec_for_tests(DISARM + SPIN_FOREVER)
    assert "exceeded its CPU-time limit of 100ms" in str(info.value)
    assert not sb.proc_exists(pid)
    assert pool._crashes.count == 1
    assert echo(pool, sb, "next") == "next"


def test_a_load_that_escapes_its_timer_is_killed_by_the_watch(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # init disarms the timer and spins, with a ten-minute wall limit: the watch holds a
    # loading worker to load_cpu_ms as well.
    sup = make_supervisor()
    limits = SandboxLimits(cpu_ms=100, memory_mb=64, wall_ms=600_000, load_cpu_ms=200)
    with pytest.raises(CpuLimitExceeded) as info:
        sup.load(
            "cpu:load", sb.BUNDLE, sb.ENTRY, limits=limits, init=("sbtest:escape_during_load", [])
        )
    assert "exceeded its load CPU-time limit of 200ms" in str(info.value)
    assert str(info.value).startswith("loading the code for cpu:load (its module-level code")
    assert sb.zombie_children() == []


def test_an_honest_pool_is_left_alone(make_supervisor: Any, sb: SimpleNamespace) -> None:
    # Many calls and idle periods: every worker's idle CPU stays within bounds, no kill.
    pool = load(make_supervisor(), sb, "cpu:honest")
    (pid,) = pool.worker_pids()
    for i in range(200):
        assert echo(pool, sb, i) == i
    time.sleep(0.5)  # a few looks of the watch at an idle worker
    assert echo(pool, sb, "still") == "still"
    assert pool.worker_pids() == [pid]
    assert pool._crashes.count == 0


def test_large_requests_are_not_charged_as_an_escape(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # The worker decodes a request before its timer runs and frees it while reading the
    # next one: for object-dense JSON that is tens of ms per MiB outside the timer. The
    # host's allowance for it follows the request sizes, so honest calls pass.
    sup = make_supervisor()
    limits = SandboxLimits(cpu_ms=50, memory_mb=1024, wall_ms=600_000)
    bundle = {"plugin.py": "def size(x):\n    return len(x)\n"}
    pool = sup.load("cpu:large", bundle, "plugin.py", limits=limits, pool_size=1)
    (pid,) = pool.worker_pids()
    # ~7 MiB of short strings: ~100 ms to decode and free outside the timer (more than the
    # whole cpu_ms), and nothing for the call's own garbage collection to walk.
    dense = ["ab"] * 1_500_000
    for _ in range(3):
        result = pool.call("sbtest:invoke", ["size", dense], on_host_call=sb.no_host_calls)
        assert result.value == len(dense)
    assert echo(pool, sb, "small") == "small"
    assert pool.worker_pids() == [pid]
    assert pool._crashes.count == 0


# --- never reused after a limit, a crash, a protocol error or a forged frame -----------------


def _refuse_subrequest(method: str, params: dict[str, Any]) -> Any:
    raise SubrequestLimitExceeded("over the subrequest limit")


ENDINGS: dict[str, tuple[str, Any, type[SandboxError] | None]] = {
    # name: (raw source, on_host_call, the error the call raises or None)
    "cpu limit": (SPIN_FOREVER, None, CpuLimitExceeded),
    "memory limit": ("x = bytearray(512 << 20)\n", None, MemoryLimitExceeded),
    "wall limit": ("import time\ntime.sleep(30)\n", None, WallTimeExceeded),
    "exit": ("import os\nos._exit(3)\n", None, WorkerCrashed),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", None, WorkerCrashed),
    "protocol error": (
        SEND + "send({'op': 'result', 'id': 0, 'value': 1})\nimport time\ntime.sleep(5)\n",
        None,
        WorkerCrashed,
    ),
    # The host application refused a host call over its limit; the plugin caught that and
    # returned normally. The invocation failed on a limit all the same (the host raises).
    "subrequest limit": (
        "try:\n    host_call('kv.get', {})\nexcept Exception:\n    pass\nresult = 'caught'\n",
        _refuse_subrequest,
        None,
    ),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_worker_is_never_reused_after(
    ending: str, make_supervisor: Any, sb: SimpleNamespace
) -> None:
    source, on_host_call, error = ENDINGS[ending]
    pool = load(make_supervisor(), sb, f"reuse:{ending}")
    (pid,) = pool.worker_pids()
    limits = SandboxLimits(cpu_ms=100, memory_mb=64, wall_ms=1_000)
    if error is None:
        assert pool.raw_exec_for_tests(source, on_host_call=on_host_call, limits=limits).value
    else:
        with pytest.raises(error):
            pool.raw_exec_for_tests(source, on_host_call=on_host_call, limits=limits)
    wait_until(lambda: not sb.proc_exists(pid), f"the worker is gone after a {ending}")
    assert echo(pool, sb, "next") == "next"
    assert pid not in pool.worker_pids()


def test_an_answer_forged_ahead_of_time_gets_the_worker_replaced(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # A forged answer, then the real one: the second is a frame nobody asked for, waiting to
    # be read as the next call's answer. The next call finds it, kills that worker and runs
    # in a new one.
    pool = load(make_supervisor(), sb, "reuse:ahead")
    (pid,) = pool.worker_pids()
    cid = next_call_id(pool)
    source = (
        SEND + f"send({{'op': 'result', 'id': {cid}, 'value': 'forged', 'cpu_ms': 0.0,"
        " 'rss_kb': 0})\nresult = 'honest'\n"
    )
    assert pool.raw_exec_for_tests(source).value == "forged"
    worker = pool._idle[0]
    wait_until(worker.has_stray_input, "the second answer arrived")
    assert echo(pool, sb, "real") == "real"
    assert pool._crashes.count == 1
    assert pid not in pool.worker_pids() and not sb.proc_exists(pid)


# --- a fresh worker per call ------------------------------------------------------------------

STATEFUL = {
    "plugin.py": "seen = []\n\ndef remember(x):\n    seen.append(x)\n    return len(seen)\n"
}


def test_fresh_worker_gives_every_call_its_own_process(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    sup = make_supervisor()
    fresh = sup.load(
        "fresh:yes", STATEFUL, "plugin.py", limits=LIMITS, pool_size=1, fresh_worker=True
    )
    reused = sup.load("fresh:no", STATEFUL, "plugin.py", limits=LIMITS, pool_size=1)

    def which_worker(method: str, params: dict[str, Any]) -> Any:
        return fresh.worker_pids()  # asked during the call: the pid of the worker running it

    pids = [
        fresh.call("sbtest:ask_host", ["pid", {}], on_host_call=which_worker).value["ok"]
        for _ in range(4)
    ]
    assert all(len(p) == 1 for p in pids) and len({p[0] for p in pids}) == 4
    wait_until(lambda: not any(sb.proc_exists(p[0]) for p in pids), "used workers are gone")
    # The next call's worker is made ready after each call, off the caller's thread.
    used = {p[0] for p in pids}
    wait_until(lambda: len(fresh.worker_pids()) == 1, "a fresh worker waits for the next call")
    assert fresh.worker_pids()[0] not in used
    counts = [
        fresh.call("sbtest:invoke", ["remember", i], on_host_call=sb.no_host_calls).value
        for i in range(3)
    ]
    assert counts == [1, 1, 1]  # module state never survives a call
    assert [
        reused.call("sbtest:invoke", ["remember", i], on_host_call=sb.no_host_calls).value
        for i in range(3)
    ] == [1, 2, 3]
    assert fresh._crashes.count == 0


def test_fresh_worker_must_be_a_bool(make_supervisor: Any, sb: SimpleNamespace) -> None:
    with pytest.raises(SandboxError, match="fresh_worker for bad must be a bool"):
        make_supervisor().load("bad", sb.BUNDLE, sb.ENTRY, limits=LIMITS, fresh_worker=1)
