"""rt.cron: scheduling API, executor (one-shot, recurring, retries, stale locks), driver."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import emdash
from emdash._services._cron import CronLimits, CronRun
from emdash._shared._errors import CronScheduleError

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

RECORDING_CRON = """
def on_cron(event, ctx):
    record("cron", event)
plugin = define_plugin(hooks={"cron": on_cron})
"""

FAILING_CRON = """
def on_cron(event, ctx):
    record("cron", event)
    raise RuntimeError("task failed")
plugin = define_plugin(hooks={"cron": on_cron})
"""


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.fixture
def cron(rt: emdash.Runtime) -> Any:
    service = rt.cron
    service.clock = lambda: T0
    return service


# --- API ------------------------------------------------------------------------------


def test_schedule_list_cancel(cron: Any, plugins: Any) -> None:
    plugins.add("owner", RECORDING_CRON)
    assert cron.schedule("owner", "hourly", "@hourly", {"k": 1}) == {
        "name": "hourly",
        "schedule": "@hourly",
        "nextRunAt": "2030-01-01T13:00:00.000Z",
        "oneShot": False,
    }
    assert cron.schedule("owner", "once", "2030-01-01T12:30:00+00:00") == {
        "name": "once",
        "schedule": "2030-01-01T12:30:00+00:00",
        "nextRunAt": "2030-01-01T12:30:00.000Z",
        "oneShot": True,
    }
    assert cron.list("owner") == [
        {
            "name": "once",
            "schedule": "2030-01-01T12:30:00+00:00",
            "nextRunAt": "2030-01-01T12:30:00.000Z",
            "lastRunAt": None,
        },
        {
            "name": "hourly",
            "schedule": "@hourly",
            "nextRunAt": "2030-01-01T13:00:00.000Z",
            "lastRunAt": None,
        },
    ]
    assert cron.list("someone-else") == []
    assert cron.cancel("owner", "once") is True
    assert cron.cancel("owner", "once") is False
    assert [t["name"] for t in cron.list("owner")] == ["hourly"]


@pytest.mark.parametrize(
    ("name", "schedule", "data", "message"),
    [
        ("", "@daily", None, "Invalid task name: must be 1-128 characters, got 0"),
        (
            "9lives",
            "@daily",
            None,
            'Invalid task name "9lives": must start with a letter and contain only letters, '
            "numbers, dashes, or underscores",
        ),
        (
            "job",
            "every day",
            None,
            'Invalid schedule "every day": must be a valid cron expression or ISO 8601 datetime',
        ),
        (
            "job",
            "@daily",
            {"__emdash": 1},
            'Cron task data must not use the reserved key "__emdash" (emdash keeps its retry '
            "bookkeeping there)",
        ),
    ],
)
def test_schedule_validation(cron: Any, name: str, schedule: str, data: Any, message: str) -> None:
    with pytest.raises(CronScheduleError) as exc:
        cron.schedule("owner", name, schedule, data)
    assert str(exc.value) == message
    assert exc.value.plugin_id == "owner"
    assert cron.list("owner") == []


def test_ctx_cron_from_a_plugin(rt: emdash.Runtime, cron: Any, plugins: Any) -> None:
    plugins.add(
        "scheduler",
        """
        def setup(route_ctx, ctx):
            ctx.cron.schedule("cleanup", schedule="@weekly", data={"keep": 7})
            ctx.cron.schedule("soon", schedule="2030-01-01T12:05:00Z")
            ctx.cron.cancel("soon")
            try:
                ctx.cron.schedule("bad", schedule="whenever")
            except Exception as exc:
                return {"listed": ctx.cron.list(), "error": [type(exc).__name__, str(exc)]}
        plugin = define_plugin(hooks={"cron": lambda e, c: None}, routes={"setup": setup})
        """,
    )
    listed = [
        {
            "name": "cleanup",
            "schedule": "@weekly",
            "nextRunAt": "2030-01-06T00:00:00.000Z",
            "lastRunAt": None,
        }
    ]
    assert rt.invoke_route("scheduler", "setup") == {
        "listed": listed,
        "error": [
            "CronScheduleError",
            'Invalid schedule "whenever": must be a valid cron expression or ISO 8601 datetime',
        ],
    }
    assert cron.list("scheduler") == listed
    assert cron.list("other") == []


# --- executor -------------------------------------------------------------------------


def test_one_shot_runs_once_with_exact_event_and_is_deleted(cron: Any, plugins: Any) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "send", iso(at(10)), {"to": "x"})
    assert cron.tick(at(9)) == []
    runs = cron.tick(at(10, 30))
    assert runs == [CronRun("owner", "send", iso(at(10)), True, "completed")]
    assert owner.records("cron") == [
        {"name": "send", "data": {"to": "x"}, "scheduledAt": "2030-01-01T12:10:00.000Z"}
    ]
    assert cron.list("owner") == []
    assert cron.tick(at(20)) == []


def test_recurring_task_is_rearmed_after_now(rt: emdash.Runtime, cron: Any, plugins: Any) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "every5", "*/5 * * * *")
    assert cron.list("owner")[0]["nextRunAt"] == "2030-01-01T12:05:00.000Z"
    # The executor was asleep for 17 minutes: one run, then the next slot after now.
    runs = cron.tick(at(17))
    assert runs == [
        CronRun(
            "owner",
            "every5",
            "2030-01-01T12:05:00.000Z",
            True,
            "rescheduled",
            "2030-01-01T12:20:00.000Z",
        )
    ]
    assert cron.list("owner") == [
        {
            "name": "every5",
            "schedule": "*/5 * * * *",
            "nextRunAt": "2030-01-01T12:20:00.000Z",
            "lastRunAt": "2030-01-01T12:17:00.000Z",
        }
    ]
    assert owner.records("cron") == [
        {"name": "every5", "data": None, "scheduledAt": "2030-01-01T12:05:00.000Z"}
    ]
    task = rt.store.cron_tasks.get("owner", "every5")
    assert task is not None
    assert (task["status"], task["lockedAt"]) == ("idle", None)


def test_recurring_failure_is_rearmed_without_retry(cron: Any, plugins: Any) -> None:
    plugins.add("owner", FAILING_CRON)
    cron.schedule("owner", "hourly", "@hourly")
    [run] = cron.tick(at(61))
    assert (run.success, run.outcome, run.next_run_at) == (
        False,
        "rescheduled",
        "2030-01-01T14:00:00.000Z",
    )
    assert "task failed" in (run.error or "")


def test_one_shot_failure_retries_with_backoff_then_is_dropped(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    owner = plugins.add("owner", FAILING_CRON)
    cron.schedule("owner", "flaky", iso(at(0)), {"n": 1})
    moment = at(0)
    outcomes = []
    for expected_retry, wait in enumerate([1, 2, 4, 8, 16], start=1):
        [run] = cron.tick(moment)
        outcomes.append((run.outcome, run.retry_count))
        assert run.next_run_at == iso(moment + timedelta(minutes=wait))
        stored = rt.store.cron_tasks.get("owner", "flaky")
        assert stored is not None
        assert json.loads(stored["data"]) == {"n": 1, "__emdash": {"retryCount": expected_retry}}
        assert cron.tick(moment + timedelta(minutes=wait, seconds=-1)) == []  # not yet due
        moment = moment + timedelta(minutes=wait)
    [last] = cron.tick(moment)
    assert (last.outcome, last.retry_count, last.next_run_at) == ("dropped", 5, None)
    assert outcomes == [("retry", 1), ("retry", 2), ("retry", 3), ("retry", 4), ("retry", 5)]
    assert rt.store.cron_tasks.get("owner", "flaky") is None
    # Six attempts, and the plugin never saw emdash's bookkeeping.
    assert owner.records("cron") == [
        {"name": "flaky", "data": {"n": 1}, "scheduledAt": iso(t)}
        for t in [at(0), at(1), at(3), at(7), at(15), at(31)]
    ]


def test_retry_of_non_object_data_is_unwrapped_for_the_plugin(cron: Any, plugins: Any) -> None:
    owner = plugins.add("owner", FAILING_CRON)
    cron.schedule("owner", "listy", iso(at(0)), [1, 2])
    cron.tick(at(0))
    cron.tick(at(1))
    assert [r["data"] for r in owner.records("cron")] == [[1, 2], [1, 2]]


def test_task_of_a_plugin_without_cron_hook_fails(cron: Any, plugins: Any) -> None:
    plugins.add("hookless", "plugin = define_plugin()")
    cron.schedule("hookless", "nothing", iso(at(0)))
    [run] = cron.tick(at(0))
    assert (run.success, run.outcome) == (False, "retry")
    assert 'Plugin "hookless" has no cron hook registered' in (run.error or "")


def test_claims_at_most_five_per_plugin_and_ten_per_tick_oldest_first(
    cron: Any, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    for i in range(12):
        cron.schedule("owner", f"t{i:02d}", iso(at(2, seconds=i)))
    # Alone, a plugin gets plugin_tasks_per_tick (5) of the tick's tasks_per_tick (10).
    assert [r.name for r in cron.tick(at(3))] == [f"t{i:02d}" for i in range(5)]
    cron.limits = CronLimits(plugin_tasks_per_tick=10)
    assert [r.name for r in cron.tick(at(3))] == [f"t{i:02d}" for i in range(5, 12)]
    for i in range(12):
        cron.schedule("owner", f"u{i:02d}", iso(at(4, seconds=i)))
    assert [r.name for r in cron.tick(at(5))] == [f"u{i:02d}" for i in range(10)]
    assert len(owner.records("cron")) == 22


def test_stale_running_task_is_recovered_after_ten_minutes(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "stuck", iso(at(0)))
    # A previous executor claimed it and crashed mid-run.
    assert [t["name"] for t in rt.store.cron_tasks.claim_due(iso(at(0)))] == ["stuck"]
    assert cron.tick(at(9)) == []
    stuck = rt.store.cron_tasks.get("owner", "stuck")
    assert stuck is not None and stuck["status"] == "running"
    [run] = cron.tick(at(10, seconds=1))
    assert (run.name, run.outcome) == ("stuck", "completed")
    assert len(owner.records("cron")) == 1


LONG_CRON = """
from emdash import HookConfig


def on_cron(event, ctx):
    record("cron", event)
plugin = define_plugin(hooks={"cron": HookConfig(on_cron, timeout_ms=30 * 60 * 1000)})
"""


def test_a_lock_is_stale_only_past_the_longest_cron_timeout(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    # A plugin whose cron hook may run for 30 minutes: another tick (another host) must not
    # take its task while it may still be running, i.e. not after 10 minutes but after 31.
    owner = plugins.add("owner", LONG_CRON)
    cron.schedule("owner", "long", iso(at(0)))
    assert [t["name"] for t in rt.store.cron_tasks.claim_due(iso(at(0)))] == ["long"]
    assert cron.tick(at(20)) == []
    assert cron.tick(at(31)) == []  # exactly the bound: not yet
    [run] = cron.tick(at(31, seconds=1))
    assert (run.name, run.outcome) == ("long", "completed")
    assert len(owner.records("cron")) == 1


def test_a_task_taken_over_by_another_tick_is_not_run_twice(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "once", iso(at(0)))
    # This tick claimed it; before its run began, another tick found the lock stale,
    # reset and claimed the task (and runs it).
    tasks = rt.store.cron_tasks
    (claim,) = tasks.claim_due(iso(at(0)))
    assert tasks.recover_stale(iso(at(11))) == 1
    (other,) = tasks.claim_due(iso(at(11)))
    run = cron._run(claim, at(0), time.monotonic(), cron.limits)
    assert (run.name, run.outcome, run.success) == ("once", "taken", False)
    assert owner.records("cron") == []  # not run here
    assert tasks.start(other["id"], other["lockedAt"], iso(at(11)))  # the other still holds it


def test_handler_rescheduling_its_own_task_wins(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    plugins.add(
        "owner",
        """
        def on_cron(event, ctx):
            ctx.cron.schedule(event["name"], schedule="2030-01-02T00:00:00Z", data={"again": 1})
        plugin = define_plugin(hooks={"cron": on_cron})
        """,
    )
    cron.schedule("owner", "chain", iso(at(0)))
    [run] = cron.tick(at(0))
    assert (run.outcome, run.next_run_at) == ("changed", "2030-01-02T00:00:00.000Z")
    task = rt.store.cron_tasks.get("owner", "chain")
    assert task is not None
    assert (task["status"], task["nextRunAt"], task["data"]) == (
        "idle",
        "2030-01-02T00:00:00.000Z",
        '{"again":1}',
    )


def test_disabled_plugins_tasks_wait_and_removed_plugins_tasks_go(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "job", iso(at(0)))
    rt.disable_plugin("owner")
    assert cron.tick(at(1)) == []
    rt.enable_plugin("owner")
    assert [r.outcome for r in cron.tick(at(2))] == ["completed"]
    assert len(owner.records("cron")) == 1
    cron.schedule("owner", "later", "@daily")
    rt.remove_plugin("owner")
    assert rt.store.cron_tasks.get("owner", "later") is None


def test_invalid_stored_data_is_skipped_and_released(
    rt: emdash.Runtime, cron: Any, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "job", iso(at(0)))
    with rt.store.transaction():
        rt.store._db.execute(  # written by something else: not JSON
            "UPDATE _emdash_cron_tasks SET data = '{oops' WHERE task_name = 'job'"
        )
    [run] = cron.tick(at(0))
    assert (run.outcome, run.error) == ("skipped", "invalid JSON data")
    job = rt.store.cron_tasks.get("owner", "job")
    assert job is not None and job["status"] == "idle"
    assert owner.records() == []


def test_tick_publishes_due_scheduled_content(rt: emdash.Runtime, cron: Any, plugins: Any) -> None:
    watcher = plugins.add(
        "watcher",
        """
        def on_publish(event, ctx):
            record("published", event["content"]["id"])
        plugin = define_plugin(hooks={"content:afterPublish": on_publish})
        """,
        capabilities=["content:read"],
    )
    item = rt.content.create("posts", {"title": "timed"})
    when = datetime.now(UTC) + timedelta(hours=1)
    rt.content.schedule("posts", item["id"], when)
    cron.tick(when - timedelta(minutes=1))
    assert watcher.records() == []
    cron.tick(when + timedelta(minutes=1))
    assert watcher.records("published") == [item["id"]]
    stored = rt.store.content_items.get("posts", item["id"])
    assert stored is not None and stored["status"] == "published"


def test_background_driver_runs_due_tasks(rt: emdash.Runtime, plugins: Any) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    rt.cron.schedule("owner", "now", "2020-01-01T00:00:00Z")  # long due
    rt.cron.start()
    try:
        deadline = time.monotonic() + 30
        while not owner.records("cron") and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        rt.cron.stop()
    assert owner.records("cron") == [
        {"name": "now", "data": None, "scheduledAt": "2020-01-01T00:00:00.000Z"}
    ]
    assert rt.cron.list("owner") == []


def test_plugin_activate_can_schedule_its_tasks(rt: emdash.Runtime, plugins: Any) -> None:
    # The forms example's pattern: schedule the weekly cleanup when activated.
    plugins.add(
        "forms-like",
        """
        def on_activate(event, ctx):
            ctx.cron.schedule("cleanup", schedule="@weekly")
        plugin = define_plugin(hooks={"plugin:activate": on_activate, "cron": lambda e, c: None})
        """,
    )
    [task] = rt.cron.list("forms-like")
    assert (task["name"], task["schedule"]) == ("cleanup", "@weekly")
