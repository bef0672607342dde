"""What a caller passes as the database is checked: anything that is not a path is a
ConfigError that says what to pass (it was a raw TypeError from ``os.fspath``), and a
bytes path works like its text spelling, media directory included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import emdash
from emdash import ConfigError
from emdash._store import Store


@pytest.mark.parametrize("database", [123, None, 1.5, ["site.db"]])
def test_a_database_that_is_not_a_path_is_a_config_error(database: object) -> None:
    with pytest.raises(ConfigError, match=r"^The database must be a file path .* got "):
        emdash.Runtime(database)  # type: ignore[arg-type]  # the wrong type is the point


def test_a_bytes_path_is_a_path(tmp_path: Path) -> None:
    db = os.fsencode(tmp_path / "site.db")
    with Store(db) as store:  # type: ignore[arg-type]  # bytes: accepted like os.PathLike
        store.options.set("k", 1)
        assert store.media_files.root == tmp_path / "site.db-media"
    assert (tmp_path / "site.db").is_file()
