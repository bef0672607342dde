"""Media and taxonomies through the bridge on a real store and a real media directory."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from emdash._bridge._cms import MAX_UPLOAD_BYTES
from emdash._bridge._dispatch import Bridge
from emdash._shared._errors import BridgeError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def call(bridge: Bridge, pid: str, method: str, **params: Any) -> Any:
    return bridge.dispatch(pid, method, params)


def upload(
    bridge: Bridge, filename: str = "photo.png", content_type: str = "image/png", data: bytes = PNG
) -> Any:
    return call(
        bridge,
        "writer",
        "media/upload",
        filename=filename,
        contentType=content_type,
        bytes=base64.b64encode(data).decode(),
        encoding="base64",
    )


def test_upload_get_list_delete(bridge: Bridge, store: Any) -> None:
    result = upload(bridge)
    assert set(result) == {"mediaId", "storageKey", "url"}
    key = result["storageKey"]
    assert re.fullmatch(r"[0-9A-Z]{26}\.png", key)
    assert result["url"] == f"/_emdash/api/media/file/{key}"
    assert store.media_files.get(key) == PNG
    item = call(bridge, "reader", "media/get", id=result["mediaId"])
    assert (item["filename"], item["mimeType"], item["size"], item["url"]) == (
        "photo.png",
        "image/png",
        len(PNG),
        result["url"],
    )
    # media:write implies media:read
    assert call(bridge, "writer", "media/get", id=result["mediaId"]) == item
    listed = call(bridge, "reader", "media/list", mimeType="image/")
    assert [i["id"] for i in listed["items"]] == [result["mediaId"]]
    assert call(bridge, "reader", "media/list", mimeType="video/")["items"] == []
    assert call(bridge, "writer", "media/delete", id=result["mediaId"]) is True
    assert call(bridge, "writer", "media/delete", id=result["mediaId"]) is False
    assert call(bridge, "reader", "media/get", id=result["mediaId"]) is None
    assert not store.media_files.exists(key)


@pytest.mark.parametrize(
    ("filename", "suffix"),
    [
        ("Photo.JPG", ".jpg"),
        ("../../etc/passwd", ""),
        ("dir/evil.PnG", ".png"),
        ("archive.tar.gz", ".gz"),
        ("noext", ""),
        ("weird.ex$t", ""),
        ("long.abcdefghijk", ""),
        (".hidden", ".hidden"),
    ],
)
def test_storage_key_is_ulid_plus_sanitised_extension(
    bridge: Bridge, store: Any, filename: str, suffix: str
) -> None:
    result = upload(bridge, filename=filename)
    assert re.fullmatch(r"[0-9A-Z]{26}" + re.escape(suffix), result["storageKey"])
    assert store.media_files.path(result["storageKey"]).parent == store.media_files.root
    assert call(bridge, "reader", "media/get", id=result["mediaId"])["filename"] == filename


def test_bytes_as_a_list_of_numbers(bridge: Bridge, store: Any) -> None:
    result = call(
        bridge,
        "writer",
        "media/upload",
        filename="a.pdf",
        contentType="application/pdf",
        bytes=[1, 2, 255],
    )
    assert store.media_files.get(result["storageKey"]) == b"\x01\x02\xff"


@pytest.mark.parametrize(
    "content_type", ["image/png", "IMAGE/JPEG", "video/mp4", "audio/ogg", "application/pdf"]
)
def test_allowed_content_types(bridge: Bridge, content_type: str) -> None:
    result = upload(bridge, content_type=content_type)
    assert (
        call(bridge, "reader", "media/get", id=result["mediaId"])["mimeType"]
        == content_type.lower()
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "application/javascript",
        "application/pdf2",
        "image",
        "image/png; charset=x",
        "image/png\r\nX-Evil: 1",
        "imagex/png",
        "",
        "application/x-pdf",
    ],
)
def test_other_content_types_are_refused(bridge: Bridge, store: Any, content_type: str) -> None:
    with pytest.raises(BridgeError) as info:
        upload(bridge, content_type=content_type)
    assert str(info.value) == (
        f"Unsupported content type: {content_type}. Allowed: image/*, video/*, audio/*, application/pdf"
    )
    assert list(store.media_files.root.iterdir()) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"bytes": "AAAA"},
            "media/upload: bytes must be a base64-encoded string or an array of bytes",
        ),
        ({"bytes": "!!!", "encoding": "base64"}, "media/upload: bytes is not valid base64"),
        ({"bytes": [1, 256]}, "Parameter bytes must be a string or array of numbers"),
        ({"bytes": {"0": 1}}, "Parameter bytes must be a string or array of numbers"),
        ({"bytes": None}, "Parameter bytes must be a string or array of numbers"),
    ],
)
def test_upload_bytes_texts(bridge: Bridge, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch(
            "writer", "media/upload", {"filename": "a.png", "contentType": "image/png", **params}
        )
    assert str(info.value) == message


def test_upload_size_cap(bridge: Bridge, store: Any) -> None:
    too_big = base64.b64encode(b"\x00" * (MAX_UPLOAD_BYTES + 3)).decode()
    with pytest.raises(
        BridgeError,
        match=r"^media/upload: file of \d+ bytes exceeds the upload limit of 10485760 bytes$",
    ):
        call(
            bridge,
            "writer",
            "media/upload",
            filename="a.png",
            contentType="image/png",
            bytes=too_big,
            encoding="base64",
        )
    assert list(store.media_files.root.iterdir()) == []


def test_upload_in_a_failed_invocation_leaves_no_file(bridge: Bridge, store: Any) -> None:
    with pytest.raises(RuntimeError), store.invocation():
        result = upload(bridge)
        assert store.media_files.exists(result["storageKey"])
        raise RuntimeError("the plugin failed after uploading")
    assert list(store.media_files.root.iterdir()) == []
    assert call(bridge, "reader", "media/list")["items"] == []


def test_bad_filenames_are_refused(bridge: Bridge, store: Any) -> None:
    with pytest.raises(BridgeError, match="^Invalid media filename"):
        upload(bridge, filename="a\nb.png")
    with pytest.raises(BridgeError) as info:
        call(bridge, "writer", "media/upload", contentType="image/png", bytes=[1])
    assert str(info.value) == "Missing required string parameter: filename"
    assert list(store.media_files.root.iterdir()) == []


# --- taxonomies ------------------------------------------------------------------------------


def test_taxonomy_reads(bridge: Bridge, store: Any) -> None:
    store.taxonomies.create_taxonomy("tags", "Tags", collections=["posts"])
    store.taxonomies.create_taxonomy("tags", "Étiquettes", locale="fr")
    python = store.taxonomies.add_term("tags", "python", "Python")
    store.taxonomies.add_term("tags", "rust", "Rust", sort_order=1)
    post = store.content_items.create("posts", {"title": "T"})
    store.taxonomies.assign("posts", post["id"], python["id"])

    defs = call(bridge, "reader", "taxonomy/list")
    assert [(d["name"], d["locale"]) for d in defs] == [("tags", "en"), ("tags", "fr")]
    assert [d["locale"] for d in call(bridge, "reader", "taxonomy/list", locale="fr")] == ["fr"]
    terms = call(bridge, "reader", "taxonomy/terms", taxonomy="tags")
    assert [t["slug"] for t in terms] == ["python", "rust"]
    entry = call(bridge, "reader", "taxonomy/entryTerms", collection="posts", entryId=post["id"])
    assert [t["slug"] for t in entry] == ["python"]
    assert (
        call(
            bridge,
            "reader",
            "taxonomy/entryTerms",
            collection="posts",
            entryId=post["id"],
            taxonomy="cats",
        )
        == []
    )


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("taxonomy/terms", {}, "Missing required string parameter: taxonomy"),
        (
            "taxonomy/terms",
            {"taxonomy": "tags", "locale": 1},
            "Parameter locale must be a string when provided",
        ),
        ("taxonomy/list", {"locale": ["en"]}, "Parameter locale must be a string when provided"),
        (
            "taxonomy/entryTerms",
            {"collection": "posts"},
            "Missing required string parameter: entryId",
        ),
        (
            "taxonomy/entryTerms",
            {"collection": "Posts!", "entryId": "x"},
            "Invalid collection name: Posts!",
        ),
        (
            "taxonomy/entryTerms",
            {"collection": "posts", "entryId": "x", "taxonomy": 3},
            "Parameter taxonomy must be a string when provided",
        ),
    ],
)
def test_taxonomy_param_texts(
    bridge: Bridge, method: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("reader", method, params)
    assert str(info.value) == message
