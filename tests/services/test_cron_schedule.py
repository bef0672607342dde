"""Cron task-name and schedule validation, one-shot detection, next fire times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from emdash import BridgeError
from emdash._services._cron_schedule import (
    CronScheduleError,
    ParsedSchedule,
    format_iso,
    is_one_shot,
    min_gap_seconds,
    next_fire,
    parse_iso,
    parse_schedule,
    validate_task_name,
)

NOW = datetime(2026, 3, 4, 10, 20, 30, 123456, tzinfo=UTC)


def test_format_iso_is_utc_milliseconds_z() -> None:
    assert format_iso(NOW) == "2026-03-04T10:20:30.123Z"
    plus2 = timezone(timedelta(hours=2))
    assert format_iso(datetime(2026, 3, 4, 12, 0, tzinfo=plus2)) == "2026-03-04T10:00:00.000Z"
    assert format_iso(datetime(2026, 3, 4, 12, 0)) == "2026-03-04T12:00:00.000Z"


def test_parse_iso() -> None:
    assert parse_iso("2026-03-04T10:00:00Z") == datetime(2026, 3, 4, 10, tzinfo=UTC)
    assert parse_iso("2026-03-04") == datetime(2026, 3, 4, tzinfo=UTC)
    assert parse_iso("2026-03-04T12:00:00+02:00") == datetime(2026, 3, 4, 10, tzinfo=UTC)
    for bad in ["", "soon", " 2026-03-04", "2026-13-01", "5 * * * *", "x" * 100]:
        assert parse_iso(bad) is None


@pytest.mark.parametrize("name", ["a", "cleanup", "Weekly_report-2", "a" * 128])
def test_valid_task_names(name: str) -> None:
    assert validate_task_name(name) == name


def test_task_name_length_errors() -> None:
    with pytest.raises(CronScheduleError) as exc:
        validate_task_name("")
    assert str(exc.value) == "Invalid task name: must be 1-128 characters, got 0"
    with pytest.raises(CronScheduleError) as exc:
        validate_task_name("a" * 129, plugin_id="p")
    assert str(exc.value) == "Invalid task name: must be 1-128 characters, got 129"
    assert exc.value.plugin_id == "p"
    assert isinstance(exc.value, BridgeError)


@pytest.mark.parametrize("name", ["1abc", "_x", "a b", "a.b", "a/b", "ä"])
def test_task_name_character_errors(name: str) -> None:
    with pytest.raises(CronScheduleError) as exc:
        validate_task_name(name)
    assert str(exc.value) == (
        f'Invalid task name "{name}": must start with a letter and contain only letters, '
        "numbers, dashes, or underscores"
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("*/5 * * * *", "2026-03-04T10:25:00.000Z"),
        ("1-5 * * * *", "2026-03-04T11:01:00.000Z"),
        ("0 12 * * MON-FRI", "2026-03-04T12:00:00.000Z"),
        ("15 */5 * * * *", "2026-03-04T10:25:15.000Z"),  # 6 fields: seconds first (croner)
        ("@hourly", "2026-03-04T11:00:00.000Z"),
        ("@daily", "2026-03-05T00:00:00.000Z"),
        ("@weekly", "2026-03-08T00:00:00.000Z"),
        ("@monthly", "2026-04-01T00:00:00.000Z"),
        ("@yearly", "2027-01-01T00:00:00.000Z"),
        ("@Daily", "2026-03-05T00:00:00.000Z"),
    ],
)
def test_recurring_schedules(schedule: str, expected: str) -> None:
    assert parse_schedule(schedule, NOW) == ParsedSchedule(schedule, False, expected)
    assert not is_one_shot(schedule)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("2026-05-01T12:00:00Z", "2026-05-01T12:00:00.000Z"),
        ("2026-05-01T12:00:00.5+02:00", "2026-05-01T10:00:00.500Z"),
        ("2026-05-01", "2026-05-01T00:00:00.000Z"),
        ("2020-01-01T00:00:00Z", "2020-01-01T00:00:00.000Z"),  # in the past: due at once
    ],
)
def test_one_shot_schedules_are_stored_canonical(schedule: str, expected: str) -> None:
    assert parse_schedule(schedule, NOW) == ParsedSchedule(schedule, True, expected)
    assert is_one_shot(schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "",
        "x" * 257,
        "soon",
        "@reboot",
        "@every 5m",
        "* * * *",
        "* * * * * * *",  # croniter's year field: not croner syntax
        "H * * * *",  # croniter's hash syntax: not croner syntax
        "61 * * * *",
        "0 0 30 2 *",  # valid fields, but February 30th never comes
        "2026-02-30T00:00:00Z",
    ],
)
def test_invalid_schedules(schedule: str) -> None:
    with pytest.raises(CronScheduleError) as exc:
        parse_schedule(schedule, NOW, plugin_id="p")
    assert str(exc.value) == (
        f'Invalid schedule "{schedule}": must be a valid cron expression or ISO 8601 datetime'
    )
    assert exc.value.plugin_id == "p"


def test_non_string_schedule() -> None:
    with pytest.raises(CronScheduleError) as exc:
        parse_schedule(5, NOW)
    assert str(exc.value) == (
        'Invalid schedule "5": must be a valid cron expression or ISO 8601 datetime'
    )


def test_next_fire_is_strictly_after() -> None:
    at = datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    assert next_fire("@hourly", at) == datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert next_fire("0 * * * *", at - timedelta(microseconds=1)) == at
    with pytest.raises(ValueError):
        next_fire("0 0 30 2 *", at)


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("* * * * * *", 1),
        ("*/30 * * * * *", 30),
        ("0,59 * * * * *", 1),  # :59 then :00 of the next minute
        ("0 * * * * *", 60),
        ("* * * * *", 60),
        ("1-5 * * * *", 60),
        ("*/5 * * * *", 300),
        ("15 */5 * * * *", 300),
        ("0,59 12 * * *", 3540),  # 12:59 to 12:00 the next day is longer
        ("0 0,23 * * *", 3600),  # 23:00 to 00:00 the next day
        ("@hourly", 3600),
        ("@daily", 86400),
        ("@weekly", 86400),  # a lower bound: days are not looked at
        ("0 0 L * *", 86400),
    ],
)
def test_min_gap_seconds(schedule: str, gap: int) -> None:
    assert min_gap_seconds(schedule) == gap
    # It is never more than the real gap between consecutive fire times.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    times = [at := next_fire(schedule, at) for _ in range(50)]
    assert min((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)) >= gap
