"""Crash consistency with real processes and real SQLite files (issue 7's proof).

A child host runs the workload of :mod:`tests.integrity.harness` (a counter plugin called
through its route, content saves, media uploads and deletes) in either mode and is
SIGKILLed inside a chosen operation: at a progress marker it prints (the parent kills it
on reading it), or at a named point of that operation (just before or after its commit,
between a media file's write and its row, between a row's deletion and its file's). The
parent then reopens the database as the next start would and checks every invariant:
``PRAGMA integrity_check``, counters equal to the successes the child saw (or one more:
the call in flight committed before its report), every committed route call audited (see
``AUDIT_LOSS_PER_KILL``: none, the audit row commits with the writes), no content or media
lost, no media row without its file and no file without its row.

Bounded for CI: one database per mode, a dozen kill points in all, each chosen from
progress (never from time). ``benchmarks/soak.py`` runs the same harness for as many kills
and invocations as asked (``make soak``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Reported, State, check, observe, read_until, running

# (operation in flight, where it dies). Operations cycle 0 hit, 1 content, 2 media,
# 3 unmedia (deletes what op 2 uploaded), 4 hit, ...
NATIVE_POINTS = (
    (0, "before-commit"),
    (0, "after-commit"),
    (1, "after-commit"),
    (2, "after-put"),
    (2, "after-commit"),
    (3, "before-unlink"),
    (1, "marker"),
    (4, "marker"),
)
# The route runs in a worker; its writes and their commit are the host's.
SANDBOXED_POINTS = ((0, "before-commit"), (0, "after-commit"), (4, "marker"))


@pytest.mark.parametrize(
    ("mode", "points"), [("native", NATIVE_POINTS), ("sandboxed", SANDBOXED_POINTS)]
)
def test_every_invariant_holds_after_each_sigkill(
    tmp_path: Path, mode: str, points: tuple[tuple[int, str], ...]
) -> None:
    db = tmp_path / "site.db"
    reported = Reported()
    previous: State | None = None
    for kills, (op, where) in enumerate(points, start=1):
        with running(db, mode, "a", kill_op=op, kill_at=where) as proc:
            ended = read_until(proc, "a", reported, kill_op=op)
        assert ended.killed
        if where != "marker":  # it died at its own kill point, before reporting the op
            assert ended.lines == op, f"kill point {where} in op {op} was not reached"
        state = observe(db, reported)
        verdict = check(state, reported, kills, previous)
        assert verdict.failures == [], f"after kill {kills} ({where} in op {op})"
        previous = state
    # A last child that is not killed: it starts from what the kills left and ends cleanly;
    # everything it reported is there, and a clean exit loses no audit row of its own.
    with running(db, mode, "a", ops=8) as proc:
        ended = read_until(proc, "a", reported)
    assert ended.lines == 8 and not ended.killed
    verdict = check(observe(db, reported), reported, len(points), previous)
    assert verdict.failures == []


def test_two_hosts_on_one_database_one_of_them_killed(tmp_path: Path) -> None:
    """Two host processes write the same database (each its own counter key); one is
    killed inside an operation while the other keeps going and finishes."""
    db = tmp_path / "site.db"
    reported = Reported()
    with (
        running(db, "native", "a", kill_op=6, kill_at="marker") as first,
        running(db, "native", "b", ops=12) as second,
    ):
        killed = read_until(first, "a", reported, kill_op=6)
        finished = read_until(second, "b", reported)
    assert killed.killed and not finished.killed
    verdict = check(observe(db, reported), reported, 1, None)
    assert verdict.failures == []


# Two processes doing get-then-set on one key: serializable invocations (docs/integrity.md)
# turn what was a lost update into a ConflictError the child retries, so the counter
# equals the successes both hosts saw.
def test_two_hosts_incrementing_one_counter_lose_no_update(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    one, two = Reported(), Reported()
    with running(db, "native", "shared", ops=24) as a, running(db, "native", "shared", ops=24) as b:
        read_until(a, "shared", one)
        read_until(b, "shared", two)
    hits = 2 * len(range(0, 24, 4))  # ops 0, 4, 8, ... are route calls
    state = observe(db, Reported(hits={"shared": hits}))
    assert state.counts["shared"] == hits
