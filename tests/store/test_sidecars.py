"""The database file and its WAL sidecars are checked before SQLite maps anything: what
would fail later, or kill the host with SIGBUS (an immutable ``-shm``), is a StorageError
at open that says what to do.

The immutable case runs in a child process (a regression would kill it with SIGBUS, not
the test run) on a real ext4/tmpfs file made immutable with ``chattr +i``; it is skipped
where that cannot be done (not root, or a file system without the flag).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import StorageError
from emdash._store import Store

ROOT = Path(__file__).resolve().parents[2]

# Opens a store and leaves as a SIGKILL would: the -wal and -shm files stay behind.
LEAVE_SIDECARS = textwrap.dedent(
    """
    import os, sys
    from emdash._store import Store
    store = Store(sys.argv[1])
    store.options.set("written", 1)
    os._exit(0)
    """
)

OPEN = textwrap.dedent(
    """
    import sys
    from emdash import StorageError
    from emdash._store import Store
    try:
        Store(sys.argv[1]).close()
    except StorageError as exc:
        print(exc, flush=True)
        sys.exit(3)
    print("opened", flush=True)
    """
)


def _python(code: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    """A database whose last process died with it open (sidecars left behind)."""
    db = tmp_path / "site.db"
    assert _python(LEAVE_SIDECARS, db).returncode == 0
    assert (tmp_path / "site.db-shm").is_file()
    return db


@pytest.fixture
def immutable_shm(crashed: Path) -> Iterator[Path]:
    shm = Path(f"{crashed}-shm")
    made = subprocess.run(["chattr", "+i", str(shm)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system with it)")
    try:
        yield crashed
    finally:
        subprocess.run(["chattr", "-i", str(shm)], check=True)


def test_sidecars_left_by_a_crash_are_fine(crashed: Path) -> None:
    with Store(crashed) as store:
        assert store.options.get("written") == 1


def test_an_immutable_shm_is_a_storage_error_not_sigbus(immutable_shm: Path) -> None:
    done = _python(OPEN, immutable_shm)
    assert done.returncode != -signal.SIGBUS
    assert done.returncode == 3, done.stderr
    assert "site.db-shm cannot be written (immutable or append-only?)" in done.stdout
    assert "chattr -i" in done.stdout


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_a_shm_that_is_not_a_regular_file_is_refused(crashed: Path, kind: str) -> None:
    shm = Path(f"{crashed}-shm")
    shm.unlink()
    if kind == "symlink":
        shm.symlink_to("/dev/zero")
    elif kind == "directory":
        shm.mkdir()
    else:
        os.mkfifo(shm)
    with pytest.raises(StorageError, match=r"site\.db-shm is (a symlink|not a regular file)"):
        Store(crashed)


def test_a_wal_that_is_a_symlink_is_refused(crashed: Path) -> None:
    wal = Path(f"{crashed}-wal")
    target = wal.with_name("elsewhere")
    wal.rename(target)
    wal.symlink_to(target)
    with pytest.raises(StorageError, match=r"site\.db-wal is a symlink"):
        Store(crashed)


def test_a_database_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    os.mkfifo(db)
    with pytest.raises(StorageError, match="is not a regular file, so it cannot be a database"):
        Store(db)
