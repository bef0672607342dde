"""Comments: stored shape, statuses, approved counts by email."""

from __future__ import annotations

from typing import Any

import pytest

from emdash._shared._errors import BridgeError, NotFoundError
from emdash._store import Store

from .conftest import Clock


def _comment(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "collection": "posts",
        "contentId": "01POST",
        "parentId": None,
        "authorName": "Ada",
        "authorEmail": "Ada@Example.com",
        "authorUserId": None,
        "body": "Nice post",
        "ipHash": "abc123",
        "userAgent": "Mozilla/5.0",
    }
    base.update(over)
    return base


def test_create_returns_stored_comment_without_ip_or_agent(store: Store) -> None:
    stored = store.comment_records.create(
        _comment(), status="pending", moderation_metadata={"reason": "No moderator configured"}
    )
    assert stored | {"id": "-"} == {
        "id": "-",
        "collection": "posts",
        "contentId": "01POST",
        "parentId": None,
        "authorName": "Ada",
        "authorEmail": "Ada@Example.com",
        "authorUserId": None,
        "body": "Nice post",
        "status": "pending",
        "moderationMetadata": {"reason": "No moderator configured"},
        "createdAt": "2026-11-22T05:33:24.123Z",
        "updatedAt": "2026-11-22T05:33:24.123Z",
    }
    assert store.comment_records.get(stored["id"]) == stored
    row = next(store.db.query("SELECT ip_hash, user_agent FROM _emdash_comments"))
    assert row == {"ip_hash": "abc123", "user_agent": "Mozilla/5.0"}


def test_set_status_and_count_approved_by_email(store: Store, clock: Clock) -> None:
    a = store.comment_records.create(_comment(), status="pending")
    store.comment_records.create(_comment(authorEmail="ada@example.COM"), status="approved")
    store.comment_records.create(_comment(authorEmail="bob@example.com"), status="approved")
    assert store.comment_records.count_approved_by_email("ADA@example.com") == 1
    clock.advance(seconds=3)
    approved = store.comment_records.set_status(a["id"], "approved")
    assert approved["status"] == "approved"
    assert approved["updatedAt"] == "2026-11-22T05:33:27.123Z"
    assert store.comment_records.count_approved_by_email("ada@example.com") == 2
    with pytest.raises(NotFoundError) as missing:
        store.comment_records.set_status("missing", "spam")
    assert str(missing.value) == 'Comment not found: "missing"'
    with pytest.raises(BridgeError) as info:
        store.comment_records.set_status(a["id"], "deleted")
    assert str(info.value) == (
        'Invalid comment status "deleted": must be one of pending, approved, spam, trash'
    )


def test_replies_must_belong_to_the_same_item(store: Store) -> None:
    parent = store.comment_records.create(_comment(), status="approved")
    reply = store.comment_records.create(
        _comment(parentId=parent["id"], body="Thanks"), status="approved"
    )
    assert reply["parentId"] == parent["id"]
    with pytest.raises(BridgeError) as info:
        store.comment_records.create(
            _comment(contentId="01OTHER", parentId=parent["id"]), status="pending"
        )
    assert str(info.value) == f'Parent comment "{parent["id"]}" not found on this content item'


def test_list_filters_oldest_first(store: Store, clock: Clock) -> None:
    first = store.comment_records.create(_comment(), status="approved")
    clock.advance(seconds=1)
    store.comment_records.create(_comment(contentId="01OTHER"), status="approved")
    clock.advance(seconds=1)
    third = store.comment_records.create(_comment(), status="spam")
    assert [
        c["id"] for c in store.comment_records.list(collection="posts", content_id="01POST")
    ] == [
        first["id"],
        third["id"],
    ]
    assert [c["id"] for c in store.comment_records.list(status="spam")] == [third["id"]]
    assert len(store.comment_records.list()) == 3
    assert len(store.comment_records.list(limit=1)) == 1


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"body": ""}, "Comment field body must not be empty"),
        ({"body": None}, "Comment field body is required"),
        ({"authorName": 5}, "Comment field authorName must be a string"),
        ({"collection": "Posts"}, "Invalid collection name: Posts"),
        ({"body": "x" * 50_001}, "Comment field body is too long (at most 50000 characters)"),
    ],
)
def test_create_validation(store: Store, over: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError) as info:
        store.comment_records.create(_comment(**over), status="pending")
    assert str(info.value) == message
    assert store.comment_records.list() == []


def test_user_agent_is_truncated(store: Store) -> None:
    store.comment_records.create(_comment(userAgent="x" * 5000), status="pending")
    row = next(store.db.query("SELECT length(user_agent) AS n FROM _emdash_comments"))
    assert row["n"] == 1000
