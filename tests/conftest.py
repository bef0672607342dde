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
