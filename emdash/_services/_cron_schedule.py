"""Cron task names and schedules: validation, one-shot vs recurring, next fire time.

Pure functions, no store. The texts of the validation errors are EmDash's (docs/plugin-reference.md, ctx.cron), so a
plugin that pattern-matches them keeps working.

Schedules are interpreted in UTC. Cron syntax follows croner (what EmDash uses): 5 fields,
6 fields with *seconds first*, or one of the ``@`` aliases. croniter accepts more than
croner (a 7th "year" field, ``H``/``R`` hash and random fields); those are refused so that a
schedule means the same thing here as in EmDash.

One deliberate improvement: EmDash stores a one-shot's ISO string verbatim and later
compares it *as a string* with "now", so ``2026-05-01T12:00:00+02:00`` fires at the wrong
time. We parse it and store the canonical UTC form (``YYYY-MM-DDTHH:MM:SS.mmmZ``), which
sorts and compares correctly. A datetime without an offset is taken as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from .._shared._errors import CronScheduleError

__all__ = [
    "CronScheduleError",
    "ParsedSchedule",
    "format_iso",
    "is_one_shot",
    "min_gap_seconds",
    "next_fire",
    "parse_iso",
    "parse_schedule",
    "validate_task_name",
]

TASK_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]*$")
ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# croniter-only field syntax croner does not have: H (hash) and R (random) expressions.
_HASH_OR_RANDOM = re.compile(r"^[HR](\(\d+-\d+\))?(/\d+)?$")


@dataclass(frozen=True, slots=True)
class ParsedSchedule:
    """A validated schedule: whether it runs once, and its first fire time (canonical ISO)."""

    schedule: str
    one_shot: bool
    next_run_at: str


def format_iso(dt: datetime) -> str:
    """Canonical timestamp: UTC, milliseconds, ``Z`` (sorts like the instants it names)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime | None:
    """Parse an ISO-8601 date or datetime (``Z`` allowed); naive means UTC. None if invalid."""
    if type(text) is not str or not text or len(text) > 64:
        return None
    candidate = text.strip()
    if candidate != text or not candidate[:4].isdigit():
        return None  # no leading/trailing junk, and a 4-digit year first (not "5 * * * *")
    try:
        dt = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def validate_task_name(name: object, *, plugin_id: str | None = None) -> str:
    """Return ``name`` if it is a valid task name, else raise :class:`CronScheduleError`."""
    if type(name) is not str or not 1 <= len(name) <= 128:
        length = len(name) if type(name) is str else 0
        raise CronScheduleError(
            f"Invalid task name: must be 1-128 characters, got {length}", plugin_id=plugin_id
        )
    if not TASK_NAME_RE.match(name):
        raise CronScheduleError(
            f'Invalid task name "{name}": must start with a letter and contain only letters, '
            "numbers, dashes, or underscores",
            plugin_id=plugin_id,
        )
    return name


def _cron_ok(expr: str) -> bool:
    """True when ``expr`` is a croner-compatible cron expression or alias."""
    if expr.startswith("@"):
        return expr.lower() in ALIASES
    fields = expr.split()
    if len(fields) not in (5, 6) or any(_HASH_OR_RANDOM.match(f) for f in fields):
        return False
    try:
        return bool(croniter.is_valid(expr, second_at_beginning=len(fields) == 6))
    except Exception:  # croniter raises assorted types on odd input; any of them means "no"
        return False


def is_one_shot(schedule: str) -> bool:
    """EmDash's ``isOneShot``: ``@...`` and cron expressions recur; a parseable date runs once.

    Cron wins over dates, so ``"1-5 * * * *"`` is never misread as a date.
    """
    if schedule.startswith("@") or _cron_ok(schedule):
        return False
    return parse_iso(schedule) is not None


def next_fire(schedule: str, after: datetime) -> datetime:
    """The first fire time of a recurring ``schedule`` strictly after ``after`` (UTC).

    Raises ``ValueError`` when the expression never fires (``0 0 30 2 *``).
    """
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    expr = schedule.lower() if schedule.startswith("@") else schedule
    six = not expr.startswith("@") and len(expr.split()) == 6
    try:
        it = croniter(expr, after.astimezone(UTC), second_at_beginning=six)
        nxt = it.get_next(datetime)
    except Exception as exc:  # CroniterBadDateError: no date matches, within croniter's horizon
        raise ValueError(f"cron expression {schedule!r} never fires") from exc
    if not isinstance(nxt, datetime):
        raise ValueError(f"cron expression {schedule!r} never fires")
    return nxt.astimezone(UTC)


def min_gap_seconds(schedule: str) -> int:
    """The shortest time, in seconds, between two consecutive runs of a recurring schedule.

    Computed from the seconds, minutes and hours fields, assuming the schedule runs on
    consecutive days. That is exact for every gap shorter than a day (the only gaps the
    minimum interval is about: it is capped at a day), and a lower bound otherwise: a
    schedule limited to some days of the week or month only runs *less* often than this says.

    Raises ``ValueError`` for what :func:`parse_schedule` would refuse.
    """
    expr = schedule.lower() if schedule.startswith("@") else schedule
    six = not expr.startswith("@") and len(expr.split()) == 6
    try:
        fields = croniter.expand(expr, second_at_beginning=six)[0]
    except Exception as exc:  # croniter raises assorted types on odd input
        raise ValueError(f"cron expression {schedule!r} is not valid") from exc

    def values(index: int, size: int) -> list[int]:
        if index >= len(fields):
            return [0]  # 5 fields: second 0 of the minute
        got = fields[index]
        if any(v == "*" for v in got):
            return list(range(size))
        if not all(type(v) is int and 0 <= v < size for v in got):
            raise ValueError(f"cron expression {schedule!r} is not valid")
        return sorted({int(v) for v in got})

    seconds, minutes, hours = values(5, 60), values(0, 60), values(1, 24)
    # Runs sorted by time of day are (hour, minute, second) in lexicographic order, so a
    # gap between neighbours is either within one minute, across two listed minutes of
    # one hour, or across two listed hours (the last one wrapping to the next day).
    gaps = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    gaps += [
        (b - a) * 60 + seconds[0] - seconds[-1] for a, b in zip(minutes, minutes[1:], strict=False)
    ]
    first = minutes[0] * 60 + seconds[0]
    last = minutes[-1] * 60 + seconds[-1]
    gaps += [
        (b - a) * 3600 + first - last
        for a, b in zip(hours, [*hours[1:], hours[0] + 24], strict=True)
    ]
    return min(gaps)


def parse_schedule(
    schedule: object, now: datetime, *, plugin_id: str | None = None
) -> ParsedSchedule:
    """Validate a schedule and compute its first fire time.

    Raises ``Invalid schedule "<s>": must be a valid cron expression or ISO 8601 datetime``
    for anything else, including cron expressions that can never fire.
    """

    def invalid() -> CronScheduleError:
        shown = schedule if type(schedule) is str else repr(schedule)
        return CronScheduleError(
            f'Invalid schedule "{shown}": must be a valid cron expression or ISO 8601 datetime',
            plugin_id=plugin_id,
        )

    if type(schedule) is not str or not 1 <= len(schedule) <= 256:
        raise invalid()
    if schedule.startswith("@") or _cron_ok(schedule):
        if not _cron_ok(schedule):
            raise invalid()
        try:
            first = next_fire(schedule, now)
        except ValueError:
            raise invalid() from None
        return ParsedSchedule(schedule, False, format_iso(first))
    at = parse_iso(schedule)
    if at is None:
        raise invalid()
    return ParsedSchedule(schedule, True, format_iso(at))
