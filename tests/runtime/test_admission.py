"""Per-plugin admission: the gate's bounds and order, and how ``Runtime.invoke_route`` uses it.

No timing: a call is held "running" by an event the test controls, and every verdict is
structural (refused with ``PluginBusyError``, admitted, in which order).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import EmDashError, PluginBusyError
from emdash._runtime._admission import (
    TRUSTED_CONCURRENCY,
    AdmissionControl,
    AdmissionPolicy,
    PluginGate,
)
from emdash._runtime._runtime import Runtime

from .conftest import AddPlugin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def gate(concurrency: int = 1, queue: int = 1, timeout_ms: int = 60_000) -> PluginGate:
    return PluginGate("slow", AdmissionPolicy(concurrency, queue, timeout_ms, retry_after_s=3))


# -- the gate ---------------------------------------------------------------------------------


def test_concurrency_then_queue_then_refusal() -> None:
    g = gate(concurrency=2, queue=1)
    slots = [g.try_enter(), g.try_enter()]
    assert all(s is not None for s in slots)
    assert g.try_enter() is None  # never waits, never queues
    waiter = g.enqueue()
    assert not waiter.granted
    with pytest.raises(PluginBusyError) as info:
        g.enqueue()
    err = info.value
    assert isinstance(err, EmDashError)
    assert err.plugin_id == "slow"
    assert err.reason == "queue_full"
    assert err.retry_after == 3
    assert "Plugin slow is busy" in err.message
    assert "max_concurrency=2" in err.message and "max_queue=1" in err.message
    assert "slow" in err.public_message and "max_" not in err.public_message
    assert g.stats() == {"running": 2, "queued": 1, "refused": 1, "timed_out": 0}


def test_a_released_turn_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    g = gate(concurrency=1, queue=2)
    slot = g.try_enter()
    assert slot is not None
    first, second = g.enqueue(), g.enqueue()
    slot.release()
    slot.release()  # idempotent: one turn is given back once
    assert [w.granted for w in (first, second)] == [True, False]
    assert first.event.is_set()
    # The handed-over turn is still counted: a newcomer cannot slip in.
    assert g.try_enter() is None
    assert g.stats()["running"] == 1
    g.granted_slot(first).release()
    assert [w.granted for w in (first, second)] == [True, True]
    g.granted_slot(second).release()
    assert g.stats() == {"running": 0, "queued": 0, "refused": 0, "timed_out": 0}


def test_queue_zero_refuses_whoever_cannot_run_at_once() -> None:
    g = gate(concurrency=1, queue=0)
    assert g.try_enter() is not None
    with pytest.raises(PluginBusyError):
        g.enqueue()


def test_withdraw_leaves_the_queue_or_returns_a_turn_granted_meanwhile() -> None:
    g = gate(concurrency=1, queue=2)
    slot = g.try_enter()
    assert slot is not None
    gone, stays = g.enqueue(), g.enqueue()
    assert g.withdraw(gone, timed_out=True) is None
    assert g.stats()["queued"] == 1 and g.stats()["timed_out"] == 1
    slot.release()
    # `stays` was granted before it withdrew: the turn is its own now.
    late = g.withdraw(stays, timed_out=True)
    assert late is not None and late.active
    assert g.stats()["timed_out"] == 1
    late.release()
    assert g.stats()["running"] == 0


def test_thread_waits_for_a_turn_and_gets_it_on_release() -> None:
    g = gate(concurrency=1, queue=1)
    holder = g.try_enter()
    assert holder is not None
    entered = threading.Event()

    def caller() -> None:
        with g.enter():
            entered.set()

    thread = threading.Thread(target=caller)
    thread.start()
    while g.stats()["queued"] == 0:  # the caller is queued (structural, no sleep-and-hope)
        threading.Event().wait(0.001)
    assert not entered.is_set()
    holder.release()
    thread.join(timeout=60)
    assert entered.is_set()
    assert g.stats() == {"running": 0, "queued": 0, "refused": 0, "timed_out": 0}


def test_thread_wait_is_bounded_by_the_queue_timeout() -> None:
    g = gate(concurrency=1, queue=1, timeout_ms=1)
    holder = g.try_enter()  # held throughout: the waiter can only time out
    with pytest.raises(PluginBusyError) as info, g.enter():
        pass
    assert info.value.reason == "queue_timeout"
    assert "no turn came within 1 ms" in info.value.message
    assert g.stats() == {"running": 1, "queued": 0, "refused": 0, "timed_out": 1}
    assert holder is not None
    holder.release()


def test_event_loop_waiter_is_woken_by_a_release_from_another_thread() -> None:
    g = gate(concurrency=1, queue=1)
    holder = g.try_enter()
    assert holder is not None

    async def main() -> bool:
        waiter = g.enqueue()
        releaser = threading.Thread(target=holder.release)
        releaser.start()
        await g.enter_async(waiter)  # the loop is free meanwhile; no thread is held
        releaser.join()
        g.granted_slot(waiter).release()
        return waiter.granted

    assert asyncio.run(main())
    assert g.stats()["running"] == 0


def test_raising_concurrency_admits_queued_callers() -> None:
    g = gate(concurrency=1, queue=2)
    assert g.try_enter() is not None
    a, b = g.enqueue(), g.enqueue()
    g.set_policy(AdmissionPolicy(3, 2, 60_000))
    assert a.granted and b.granted
    assert g.stats()["running"] == 3


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_concurrency": 0},
        {"max_queue": -1},
        {"queue_timeout_ms": 0},
        {"max_concurrency": True},
        {"max_queue": 10**9},
        {"max_concurency": 2},
    ],
)
def test_invalid_bounds_are_refused_naming_the_plugin(bounds: dict[str, Any]) -> None:
    control = AdmissionControl(lambda pid: (2, 1000))
    with pytest.raises(EmDashError, match="admission settings for plugin slow"):
        control.configure("slow", **bounds)
    assert control.policy("slow") == AdmissionPolicy(2, 4, 1000)  # a refusal changes nothing
    with pytest.raises(EmDashError, match="plugin slow"):
        AdmissionControl(lambda pid: (2, 1000), {"slow": bounds})


# -- the runtime ------------------------------------------------------------------------------


def test_defaults_and_overrides(rt: Runtime, add: AddPlugin) -> None:
    add("trusted-one", routes={"r": lambda rc, ctx: 1})
    policy = rt.admission.policy("trusted-one")
    assert policy.max_concurrency == TRUSTED_CONCURRENCY
    assert policy.max_queue == 2 * TRUSTED_CONCURRENCY
    assert policy.queue_timeout_ms == rt.limits.wall_ms
    # Raising concurrency alone moves the default queue with it.
    assert rt.admission.configure("trusted-one", max_concurrency=3).max_queue == 6
    assert rt.admission.configure("trusted-one", max_queue=0).max_queue == 0
    assert rt.admission.policy("trusted-one").max_concurrency == 3
    # An explicit max_queue stays; a derived one is capped instead of failing.
    assert rt.admission.configure("trusted-one", max_concurrency=10_000).max_queue == 0
    add("another", routes={"r": lambda rc, ctx: 1})
    assert rt.admission.configure("another", max_concurrency=10_000).max_queue == 10_000


def test_sandboxed_default_is_the_worker_pool(tmp_path: Path) -> None:
    with Runtime(
        tmp_path / "s.db",
        worker_pool_size=3,
        limits=emdash.Limits(wall_ms=7000),
        admission={"forms": {"max_queue": 1}},
    ) as rt:
        rt.add_plugin(EXAMPLES / "hello")
        rt.add_plugin(EXAMPLES / "forms")
        hello = rt.admission.policy("plugin-hello")
        assert (hello.max_concurrency, hello.max_queue, hello.queue_timeout_ms) == (3, 6, 7000)
        forms = rt.admission.policy("forms")
        assert (forms.max_concurrency, forms.max_queue) == (3, 1)


def test_invoke_route_is_refused_while_the_plugin_is_full(rt: Runtime, add: AddPlugin) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow(route_ctx: Any, ctx: Any) -> str:
        started.set()
        release.wait(120)
        return "slow done"

    def quick(route_ctx: Any, ctx: Any) -> str:
        ran.append("quick")
        return "quick done"

    add("slow", routes={"slow": slow, "quick": quick})
    add("other", routes={"quick": quick})
    rt.admission.configure("slow", max_concurrency=1, max_queue=0)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(rt.invoke_route("slow", "slow")))
    thread.start()
    try:
        assert started.wait(60)
        # Any route of the full plugin is refused before it runs; other plugins are not.
        with pytest.raises(PluginBusyError) as info:
            rt.invoke_route("slow", "quick")
        assert info.value.plugin_id == "slow"
        assert ran == []
        assert rt.invoke_route("other", "quick") == "quick done"
        assert rt.admission.stats("slow")["refused"] == 1
    finally:
        release.set()
        thread.join(timeout=60)
    assert results == ["slow done"]
    assert rt.invoke_route("slow", "quick") == "quick done"
    assert rt.admission.stats("slow")["running"] == 0
    # A refusal ran no plugin code: no audit row for it.
    names = [row["name"] for row in rt.audit_log(plugin_id="slow")]
    assert sorted(names) == ["quick", "slow"]


def test_admitted_slot_must_belong_to_the_plugin(rt: Runtime, add: AddPlugin) -> None:
    add("one", routes={"r": lambda rc, ctx: 1})
    add("two", routes={"r": lambda rc, ctx: 2})
    slot = rt.admission.gate("two").try_enter()
    assert slot is not None
    with pytest.raises(EmDashError, match="admission slot of plugin two"):
        rt.invoke_route("one", "r", admitted=slot)
    assert rt.invoke_route("two", "r", admitted=slot) == 2
    slot.release()
    with pytest.raises(EmDashError, match="released"):
        rt.invoke_route("two", "r", admitted=slot)


# -- emdash.toml ------------------------------------------------------------------------------


def test_config_file_sets_a_plugins_bounds(tmp_path: Path) -> None:
    from emdash._cli._config import load_config, open_runtime

    config_file = tmp_path / "emdash.toml"
    config_file.write_text(
        'database = ":memory:"\n'
        "[[plugins]]\n"
        f'path = "{EXAMPLES / "hello"}"\n'
        "trusted = true\n"
        "max_concurrency = 3\n"
        "max_queue = 0\n"
        "queue_timeout_ms = 1500\n"
        "[[plugins]]\n"
        f'path = "{EXAMPLES / "forms"}"\n'
        "trusted = true\n",
        encoding="utf-8",
    )
    with open_runtime(load_config(config_file)) as rt:
        hello = rt.admission.policy("plugin-hello")
        assert (hello.max_concurrency, hello.max_queue, hello.queue_timeout_ms) == (3, 0, 1500)
        assert rt.admission.policy("forms").max_concurrency == TRUSTED_CONCURRENCY


@pytest.mark.parametrize("line", ["max_concurrency = 0", "max_queue = true", "max_queue = -1"])
def test_config_file_refuses_bad_bounds(tmp_path: Path, line: str) -> None:
    from emdash._cli._config import load_config

    config_file = tmp_path / "emdash.toml"
    config_file.write_text(f'[[plugins]]\npath = "x"\n{line}\n', encoding="utf-8")
    with pytest.raises(emdash.ConfigError, match=r"plugins\.0\.max_"):
        load_config(config_file)
