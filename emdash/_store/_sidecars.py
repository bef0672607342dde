"""Open-time checks of a database file and its WAL sidecars (``-wal``, ``-shm``).

Why: SQLite maps ``<database>-shm`` (the WAL index) into memory with ``MAP_SHARED`` and
writes to it on every transaction. When the kernel refuses such a write to the mapping (the
file was made immutable or append-only with ``chattr``, so ext4's page fault handler
answers with SIGBUS) or the mapped part of the file is gone (another process truncated
it), the process is killed by SIGBUS in the middle of a statement: no exception, no
Python frame to catch it in. What can be seen before SQLite maps anything is checked
here, so the host fails with a :class:`StorageError` that says what to do instead:

- the database, if it exists, is a regular file (a FIFO or a device is not a database);
- ``-wal`` and ``-shm``, if they exist (a process that was killed leaves them), are regular
  files, not symlinks (SQLite would follow one and map whatever it names), and can be
  opened for reading and writing (an immutable or append-only file cannot: ``EPERM``).

What cannot be guarded from inside the process: a change made while the site runs (an
operator's ``chattr +i``, another program truncating ``-shm``) still ends the process with
SIGBUS at its next write; the check then refuses the restart with the reason. See
docs/resource-model.md.
"""

from __future__ import annotations

import errno
import os
import stat

from .._shared._errors import StorageError

__all__ = ["check_database_files"]

_FIX = (
    "only while no process has the site open: make it a plain file this process may read "
    "and write (`lsattr`/`chattr -i -a` for immutable or append-only flags), or delete it "
    "(SQLite rebuilds -shm; a -wal holds the last commits, so delete one only after a "
    "backup)"
)


def check_database_files(path: str) -> None:
    """Raise :class:`StorageError` if ``path`` or its sidecars would make SQLite fail in a
    way it cannot report (see the module docstring). Missing files are fine."""
    try:
        st = os.stat(path)  # the database itself may be a symlink the operator chose
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _error(path, f"cannot be examined ({exc.strerror})") from exc
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise StorageError(
            f"Storage failure: {path} is not a regular file, so it cannot be a database: "
            "point emdash at a database file (a new path creates one)"
        )
    for suffix in ("-wal", "-shm"):
        _check_sidecar(path + suffix)


def _check_sidecar(sidecar: str) -> None:
    try:
        st = os.lstat(sidecar)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _error(sidecar, f"cannot be examined ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise _error(sidecar, f"is {kind}")
    # O_NONBLOCK: never wait on anything that replaced the file since the lstat above.
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(sidecar, flags)
    except OSError as exc:
        why = {
            errno.EPERM: "cannot be written (immutable or append-only?)",
            errno.EACCES: "cannot be written by this process (permissions)",
            errno.EROFS: "is on a read-only file system",
        }.get(exc.errno or 0, f"cannot be opened for writing ({exc.strerror})")
        raise _error(sidecar, why) from exc
    os.close(fd)


def _error(sidecar: str, why: str) -> StorageError:
    return StorageError(
        f"Storage failure: {sidecar} {why}; SQLite must write it while the database is "
        f"open, and would otherwise fail or kill this process with SIGBUS. Fix it {_FIX}"
    )
