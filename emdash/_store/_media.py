"""Media: the ``_emdash_media`` rows and the local directory that holds the bytes.

Media item shape (EmDash's; one URL form for every path, the bridge's)::

    {"id", "filename", "mimeType", "size", "url": "/_emdash/api/media/file/<storageKey>",
     "storageKey", "status", "createdAt"}

Bytes and rows are kept in step with transaction callbacks: ``upload`` writes the file,
inserts the row, and removes the file again if that row is rolled back (a failed insert,
or a failed plugin invocation around it); ``delete`` removes the file only after the row's
deletion has committed. So neither an orphan file nor a row without its file survives a
rollback.

Nor a crash: a process killed between writing a file and committing its row (or between
committing a row's deletion and removing its file) leaves a file without a row. Each file
is written under an advisory ``flock`` that its writer holds until the row's transaction
has ended (:meth:`LocalMediaStorage.settle`), and the kernel drops it with the process. At
open, :meth:`MediaItems.sweep_orphans` deletes the files named like storage keys (and the
``.upload-`` temporaries) that have no row *and* no live writer: it takes the file's lock
first and checks for the row again under it, so an upload still in flight in another
process, or one that committed meanwhile, is never touched.

Storage keys are ``<ulid><.ext>``: the extension from the basename, lower-cased, kept only
if it matches ``^\\.[a-z0-9]{1,10}$``. ``LocalMediaStorage`` accepts only keys made of
letters, digits, ``.``, ``_`` and ``-`` (no ``/``, no ``..``), so a key can never name a
path outside its directory.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from .._shared._errors import BridgeError, NotFoundError
from ._cursor import Keyset, OrderKey, fetch_page
from ._db import Db, storage_os_error
from ._values import prefix_bounds

__all__ = ["MEDIA_STATUSES", "LocalMediaStorage", "MediaItems", "media_url", "storage_extension"]

MEDIA_STATUSES = ("pending", "ready", "failed")
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_EXT_RE = re.compile(r"\.[a-z0-9]{1,10}")
_MIME_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_KEYSET = Keyset("media", [OrderKey("id", "id", desc=True)])
MAX_FILENAME = 255
_TEMP_PREFIX = ".upload-"
# What put() names a file: a ULID and an optional extension (never anything an operator
# might have put in the directory by hand), or its temporary before the rename.
_OWN_FILE_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}(\.[a-z0-9]{1,10})?|\.upload-[A-Za-z0-9_]+")
_SWEEP_BATCH = 500

log = logging.getLogger("emdash.store")


def media_url(storage_key: str) -> str:
    return f"/_emdash/api/media/file/{storage_key}"


class LocalMediaStorage:
    """Media bytes as files in one directory, one file per storage key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # storage key -> descriptor holding the lock of a file whose row is not settled.
        self._held: dict[str, int] = {}
        self._held_lock = threading.Lock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_os_error(exc, f"creating the media directory {self.root}") from exc

    def path(self, key: str) -> Path:
        """The file for ``key`` (validated: it cannot point outside :attr:`root`)."""
        if type(key) is not str or not _KEY_RE.fullmatch(key) or ".." in key:
            raise BridgeError(
                f"Invalid media storage key {str(key)[:80]!r}: use letters, digits, '.', '_' "
                "and '-' only"
            )
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        """Write atomically (temporary file, then rename), and hold the file's advisory
        lock until :meth:`settle` (the caller settles once the row's transaction ended).

        The lock is what tells :meth:`MediaItems.sweep_orphans` in another process that
        this file's row may still commit; a killed writer's lock goes with it."""
        target = self.path(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise BridgeError("Media bytes must be bytes")
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=_TEMP_PREFIX)
        except OSError as exc:
            raise storage_os_error(exc, f"writing media file {key}") from exc
        try:
            # Taken before the first byte: the temporary is just as much in flight.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            view = memoryview(bytes(data))
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)
            os.replace(tmp, target)  # the lock is on the inode: it moves with it
        except BaseException as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise storage_os_error(exc, f"writing media file {key}") from exc
            raise
        with self._held_lock:
            self._held[key] = fd

    def settle_all(self) -> None:
        """Release every lock still held (the store is closing: no row can commit)."""
        with self._held_lock:
            held, self._held = self._held, {}
        for fd in held.values():
            os.close(fd)

    def settle(self, key: str) -> None:
        """The row for ``key`` committed or was rolled back: release the file's lock.
        Idempotent."""
        with self._held_lock:
            fd = self._held.pop(key, None)
        if fd is not None:
            os.close(fd)

    def get(self, key: str) -> bytes:
        target = self.path(key)
        try:
            # O_NOFOLLOW: a symlink planted in the directory is not followed.
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise NotFoundError(f"Media file not found: {key}") from None
        except OSError as exc:
            raise storage_os_error(exc, f"reading media file {key}") from exc
        try:
            with os.fdopen(fd, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise storage_os_error(exc, f"reading media file {key}") from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise storage_os_error(exc, f"deleting media file {key}") from exc
        return True


#: The version scope of the media library as a whole: what a list reads inside an
#: invocation; bumped (with the item's own scope) by every write to a media row.
LIBRARY_SCOPE = "md"


def item_scope(media_id: str) -> str:
    """The version scope of one media row: what a get depends on inside an invocation."""
    return f"md/{media_id}"


class MediaItems:
    def __init__(self, db: Db, files: LocalMediaStorage) -> None:
        self._db = db
        self._files = files

    def create(
        self,
        filename: str,
        mime_type: str,
        size: int | None,
        *,
        storage_key: str,
        status: str = "ready",
    ) -> dict[str, Any]:
        """Insert a media row for bytes already stored under ``storage_key``."""
        filename = _filename(filename)
        mime_type = _mime(mime_type)
        self._files.path(storage_key)  # validates the key
        if size is not None and (type(size) is not int or size < 0):
            raise BridgeError("Media size must be a non-negative integer")
        if status not in MEDIA_STATUSES:
            raise BridgeError(
                f'Invalid media status "{str(status)[:32]}": use pending, ready or failed'
            )
        media_id = self._db.new_id()
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO _emdash_media (id, filename, mime_type, size, storage_key, status, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (media_id, filename, mime_type, size, storage_key, status, self._db.now()),
            )
            self._db.touch(item_scope(media_id), LIBRARY_SCOPE)
            found = self.get(media_id)
        assert found is not None
        return found

    def upload(self, filename: str, content_type: str, data: bytes) -> dict[str, Any]:
        """Store bytes and their row: ``{"mediaId", "storageKey", "url"}``."""
        filename = _filename(filename)
        _mime(content_type)
        key = self._db.new_id() + storage_extension(filename)
        self._files.put(key, data)
        item = self.adopt(key, filename, content_type, len(data))
        return {"mediaId": item["id"], "storageKey": key, "url": media_url(key)}

    def adopt(self, key: str, filename: str, mime_type: str, size: int) -> dict[str, Any]:
        """Insert the row for bytes just :meth:`LocalMediaStorage.put` under ``key``.

        The file follows the row: removed if the row is rolled back (here, or with an
        enclosing transaction later), its lock released once the outermost transaction
        has ended either way."""
        try:
            with self._db.transaction():
                self._db.on_rollback(lambda: self._drop(key))
                self._db.after_commit(lambda: self._files.settle(key))
                return self.create(filename, mime_type, size, storage_key=key)
        except BaseException:
            self._drop(key)
            raise

    def _drop(self, key: str) -> None:
        try:
            self._files.delete(key)
        finally:
            self._files.settle(key)

    def sweep_orphans(self) -> int:
        """Delete media files that no row names and no live process is writing (left by
        a process killed mid-upload or mid-delete); returns how many. See the module
        docstring for why an upload in flight elsewhere is never touched."""
        try:
            with os.scandir(self._files.root) as entries:
                names = [
                    e.name
                    for e in entries
                    if _OWN_FILE_RE.fullmatch(e.name) and e.is_file(follow_symlinks=False)
                ]
        except OSError as exc:
            raise storage_os_error(exc, f"listing the media directory {self._files.root}") from exc
        swept = 0
        for start in range(0, len(names), _SWEEP_BATCH):
            batch = names[start : start + _SWEEP_BATCH]
            for name in self._rowless(batch):
                swept += self._sweep_one(name)
        if swept:
            log.warning(
                "store: removed %d media file(s) without a row in %s (left by a process "
                "killed during an upload or a delete)",
                swept,
                self._files.root,
            )
        return swept

    def _rowless(self, names: builtins.list[str]) -> builtins.list[str]:
        keys = [n for n in names if not n.startswith(_TEMP_PREFIX)]
        marks = ",".join("?" * len(keys))
        known = (
            {
                r["storage_key"]
                for r in self._db.rows(
                    f"SELECT storage_key FROM _emdash_media WHERE storage_key IN ({marks})", keys
                )
            }
            if keys
            else set()
        )
        return [n for n in names if n not in known]

    def _sweep_one(self, name: str) -> int:
        path = self._files.root / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return 0  # gone already, or not ours to open: leave it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its writer is alive: its row may still commit
            # Under the lock the writer has settled (or died): whether a row exists is
            # final now. Checked again, since it may have committed after the batch query.
            if not name.startswith(_TEMP_PREFIX) and self._rowless([name]) == []:
                return 0
            try:
                os.unlink(path)
            except FileNotFoundError:
                return 0
            except OSError as exc:
                log.warning("store: could not remove orphan media file %s: %s", path, exc)
                return 0
            return 1
        finally:
            os.close(fd)

    def get(self, id: str) -> dict[str, Any] | None:
        """Any status."""
        if type(id) is not str:
            raise BridgeError("Missing required string parameter: id")
        row = self._db.row(
            "SELECT * FROM _emdash_media WHERE id = ?", (id,), scopes=(item_scope(id),)
        )
        return None if row is None else _item(row)

    def list(
        self, *, limit: object = 50, cursor: object = None, mime_type: str | None = None
    ) -> dict[str, Any]:
        """Ready items, newest first; ``mime_type`` is a literal prefix (``"image/"``)."""
        filters = "status = 'ready'"
        params: builtins.list[Any] = []
        if mime_type is not None:
            if type(mime_type) is not str:
                raise BridgeError("Parameter mimeType must be a string when provided")
            low, high = prefix_bounds(mime_type)
            filters += " AND mime_type >= ?"
            params.append(low)
            if high is not None:
                filters += " AND mime_type < ?"
                params.append(high)
        page = fetch_page(
            self._db,
            _KEYSET,
            columns="*",
            table="_emdash_media",
            scope=("1", ()),
            filters=(filters, params),
            limit=limit,
            cursor=cursor,
            versions=(LIBRARY_SCOPE,),
        )
        out: dict[str, Any] = {"items": [_item(r) for r in page.rows], "hasMore": page.has_more}
        if page.cursor is not None:
            out["cursor"] = page.cursor
        return out

    def delete(self, id: str) -> bool:
        """Delete the row; its file is removed once that deletion has committed."""
        if type(id) is not str:
            raise BridgeError("Missing required string parameter: id")
        with self._db.transaction():
            row = self._db.row(
                "SELECT storage_key FROM _emdash_media WHERE id = ?",
                (id,),
                scopes=(item_scope(id),),
            )
            if row is None:
                return False
            self._db.execute("DELETE FROM _emdash_media WHERE id = ?", (id,))
            self._db.touch(item_scope(id), LIBRARY_SCOPE)
            key = row["storage_key"]
            self._db.after_commit(lambda: self._files.delete(key))
            return True

    def set_status(self, id: str, status: str) -> dict[str, Any] | None:
        if status not in MEDIA_STATUSES:
            raise BridgeError(
                f'Invalid media status "{str(status)[:32]}": use pending, ready or failed'
            )
        with self._db.transaction():
            if self._db.execute(
                "UPDATE _emdash_media SET status = ? WHERE id = ?", (status, str(id))
            ):
                self._db.touch(item_scope(str(id)), LIBRARY_SCOPE)
        return self.get(id)


def storage_extension(filename: str) -> str:
    """``.ext`` of the basename, lower-cased, if it is 1-10 letters/digits; else empty."""
    base = filename.rsplit("/", 1)[-1]
    if "." not in base:
        return ""
    ext = "." + base.rsplit(".", 1)[-1].lower()
    return ext if _EXT_RE.fullmatch(ext) else ""


def _item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "filename": row["filename"],
        "mimeType": row["mime_type"],
        "size": row["size"],
        "url": media_url(row["storage_key"]),
        "storageKey": row["storage_key"],
        "status": row["status"],
        "createdAt": row["created_at"],
    }


def _filename(value: object) -> str:
    if (
        type(value) is not str
        or not value
        or len(value) > MAX_FILENAME
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        raise BridgeError(
            f"Invalid media filename {str(value)[:80]!r}: 1-{MAX_FILENAME} characters, "
            "no control characters"
        )
    return value


def _mime(value: object) -> str:
    if type(value) is not str or not _MIME_RE.fullmatch(value):
        raise BridgeError(f'Invalid media type "{str(value)[:80]}": expected e.g. "image/png"')
    return value
