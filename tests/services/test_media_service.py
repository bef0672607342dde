"""rt.media.upload: media:beforeUpload chain, bytes + row, media:afterUpload."""

from __future__ import annotations

from typing import Any

import pytest

import emdash
from emdash import BridgeError, PluginError

RECORDER = """
def before(event, ctx):
    record("before", event)

def after(event, ctx):
    record("after", {"event": event, "read": ctx.media.get(event["media"]["id"])})

plugin = define_plugin(hooks={"media:beforeUpload": HookConfig(before, priority=500),
                              "media:afterUpload": after})
"""


def files_in(rt: emdash.Runtime) -> list[str]:
    return sorted(p.name for p in rt.store.media_files.root.iterdir() if not p.name.startswith("."))


def test_upload_fires_hooks_with_exact_events(rt: emdash.Runtime, plugins: Any) -> None:
    rec = plugins.add("rec", RECORDER, capabilities=["media:write"])
    item = rt.media.upload("Photo.PNG", "image/png", b"\x89PNG-bytes")
    assert rec.records("before") == [
        {"file": {"name": "Photo.PNG", "type": "image/png", "size": 10}}
    ]
    after = rec.records("after")[0]
    assert after == {"event": {"media": item}, "read": item}  # committed before afterUpload
    assert (item["filename"], item["mimeType"], item["size"], item["status"]) == (
        "Photo.PNG",
        "image/png",
        10,
        "ready",
    )
    assert item["storageKey"].endswith(".png")
    assert item["url"] == f"/_emdash/api/media/file/{item['storageKey']}"
    assert rt.media.read(item["id"]) == b"\x89PNG-bytes"
    assert files_in(rt) == [item["storageKey"]]


def test_before_upload_chain_renames_and_retypes(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "renamer",
        """
        def before(event, ctx):
            f = event["file"]
            return {**f, "name": "safe-" + f["name"].lower(), "size": 999999}
        plugin = define_plugin(hooks={"media:beforeUpload": HookConfig(before, priority=10)})
        """,
        capabilities=["media:write"],
    )
    rec = plugins.add("rec", RECORDER, capabilities=["media:write"])
    item = rt.media.upload("Doc.PDF", "application/pdf", b"%PDF-1")
    assert rec.records("before") == [
        {"file": {"name": "safe-doc.pdf", "type": "application/pdf", "size": 999999}}
    ]
    # The name from the chain is used; the size is always the real byte count.
    assert (item["filename"], item["size"]) == ("safe-doc.pdf", 6)


def test_abort_in_before_upload_stores_nothing(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "virus-scan",
        """
        def before(event, ctx):
            raise ValueError("infected")
        plugin = define_plugin(hooks={"media:beforeUpload": before})
        """,
        capabilities=["media:write"],
    )
    with pytest.raises(PluginError) as exc:
        rt.media.upload("x.txt", "text/plain", b"EICAR")
    assert exc.value.plugin_id == "virus-scan"
    assert rt.store.media_items.list()["items"] == []
    assert files_in(rt) == []


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        ('{"name": "", "type": "image/png", "size": 1}', "Invalid media filename ''"),
        ('{"name": "a.png", "type": "not a type", "size": 1}', 'Invalid media type "not a type"'),
        (
            '{"name": "a.png", "type": "image/png", "size": -1}',
            "size must be a non-negative integer",
        ),
        ('{"name": "a.png", "type": "image/png"}', "size must be a non-negative integer"),
    ],
)
def test_invalid_before_upload_result(
    rt: emdash.Runtime, plugins: Any, returned: str, problem: str
) -> None:
    plugins.add(
        "bad",
        f"""
        plugin = define_plugin(hooks={{"media:beforeUpload": lambda e, c: {returned}}})
        """,
        capabilities=["media:write"],
    )
    with pytest.raises(PluginError) as exc:
        rt.media.upload("a.png", "image/png", b"x")
    assert str(exc.value).startswith("Plugin bad returned an invalid file from media:beforeUpload")
    assert problem in str(exc.value)
    assert str(exc.value).endswith("Nothing was uploaded.")
    assert files_in(rt) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a.png", "image/png", "text"), "Media data must be bytes, got str"),
        (
            ("", "image/png", b"x"),
            "Invalid media filename '': 1-255 characters, no control characters",
        ),
        (
            ("a\nb.png", "image/png", b"x"),
            "Invalid media filename 'a\\nb.png': 1-255 characters, no control characters",
        ),
        (("a.png", "png", b"x"), 'Invalid media type "png": expected e.g. "image/png"'),
    ],
)
def test_bad_input_runs_no_hook(
    rt: emdash.Runtime, plugins: Any, args: tuple[Any, ...], message: str
) -> None:
    rec = plugins.add("rec", RECORDER, capabilities=["media:write"])
    with pytest.raises(BridgeError) as exc:
        rt.media.upload(*args)
    assert str(exc.value) == message
    assert rec.records() == []


def test_failed_row_insert_removes_the_bytes(rt: emdash.Runtime, plugins: Any) -> None:
    rec = plugins.add("rec", RECORDER, capabilities=["media:write"])
    with rt.store.transaction():  # make every media row insert fail, as a full disk would
        rt.store._db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON _emdash_media "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    with pytest.raises(Exception, match="disk says no"):
        rt.media.upload("a.png", "image/png", b"x")
    assert files_in(rt) == []
    assert rec.tags() == ["before"]  # no afterUpload for a failed upload


def test_after_upload_error_is_logged_not_raised(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "broken",
        """
        def after(event, ctx):
            raise RuntimeError("after boom")
        plugin = define_plugin(hooks={"media:afterUpload": after})
        """,
        capabilities=["media:read"],
    )
    item = rt.media.upload("a.png", "image/png", b"x")
    assert rt.media.get(item["id"]) == item
    assert rt.media.delete(item["id"]) is True
    assert rt.media.get(item["id"]) is None
    assert files_in(rt) == []
