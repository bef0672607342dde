"""rt.comments: beforeCreate middleware, moderation (built-in rules, providers, fallbacks),
afterCreate / afterModerate, and the site-side checks."""

from __future__ import annotations

from typing import Any

import pytest

import emdash
from emdash import BridgeError, NotFoundError, PluginError
from emdash._services._comments import default_moderate
from emdash._shared._errors import CommentRejectedError

USERS = ["users:read"]

OBSERVER = """
def before(event, ctx):
    record("before", event)

def after_create(event, ctx):
    record("afterCreate", event)

def after_moderate(event, ctx):
    record("afterModerate", event)

plugin = define_plugin(hooks={"comment:beforeCreate": HookConfig(before, priority=500),
                              "comment:afterCreate": after_create,
                              "comment:afterModerate": after_moderate})
"""

MODERATOR = """
def moderate(event, ctx):
    record("moderate", event)
    body = event["comment"]["body"]
    if "buy now" in body:
        return {{"status": "spam", "reason": "sales pitch"}}
    if "crash" in body:
        raise RuntimeError("model offline")
    if "junk" in body:
        return {{"status": "published"}}
    return {{"status": "approved"}}
plugin = define_plugin(hooks={{"comment:moderate": HookConfig(moderate, exclusive={exclusive})}})
"""


@pytest.fixture
def post(rt: emdash.Runtime) -> dict[str, Any]:
    author = rt.store.user_accounts.create("writer@example.com", "Wri Ter", 30)
    item = rt.content.create("posts", {"title": "Hello"}, slug="hello", author_id=author["id"])
    published: dict[str, Any] = rt.content.publish("posts", item["id"])
    return published


def submit(rt: emdash.Runtime, post: dict[str, Any], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "author_name": "Ann",
        "author_email": "ann@example.com",
        "body": "Nice post",
        "ip": "203.0.113.7",
        "user_agent": "Firefox",
    }
    args.update(kw)
    stored: dict[str, Any] = rt.comments.create("posts", post["id"], **args)
    return stored


# --- the built-in moderator -----------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "user", "prior", "status"),
    [
        ({"commentsAutoApproveUsers": True, "commentsModeration": "all"}, "u1", 0, "approved"),
        ({"commentsAutoApproveUsers": False, "commentsModeration": "all"}, "u1", 0, "pending"),
        ({"commentsAutoApproveUsers": False, "commentsModeration": "none"}, None, 0, "approved"),
        ({"commentsModeration": "first_time"}, None, 1, "approved"),
        ({"commentsModeration": "first_time"}, None, 0, "pending"),
        ({"commentsModeration": "all"}, None, 3, "pending"),
    ],
)
def test_default_moderator_rules(
    settings: dict[str, Any], user: str | None, prior: int, status: str
) -> None:
    event = {
        "comment": {"authorUserId": user},
        "collectionSettings": settings,
        "priorApprovedCount": prior,
    }
    assert default_moderate(event)["status"] == status


# --- create ---------------------------------------------------------------------------


def test_create_with_built_in_moderation_and_exact_events(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    obs = plugins.add("obs", OBSERVER, capabilities=USERS)
    first = submit(rt, post)
    assert first["status"] == "pending"  # first-time commenter
    assert first["moderationMetadata"] == {"status": "pending", "reason": "Held for moderation"}
    [before] = obs.records("before")
    ip_hash = before["comment"]["ipHash"]
    assert len(ip_hash) == 32 and "203.0.113.7" not in ip_hash
    assert before == {
        "comment": {
            "collection": "posts",
            "contentId": post["id"],
            "parentId": None,
            "authorName": "Ann",
            "authorEmail": "ann@example.com",
            "authorUserId": None,
            "body": "Nice post",
            "ipHash": ip_hash,
            "userAgent": "Firefox",
        },
        "metadata": {},
    }
    author = rt.store.user_accounts.get(post["authorId"])
    assert author is not None
    assert obs.records("afterCreate") == [
        {
            "comment": first,
            "metadata": {},
            "content": {"id": post["id"], "collection": "posts", "slug": "hello", "title": "Hello"},
            "contentAuthor": {"id": author["id"], "name": "Wri Ter", "email": "writer@example.com"},
        }
    ]
    assert set(first) == {
        "id",
        "collection",
        "contentId",
        "parentId",
        "authorName",
        "authorEmail",
        "authorUserId",
        "body",
        "status",
        "moderationMetadata",
        "createdAt",
        "updatedAt",
    }

    rt.comments.moderate(first["id"], "approved", moderator={"id": "admin1", "name": "Ad"})
    second = submit(rt, post, author_email="ANN@example.com", body="Me again")
    assert second["status"] == "approved"  # returning commenter (emails compare lowercased)
    assert submit(rt, post, author_email="bob@example.com", author_user_id="u9")["status"] == (
        "approved"  # signed-in users are auto-approved
    )


def test_before_create_enriches_and_rejects(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    plugins.add(
        "filter",
        """
        def before(event, ctx):
            if "spam" in event["comment"]["body"]:
                return False
            event["metadata"]["score"] = 0.1          # shared object: mutation sticks
            comment = {**event["comment"], "body": event["comment"]["body"].strip(),
                       "contentId": "elsewhere", "collection": "pages"}
            return {"comment": comment, "metadata": event["metadata"]}
        plugin = define_plugin(hooks={"comment:beforeCreate": HookConfig(before, priority=10)})
        """,
        capabilities=USERS,
    )
    obs = plugins.add("obs", OBSERVER, capabilities=USERS)
    stored = submit(rt, post, body="  padded  ")
    # A handler may rewrite the text, never move the comment to another item.
    assert (stored["body"], stored["contentId"], stored["collection"]) == (
        "padded",
        post["id"],
        "posts",
    )
    assert obs.records("afterCreate")[0]["metadata"] == {"score": 0.1}

    with pytest.raises(CommentRejectedError) as exc:
        submit(rt, post, body="cheap spam here")
    assert (exc.value.code, str(exc.value), exc.value.status) == (
        "COMMENT_REJECTED",
        "Comment was rejected",
        403,
    )
    assert exc.value.plugin_id == "filter"
    assert len(rt.comments.list()) == 1
    assert len(obs.records("afterCreate")) == 1


def test_before_create_abort_propagates(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    plugins.add(
        "boom",
        """
        def before(event, ctx):
            raise RuntimeError("enrichment down")
        plugin = define_plugin(hooks={"comment:beforeCreate": before})
        """,
        capabilities=USERS,
    )
    with pytest.raises(PluginError):
        submit(rt, post)
    assert rt.comments.list() == []


def test_moderation_provider_decides(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    mod = plugins.add("ai-mod", MODERATOR.format(exclusive=True), capabilities=USERS)
    assert rt.selected_provider("comment:moderate") == "ai-mod"
    assert submit(rt, post, body="hello")["status"] == "approved"
    spam = submit(rt, post, body="buy now!!!")
    assert spam["status"] == "spam"
    assert spam["moderationMetadata"] == {"status": "spam", "reason": "sales pitch"}
    crashed = submit(rt, post, body="crash please")
    assert crashed["moderationMetadata"] == {"status": "pending", "reason": "Moderation error"}
    junk = submit(rt, post, body="junk result")
    assert junk["moderationMetadata"] == {
        "status": "pending",
        "reason": "Invalid moderation result",
    }
    event = mod.records("moderate")[1]
    assert event["collectionSettings"] == {
        "commentsEnabled": True,
        "commentsModeration": "first_time",
        "commentsClosedAfterDays": 0,
        "commentsAutoApproveUsers": True,
    }
    assert event["priorApprovedCount"] == 1
    assert event["metadata"] == {}
    assert event["comment"]["body"] == "buy now!!!"


def test_providers_without_selection_leave_comments_pending(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    plugins.add("mod-a", MODERATOR.format(exclusive=True), capabilities=USERS)
    plugins.add("mod-b", MODERATOR.format(exclusive=False), capabilities=USERS)
    rt.select_provider("comment:moderate", None)
    stored = submit(rt, post, author_user_id="u1")
    assert stored["moderationMetadata"] == {
        "status": "pending",
        "reason": "No moderator configured",
    }
    rt.select_provider("comment:moderate", "mod-b")
    assert submit(rt, post)["status"] == "approved"


# --- site-side checks -----------------------------------------------------------------


def test_disabled_closed_and_missing(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    obs = plugins.add("obs", OBSERVER, capabilities=USERS)
    rt.comments.configure("posts", commentsEnabled=False)
    with pytest.raises(CommentRejectedError) as exc:
        submit(rt, post)
    assert (exc.value.code, str(exc.value)) == (
        "COMMENTS_DISABLED",
        "Comments are not enabled for this collection",
    )
    rt.comments.configure("posts", commentsEnabled=True, commentsClosedAfterDays=1)
    with rt.store.transaction():
        rt.store._db.execute(
            "UPDATE _emdash_content SET published_at = '2001-01-01T00:00:00.000Z' WHERE id = ?",
            (post["id"],),
        )
    with pytest.raises(CommentRejectedError) as exc:
        submit(rt, post)
    assert (exc.value.code, str(exc.value)) == (
        "COMMENTS_CLOSED",
        "Comments are closed for this content",
    )
    draft = rt.content.create("posts", {"title": "draft"})
    with pytest.raises(NotFoundError) as nf:
        submit(rt, draft)
    assert str(nf.value) == "Content not found"
    with pytest.raises(NotFoundError) as nf:
        rt.comments.create("nope", "x", author_name="a", author_email=None, body="b")
    assert str(nf.value) == "Collection 'nope' not found"
    assert obs.records() == []


def test_configure_validation(rt: emdash.Runtime) -> None:
    with pytest.raises(BridgeError) as exc:
        rt.comments.configure("posts", commentsModeration="sometimes")
    assert str(exc.value) == 'commentsModeration must be "all", "first_time" or "none"'
    with pytest.raises(BridgeError) as exc:
        rt.comments.configure("posts", moderation="all")
    assert str(exc.value).startswith("Unknown comment setting(s): moderation. Valid: ")
    assert rt.comments.settings("posts")["commentsModeration"] == "first_time"


def test_replies_attach_to_the_thread_root(rt: emdash.Runtime, post: dict[str, Any]) -> None:
    root = submit(rt, post)
    reply = submit(rt, post, parent_id=root["id"], body="reply")
    nested = submit(rt, post, parent_id=reply["id"], body="reply to reply")
    assert (reply["parentId"], nested["parentId"]) == (root["id"], root["id"])
    other = rt.content.publish("posts", rt.content.create("posts", {"title": "o"})["id"])
    with pytest.raises(BridgeError) as exc:
        submit(rt, other, parent_id=root["id"])
    assert str(exc.value) == "Parent comment belongs to different content"
    with pytest.raises(BridgeError) as exc:
        submit(rt, post, parent_id="missing")
    assert str(exc.value) == "Parent comment not found"


def test_invalid_fields(rt: emdash.Runtime, post: dict[str, Any]) -> None:
    with pytest.raises(BridgeError) as exc:
        submit(rt, post, body="   ")
    assert str(exc.value) == "Comment body is required and must be a non-empty string"
    assert rt.comments.list() == []


# --- moderate -------------------------------------------------------------------------


def test_moderate_fires_after_moderate(
    rt: emdash.Runtime, plugins: Any, post: dict[str, Any]
) -> None:
    obs = plugins.add("obs", OBSERVER, capabilities=USERS)
    comment = submit(rt, post)
    updated = rt.comments.moderate(comment["id"], "spam", moderator={"id": "m1", "name": "Mo"})
    assert updated["status"] == "spam"
    assert obs.records("afterModerate") == [
        {
            "comment": updated,
            "previousStatus": "pending",
            "newStatus": "spam",
            "moderator": {"id": "m1", "name": "Mo"},
        }
    ]
    with pytest.raises(BridgeError) as exc:
        rt.comments.moderate(comment["id"], "deleted", moderator={"id": "m1"})
    assert str(exc.value) == (
        'Invalid comment status "deleted": must be one of pending, approved, spam, trash'
    )
    with pytest.raises(NotFoundError):
        rt.comments.moderate("missing", "approved", moderator={"id": "m1"})
    assert len(obs.records("afterModerate")) == 1
