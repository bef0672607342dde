"""Fixtures for the store tests: a real SQLite file in a temporary directory, and a real
PostgreSQL database on the session's server (``tests/pgserver.py``): every test that takes
``store`` runs on both backends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of one test: a SQLite file path, or a new PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "site.db")
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def store(backend: str, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(backend, media_dir=tmp_path / "media", clock=clock)
    # No background flush by age: tests here assert what is still buffered, and that
    # must not depend on how long the machine takes between two lines.
    s.audit_records.flush_after_s = None
    try:
        yield s
    finally:
        s.close()


def sqlite_only(store: Store, what: str) -> None:
    """Skip the rest of a test on PostgreSQL: it inspects something only SQLite has."""
    if store.backend != "sqlite":
        pytest.skip(f"SQLite only: {what}")


def other_thread(fn: Callable[[], object]) -> None:
    """Run ``fn`` to completion on another thread (outside this thread's invocation scope);
    its exception, if any, is raised here."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    if errors:
        raise errors[0]
