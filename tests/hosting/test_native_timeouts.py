"""Native hook timeouts: inline handlers, one watchdog thread, interrupts only in plugin code.

Every verdict here is structural (what was written, what was raised, which thread ran the
handler, whether a process exited), never how long something took.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from emdash import BridgeError, HookConfig, HookTimeoutError, Runtime
from emdash._hosting import _watchdog

from ..pipeline.conftest import AddPlugin, add, db_path, rt

__all__ = ["add", "db_path", "rt"]

SAVE = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}
READ = ["content:read"]


def test_a_handler_runs_on_the_calling_thread(rt: Runtime, add: AddPlugin) -> None:
    threads: list[int] = []
    add(
        "here",
        hooks={"content:afterSave": lambda e, ctx: threads.append(threading.get_ident())},
        capabilities=READ,
    )
    rt.run_hook("content:afterSave", SAVE)
    assert threads == [threading.get_ident()]


def test_a_handler_that_swallows_the_interrupt_is_interrupted_again(
    rt: Runtime, add: AddPlugin
) -> None:
    caught: list[BaseException] = []

    def stubborn(event: dict[str, Any], ctx: Any) -> None:
        ctx.kv.set("k", 1)
        while len(caught) < 3:
            try:
                while True:
                    pass
            except BaseException as exc:  # a trusted plugin may do this; it is asked again
                caught.append(exc)

    add(
        "stubborn",
        hooks={"content:afterSave": HookConfig(stubborn, timeout_ms=20, error_policy="continue")},
        capabilities=READ,
    )
    outcome = rt.run_hook("content:afterSave", SAVE)
    assert isinstance(outcome.results[0].error, HookTimeoutError)
    assert [type(exc) for exc in caught] == [_watchdog.HandlerDeadline] * 3
    assert rt.store.kv_entries.get("stubborn", "k") is None


# The handler allocates in a tight loop, so the garbage collector may start a finalizer or a
# weakref callback in its thread at the very instant the interrupt lands; the interrupt is
# then reported as "unraisable" inside that callback and ignored, and the watchdog's next
# kick stops the handler (docs/resource-model.md, section 7). What this test checks is that
# the store and the bridge stay intact whatever happens, so that report is not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctx_calls_in_a_loop_past_the_deadline_leave_the_store_intact(
    rt: Runtime, add: AddPlugin
) -> None:
    # The interrupt may only land in plugin code: a handler that hammers ctx past its
    # deadline (and swallows every refusal) is stopped between calls, never inside the
    # bridge or the store, which stay usable.
    refused: list[Exception] = []

    def hammer(event: dict[str, Any], ctx: Any) -> None:
        n = 0
        while True:
            n += 1
            try:
                ctx.kv.set("n", n)
                ctx.kv.get("n")
            except Exception as exc:
                refused.append(exc)

    add(
        "hammer",
        hooks={"content:afterSave": HookConfig(hammer, timeout_ms=20, error_policy="continue")},
        capabilities=READ,
    )
    outcome = rt.run_hook("content:afterSave", SAVE)
    assert isinstance(outcome.results[0].error, HookTimeoutError)
    assert rt.store.kv_entries.get("hammer", "n") is None
    assert all(isinstance(exc, BridgeError) for exc in refused)
    rt.store.kv_entries.set("other", "k", 2)
    assert rt.store.kv_entries.get("other", "k") == 2
    # And the next invocation of the same plugin is unaffected.
    add(
        "fine",
        hooks={"content:afterSave": lambda e, ctx: ctx.kv.set("ok", True)},
        capabilities=READ,
    )
    rt.disable_plugin("hammer")
    assert rt.run_hook("content:afterSave", SAVE).ok
    assert rt.store.kv_entries.get("fine", "ok") is True


def test_an_enclosing_handler_is_not_interrupted_inside_a_nested_invocation(
    rt: Runtime, add: AddPlugin
) -> None:
    # The outer handler calls the runtime directly (not through ctx); its deadline passes
    # while the nested invocation runs. The nested handler and the host code around it must
    # not receive the outer interrupt; the outer handler is interrupted once it is back in
    # its own code.
    from emdash._hosting._native import _ACTIVE

    outer_state: list[Any] = []
    nested: list[Any] = []
    after: list[str] = []

    def inner(event: dict[str, Any], ctx: Any) -> None:
        while not outer_state[0].closed:  # until the watchdog has given up on the outer one
            pass
        ctx.kv.set("inner", True)

    def outer(event: dict[str, Any], ctx: Any) -> None:
        outer_state.append(_ACTIVE.get())
        nested.extend(rt.run_hook("media:afterUpload", {"media": {"id": "m"}}).results)
        after.append("back")
        while True:
            pass

    add("inner", hooks={"media:afterUpload": inner}, capabilities=["media:read"])
    add(
        "outer",
        hooks={"content:afterSave": HookConfig(outer, timeout_ms=20, error_policy="continue")},
        capabilities=READ,
    )
    outcome = rt.run_hook("content:afterSave", SAVE)
    assert isinstance(outcome.results[0].error, HookTimeoutError)
    [result] = nested
    assert result.success, result.error
    assert after == ["back"]
    assert outer_state[0].timed_out


def test_a_runaway_handler_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    # The handler blocks in a C call (no interrupt reaches it there) on a daemon thread of
    # the host; the main thread then returns. Before, handlers ran on an executor whose
    # threads are joined at exit, and such a process never ended.
    script = textwrap.dedent(
        f"""
        import threading
        from emdash import HookConfig, Runtime, define_plugin

        started = threading.Event()

        def stuck(event, ctx):
            started.set()
            threading.Event().wait()

        rt = Runtime({str(tmp_path / "site.db")!r}, sandbox=False)
        rt.add_plugin(
            {{"id": "stuck", "capabilities": ["content:read"]}},
            trusted=True,
            source=define_plugin(hooks={{"content:afterSave": HookConfig(stuck, timeout_ms=20)}}),
        )
        event = {{"content": {{"id": "c"}}, "collection": "posts", "isNew": True}}
        threading.Thread(target=rt.run_hook, args=("content:afterSave", event), daemon=True).start()
        assert started.wait(60)
        print("main returns")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "main returns\n"


def test_the_watchdog_is_one_daemon_thread() -> None:
    watchdogs = [t for t in threading.enumerate() if t.name == "emdash-native-watchdog"]
    assert len(watchdogs) <= 1
    assert all(t.daemon for t in watchdogs)
