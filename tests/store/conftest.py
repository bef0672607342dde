"""Fixtures for the store tests: real SQLite files in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emdash._store import Store


class Clock:
    """A settable clock: tests freeze time to produce timestamp ties, or step it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 22, 5, 33, 24, 123000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(tmp_path / "site.db", media_dir=tmp_path / "media", clock=clock)
    # No background flush by age: tests here assert what is still buffered, and that
    # must not depend on how long the machine takes between two lines.
    s.audit_records.flush_after_s = None
    try:
        yield s
    finally:
        s.close()
