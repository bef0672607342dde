"""DaemonThreadPool: a ThreadPoolExecutor whose threads are daemons nobody joins at exit."""

from __future__ import annotations

import threading

import pytest

from emdash._hosting._daemon_pool import DaemonThreadPool


def test_runs_work_on_bounded_daemon_threads() -> None:
    pool = DaemonThreadPool(max_workers=2, thread_name_prefix="t")
    try:
        release = threading.Event()
        started = threading.Barrier(3)

        def held() -> str:
            started.wait()
            release.wait()
            return threading.current_thread().name

        first, second = pool.submit(held), pool.submit(held)
        third = pool.submit(lambda: "queued")  # both threads are busy: it waits its turn
        started.wait()
        assert not third.done()
        release.set()
        assert {first.result(), second.result()} == {"t_0", "t_1"}
        assert third.result() == "queued"
        assert all(t.daemon for t in threading.enumerate() if t.name in ("t_0", "t_1"))
        # An idle thread is reused: no third thread ever starts.
        assert pool.submit(lambda: threading.current_thread().name).result() in ("t_0", "t_1")
    finally:
        pool.shutdown(wait=True)


def test_errors_reach_the_future_and_shutdown_cancels_queued_work() -> None:
    pool = DaemonThreadPool(max_workers=1, thread_name_prefix="u")
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result()
    gate, running = threading.Event(), threading.Event()

    def hold() -> bool:
        running.set()
        return gate.wait()

    busy = pool.submit(hold)
    running.wait()  # taken by the thread: only what is still queued can be cancelled
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    gate.set()
    assert busy.result() is True
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)
    pool.shutdown(wait=True)
