"""Faults of the host, not of a plugin: they cost one request, never a plugin's back-off.

Real processes throughout: the host test process is really run out of descriptors
(``RLIMIT_NOFILE`` lowered for a moment), the fork server and workers are really SIGKILLed.
Every supervisor here backs off for 30 s after a counted crash, so a death wrongly counted
would make the next call fail: the verdicts are structural (which call works, what was
counted), never timings.
"""

from __future__ import annotations

import os
import resource
import select
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import SandboxUnavailableError, Supervisor, WorkerCrashed, WorkerPool


def _wait_dead(pidfd: int) -> None:
    """Until the process behind ``pidfd`` has exited (its pidfd turns readable)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    assert poller.poll(10_000), "the process did not die"


def _kill_and_wait(pid: int) -> None:
    pidfd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pidfd)
    finally:
        os.close(pidfd)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


@contextmanager
def _descriptors_exhausted(free: int) -> Iterator[list[int]]:
    """Lower ``RLIMIT_NOFILE`` to just above the highest open descriptor and fill every
    free number below it, but for ``free`` of them (their numbers are yielded)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    try:
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                break
        left = [fillers.pop() for _ in range(free)]
        for fd in left:
            os.close(fd)
        yield left
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _retire_idle_worker(pool: WorkerPool) -> None:
    """Retire the warm worker as recycling does (not a crash), so the next call forks."""
    with pool._lock:
        (worker,) = pool._idle
    pool._discard(worker, kill=True, crash=False)
    assert pool.worker_pids() == []


@pytest.fixture
def sup(make_supervisor: Any) -> Supervisor:
    made: Supervisor = make_supervisor(backoff_base_s=30.0, backoff_max_s=30.0)
    return made


@pytest.mark.parametrize("free", [0, 1], ids=["no-descriptor", "one-of-two-descriptors"])
def test_descriptor_exhaustion_fails_one_request_only(
    sup: Supervisor, sb: SimpleNamespace, free: int
) -> None:
    pool = sup.load("nofile", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    server = sup.server_pid
    assert server is not None
    _retire_idle_worker(pool)
    with _descriptors_exhausted(free) as left, pytest.raises(SandboxUnavailableError) as info:
        pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls)
    message = str(info.value)
    assert message.startswith("no sandbox worker could be started for nofile: ")
    assert "out of file descriptors" in message
    assert "the next one tries again" in message
    # A descriptor that did arrive (the channel, when one number was free) was closed.
    for fd in left:
        with pytest.raises(OSError):
            os.fstat(fd)
    # Not the fork server's fault, nor the plugin's: nothing died, nothing was counted.
    assert sup.server_pid == server and sup.is_healthy()
    assert sup._server_crashes.count == 0 and sup._server_crashes.limit_kills == 0
    assert pool._crashes.count == 0 and pool._crashes.limit_kills == 0
    # The orphaned worker does not live on: the fork server is left with no child.
    for _ in range(1000):
        if not _children(server):
            break
        select.select([], [], [], 0.01)
    assert _children(server) == []
    # The next request, with descriptors again, works at once (no back-off to wait out).
    assert pool.call("sbtest:echo", [2], on_host_call=sb.no_host_calls).value == 2
    assert sup.server_pid == server and pool.is_healthy()


def test_a_fork_server_death_is_repaired_by_the_next_request(
    sup: Supervisor, sb: SimpleNamespace
) -> None:
    pool = sup.load("phoenix", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    other = sup.load("bystander", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS)
    first = sup.server_pid
    assert first is not None
    _kill_and_wait(first)
    # The very next request starts a new fork server: no back-off after one death...
    assert pool.call("sbtest:echo", ["back"], on_host_call=sb.no_host_calls).value == "back"
    second = sup.server_pid
    assert second is not None and second != first and sup.is_healthy()
    assert other.call("sbtest:echo", [3], on_host_call=sb.no_host_calls).value == 3
    # ...and it is nobody's crash.
    assert pool._crashes.count == 0 and other._crashes.count == 0
    assert pool.is_healthy() and other.is_healthy()
    # A second death within the window is a pattern: that one backs off.
    _kill_and_wait(second)
    with pytest.raises(SandboxUnavailableError) as info:
        pool.call("sbtest:echo", [4], on_host_call=sb.no_host_calls)
    assert "fork server" in str(info.value)
    assert pool._crashes.count == 0


def test_a_worker_killed_from_outside_is_not_the_plugins_crash(
    sup: Supervisor, sb: SimpleNamespace
) -> None:
    pool = sup.load("victim", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    # An idle worker killed by an operator (or the OOM killer)...
    (pid,) = pool.worker_pids()
    _kill_and_wait(pid)
    # ...is replaced; the call works and the plugin is not backed off.
    assert pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1
    assert pid not in pool.worker_pids()
    assert pool._crashes.count == 0 and pool.outside_kills == 1 and pool.is_healthy()

    # A busy one: that one request fails and says why; the next works.
    def kill_my_worker(method: str, params: dict[str, Any]) -> Any:
        (busy,) = pool.worker_pids()
        _kill_and_wait(busy)
        return None

    with pytest.raises(WorkerCrashed) as info:
        pool.call("sbtest:ask_host", ["x", {}], on_host_call=kill_my_worker)
    assert str(info.value).startswith(
        "the sandbox worker for victim was killed from outside the sandbox"
    )
    assert pool.call("sbtest:echo", [2], on_host_call=sb.no_host_calls).value == 2
    assert pool._crashes.count == 0 and pool.outside_kills == 2 and pool.is_healthy()


def test_a_real_crash_still_counts(sup: Supervisor, sb: SimpleNamespace) -> None:
    """The outside-kill rule is about SIGKILL only: a segfault remains the plugin's."""
    pool = sup.load("crasher", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    with pytest.raises(WorkerCrashed):
        pool.call("sbtest:crash", [], on_host_call=sb.no_host_calls)
    assert pool._crashes.count == 1 and pool.outside_kills == 0
    with pytest.raises(SandboxUnavailableError):
        pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls)
