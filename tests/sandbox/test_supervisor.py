"""Supervisor and pools: lifecycle, concurrency, protocol violations, crash bookkeeping."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import sandbox
from sandbox import (
    SandboxError,
    SandboxLimits,
    SandboxUnavailableError,
    Supervisor,
    WorkerCrashed,
    WorkerPool,
)


def test_is_available_on_this_host() -> None:
    availability = sandbox.is_available()
    assert availability.ok is True
    assert availability.reason.startswith("Linux ")
    assert "seccomp API level" in availability.reason
    assert sandbox.is_available() is availability  # checked once per process
    assert availability  # its truth value is availability


def test_availability_truth_value_is_ok() -> None:
    # `if sandbox.is_available():` must be false on a host that cannot sandbox; a plain
    # non-empty tuple would always be true.
    missing = sandbox.Availability(False, "seccomp is missing")
    assert not missing
    assert bool(sandbox.Availability(True, "Linux")) is True
    ok, reason = missing  # still unpacks like the (ok, reason) pair it was
    assert (ok, reason) == (False, "seccomp is missing")


def test_limits_must_be_positive_ints() -> None:
    assert SandboxLimits() == SandboxLimits(cpu_ms=50, memory_mb=128, wall_ms=30_000)
    with pytest.raises(SandboxError) as info:
        SandboxLimits(cpu_ms=0)
    assert str(info.value) == "SandboxLimits.cpu_ms must be a positive int, got 0"
    with pytest.raises(SandboxError):
        SandboxLimits(wall_ms=1.5)  # type: ignore[arg-type]


# --- lifecycle -------------------------------------------------------------------------------


def test_start_is_idempotent_and_close_leaves_nothing(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    sup = make_supervisor()
    assert not sup.is_healthy()
    sup.start()
    server = sup.server_pid
    sup.start()
    assert sup.server_pid == server and sup.is_healthy()
    pool = sup.load("life", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=2)
    barrier = threading.Barrier(2, timeout=10)

    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        barrier.wait()  # both calls in flight at once: two workers
        return "go"

    threads = [
        threading.Thread(
            target=pool.call,
            args=("sbtest:wait_for_host", []),
            kwargs={"on_host_call": on_host_call},
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    workers = pool.worker_pids()
    assert len(workers) == 2
    sup.close()
    assert not sup.is_healthy() and not pool.is_healthy()
    # the fork server was reaped by us, the workers by the fork server: no zombie anywhere
    assert server is not None and not sb.proc_exists(server)
    assert not any(sb.proc_exists(pid) for pid in workers)
    assert sb.zombie_children() == []
    with pytest.raises(SandboxUnavailableError) as info:
        pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls)
    assert str(info.value) == "the sandbox supervisor was closed, so the sandbox for life is too"
    with pytest.raises(SandboxUnavailableError) as info:
        sup.load("again", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    assert str(info.value) == "the sandbox supervisor is closed"
    sup.close()  # idempotent


def test_context_manager(sb: SimpleNamespace) -> None:
    from sandbox import Supervisor

    with Supervisor() as sup:
        assert sup.is_healthy()
        server = sup.server_pid
        pool = sup.load("cm", {"plugin.py": "x = 1\n"}, "plugin.py", limits=sb.LIMITS)
        assert pool.init_result is None
    assert not sup.is_healthy()
    assert server is not None and not sb.proc_exists(server)


def test_load_checks_its_arguments(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key": ""}, "key must be a non-empty str"),
        ({"files": {"plugin.py": b"x"}}, "files for k must map file names to source text"),
        ({"entry": ""}, "entry for k must be a non-empty str"),
        ({"limits": {"cpu_ms": 1}}, "limits for k must be a SandboxLimits"),
        ({"pool_size": 0}, "pool_size for k must be a positive int"),
        ({"init": ("sbtest.init", [])}, "init for k must be ('module:function', [args])"),
    ]
    for override, message in cases:
        args: dict[str, Any] = {
            "key": "k",
            "files": sb.BUNDLE,
            "entry": sb.ENTRY,
            "limits": sb.LIMITS,
            **override,
        }
        with pytest.raises(SandboxError) as info:
            supervisor.load(args.pop("key"), args.pop("files"), args.pop("entry"), **args)
        assert str(info.value) == message


def test_loading_the_same_key_again(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    first = supervisor.load("same", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    assert supervisor.load("same", dict(sb.BUNDLE), sb.ENTRY, limits=sb.LIMITS) is first
    changed = {"plugin.py": "def add(a, b):\n    return a - b\n"}
    second = supervisor.load("same", changed, sb.ENTRY, limits=sb.LIMITS)
    assert second is not first
    assert second.call("sbtest:invoke", ["add", 5, 3], on_host_call=sb.no_host_calls).value == 2
    # the old handle is stale and says so
    with pytest.raises(SandboxUnavailableError) as info:
        first.call("sbtest:invoke", ["add", 5, 3], on_host_call=sb.no_host_calls)
    assert str(info.value) == (
        "the sandbox for same was replaced by a newer load; use the handle that load returned"
    )
    second.close()
    with pytest.raises(SandboxUnavailableError) as info:
        second.call("sbtest:echo", [1], on_host_call=sb.no_host_calls)
    assert (
        str(info.value) == "the sandbox for same was closed; load the code again for a new handle"
    )


def test_a_failed_reload_keeps_the_old_pool(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    pool = supervisor.load("keep", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    with pytest.raises(sandbox.CompileError):
        supervisor.load("keep", {"plugin.py": "def f(:\n"}, sb.ENTRY, limits=sb.LIMITS)
    assert pool.call("sbtest:invoke", ["add", 1, 1], on_host_call=sb.no_host_calls).value == 2
    pool.close()


def test_call_checks_its_arguments(pool: WorkerPool, sb: SimpleNamespace) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (
            lambda: pool.call("echo", [], on_host_call=sb.no_host_calls),
            "fn must look like 'module:function', got 'echo'",
        ),
        (
            lambda: pool.call("sbtest:echo", (1,), on_host_call=sb.no_host_calls),  # type: ignore[arg-type]
            "args must be a list",
        ),
        (
            lambda: pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls, timeout_ms=0),
            "timeout_ms must be a positive int, got 0",
        ),
        (
            lambda: pool.call("sbtest:echo", [object()], on_host_call=sb.no_host_calls),
            f"the arguments for {pool.key} cannot be sent to the sandbox: "
            "Type is not JSON serializable: object",
        ),
    ]
    for call, message in cases:
        with pytest.raises(SandboxError) as info:
            call()
        assert str(info.value) == message
    # nothing was lost: the worker is still the warm one
    assert pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1


def test_raw_exec_needs_the_test_flag(sb: SimpleNamespace) -> None:
    with Supervisor(preludes={"sbtest": sb.PRELUDE}) as sup:
        pool = sup.load("raw-off", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
        with pytest.raises(SandboxError) as info:
            pool.raw_exec_for_tests("result = 1")
        assert (
            str(info.value) == "raw_exec_for_tests needs Supervisor(allow_raw_exec_for_tests=True)"
        )


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_calls_use_separate_workers(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    pool = supervisor.load("concurrent", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=3)
    assert len(pool.worker_pids()) == 1  # one warm worker at load
    barrier = threading.Barrier(3, timeout=10)
    seen: list[list[int]] = []
    results: list[Any] = []

    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        barrier.wait()  # passes only if all three calls are in flight at the same time
        seen.append(pool.worker_pids())
        return threading.get_ident()

    def run() -> None:
        results.append(pool.call("sbtest:wait_for_host", [], on_host_call=on_host_call).value)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(ident for t in threads if (ident := t.ident) is not None)
    assert all(len(pids) == 3 for pids in seen)
    assert len(pool.worker_pids()) == 3  # grown lazily, kept warm
    pool.close()


def test_callers_wait_for_a_free_worker_at_the_pool_size(
    supervisor: Supervisor, sb: SimpleNamespace
) -> None:
    pool = supervisor.load("one", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    results: list[Any] = []

    def run(i: int) -> None:
        results.append(pool.call("sbtest:echo", [i], on_host_call=sb.no_host_calls).value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(6))
    assert len(pool.worker_pids()) == 1
    pool.close()


def test_waiting_for_a_worker_counts_against_the_deadline(
    supervisor: Supervisor, sb: SimpleNamespace
) -> None:
    pool = supervisor.load("busy", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    inside, release = threading.Event(), threading.Event()

    def hold(method: str, params: dict[str, Any]) -> Any:
        inside.set()
        return release.wait(10)

    holder = threading.Thread(
        target=pool.call, args=("sbtest:wait_for_host", []), kwargs={"on_host_call": hold}
    )
    holder.start()
    assert inside.wait(10)  # the only worker is busy now
    with pytest.raises(sandbox.WallTimeExceeded) as info:
        pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls, timeout_ms=100)
    assert info.value.kind == "timeout"  # type: ignore[attr-defined]
    release.set()
    holder.join()
    pool.close()


# --- protocol violations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ("(2**31).to_bytes(4, 'big')", "frame of 2147483648 bytes is over the 8388608-byte limit"),
        ("b'\\x00\\x00\\x00\\x03abc'", "frame is not valid JSON ("),
        (
            "frame({'op': 'result', 'id': 999999, 'value': 1, 'cpu_ms': 0, 'rss_kb': 0})",
            "result frame for call id 999999, expected ",
        ),
        (
            "frame({'op': 'host_call', 'id': CID, 'method': 'kv/get', 'params': [1]})",
            "host_call params must be a JSON object",
        ),
        (
            "frame({'op': 'loaded', 'id': CID, 'init': 1, 'cpu_ms': 0, 'rss_kb': 0})",
            "unexpected frame op 'loaded'",
        ),
        (
            "frame({'op': 'result', 'id': CID, 'value': 1, 'cpu_ms': 0, 'rss_kb': 0, 'pickle': 'x'})",
            "result frame has keys",
        ),
    ],
)
def test_forged_frames_get_the_worker_killed(
    frame: str, detail: str, pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = pool.worker_pids()
    # The payload cannot know its call id... except by reading the host's frame, which the
    # worker already consumed; CID is the id the host will use (ids are sequential per pool).
    cid = _next_call_id(pool)
    source = (
        SEND_ON_CHANNEL + "import json\n"
        "def frame(obj):\n"
        "    data = json.dumps(obj).encode()\n"
        "    return len(data).to_bytes(4, 'big') + data\n"
        f"CID = {cid}\n"
        f"send({frame})\n"
        "import time\ntime.sleep(5)\n"
    )
    with pytest.raises(WorkerCrashed) as info:
        pool.raw_exec_for_tests(source, on_host_call=sb.no_host_calls)
    message = str(info.value)
    prefix = f"the sandbox worker for {pool.key} broke the protocol ("
    assert message.startswith(prefix + detail)
    assert message.endswith("); it was killed")
    assert not sb.proc_exists(pid)
    assert pool.call("sbtest:echo", ["next"], on_host_call=sb.no_host_calls).value == "next"


# How a payload writes on the channel: the way the serve loop does (sendto on fd 0, flags 0),
# the only way the seccomp allowlist leaves (read/write are refused). detach(): the object
# must never try to close fd 0 when it is collected.
SEND_ON_CHANNEL = (
    "import socket\n"
    "def send(data):\n"
    "    chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)\n"
    "    try:\n"
    "        chan.sendall(data)\n"
    "    finally:\n"
    "        chan.detach()\n"
)


def _next_call_id(pool: WorkerPool) -> int:
    # Ids come from itertools.count; peeking is a test-only convenience.
    return int(repr(pool._ids).split("(")[1].rstrip(")"))


def test_an_answer_sent_twice_gets_the_worker_replaced(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    # The payload answers its call itself, then returns: the serve loop's real answer is
    # then an extra frame. It must never be read as the answer to the next call.
    (pid,) = pool.worker_pids()
    cid = _next_call_id(pool)
    source = (
        SEND_ON_CHANNEL + "import json\n"
        f"data = json.dumps({{'op': 'result', 'id': {cid}, 'value': 'forged', 'cpu_ms': 0,"
        " 'rss_kb': 0}).encode()\n"
        "send(len(data).to_bytes(4, 'big') + data)\n"
        "result = 'honest'\n"
    )
    # Its own first answer is what the worker said (the host has no better source)...
    assert pool.raw_exec_for_tests(source).value == "forged"
    # wait until the second answer has arrived while the worker is idle
    (idle,) = pool._idle
    deadline = time.monotonic() + 10
    while not idle.has_stray_input() and time.monotonic() < deadline:
        time.sleep(0.01)
    epoch = pool.epoch
    # ...and the stray second answer gets it killed before the next call uses it.
    assert pool.call("sbtest:echo", ["fresh"], on_host_call=sb.no_host_calls).value == "fresh"
    assert pool.epoch == epoch + 1
    assert pid not in pool.worker_pids() and not sb.proc_exists(pid)


def test_a_worker_cannot_close_its_channel(pool: WorkerPool, sb: SimpleNamespace) -> None:
    # close() is not on the allowlist (the serve loop never closes anything), so a worker
    # cannot leave the host with a live process behind a closed channel; the host's branch
    # for that case ("closed its channel; it was killed") stays as a second line.
    (pid,) = pool.worker_pids()
    source = (
        "import errno, os\n"
        "try:\n    os.close(0)\n    result = 'closed'\n"
        "except OSError as exc:\n    result = errno.errorcode[exc.errno]\n"
    )
    assert pool.raw_exec_for_tests(source).value == "EPERM"
    assert pool.call("sbtest:echo", ["open"], on_host_call=sb.no_host_calls).value == "open"
    assert pool.worker_pids() == [pid]


# --- crashes ---------------------------------------------------------------------------------


def test_a_crash_is_reported_and_the_worker_replaced(pool: WorkerPool, sb: SimpleNamespace) -> None:
    (pid,) = pool.worker_pids()
    epoch = pool.epoch
    with pytest.raises(WorkerCrashed) as info:
        pool.call("sbtest:crash", [], on_host_call=sb.no_host_calls)
    assert str(info.value) == f"the sandbox worker for {pool.key} died with signal SIGSEGV"
    assert pool.epoch == epoch + 1
    assert pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1
    assert pid not in pool.worker_pids()


def test_crash_loop_makes_the_pool_unavailable(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    pool = supervisor.load("crashy", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    for _ in range(6):  # EmDash's rule: more than 5 crashes within 60 s
        with pytest.raises(WorkerCrashed):
            pool.call("sbtest:crash", [], on_host_call=sb.no_host_calls)
    assert not pool.is_healthy()
    with pytest.raises(SandboxUnavailableError) as info:
        pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls)
    message = str(info.value)
    assert message.startswith(
        "the sandbox worker for crashy crashed 6 times within 60 seconds; calls fail for another "
    )
    assert message.endswith(
        "s. Fix the cause (see the earlier errors) or restart the host to retry sooner."
    )
    # other pools are not affected
    other = supervisor.load("calm", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    assert other.call("sbtest:echo", [2], on_host_call=sb.no_host_calls).value == 2
    pool.close()
    other.close()


def test_enforced_limits_are_not_crashes(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    pool = supervisor.load("limited", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    # Limit kills beyond the allowance (3) count toward the back-off (test_limit_backoff);
    # this supervisor has no delay (backoff_base_s=0) and 7 kills stay within crash_limit.
    for _ in range(7):
        with pytest.raises(sandbox.CpuLimitExceeded):
            pool.raw_exec_for_tests(
                "while True:\n    pass\n",
                limits=SandboxLimits(cpu_ms=20, memory_mb=64, wall_ms=5000),
            )
    assert pool.is_healthy()
    assert pool.call("sbtest:echo", [3], on_host_call=sb.no_host_calls).value == 3
    pool.close()


def test_backoff_after_a_crash(make_supervisor: Any, sb: SimpleNamespace) -> None:
    sup = make_supervisor(backoff_base_s=30.0)
    pool = sup.load("backoff", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    with pytest.raises(WorkerCrashed):
        pool.call("sbtest:crash", [], on_host_call=sb.no_host_calls)
    with pytest.raises(SandboxUnavailableError) as info:
        pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls)
    message = str(info.value)
    assert message.startswith("the sandbox worker for backoff crashed; restarting in ")
    assert message.endswith("ms (attempt 1/5)")
    assert not pool.is_healthy()


def test_the_fork_server_is_restarted_when_it_dies(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    sup = make_supervisor()
    pool = sup.load("phoenix", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    old_server, old_epoch = sup.server_pid, sup.epoch
    (worker,) = pool.worker_pids()
    assert old_server is not None
    os.kill(old_server, signal.SIGKILL)
    # its worker dies with it (parent-death signal); the next call gets a new server
    deadline = time.monotonic() + 10
    while sup.is_healthy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sup.is_healthy()
    assert pool.call("sbtest:echo", ["back"], on_host_call=sb.no_host_calls).value == "back"
    assert sup.is_healthy() and sup.server_pid != old_server
    assert sup.epoch == old_epoch + 1
    assert worker not in pool.worker_pids()
    assert pool.is_healthy()  # the fork server's death is not held against the pool


def test_workers_of_a_replaced_fork_server_are_stale(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    sup = make_supervisor()
    first = sup.load("first", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    second = sup.load("second", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    old_server, epoch = sup.server_pid, first.epoch
    assert old_server is not None
    os.kill(old_server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sup.is_healthy() and time.monotonic() < deadline:
        time.sleep(0.01)
    # the second pool's call starts the new fork server...
    assert second.call("sbtest:echo", [2], on_host_call=sb.no_host_calls).value == 2
    # ...and the first pool's idle worker, from the old one, is replaced as stale
    assert first.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1
    assert first.epoch == epoch + 1
    assert first.is_healthy() and second.is_healthy()
