"""Suite-wide fixtures: a clean environment so host variables never leak into tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# The PostgreSQL server fixtures (pg_server, pg_database), for every test directory.
from tests.pgserver import pg_database, pg_server  # noqa: F401


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Drop proxy and EMDASH_* variables for the duration of each test."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith("EMDASH_") or key.lower() in {
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "no_proxy",
        }:
            del os.environ[key]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


#: The store backends the suite runs on (``EMDASH_TEST_BACKENDS``, comma-separated; both by
#: default). `.ci/other-pythons` runs the other interpreters on SQLite only: PostgreSQL's
#: dialect and driver code is the same on every interpreter, and the default interpreter's
#: run covers it in full. Tests left out are *deselected* (counted in pytest's summary),
#: never skipped silently.
_BACKENDS = frozenset(
    (os.environ.get("EMDASH_TEST_BACKENDS") or "sqlite,postgresql").replace(" ", "").split(",")
)
# own_server: tests/store/test_postgres.py's server of one test's own (stopped and started).
_PG_FIXTURES = frozenset({"pg_server", "pg_database", "own_server"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "postgresql" in _BACKENDS:
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        fixtures = set(getattr(item, "fixturenames", ()))
        uses_pg = params.get("backend") == "postgresql" or bool(_PG_FIXTURES & fixtures)
        (dropped if uses_pg else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
