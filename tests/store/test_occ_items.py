"""Content items and media rows are versioned per item (emdash._store._content, _media).

An invocation that read one item conflicts with a concurrent write to that item only; a
list conflicts with any write to its collection (or, for media, to the library). The
interleavings are made structurally: a write from another thread between an invocation's
read and its end, never by timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emdash import ConflictError
from emdash._store import Store

from .conftest import other_thread


@pytest.fixture
def fstore(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "site.db", media_dir=tmp_path / "media") as s:
        s.audit_records.flush_after_s = None
        s.content_items.ensure_collection("posts")
        s.content_items.ensure_collection("pages")
        yield s


def _bump(store: Store, collection: str, id: str) -> None:
    item = store.content_items.get(collection, id)
    assert item is not None
    store.content_items.update(collection, id, {"n": item["data"]["n"] + 1})


def _n(store: Store, collection: str, id: str) -> int:
    item = store.content_items.get(collection, id)
    assert item is not None
    return int(item["data"]["n"])


def test_two_plugins_writing_different_items_do_not_conflict(fstore: Store) -> None:
    one = fstore.content_items.create("posts", {"n": 0})["id"]
    two = fstore.content_items.create("posts", {"n": 0})["id"]

    def other() -> None:
        with fstore.invocation("q", "route:bump"):
            _bump(fstore, "posts", two)

    with fstore.invocation("p", "route:bump"):
        _bump(fstore, "posts", one)
        other_thread(other)  # commits a write to another item of the same collection
        other_thread(lambda: fstore.content_items.set_status("posts", two, "published"))
    assert (_n(fstore, "posts", one), _n(fstore, "posts", two)) == (1, 1)


def test_two_plugins_writing_the_same_item_conflict(fstore: Store) -> None:
    one = fstore.content_items.create("posts", {"n": 0})["id"]

    def other() -> None:
        with fstore.invocation("q", "route:bump"):
            _bump(fstore, "posts", one)

    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:bump"):
        _bump(fstore, "posts", one)
        other_thread(other)
    assert info.value.scope == f"ct/posts/{one}" and info.value.plugin_id == "p"
    assert _n(fstore, "posts", one) == 1  # q's increment, not both, and not lost


@pytest.mark.parametrize(
    "write",
    [
        lambda s, i: s.content_items.update("posts", i, {"n": 5}),
        lambda s, i: s.content_items.set_status("posts", i, "published"),
        lambda s, i: s.content_items.soft_delete("posts", i),
        lambda s, i: s.content_items.delete_permanently("posts", i),
    ],
    ids=["update", "set_status", "soft_delete", "delete_permanently"],
)
def test_every_item_write_conflicts_with_a_read_of_it(
    fstore: Store, write: Callable[[Store, str], object]
) -> None:
    one = fstore.content_items.create("posts", {"n": 0})["id"]
    with pytest.raises(ConflictError), fstore.invocation("p", "route:copy"):
        fstore.kv_entries.set("p", "copy", fstore.content_items.get("posts", one))
        other_thread(lambda: write(fstore, one))
    assert fstore.kv_entries.get("p", "copy") is None


def test_a_list_conflicts_with_a_write_to_its_collection_only(fstore: Store) -> None:
    fstore.content_items.create("posts", {"n": 0})
    with fstore.invocation("p", "route:count"):
        count = len(fstore.content_items.list("posts")["items"])
        fstore.kv_entries.set("p", "count", count)
        other_thread(lambda: fstore.content_items.create("pages", {"n": 0}))
    assert fstore.kv_entries.get("p", "count") == 1
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:count"):
        count = len(fstore.content_items.list("posts")["items"])
        fstore.kv_entries.set("p", "count", count)
        other_thread(lambda: fstore.content_items.create("posts", {"n": 0}))
    assert info.value.scope == "ct/posts"


def test_media_rows_are_versioned_per_item(fstore: Store) -> None:
    media = fstore.media_items
    one = media.upload("a.png", "image/png", b"a")["mediaId"]
    two = media.upload("b.png", "image/png", b"b")["mediaId"]
    with fstore.invocation("p", "route:copy"):
        fstore.kv_entries.set("p", "status", media.get(one)["status"])  # type: ignore[index]
        other_thread(lambda: media.set_status(two, "failed"))
        other_thread(lambda: media.delete(two))
    assert fstore.kv_entries.get("p", "status") == "ready"
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:copy"):
        fstore.kv_entries.set("p", "status", media.get(one)["status"])  # type: ignore[index]
        other_thread(lambda: media.set_status(one, "failed"))
    assert info.value.scope == f"md/{one}"
    with pytest.raises(ConflictError) as info, fstore.invocation("p", "route:count"):
        fstore.kv_entries.set("p", "count", len(media.list()["items"]))
        other_thread(lambda: media.upload("c.png", "image/png", b"c"))
    assert info.value.scope == "md"


def test_item_writers_from_threads_lose_nothing(fstore: Store) -> None:
    """Each thread's plugin bumps its own item: no conflict at all; the counts are exact."""
    ids = [fstore.content_items.create("posts", {"n": 0})["id"] for _ in range(4)]
    conflicts: list[BaseException] = []

    def worker(i: int) -> None:
        for _ in range(25):
            try:
                fstore.run_invocation(
                    f"p{i}", "route:bump", lambda _: _bump(fstore, "posts", ids[i]), rerun=False
                )
            except ConflictError as exc:  # pragma: no cover - the failure reported below
                conflicts.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert conflicts == []
    assert [_n(fstore, "posts", i) for i in ids] == [25] * 4
