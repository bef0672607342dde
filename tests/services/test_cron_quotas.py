"""rt.cron under a hostile plugin: per-plugin quotas, fair execution, clock jumps.

Issue rows: a plugin that schedules every-second tasks which schedule more (no cap, one
global executor running the 10 oldest due tasks: another plugin's ``@hourly`` task was not
run 600 ticks past due), and a ``nextRunAt`` computed under a forward clock jump that
stalled a task for ~26 h. Every assertion is structural (what ran in which tick, what is
stored), never a duration.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash._cli._config import ConfigError, load_config, open_runtime
from emdash._services._cron import MIN_TICK_GAP_S, CronLimits, CronService
from emdash._shared._errors import BridgeError, CronScheduleError

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


def at(minutes: float = 0, seconds: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Clock:
    """The service's wall clock, set by the test (a plugin's ctx.cron reads it too)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(rt: emdash.Runtime) -> Clock:
    clock = Clock(T0)
    rt.cron.clock = clock
    return clock


@pytest.fixture
def cron(rt: emdash.Runtime, clock: Clock) -> CronService:
    return rt.cron


def names(runs: list[Any]) -> list[tuple[str, str]]:
    return [(r.plugin_id, r.name) for r in runs]


# --- quotas ---------------------------------------------------------------------------


def test_defaults() -> None:
    assert CronLimits() == CronLimits(
        max_tasks_per_plugin=100,
        min_interval_s=60,
        max_imminent_oneshots=10,
        max_data_bytes=65_536,
        tasks_per_tick=10,
        plugin_tasks_per_tick=5,
    )
    with pytest.raises(ValueError, match="extra"):
        CronLimits.model_validate({"max_tasks": 5})
    with pytest.raises(ValueError):
        CronLimits(min_interval_s=0)


def test_task_quota_seen_by_the_plugin_through_ctx_cron(
    rt: emdash.Runtime, cron: CronService, plugins: Any
) -> None:
    hog = plugins.add(
        "hog",
        """
        from emdash import BridgeError
        def on_activate(event, ctx):
            for i in range(150):
                try:
                    ctx.cron.schedule(f"t{i}", schedule="@hourly")
                except BridgeError as exc:
                    record("refused", [i, type(exc).__name__, str(exc)])
                    return
        plugin = define_plugin(hooks={"plugin:activate": on_activate, "cron": lambda e, c: None})
        """,
    )
    [[index, kind, message]] = hog.records("refused")
    assert (index, kind) == (100, "CronScheduleError")
    assert message == (
        'Plugin "hog" already has 100 cron tasks, its quota (cron.max_tasks_per_plugin = 100): '
        "cancel one with ctx.cron.cancel() or reuse a task name before scheduling another, or "
        "ask the site operator to raise cron.max_tasks_per_plugin"
    )
    assert rt.store.cron_tasks.count("hog") == 100
    # Replacing a task it has is no new task; another plugin has its own quota.
    cron.schedule("hog", "t5", "@daily")
    cron.schedule("other", "job", "@daily")
    # A lowered quota keeps everything stored: the plugin just cannot add more.
    cron.limits = CronLimits(max_tasks_per_plugin=10)
    assert len(cron.list("hog")) == 100
    with pytest.raises(CronScheduleError) as exc:
        cron.schedule("hog", "new", "@daily")
    assert exc.value.plugin_id == "hog"
    assert isinstance(exc.value, BridgeError)
    assert "cron.max_tasks_per_plugin = 10" in str(exc.value)
    cron.schedule("hog", "t6", "@weekly")
    assert cron.cancel("hog", "t7") is True
    assert rt.store.cron_tasks.count("hog") == 99


def test_disabled_tasks_count_against_the_quota(rt: emdash.Runtime, cron: CronService) -> None:
    cron.limits = CronLimits(max_tasks_per_plugin=2)
    cron.schedule("p", "a", "@daily")
    cron.schedule("p", "b", "@daily")
    cron.set_plugin_enabled("p", False)
    with pytest.raises(CronScheduleError, match='Plugin "p" already has 2 cron tasks'):
        cron.schedule("p", "c", "@daily")


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [("* * * * * *", 1), ("*/30 * * * * *", 30), ("0,59 * * * * *", 1), ("5-10 * * * * *", 1)],
)
def test_recurring_schedule_below_the_minimum_interval_is_refused(
    cron: CronService, schedule: str, gap: int
) -> None:
    with pytest.raises(CronScheduleError) as exc:
        cron.schedule("spinner", "spin", schedule)
    assert str(exc.value) == (
        f'Plugin "spinner": cron schedule "{schedule}" runs as often as every {gap} s, more '
        "often than the minimum interval (cron.min_interval_s = 60 s): use a schedule whose "
        "runs are further apart, or ask the site operator to lower cron.min_interval_s"
    )
    assert exc.value.plugin_id == "spinner"
    assert cron.list("spinner") == []


@pytest.mark.parametrize(
    "schedule", ["0 * * * * *", "30 */2 * * * *", "* * * * *", "1-5 * * * *", "@hourly"]
)
def test_schedules_at_the_minimum_interval_are_accepted(cron: CronService, schedule: str) -> None:
    cron.schedule("p", "job", schedule)
    assert [t["schedule"] for t in cron.list("p")] == [schedule]


def test_a_raised_minimum_interval(cron: CronService) -> None:
    cron.limits = CronLimits(min_interval_s=600)
    with pytest.raises(CronScheduleError, match=r"every 300 s, .*= 600 s\)"):
        cron.schedule("p", "job", "*/5 * * * *")
    with pytest.raises(CronScheduleError, match="every 60 s"):
        cron.schedule("p", "job", "0,1,30 12 * * *")
    cron.schedule("p", "job", "*/10 * * * *")
    cron.schedule("p", "daily", "0 0,12 * * *")


def test_imminent_one_shots_are_capped(cron: CronService, clock: Clock) -> None:
    # Due within min_interval_s (60 s) of now, or already due: imminent.
    for i in range(9):
        cron.schedule("p", f"now{i}", iso(at(seconds=i * 5)))
    cron.schedule("p", "past", "2020-01-01T00:00:00Z")
    with pytest.raises(CronScheduleError) as exc:
        cron.schedule("p", "one-more", iso(at(seconds=59)))
    assert str(exc.value) == (
        'Plugin "p" already has 10 one-shot cron tasks due within the minimum interval, its '
        "quota (cron.max_imminent_oneshots = 10): schedule this one later, or wait for those "
        "to run, or ask the site operator to raise cron.max_imminent_oneshots"
    )
    # Later one-shots, recurring tasks, replacing an imminent one and other plugins: fine.
    cron.schedule("p", "later", iso(at(seconds=60)))
    cron.schedule("p", "hourly", "@hourly")
    cron.schedule("p", "now3", iso(at(seconds=1)))
    cron.schedule("q", "now", iso(at()))
    # Five minutes on, the ones not yet run are past due: still imminent, still counted.
    clock.now = at(minutes=5)
    with pytest.raises(CronScheduleError):
        cron.schedule("p", "soon", iso(at(minutes=5, seconds=30)))
    cron.schedule("p", "tomorrow", iso(at(hours=24)))


def test_task_data_is_capped(cron: CronService) -> None:
    cron.schedule("p", "fits", "@daily", {"blob": "x" * (65_536 - 11)})  # {"blob":"..."}
    with pytest.raises(CronScheduleError) as exc:
        cron.schedule("p", "big", "@daily", {"blob": "é" * 40_000})
    assert str(exc.value) == (
        'Plugin "p": cron task data is 80011 bytes as JSON, over the quota '
        "(cron.max_data_bytes = 65536): keep the data small (store the rest with ctx.kv or "
        "ctx.storage and pass a key), or ask the site operator to raise cron.max_data_bytes"
    )
    assert [t["name"] for t in cron.list("p")] == ["fits"]


def test_task_stored_before_a_limit_was_lowered_is_kept_but_throttled(
    rt: emdash.Runtime, cron: CronService, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    # Written by an older emdash (or under a lower min_interval_s): every second.
    rt.store.cron_tasks.upsert(
        "owner", "spin", "* * * * * *", is_oneshot=False, next_run_at=iso(at())
    )
    [run] = cron.tick(at())
    assert (run.outcome, run.next_run_at) == ("rescheduled", iso(at(minutes=1)))
    assert cron.tick(at(seconds=30)) == []
    [run] = cron.tick(at(minutes=1, seconds=20))
    assert run.next_run_at == iso(at(minutes=2))
    assert len(owner.records("cron")) == 2
    assert [t["name"] for t in cron.list("owner")] == ["spin"]


# --- fairness -------------------------------------------------------------------------


def test_one_plugins_backlog_never_delays_anothers_due_task(
    rt: emdash.Runtime, cron: CronService, plugins: Any
) -> None:
    plugins.add("flood", RECORDING_CRON)
    quiet = plugins.add("quiet", RECORDING_CRON)
    # 1000 long-overdue tasks (stored directly: more than the quota lets a plugin schedule).
    for i in range(1000):
        rt.store.cron_tasks.upsert(
            "flood",
            f"t{i:04d}",
            "2020-01-01T00:00:00Z",
            is_oneshot=True,
            next_run_at=iso(datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=i)),
        )
    cron.schedule("quiet", "hourly", "@hourly")
    runs = cron.tick(at(hours=1))
    assert ("quiet", "hourly") in names(runs)
    assert names(runs).count(("quiet", "hourly")) == 1
    assert len(runs) == 6  # flood's 5 oldest, quiet's one
    assert [r.name for r in runs if r.plugin_id == "flood"] == [f"t{i:04d}" for i in range(5)]
    assert quiet.records("cron") == [
        {"name": "hourly", "data": None, "scheduledAt": "2030-01-01T13:00:00.000Z"}
    ]


def test_self_multiplying_tasks_cannot_starve_another_plugins_hourly_task(
    rt: emdash.Runtime, cron: CronService, clock: Clock, plugins: Any
) -> None:
    # Each run tries to schedule an every-second task and three more one-shots due at once.
    flood = plugins.add(
        "flood",
        """
        import itertools
        from emdash import BridgeError
        _n = itertools.count()
        def on_cron(event, ctx):
            record("ran")
            try:
                ctx.cron.schedule("every-second", schedule="* * * * * *")
            except BridgeError as exc:
                record("refused", "min_interval_s" in str(exc))
            for _ in range(3):
                try:
                    ctx.cron.schedule(f"t{next(_n)}", schedule="2020-01-01T00:00:00Z")
                except BridgeError as exc:
                    record("refused", "max_imminent_oneshots" in str(exc))
        plugin = define_plugin(hooks={"cron": on_cron})
        """,
    )
    quiet = plugins.add("quiet", RECORDING_CRON)
    cron.schedule("flood", "seed", "2020-01-01T00:00:00Z")
    cron.schedule("quiet", "hourly", "@hourly")
    hourly_ran_in = []
    for second in range(120):  # 12:59:00 .. 13:00:59, one tick a second
        clock.now = at(minutes=59, seconds=second)
        if ("quiet", "hourly") in names(cron.tick()):
            hourly_ran_in.append(second)
    assert hourly_ran_in == [60]  # the first tick at or after 13:00
    assert len(quiet.records("cron")) == 1
    assert len(flood.records("ran")) > 100  # the flood ran all along, capped per tick...
    assert set(flood.records("refused")) == {True}  # ...and was refused by its quotas
    assert rt.store.cron_tasks.count("flood") <= 10
    assert all(len([r for r in cron.tick() if r.plugin_id == "flood"]) <= 5 for _ in range(3))


def test_plugins_are_rotated_when_more_are_due_than_fit_in_a_tick(
    rt: emdash.Runtime, cron: CronService, plugins: Any
) -> None:
    for n in range(12):
        plugins.add(f"p{n:02d}", RECORDING_CRON)
        for i in range(3):
            cron.schedule(f"p{n:02d}", f"t{i}", iso(at(minutes=5 + i)))
    served: list[str] = []
    for _ in range(4):
        served += [r.plugin_id for r in cron.tick(at(minutes=10))]
    # Every plugin's first task before any plugin's second, across ticks.
    assert served[:12] == [f"p{n:02d}" for n in range(12)]
    assert sorted(served) == sorted(f"p{n:02d}" for n in range(12) for _ in range(3))


# --- clock jumps ----------------------------------------------------------------------


def test_next_run_computed_under_a_forward_jump_is_repaired_when_the_clock_returns(
    rt: emdash.Runtime, cron: CronService, clock: Clock, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "hourly", "@hourly")
    cron.tick()  # the executor has seen the correct time
    clock.now = at(hours=27, minutes=1)  # the wall clock jumps ~26 h ahead...
    [run] = cron.tick()
    assert run.next_run_at == "2030-01-02T16:00:00.000Z"
    clock.now = at(minutes=30)  # ...and is set back
    assert cron.tick() == []
    task = rt.store.cron_tasks.get("owner", "hourly")
    assert task is not None and task["nextRunAt"] == "2030-01-01T13:00:00.000Z"
    clock.now = at(hours=1)
    assert names(cron.tick()) == [("owner", "hourly")]
    assert len(owner.records("cron")) == 2


def test_a_restarted_executor_repairs_what_a_jumped_clock_stored(
    rt: emdash.Runtime, cron: CronService, clock: Clock, plugins: Any
) -> None:
    plugins.add("owner", FAILING_CRON)
    cron.schedule("owner", "hourly", "@hourly")
    cron.schedule("owner", "once", iso(at(minutes=1)))
    cron.schedule("owner", "far", "2031-01-01T00:00:00Z")  # the plugin's own choice
    clock.now = at(hours=26, minutes=1)
    assert sorted(r.outcome for r in cron.tick()) == ["rescheduled", "retry"]
    # The process restarts with the clock corrected: a new service, no tick history.
    fresh = CronService(rt.store, rt._hooks, publish_due=lambda _now: None, clock=lambda: at(2))
    assert fresh.tick() == []
    tasks = {t["name"]: t["nextRunAt"] for t in fresh.list("owner")}
    assert tasks == {
        "once": iso(at(minutes=3)),  # now + its 1-minute backoff
        "hourly": "2030-01-01T13:00:00.000Z",
        "far": "2031-01-01T00:00:00.000Z",
    }
    stored = rt.store.cron_tasks.get("owner", "once")
    assert stored is not None and json.loads(stored["data"]) == {
        "__emdash": {"retryCount": 1, "value": None}
    }


def test_a_lock_taken_under_a_jumped_clock_is_released(
    rt: emdash.Runtime, cron: CronService, plugins: Any
) -> None:
    owner = plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "once", iso(at()))
    # Another executor claimed it while its clock was a day ahead, then crashed.
    assert len(rt.store.cron_tasks.claim_due(iso(at(hours=24)))) == 1
    assert names(cron.tick(at(minutes=1))) == [("owner", "once")]
    assert len(owner.records("cron")) == 1


def test_a_jump_during_a_run_does_not_move_the_next_run(
    rt: emdash.Runtime, cron: CronService, plugins: Any
) -> None:
    plugins.add("owner", RECORDING_CRON)
    cron.schedule("owner", "hourly", "@hourly")
    readings = iter([at(hours=1, minutes=1)])

    def jumping() -> datetime:  # the first reading is right, every later one a day ahead
        return next(readings, at(hours=25))

    cron.clock = jumping
    [run] = cron.tick()
    # The run's end is the tick's reading plus monotonic time, not a later wall reading.
    assert run.next_run_at == "2030-01-01T14:00:00.000Z"


def test_limits_from_emdash_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "emdash.toml"
    cfg.write_text(
        'database = "site.db"\n[cron]\nmax_tasks_per_plugin = 500\nmin_interval_s = 300\n'
    )
    runtime = open_runtime(load_config(cfg), sandbox=False)
    try:
        assert runtime.cron.limits == CronLimits(max_tasks_per_plugin=500, min_interval_s=300)
        with pytest.raises(CronScheduleError, match="cron.min_interval_s = 300 s"):
            runtime.cron.schedule("p", "job", "* * * * *")
    finally:
        runtime.close()
    cfg.write_text("[cron]\nmax_task = 5\n")
    with pytest.raises(ConfigError, match="max_task"):
        load_config(cfg)


SANDBOXED_FLOOD = """
from emdash import define_plugin

def on_cron(event, ctx):
    try:
        ctx.cron.schedule("every-second", schedule="* * * * * *")
    except Exception as exc:
        ctx.kv.set("refused:interval", str(exc))
    for i in range(3):
        try:
            ctx.cron.schedule(event["name"] + "x" + str(i), schedule="2020-01-01T00:00:00Z")
        except Exception as exc:
            ctx.kv.set("refused:imminent", str(exc))

plugin = define_plugin(hooks={"cron": on_cron})
"""


def test_a_sandboxed_flood_is_refused_and_does_not_delay_another_plugin(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db") as rt:
        clock = Clock(T0)
        rt.cron.clock = clock
        rt.add_plugin({"id": "flood"}, source={"plugin.py": SANDBOXED_FLOOD}, trusted=False)
        assert rt.get_plugin("flood").sandboxed
        rt.add_plugin(
            {"id": "quiet"},
            source={
                "plugin.py": "from emdash import define_plugin\n"
                "plugin = define_plugin(hooks={'cron': lambda e, c: c.kv.set('ran', e)})\n"
            },
            trusted=False,
        )
        rt.cron.schedule("flood", "seed", "2020-01-01T00:00:00Z")
        rt.cron.schedule("quiet", "hourly", "@hourly")
        hourly_ran_in = []
        for second in range(55, 65):  # 12:59:55 .. 13:00:04
            clock.now = at(minutes=59, seconds=second)
            runs = rt.cron.tick()
            assert len([r for r in runs if r.plugin_id == "flood"]) <= 5
            if ("quiet", "hourly") in names(runs):
                hourly_ran_in.append(second)
        assert hourly_ran_in == [60]
        assert rt.store.kv_entries.get("quiet", "ran") == {
            "name": "hourly",
            "data": None,
            "scheduledAt": "2030-01-01T13:00:00.000Z",
        }
        message = rt.store.kv_entries.get("flood", "refused:interval")
        assert 'Plugin "flood"' in message and "cron.min_interval_s = 60 s" in message
        message = rt.store.kv_entries.get("flood", "refused:imminent")
        assert 'Plugin "flood"' in message and "cron.max_imminent_oneshots = 10" in message
        assert rt.store.cron_tasks.count("flood") <= 10


def test_a_task_rescheduling_itself_does_not_make_the_driver_spin(
    rt: emdash.Runtime, plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every run re-arms the task in the past (due at once) and so wakes the driver.
    plugins.add(
        "spinner",
        """
        def on_cron(event, ctx):
            n = (event["data"] or {}).get("n", 0) + 1
            ctx.cron.schedule("again", schedule="2020-01-01T00:00:00Z", data={"n": n})
        plugin = define_plugin(hooks={"cron": on_cron})
        """,
    )
    rt.cron.schedule("spinner", "again", "2020-01-01T00:00:00Z")
    starts: list[float] = []
    tick = rt.cron.tick

    def counted(now: datetime | None = None) -> list[Any]:
        starts.append(time.monotonic())
        return tick(now)

    monkeypatch.setattr(rt.cron, "tick", counted)
    rt.cron.start()
    try:
        deadline = time.monotonic() + 60
        while len(starts) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rt.cron.stop()
    assert len(starts) >= 4
    # Structural, whatever the machine's speed: the driver never starts two ticks less
    # than MIN_TICK_GAP_S apart (a busy loop would start hundreds in that time).
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= MIN_TICK_GAP_S
