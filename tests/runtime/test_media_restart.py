"""``Runtime("site.db")`` without ``media_dir``: uploaded bytes survive a restart."""

from __future__ import annotations

from pathlib import Path

from emdash._runtime._runtime import Runtime


def test_media_uploaded_without_a_media_dir_is_readable_after_a_restart(db_path: Path) -> None:
    with Runtime(db_path) as rt:
        media_id = rt.media.upload("photo.png", "image/png", b"\x89PNG bytes")["id"]
    with Runtime(db_path) as rt:
        assert rt.media.read(media_id) == b"\x89PNG bytes"
    assert (db_path.parent / (db_path.name + "-media")).is_dir()
