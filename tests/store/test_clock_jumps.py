"""Ids and creation times never go back, so a backward wall-clock jump (within one process
or across a restart) never makes new content, comments or media list as older.

Time comes from an injected clock (the store's ``clock=``), which ids follow too: no
sleeping, no real clock involved.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from emdash._store import Store

from .conftest import Clock


def _comment(content_id: str, author: str) -> dict[str, str]:
    return {
        "collection": "posts",
        "contentId": content_id,
        "authorName": author,
        "authorEmail": f"{author.lower()}@example.com",
        "body": "hello",
    }


def _titles(store: Store) -> list[str]:
    return [item["data"]["title"] for item in store.content_items.list("posts")["items"]]


def test_content_made_after_a_backward_jump_lists_as_newest(store: Store, clock: Clock) -> None:
    store.content_items.create("posts", {"title": "before"})
    clock.advance(days=-1)  # the wall clock is set back a day
    store.content_items.create("posts", {"title": "after"})
    assert _titles(store) == ["after", "before"]  # default order: createdAt desc
    items = store.content_items.list("posts")["items"]
    assert items[0]["id"] > items[1]["id"]
    assert items[0]["createdAt"] >= items[1]["createdAt"]


def test_ids_continue_after_the_largest_stored_one_across_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "site.db"
    with Store(path, media_dir=tmp_path / "media", clock=clock) as first:
        old = first.content_items.create("posts", {"title": "before"})
        old_media = first.media_items.upload("a.txt", "text/plain", b"a")
        old_comment = first.comment_records.create(_comment(old["id"], "A"), status="approved")
    clock.now -= timedelta(days=3)  # restarted under a clock set back three days
    with Store(path, media_dir=tmp_path / "media", clock=clock) as second:
        new = second.content_items.create("posts", {"title": "after"})
        new_media = second.media_items.upload("b.txt", "text/plain", b"b")
        new_comment = second.comment_records.create(_comment(old["id"], "B"), status="approved")
        assert new["id"] > old["id"]
        assert new_comment["id"] > old_comment["id"]
        assert new_comment["createdAt"] >= old_comment["createdAt"]
        assert _titles(second) == ["after", "before"]
        media = second.media_items.list()["items"]
        assert [m["id"] for m in media] == [new_media["mediaId"], old_media["mediaId"]]


def test_ids_follow_the_clock_again_once_it_passes_the_stored_ones(
    store: Store, clock: Clock
) -> None:
    first = store.content_items.create("posts", {"title": "one"})
    clock.advance(hours=-1)
    frozen = store.content_items.create("posts", {"title": "two"})
    assert frozen["createdAt"] == first["createdAt"]  # held at the last time handed out
    clock.advance(hours=2)
    later = store.content_items.create("posts", {"title": "three"})
    assert later["createdAt"] > first["createdAt"]
    assert later["id"] > frozen["id"] > first["id"]


def test_foreign_ids_do_not_hide_the_largest_ulid(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "site.db"
    with Store(path, media_dir=tmp_path / "media", clock=clock) as first:
        stored = first.content_items.create("posts", {"title": "ulid"})
        with first.transaction():
            # An imported row with an id that is no ULID and sorts above every ULID.
            first.db.execute(
                "INSERT INTO _emdash_content (id, collection, status, data, locale, version, "
                "created_at, updated_at) "
                "VALUES ('zz-imported', 'posts', 'draft', '{}', 'en', 1, ?, ?)",
                (stored["createdAt"], stored["createdAt"]),
            )
    clock.advance(days=-1)
    with Store(path, media_dir=tmp_path / "media", clock=clock) as second:
        assert second.content_items.create("posts", {"title": "new"})["id"] > stored["id"]
