"""Media rows and the local file storage, kept in step across commits and rollbacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emdash._shared._errors import (
    BridgeError,
    InvalidCursorError,
    NotFoundError,
    StorageError,
)
from emdash._store import LocalMediaStorage, Store, storage_extension


def test_create_get_and_item_shape(store: Store) -> None:
    store.media_files.put("abc.png", b"\x89PNG")
    item = store.media_items.create("cat.png", "image/png", 4, storage_key="abc.png")
    assert item | {"id": "-"} == {
        "id": "-",
        "filename": "cat.png",
        "mimeType": "image/png",
        "size": 4,
        "url": "/_emdash/api/media/file/abc.png",
        "storageKey": "abc.png",
        "status": "ready",
        "createdAt": "2026-11-22T05:33:24.123Z",
    }
    assert store.media_items.get(item["id"]) == item
    assert store.media_items.get("missing") is None


def test_upload_stores_bytes_and_row(store: Store, tmp_path: Path) -> None:
    out = store.media_items.upload("photos/Cat.JPG", "image/jpeg", b"jpeg-bytes")
    assert set(out) == {"mediaId", "storageKey", "url"}
    assert out["storageKey"].endswith(".jpg") and len(out["storageKey"]) == 30
    assert out["url"] == f"/_emdash/api/media/file/{out['storageKey']}"
    assert store.media_files.get(out["storageKey"]) == b"jpeg-bytes"
    assert (tmp_path / "media" / out["storageKey"]).read_bytes() == b"jpeg-bytes"
    item = store.media_items.get(out["mediaId"])
    assert item is not None and (item["filename"], item["size"]) == ("photos/Cat.JPG", 10)


@pytest.mark.parametrize(
    ("filename", "ext"),
    [
        ("a.PNG", ".png"),
        ("a.tar.gz", ".gz"),
        ("noext", ""),
        ("a.", ""),
        ("a.toolongextension", ""),
        ("dir.d/file", ""),
        ("a.p-g", ""),
        (".hidden", ".hidden"),
    ],
)
def test_storage_extension(filename: str, ext: str) -> None:
    assert storage_extension(filename) == ext


def test_upload_rolled_back_with_its_invocation_leaves_no_file(store: Store) -> None:
    keys: list[str] = []
    with pytest.raises(RuntimeError), store.invocation():
        keys.append(store.media_items.upload("a.png", "image/png", b"x")["storageKey"])
        raise RuntimeError("plugin failed after uploading")
    assert not store.media_files.exists(keys[0])
    assert store.media_items.list()["items"] == []


def test_delete_removes_the_file_only_after_commit(store: Store) -> None:
    out = store.media_items.upload("a.png", "image/png", b"x")
    with pytest.raises(RuntimeError), store.invocation():
        assert store.media_items.delete(out["mediaId"]) is True
        assert store.media_files.exists(out["storageKey"])  # not yet committed
        raise RuntimeError("rolled back")
    assert store.media_files.get(out["storageKey"]) == b"x"
    assert store.media_items.get(out["mediaId"]) is not None
    assert store.media_items.delete(out["mediaId"]) is True
    assert not store.media_files.exists(out["storageKey"])
    assert store.media_items.delete(out["mediaId"]) is False


def test_list_only_ready_newest_first_with_mime_prefix(store: Store) -> None:
    made = []
    for i, mime in enumerate(
        ["image/png", "image/jpeg", "video/mp4", "application/pdf", "image/gif"]
    ):
        store.media_files.put(f"k{i}", b"")
        made.append(store.media_items.create(f"f{i}", mime, 0, storage_key=f"k{i}"))
    store.media_files.put("pending", b"")
    store.media_items.create("p", "image/png", None, storage_key="pending", status="pending")
    page = store.media_items.list()
    assert [i["filename"] for i in page["items"]] == ["f4", "f3", "f2", "f1", "f0"]
    assert page["hasMore"] is False and "cursor" not in page
    assert [i["filename"] for i in store.media_items.list(mime_type="image/")["items"]] == [
        "f4",
        "f1",
        "f0",
    ]
    assert store.media_items.list(mime_type="image/%")["items"] == []
    first = store.media_items.list(limit=2)
    second = store.media_items.list(limit=2, cursor=first["cursor"])
    third = store.media_items.list(limit=2, cursor=second["cursor"])
    assert [i["filename"] for i in first["items"] + second["items"] + third["items"]] == [
        "f4",
        "f3",
        "f2",
        "f1",
        "f0",
    ]
    assert third["hasMore"] is False
    with pytest.raises(InvalidCursorError):
        store.media_items.list(cursor="nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filename": ""}, "Invalid media filename '': 1-255 characters, no control characters"),
        (
            {"filename": "a\nb"},
            "Invalid media filename 'a\\nb': 1-255 characters, no control characters",
        ),
        ({"mime_type": "png"}, 'Invalid media type "png": expected e.g. "image/png"'),
        ({"size": -1}, "Media size must be a non-negative integer"),
        ({"status": "gone"}, 'Invalid media status "gone": use pending, ready or failed'),
        (
            {"storage_key": "../etc/passwd"},
            "Invalid media storage key '../etc/passwd': use letters, digits, '.', '_' and '-' only",
        ),
    ],
)
def test_create_validation(store: Store, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "filename": "a.png",
        "mime_type": "image/png",
        "size": 1,
        "storage_key": "k",
        "status": "ready",
    }
    args.update(kwargs)
    with pytest.raises(BridgeError) as info:
        store.media_items.create(
            args["filename"],  # type: ignore[arg-type]
            args["mime_type"],  # type: ignore[arg-type]
            args["size"],  # type: ignore[arg-type]
            storage_key=args["storage_key"],  # type: ignore[arg-type]
            status=args["status"],  # type: ignore[arg-type]
        )
    assert str(info.value) == message


@pytest.mark.parametrize(
    "key", ["../x", "a/b", "..", "a..b", ".hidden", "", "x" * 201, "/etc/passwd", "a\x00b", "é"]
)
def test_file_storage_refuses_keys_outside_its_directory(tmp_path: Path, key: str) -> None:
    files = LocalMediaStorage(tmp_path / "m")
    with pytest.raises(BridgeError, match="^Invalid media storage key"):
        files.put(key, b"x")
    with pytest.raises(BridgeError):
        files.get(key)
    with pytest.raises(BridgeError):
        files.delete(key)
    assert os.listdir(tmp_path / "m") == []


def test_file_storage_basics_and_symlinks(tmp_path: Path) -> None:
    files = LocalMediaStorage(tmp_path / "m")
    files.put("a.txt", b"one")
    files.put("a.txt", b"two")
    assert files.get("a.txt") == b"two"
    assert sorted(os.listdir(tmp_path / "m")) == ["a.txt"]  # no temporary leftovers
    with pytest.raises(NotFoundError) as info:
        files.get("missing")
    assert str(info.value) == "Media file not found: missing"
    assert files.delete("a.txt") is True and files.delete("a.txt") is False
    (tmp_path / "secret").write_bytes(b"secret")
    os.symlink(tmp_path / "secret", tmp_path / "m" / "link")
    with pytest.raises(StorageError):
        files.get("link")


def test_temporary_media_dir_is_removed_at_close() -> None:
    s = Store()
    root = s.media_files.root
    s.media_items.upload("a.png", "image/png", b"x")
    assert root.is_dir()
    s.close()
    assert not root.exists()


def test_file_database_keeps_media_next_to_it_across_restarts(tmp_path: Path) -> None:
    # No media_dir (what Runtime("site.db") does): the bytes must outlive close() like the
    # rows do, or every media row points at nothing after a restart.
    db = tmp_path / "site.db"
    with Store(db) as s:
        media_id = s.media_items.upload("a.png", "image/png", b"bytes")["mediaId"]
        root = s.media_files.root
    assert root == tmp_path / "site.db-media"
    assert root.is_dir()
    with Store(db) as s:
        item = s.media_items.get(media_id)
        assert item is not None
        assert s.media_files.get(item["storageKey"]) == b"bytes"
