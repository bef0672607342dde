"""Cron task storage and the executor's state machine."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from emdash._shared._errors import BridgeError
from emdash._store import Store


def _upsert(store: Store, pid: str, name: str, at: str, **kw: object) -> None:
    kw.setdefault("is_oneshot", False)
    store.cron_tasks.upsert(pid, name, kw.pop("schedule", "@hourly"), next_run_at=at, **kw)  # type: ignore[arg-type]


def test_upsert_list_cancel_scoped_by_plugin(store: Store) -> None:
    _upsert(store, "p", "weekly", "2026-11-29T00:00:00Z", schedule="0 0 * * 0")
    _upsert(
        store,
        "p",
        "soon",
        "2026-11-22T06:00:00+01:00",
        schedule="2026-11-22T06:00:00+01:00",
        is_oneshot=True,
        data={"n": 1},
    )
    _upsert(store, "other", "weekly", "2026-11-23T00:00:00Z")
    assert store.cron_tasks.list("p") == [
        {
            "name": "soon",
            "schedule": "2026-11-22T06:00:00+01:00",
            "nextRunAt": "2026-11-22T05:00:00.000Z",
            "lastRunAt": None,
        },
        {
            "name": "weekly",
            "schedule": "0 0 * * 0",
            "nextRunAt": "2026-11-29T00:00:00.000Z",
            "lastRunAt": None,
        },
    ]
    assert store.cron_tasks.cancel("p", "weekly") is True
    assert store.cron_tasks.cancel("p", "weekly") is False
    assert [t["name"] for t in store.cron_tasks.list("other")] == ["weekly"]
    assert store.cron_tasks.cancel("p", "weekly") is False  # cannot touch other's task


def test_upsert_replaces_and_reenables(store: Store) -> None:
    _upsert(store, "p", "job", "2026-11-23T00:00:00Z", data={"v": 1})
    store.cron_tasks.set_enabled("p", False)
    assert store.cron_tasks.list("p") == []
    _upsert(store, "p", "job", "2026-11-24T00:00:00Z", schedule="@daily", data={"v": 2})
    task = store.cron_tasks.get("p", "job")
    assert task is not None
    assert (task["schedule"], task["nextRunAt"], task["data"], task["enabled"]) == (
        "@daily",
        "2026-11-24T00:00:00.000Z",
        '{"v":2}',
        True,
    )


def test_claim_due_is_atomic_and_ordered(store: Store) -> None:
    for i in range(15):
        _upsert(store, "p", f"t{i:02d}", f"2026-11-22T0{i % 10}:00:00Z", data=i)
    _upsert(store, "p", "future", "2026-12-01T00:00:00Z")
    claimed = store.cron_tasks.claim_due("2026-11-22T09:30:00Z")
    assert len(claimed) == 10
    assert [c["nextRunAt"] for c in claimed] == sorted(c["nextRunAt"] for c in claimed)
    assert set(claimed[0]) == {
        "id",
        "pluginId",
        "name",
        "schedule",
        "isOneshot",
        "data",
        "nextRunAt",
        "lastRunAt",
        "lockedAt",
    }
    assert claimed[0]["lockedAt"] == "2026-11-22T09:30:00.000Z"
    assert claimed[0]["pluginId"] == "p" and json.loads(claimed[0]["data"]) in range(15)
    rest = store.cron_tasks.claim_due("2026-11-22T09:30:00Z")
    assert len(rest) == 5
    assert not {c["id"] for c in claimed} & {c["id"] for c in rest}
    assert store.cron_tasks.claim_due("2026-11-22T09:30:00Z") == []
    task = store.cron_tasks.get("p", "t00")
    assert task is not None and (task["status"], task["lockedAt"]) == (
        "running",
        "2026-11-22T09:30:00.000Z",
    )


def test_concurrent_claims_never_share_a_task(tmp_path: Path) -> None:
    path = tmp_path / "cron.db"
    with Store(path) as setup:
        for i in range(40):
            setup.cron_tasks.upsert(
                "p", f"t{i}", "@hourly", is_oneshot=False, next_run_at="2026-01-01T00:00:00Z"
            )
    stores = [Store(path) for _ in range(3)]
    results: list[list[str]] = [[] for _ in stores]

    def run(n: int) -> None:
        while batch := stores[n].cron_tasks.claim_due("2026-02-01T00:00:00Z", limit=3):
            results[n].extend(t["id"] for t in batch)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    everything = [i for r in results for i in r]
    assert len(everything) == len(set(everything)) == 40


def test_finish_release_and_disabled_tasks(store: Store) -> None:
    _upsert(store, "p", "rec", "2026-11-22T00:00:00Z", data={"a": 1})
    _upsert(store, "p", "once", "2026-11-22T00:00:00Z", is_oneshot=True)
    _upsert(store, "q", "off", "2026-11-22T00:00:00Z")
    store.cron_tasks.set_enabled("q", False)
    claimed = {t["name"]: t for t in store.cron_tasks.claim_due("2026-11-22T01:00:00Z")}
    assert set(claimed) == {"rec", "once"}
    assert (
        store.cron_tasks.finish(
            claimed["rec"]["id"],
            next_run_at="2026-11-22T02:00:00Z",
            last_run_at="2026-11-22T01:00:05Z",
        )
        is True
    )
    rec = store.cron_tasks.get("p", "rec")
    assert rec is not None
    assert (rec["status"], rec["nextRunAt"], rec["lastRunAt"], rec["lockedAt"], rec["data"]) == (
        "idle",
        "2026-11-22T02:00:00.000Z",
        "2026-11-22T01:00:05.000Z",
        None,
        '{"a":1}',
    )
    assert (
        store.cron_tasks.finish(
            claimed["once"]["id"], next_run_at=None, last_run_at="2026-11-22T01:00:05Z"
        )
        is True
    )
    assert store.cron_tasks.get("p", "once") is None
    _upsert(store, "p", "retry", "2026-11-22T00:00:00Z", is_oneshot=True)
    (task,) = store.cron_tasks.claim_due("2026-11-22T01:00:00Z")
    store.cron_tasks.finish(
        task["id"],
        next_run_at="2026-11-22T01:01:00Z",
        last_run_at="2026-11-22T01:00:00Z",
        data={"__emdash": {"retryCount": 1}},
    )
    got = store.cron_tasks.get("p", "retry")
    assert got is not None and json.loads(got["data"]) == {"__emdash": {"retryCount": 1}}
    (task,) = store.cron_tasks.claim_due("2026-11-22T01:02:00Z")
    assert store.cron_tasks.release(task["id"]) is True
    again = store.cron_tasks.get("p", "retry")
    assert again is not None and again["status"] == "idle"
    assert again["nextRunAt"] == "2026-11-22T01:01:00.000Z"
    assert (
        store.cron_tasks.finish("missing", next_run_at=None, last_run_at="2026-11-22T01:00:00Z")
        is False
    )


def test_rescheduling_a_running_task_keeps_it_running(store: Store) -> None:
    _upsert(store, "p", "job", "2026-11-22T00:00:00Z")
    store.cron_tasks.claim_due("2026-11-22T00:00:00Z")
    _upsert(store, "p", "job", "2026-11-23T00:00:00Z")
    task = store.cron_tasks.get("p", "job")
    assert task is not None and task["status"] == "running"


def test_recover_stale_and_next_due(store: Store) -> None:
    assert store.cron_tasks.next_due_at() is None
    _upsert(store, "p", "a", "2026-11-22T00:00:00Z")
    _upsert(store, "p", "b", "2026-11-22T00:05:00Z")
    _upsert(store, "p", "c", "2026-11-22T03:00:00Z")
    assert store.cron_tasks.next_due_at() == "2026-11-22T00:00:00.000Z"
    store.cron_tasks.claim_due("2026-11-22T00:00:00Z")
    store.cron_tasks.claim_due("2026-11-22T00:05:00Z")
    assert store.cron_tasks.next_due_at() == "2026-11-22T03:00:00.000Z"
    assert store.cron_tasks.recover_stale("2026-11-22T00:10:00Z") == 0  # exactly 600 s: not yet
    assert store.cron_tasks.recover_stale("2026-11-22T00:10:00.001Z") == 1
    assert store.cron_tasks.recover_stale("2026-11-22T00:16:00Z", older_than_s=60) == 1
    assert store.cron_tasks.next_due_at() == "2026-11-22T00:00:00.000Z"


def test_delete_plugin(store: Store) -> None:
    _upsert(store, "p", "a", "2026-11-22T00:00:00Z")
    _upsert(store, "p", "b", "2026-11-22T00:00:00Z")
    _upsert(store, "pp", "a", "2026-11-22T00:00:00Z")
    assert store.cron_tasks.delete_plugin("p") == 2
    assert [t["name"] for t in store.cron_tasks.list("pp")] == ["a"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Invalid task name: must be 1-128 characters, got 0"),
        ("x" * 129, "Invalid task name: must be 1-128 characters, got 129"),
        (
            "1job",
            'Invalid task name "1job": must start with a letter and contain only letters, '
            "numbers, dashes, or underscores",
        ),
        (
            "a b",
            'Invalid task name "a b": must start with a letter and contain only letters, '
            "numbers, dashes, or underscores",
        ),
    ],
)
def test_task_name_validation(store: Store, name: str, message: str) -> None:
    with pytest.raises(BridgeError) as info:
        _upsert(store, "p", name, "2026-11-22T00:00:00Z")
    assert str(info.value) == message


def test_schedule_and_time_validation(store: Store) -> None:
    with pytest.raises(BridgeError) as info:
        _upsert(store, "p", "job", "2026-11-22T00:00:00Z", schedule="")
    assert str(info.value) == (
        'Invalid schedule "": must be a valid cron expression or ISO 8601 datetime'
    )
    with pytest.raises(BridgeError, match='^Invalid next run time "soon"'):
        _upsert(store, "p", "job", "soon")
    with pytest.raises(BridgeError, match="^Cron task data must be JSON data"):
        _upsert(store, "p", "job", "2026-11-22T00:00:00Z", data={"x": float("nan")})
    assert store.cron_tasks.list("p") == []


def test_claim_due_is_round_robin_across_plugins(store: Store) -> None:
    for i in range(1000):  # plugin "a": a big, old backlog
        _upsert(store, "a", f"t{i:04d}", f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z")
    _upsert(store, "b", "hourly", "2026-11-22T09:00:00Z")
    _upsert(store, "c", "later", "2026-11-22T10:00:00Z")  # not due
    claimed = store.cron_tasks.claim_due("2026-11-22T09:30:00Z", 10, per_plugin=3)
    assert [(c["pluginId"], c["name"]) for c in claimed] == [
        ("a", "t0000"),
        ("b", "hourly"),
        ("a", "t0001"),
        ("a", "t0002"),
    ]
    # Without a per-plugin cap, a plugin alone takes the whole claim, oldest first.
    claimed = store.cron_tasks.claim_due("2026-11-22T09:30:00Z", 10)
    assert [c["name"] for c in claimed] == [f"t{i:04d}" for i in range(3, 13)]


def test_claim_due_rotates_from_after_the_given_plugin(store: Store) -> None:
    for p in ("p1", "p2", "p3", "p4"):
        _upsert(store, p, "a", "2026-11-22T08:00:00Z")
        _upsert(store, p, "b", "2026-11-22T08:30:00Z")
    claimed = store.cron_tasks.claim_due("2026-11-22T09:00:00Z", 3, after_plugin="p2")
    assert [(c["pluginId"], c["name"]) for c in claimed] == [
        ("p3", "a"),
        ("p4", "a"),
        ("p1", "a"),
    ]
    claimed = store.cron_tasks.claim_due("2026-11-22T09:00:00Z", 3, after_plugin="p1")
    assert [(c["pluginId"], c["name"]) for c in claimed] == [
        ("p2", "a"),
        ("p3", "b"),
        ("p4", "b"),
    ]


def test_task_quota_in_the_write_transaction(store: Store) -> None:
    for i in range(3):
        _upsert(store, "p", f"t{i}", "2026-11-22T08:00:00Z", max_tasks=3)
    with pytest.raises(BridgeError) as exc:
        _upsert(store, "p", "t3", "2026-11-22T08:00:00Z", max_tasks=3)
    assert 'Plugin "p" already has 3 cron tasks' in str(exc.value)
    _upsert(store, "p", "t1", "2026-11-23T08:00:00Z", max_tasks=1)  # a replacement
    _upsert(store, "q", "t0", "2026-11-22T08:00:00Z", max_tasks=1)
    assert store.cron_tasks.count("p") == 3
    assert store.cron_tasks.count("q") == 1


def test_imminent_one_shot_quota(store: Store) -> None:
    soon = "2026-11-22T08:01:00Z"
    kw: dict[str, object] = {"is_oneshot": True, "max_imminent": 2, "imminent_before": soon}
    _upsert(store, "p", "a", "2026-11-22T08:00:00Z", **kw)
    _upsert(store, "p", "b", "2020-01-01T00:00:00Z", **kw)
    with pytest.raises(BridgeError, match="cron.max_imminent_oneshots = 2"):
        _upsert(store, "p", "c", "2026-11-22T08:00:59Z", **kw)
    _upsert(store, "p", "c", soon, **kw)  # not before imminent_before
    _upsert(store, "p", "d", "2026-11-22T08:00:00Z", **{**kw, "is_oneshot": False})
    _upsert(store, "p", "a", "2026-11-22T08:00:30Z", **kw)  # replacing one of the two
    assert store.cron_tasks.count("p") == 4


def test_locks_from_a_clock_that_was_ahead_are_released(store: Store) -> None:
    _upsert(store, "p", "job", "2026-11-22T08:00:00Z")
    assert len(store.cron_tasks.claim_due("2026-11-23T08:00:00Z")) == 1  # a day ahead
    assert store.cron_tasks.recover_stale("2026-11-23T07:55:00Z", 600) == 0
    assert store.cron_tasks.recover_stale("2026-11-22T08:05:00Z", 600) == 1
    task = store.cron_tasks.get("p", "job")
    assert task is not None and (task["status"], task["lockedAt"]) == ("idle", None)


def test_rearm_only_moves_an_unchanged_idle_task(store: Store) -> None:
    _upsert(store, "p", "job", "2026-11-23T08:00:00Z")
    _upsert(store, "p", "other", "2026-11-23T08:00:00Z")
    [task, other] = sorted(store.cron_tasks.idle_tasks(), key=lambda t: t["name"] != "job")
    moved = store.cron_tasks.rearm(
        [
            (task["id"], "2026-11-23T08:00:00.000Z", "2026-11-22T09:00:00Z"),
            (other["id"], "2026-11-20T00:00:00.000Z", "2026-11-22T09:00:00Z"),  # stale
        ]
    )
    assert moved == 1
    assert (
        store.cron_tasks.rearm([(task["id"], "2026-11-23T08:00:00.000Z", "2026-11-22T10:00:00Z")])
        == 0
    )
    store.cron_tasks.claim_due("2026-11-22T09:00:00Z")
    assert [t["name"] for t in store.cron_tasks.idle_tasks()] == ["other"]
    assert (
        store.cron_tasks.rearm([(task["id"], "2026-11-22T09:00:00.000Z", "2026-11-22T10:00:00Z")])
        == 0
    )


def test_start_restarts_the_lock_only_for_the_claim_that_holds_it(store: Store) -> None:
    _upsert(store, "p", "job", "2026-11-22T00:00:00Z")
    (first,) = store.cron_tasks.claim_due("2026-11-22T00:00:00Z")
    # Its run begins five minutes later (it waited behind the tick's other tasks).
    assert store.cron_tasks.start(first["id"], first["lockedAt"], "2026-11-22T00:05:00Z")
    task = store.cron_tasks.get("p", "job")
    assert task is not None and task["lockedAt"] == "2026-11-22T00:05:00.000Z"
    # Not stale at 00:14 (nine minutes after the run began, not fourteen after the claim).
    assert store.cron_tasks.recover_stale("2026-11-22T00:14:00Z") == 0
    # A claim that is no longer the lock's (reset as stale, then claimed by another tick)
    # may not start: the task runs once.
    assert store.cron_tasks.recover_stale("2026-11-22T00:16:00Z") == 1
    (second,) = store.cron_tasks.claim_due("2026-11-22T00:16:00Z")
    assert not store.cron_tasks.start(first["id"], first["lockedAt"], "2026-11-22T00:16:01Z")
    assert store.cron_tasks.start(second["id"], second["lockedAt"], "2026-11-22T00:16:01Z")
