"""rt.content: the content hooks fired by real CMS operations, through a real Runtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import emdash
from emdash import BridgeError, NotFoundError, PluginError
from emdash._shared._errors import DeleteBlockedError

RECORD_ALL = """
def before_save(event, ctx):
    record("beforeSave", event)

def after_save(event, ctx):
    # Read the item back through ctx: it must already be committed.
    record("afterSave", {"event": event,
                         "read": ctx.content.get(event["collection"], event["content"]["id"])})

def before_delete(event, ctx):
    record("beforeDelete", event)

def after_delete(event, ctx):
    record("afterDelete", event)

def state(name):
    def handler(event, ctx):
        record(name, event)
    return handler

plugin = define_plugin(hooks={
    "content:beforeSave": before_save,
    "content:afterSave": after_save,
    "content:beforeDelete": before_delete,
    "content:afterDelete": after_delete,
    "content:afterPublish": state("afterPublish"),
    "content:afterUnpublish": state("afterUnpublish"),
    "content:afterRestore": state("afterRestore"),
    "content:afterSchedule": state("afterSchedule"),
    "content:afterUnschedule": state("afterUnschedule"),
})
"""


@pytest.fixture
def recorder(plugins: Any) -> Any:
    return plugins.add("recorder", RECORD_ALL, capabilities=["content:write"])


def future(days: int = 1) -> str:
    moment = datetime.now(UTC) + timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def all_items(rt: emdash.Runtime, collection: str = "posts") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = rt.store.content_items.list(collection, include_deleted=True)[
        "items"
    ]
    return items


# --- create / update ------------------------------------------------------------------


def test_create_fires_before_and_after_save_with_exact_events(
    rt: emdash.Runtime, recorder: Any
) -> None:
    data = {"title": "Hello", "tags": ["a"]}
    item = rt.content.create("posts", data, slug="hello", author_id="u1")
    assert recorder.tags() == ["beforeSave", "afterSave"]
    # beforeSave gets the submitted field map, nothing else (EmDash's shape).
    assert recorder.records("beforeSave") == [
        {"content": {"title": "Hello", "tags": ["a"]}, "collection": "posts", "isNew": True}
    ]
    after = recorder.records("afterSave")[0]
    assert after["event"] == {"content": item, "collection": "posts", "isNew": True}
    assert after["read"] == item  # committed before afterSave ran
    assert item["data"] == {"title": "Hello", "tags": ["a"]}
    assert (item["slug"], item["status"], item["authorId"], item["type"]) == (
        "hello",
        "draft",
        "u1",
        "posts",
    )
    assert data == {"title": "Hello", "tags": ["a"]}


def test_before_save_chain_replaces_content_in_order(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "second",
        """
        def handler(event, ctx):
            record("seen", event["content"])
            return {**event["content"], "slugged": event["content"]["title"].lower()}
        plugin = define_plugin(hooks={"content:beforeSave": HookConfig(handler, priority=200)})
        """,
        capabilities=["content:write"],
    )
    first = plugins.add(
        "first",
        """
        def handler(event, ctx):
            event["content"]["mutated"] = True   # in-place changes stick too
            return {**event["content"], "title": event["content"]["title"].upper()}
        plugin = define_plugin(hooks={"content:beforeSave": HookConfig(handler, priority=10)})
        """,
        capabilities=["content:write"],
    )
    keeper = plugins.add(
        "keeper",
        """
        def handler(event, ctx):
            record("seen", event["content"])
            return None
        plugin = define_plugin(hooks={"content:beforeSave": HookConfig(handler, priority=300)})
        """,
        capabilities=["content:write"],
    )
    item = rt.content.create("posts", {"title": "Hi"})
    assert item["data"] == {"title": "HI", "mutated": True, "slugged": "hi"}
    assert keeper.records("seen") == [{"title": "HI", "mutated": True, "slugged": "hi"}]
    assert first.records() == []


def test_before_save_non_dict_result_fails_and_writes_nothing(
    rt: emdash.Runtime, plugins: Any
) -> None:
    plugins.add(
        "bad",
        """
        plugin = define_plugin(hooks={"content:beforeSave": lambda event, ctx: "oops"})
        """,
        capabilities=["content:write"],
    )
    with pytest.raises(PluginError) as exc:
        rt.content.create("posts", {"title": "x"})
    assert exc.value.plugin_id == "bad"
    assert "returned str from content:beforeSave" in str(exc.value)
    assert all_items(rt) == []


def test_failing_before_save_with_abort_writes_nothing(
    rt: emdash.Runtime, plugins: Any, recorder: Any
) -> None:
    plugins.add(
        "failing",
        """
        def handler(event, ctx):
            raise ValueError("no saving today")
        plugin = define_plugin(hooks={"content:beforeSave": HookConfig(handler, priority=1)})
        """,
        capabilities=["content:write"],
    )
    with pytest.raises(PluginError) as exc:
        rt.content.create("posts", {"title": "x"})
    assert exc.value.plugin_id == "failing"
    assert "no saving today" in str(exc.value)
    assert all_items(rt) == []
    assert recorder.tags() == []  # later handlers and afterSave never ran


def test_failing_before_save_with_continue_still_saves(
    rt: emdash.Runtime, plugins: Any, recorder: Any
) -> None:
    plugins.add(
        "flaky",
        """
        def handler(event, ctx):
            raise ValueError("ignored")
        plugin = define_plugin(hooks={"content:beforeSave":
                                      HookConfig(handler, priority=1, error_policy="continue")})
        """,
        capabilities=["content:write"],
    )
    item = rt.content.create("posts", {"title": "x"})
    assert [i["id"] for i in all_items(rt)] == [item["id"]]
    assert recorder.tags() == ["beforeSave", "afterSave"]


def test_after_save_error_never_fails_the_save(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "broken-after",
        """
        def handler(event, ctx):
            raise RuntimeError("after boom")
        plugin = define_plugin(hooks={"content:afterSave": handler})
        """,
        capabilities=["content:read"],
    )
    item = rt.content.create("posts", {"title": "x"})
    assert rt.store.content_items.get("posts", item["id"]) == item


def test_update_event_holds_only_changed_fields(rt: emdash.Runtime, recorder: Any) -> None:
    item = rt.content.create("posts", {"title": "A", "body": "b"})
    updated = rt.content.update("posts", item["id"], {"title": "B"}, slug="b")
    assert recorder.records("beforeSave")[1] == {
        "content": {"title": "B"},
        "collection": "posts",
        "isNew": False,
    }
    after = recorder.records("afterSave")[1]
    assert after["event"] == {"content": updated, "collection": "posts", "isNew": False}
    assert after["read"] == updated
    assert updated["data"] == {"title": "B", "body": "b"}
    assert (updated["version"], updated["slug"]) == (2, "b")


def test_update_in_a_revisions_collection_keeps_the_live_item(
    rt: emdash.Runtime, recorder: Any
) -> None:
    rt.store.content_items.ensure_collection("articles", supports=["drafts", "revisions"])
    item = rt.content.create("articles", {"title": "Live"}, slug="live")
    live = rt.content.publish("articles", item["id"])
    draft = rt.content.update("articles", item["id"], {"title": "Next"}, slug="next")
    assert (draft["data"], draft["slug"], draft["status"]) == (
        {"title": "Next"},
        "next",
        "published",
    )
    # afterSave gets the effective draft; a plugin reading the item sees the live version.
    after = recorder.records("afterSave")[1]
    assert after["event"] == {"content": draft, "collection": "articles", "isNew": False}
    assert after["read"]["data"] == {"title": "Live"} and after["read"]["slug"] == "live"
    assert after["read"]["version"] == draft["version"] == live["version"] + 1
    promoted = rt.content.publish("articles", item["id"])
    assert (promoted["data"], promoted["slug"]) == ({"title": "Next"}, "next")
    assert promoted["draftRevisionId"] is None
    assert promoted["liveRevisionId"] == draft["draftRevisionId"]
    assert recorder.records("afterPublish")[-1] == {"content": promoted, "collection": "articles"}


def test_scheduled_publication_promotes_a_pending_draft(rt: emdash.Runtime) -> None:
    rt.store.content_items.ensure_collection("articles", supports=["revisions"])
    item = rt.content.create("articles", {"title": "v1"}, status="published")
    rt.content.update("articles", item["id"], {"title": "v2"})
    rt.content.schedule("articles", item["id"], future())
    # Scheduled (not live): further edits still go to the pending draft.
    assert rt.content.update("articles", item["id"], {"n": 3})["data"] == {"title": "v2", "n": 3}
    stored = rt.store.content_items.get("articles", item["id"])
    assert stored is not None and stored["data"] == {"title": "v1"}
    [done] = rt.content.publish_due(future(2))
    assert done["data"] == {"title": "v2", "n": 3} and done["draftRevisionId"] is None


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda rt: rt.content.create("posts", {"t": 1}, status="archived"),
            BridgeError,
            'Invalid status "archived": must be one of draft, published '
            "(use rt.content.schedule() to schedule an item)",
        ),
        (
            lambda rt: rt.content.create("posts", {"t": 1}, status="scheduled"),
            BridgeError,
            'Invalid status "scheduled": must be one of draft, published '
            "(use rt.content.schedule() to schedule an item)",
        ),
        (
            lambda rt: rt.content.create("nope", {"t": 1}),
            NotFoundError,
            'Collection "nope" does not exist. Create it first '
            '(rt.store.content_items.ensure_collection("nope")).',
        ),
        (
            lambda rt: rt.content.create("posts", ["t"]),
            BridgeError,
            "Content data must be an object (a dict of fields), got list",
        ),
        (
            lambda rt: rt.content.update("posts", "missing", {"t": 1}),
            NotFoundError,
            'Content not found: no item "missing" in collection "posts" (or it is in the trash)',
        ),
    ],
)
def test_invalid_input_runs_no_hook_and_writes_nothing(
    rt: emdash.Runtime, recorder: Any, call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as exc:
        call(rt)
    assert str(exc.value) == message
    assert recorder.tags() == []
    assert all_items(rt) == []


def test_non_json_data_is_refused_before_hooks(rt: emdash.Runtime, recorder: Any) -> None:
    with pytest.raises(BridgeError) as exc:
        rt.content.create("posts", {"when": datetime.now(UTC)})
    assert str(exc.value).startswith("Content data must be JSON data")
    assert recorder.tags() == []


def test_bad_slug_from_store_leaves_nothing(rt: emdash.Runtime, recorder: Any) -> None:
    rt.content.create("posts", {"t": 1}, slug="taken")
    with pytest.raises(BridgeError) as exc:
        rt.content.create("posts", {"t": 2}, slug="taken")
    assert "already used" in str(exc.value)
    assert len(all_items(rt)) == 1
    assert recorder.tags() == ["beforeSave", "afterSave", "beforeSave"]


# --- delete ---------------------------------------------------------------------------


VETO = """
def handler(event, ctx):
    record("asked", event)
    return False
plugin = define_plugin(hooks={{"content:beforeDelete": HookConfig(handler, priority={p})}})
"""


def test_delete_veto_names_every_vetoer_and_keeps_the_item(
    rt: emdash.Runtime, plugins: Any, recorder: Any
) -> None:
    item = rt.content.create("posts", {"title": "keep me"})
    plugins.add("guard-a", VETO.format(p=10), capabilities=["content:read"])
    plugins.add("guard-b", VETO.format(p=20), capabilities=["content:read"])
    with pytest.raises(DeleteBlockedError) as exc:
        rt.content.delete("posts", item["id"])
    assert str(exc.value) == "Delete blocked by plugin hook (vetoed by guard-a, guard-b)"
    assert exc.value.code == "DELETE_BLOCKED"
    assert exc.value.plugin_ids == ["guard-a", "guard-b"]
    assert rt.store.content_items.get("posts", item["id"]) == item
    # Every handler ran (no short-circuit), the recorder included; no afterDelete.
    assert recorder.records("beforeDelete") == [
        {"id": item["id"], "collection": "posts", "permanent": False}
    ]
    assert "afterDelete" not in recorder.tags()


def test_soft_delete_restore_and_permanent_delete(rt: emdash.Runtime, recorder: Any) -> None:
    item = rt.content.create("posts", {"title": "x"})
    assert rt.content.delete("posts", item["id"]) is True
    assert rt.store.content_items.get("posts", item["id"]) is None
    assert recorder.records("afterDelete") == [
        {"id": item["id"], "collection": "posts", "permanent": False}
    ]
    with pytest.raises(NotFoundError):
        rt.content.delete("posts", item["id"])  # already in the trash

    restored = rt.content.restore("posts", item["id"])
    assert restored["deletedAt"] is None
    assert recorder.records("afterRestore") == [{"content": restored, "collection": "posts"}]
    rt.content.restore("posts", item["id"])  # not in the trash: nothing fires
    assert len(recorder.records("afterRestore")) == 1

    assert rt.content.delete_permanently("posts", item["id"]) is True
    assert rt.store.content_items.get("posts", item["id"], include_deleted=True) is None
    assert recorder.records("afterDelete")[1] == {
        "id": item["id"],
        "collection": "posts",
        "permanent": True,
    }
    assert len(recorder.records("beforeDelete")) == 1  # permanent deletes skip beforeDelete


# --- state changes --------------------------------------------------------------------


def test_publish_unpublish_schedule_unschedule_events(rt: emdash.Runtime, recorder: Any) -> None:
    item = rt.content.create("posts", {"title": "x"})
    published = rt.content.publish("posts", item["id"])
    assert published["status"] == "published" and published["publishedAt"] is not None
    unpublished = rt.content.unpublish("posts", item["id"])
    assert unpublished["status"] == "draft"
    when = future()
    scheduled = rt.content.schedule("posts", item["id"], when)
    assert (scheduled["status"], scheduled["scheduledAt"]) == ("scheduled", when)
    unscheduled = rt.content.unschedule("posts", item["id"])
    assert (unscheduled["status"], unscheduled["scheduledAt"]) == ("draft", None)
    assert recorder.tags()[2:] == [
        "afterPublish",
        "afterUnpublish",
        "afterSchedule",
        "afterUnschedule",
    ]
    assert recorder.records("afterPublish") == [{"content": published, "collection": "posts"}]
    assert recorder.records("afterUnpublish") == [{"content": unpublished, "collection": "posts"}]
    assert recorder.records("afterSchedule") == [{"content": scheduled, "collection": "posts"}]
    assert recorder.records("afterUnschedule") == [{"content": unscheduled, "collection": "posts"}]


def test_invalid_state_changes(rt: emdash.Runtime, recorder: Any) -> None:
    item = rt.content.create("posts", {"title": "x"})
    with pytest.raises(BridgeError) as exc:
        rt.content.schedule("posts", item["id"], "next tuesday")
    assert str(exc.value) == (
        'Invalid scheduledAt "next tuesday": use an ISO 8601 datetime such as '
        '"2026-05-01T12:00:00Z"'
    )
    with pytest.raises(BridgeError) as exc:
        rt.content.schedule("posts", item["id"], "2001-01-01T00:00:00Z")
    assert str(exc.value).startswith(
        "Invalid scheduledAt 2001-01-01T00:00:00.000Z: it must be in the future"
    )
    with pytest.raises(BridgeError) as exc:
        rt.content.unpublish("posts", item["id"])
    assert str(exc.value) == (
        f'Content "{item["id"]}" in "posts" is draft, not published; only a published item '
        "can be unpublished"
    )
    with pytest.raises(BridgeError) as exc:
        rt.content.unschedule("posts", item["id"])
    assert "is draft, not scheduled" in str(exc.value)
    with pytest.raises(NotFoundError):
        rt.content.publish("posts", "missing")
    assert rt.store.content_items.get("posts", item["id"]) == item
    assert recorder.tags() == ["beforeSave", "afterSave"]


def test_publish_due_publishes_scheduled_items_and_fires_after_publish(
    rt: emdash.Runtime, recorder: Any
) -> None:
    soon = rt.content.create("posts", {"title": "soon"})
    later = rt.content.create("posts", {"title": "later"})
    when = future(1)
    rt.content.schedule("posts", soon["id"], when)
    rt.content.schedule("posts", later["id"], future(3))
    published = rt.content.publish_due(future(2))
    assert [p["id"] for p in published] == [soon["id"]]
    assert published[0]["status"] == "published"
    # Published "as of" its scheduled time, and no longer scheduled.
    assert (published[0]["publishedAt"], published[0]["scheduledAt"]) == (when, None)
    assert recorder.records("afterPublish") == [{"content": published[0], "collection": "posts"}]
    still_scheduled = rt.store.content_items.get("posts", later["id"])
    assert still_scheduled is not None and still_scheduled["status"] == "scheduled"
    assert rt.content.publish_due(future(2)) == []


def test_sandboxed_plugin_gets_the_same_content_hooks(rt: emdash.Runtime) -> None:
    source = """
from emdash import define_plugin

def before_save(event, ctx):
    return dict(event["content"], checkedBy="sandbox", isNew=event["isNew"])

def after_save(event, ctx):
    stored = ctx.content.get(event["collection"], event["content"]["id"])
    ctx.kv.set("seen", {"event": event, "read": stored})

def before_delete(event, ctx):
    return event["id"] != ctx.kv.get("protected")

plugin = define_plugin(hooks={"content:beforeSave": before_save,
                              "content:afterSave": after_save,
                              "content:beforeDelete": before_delete})
"""
    rt.add_plugin(
        {"id": "sandboxed-audit", "version": "1.0.0", "capabilities": ["content:write"]},
        source=source,
    )
    item = rt.content.create("posts", {"title": "x"})
    assert item["data"] == {"title": "x", "checkedBy": "sandbox", "isNew": True}
    assert rt.store.kv_entries.get("sandboxed-audit", "seen") == {
        "event": {"content": item, "collection": "posts", "isNew": True},
        "read": item,
    }
    rt.store.kv_entries.set("sandboxed-audit", "protected", item["id"])
    with pytest.raises(DeleteBlockedError) as exc:
        rt.content.delete("posts", item["id"])
    assert str(exc.value) == "Delete blocked by plugin hook (vetoed by sandboxed-audit)"
