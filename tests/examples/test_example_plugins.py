"""Every example plugin, loaded from disk, behaving the same natively and sandboxed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import PluginError, PluginRouteError
from emdash._runtime._runtime import Runtime
from emdash._services._page import page_context
from emdash._shared._errors import DeleteBlockedError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SITE = {"name": "Example site", "url": "https://site.example"}


@pytest.fixture(params=["trusted", "sandboxed"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rt(mode: str) -> Iterator[Runtime]:
    with Runtime(":memory:", site=SITE) as runtime:
        yield runtime


def add(rt: Runtime, mode: str, *names: str) -> None:
    for name in names:
        info = rt.add_plugin(EXAMPLES / name, trusted=mode == "trusted")
        assert info["mode"] == mode


# -- hello ----------------------------------------------------------------------------------


def test_hello_records_saves_and_serves_the_last_ten(rt: Runtime, mode: str) -> None:
    add(rt, mode, "hello")
    ids = [rt.content.create("posts", {"title": f"Post {i}"})["id"] for i in range(12)]
    recent = rt.invoke_route("plugin-hello", "recent")
    events = recent["events"]
    assert len(events) == 10
    # Newest first: the last ten saves, in reverse order.
    assert [e["data"]["contentId"] for e in events] == ids[::-1][:10]
    assert all(e["data"]["collection"] == "posts" for e in events)
    assert all(e["id"].startswith("save-") for e in events)
    stamps = [e["data"]["timestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)


# -- seo-check ------------------------------------------------------------------------------


def test_seo_check_normalises_and_requires_a_title(rt: Runtime, mode: str) -> None:
    add(rt, mode, "seo-check")
    body = "word " * 60
    item = rt.content.create("posts", {"title": "  Ünïcode & Friends!  ", "body": body})
    assert item["data"]["title"] == "Ünïcode & Friends!"
    assert item["data"]["slug"] == "n-code-friends"
    description = item["data"]["meta_description"]
    assert len(description) <= 160
    assert description.endswith("\u2026")
    assert description.startswith("word word")

    with pytest.raises(PluginError) as info:
        rt.content.create("posts", {"title": "   "})
    assert info.value.plugin_id == "seo-check"
    assert "seo-check: every posts item needs a non-empty title" in info.value.message
    # Nothing was saved by the refused create.
    assert [i["id"] for i in rt.store.content_items.list("posts")["items"]] == [item["id"]]

    # An update without a title keeps the stored one; an explicit blank title is refused.
    updated = rt.content.update("posts", item["id"], {"body": "short"})
    assert updated["data"]["title"] == "Ünïcode & Friends!"
    assert updated["data"]["meta_description"] == "short"
    with pytest.raises(PluginError):
        rt.content.update("posts", item["id"], {"title": ""})


def test_seo_check_vetoes_deleting_pinned_items(rt: Runtime, mode: str) -> None:
    add(rt, mode, "seo-check")
    pinned = rt.content.create("pages", {"title": "About", "pinned": True})
    loose = rt.content.create("pages", {"title": "Old"})
    with pytest.raises(DeleteBlockedError) as info:
        rt.content.delete("pages", pinned["id"])
    assert str(info.value) == "Delete blocked by plugin hook (vetoed by seo-check)"
    assert rt.store.content_items.get("pages", pinned["id"]) is not None
    assert rt.content.delete("pages", loose["id"]) is True


# -- audit-trail ----------------------------------------------------------------------------


def test_audit_trail_records_lifecycle_and_content(rt: Runtime, mode: str) -> None:
    add(rt, mode, "audit-trail")
    post = rt.content.create("posts", {"title": "A"})
    rt.content.update("posts", post["id"], {"title": "B"})
    rt.content.publish("posts", post["id"])
    rt.content.unpublish("posts", post["id"])
    rt.content.delete("posts", post["id"])
    rt.disable_plugin("audit-trail")
    rt.enable_plugin("audit-trail")

    log = rt.invoke_route("audit-trail", "log", input={"limit": 100})
    actions = [e["action"] for e in log["entries"]]
    assert actions == [
        "activate",
        "deactivate",
        "delete",
        "unpublish",
        "publish",
        "save",
        "save",
        "activate",
        "install",
    ]
    assert [e["seq"] for e in log["entries"]] == list(range(9, 0, -1))
    assert log["total"] == 9
    assert log["cursor"] is None
    saves = rt.invoke_route("audit-trail", "log", input={"action": "save"})
    assert [e["isNew"] for e in saves["entries"]] == [False, True]
    assert saves["total"] == 2


def test_audit_trail_pages_with_a_cursor(rt: Runtime, mode: str) -> None:
    add(rt, mode, "audit-trail")
    for i in range(5):
        rt.content.create("posts", {"title": f"T{i}"})
    seen: list[int] = []
    cursor = None
    while True:
        page = rt.invoke_route("audit-trail", "log", input={"limit": 3, "cursor": cursor})
        seen += [e["seq"] for e in page["entries"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == list(range(7, 0, -1))  # install, activate, five saves: no gaps, no repeats


def test_audit_trail_log_rejects_bad_input(rt: Runtime, mode: str) -> None:
    add(rt, mode, "audit-trail")
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("audit-trail", "log", input={"action": "explode"})
    assert (info.value.code, info.value.status, info.value.message) == (
        "BAD_REQUEST",
        400,
        "Unknown action: explode",
    )
    with pytest.raises(PluginRouteError, match="^limit must be between 1 and 100$"):
        rt.invoke_route("audit-trail", "log", input={"limit": 0})
    with pytest.raises(PluginRouteError, match="^limit must be a number$"):
        rt.invoke_route("audit-trail", "log", input={"limit": "many"})


# -- og-metadata ----------------------------------------------------------------------------


def test_og_metadata_contributes_opengraph_and_json_ld(rt: Runtime, mode: str) -> None:
    add(rt, mode, "og-metadata")
    page = page_context(
        "https://site.example/posts/hi",
        kind="content",
        title="Hi <there>",
        description="A post",
        canonical="https://site.example/posts/hi",
        image="https://site.example/hi.png",
        article_meta={"publishedTime": "2026-01-02T03:04:05Z", "author": "Ada"},
    )
    head = rt.page.render_head(page)
    assert '<meta property="og:title" content="Hi &lt;there&gt;">' in head
    assert '<meta property="og:type" content="article">' in head
    assert '<meta property="og:site_name" content="Example site">' in head
    assert '<meta name="twitter:card" content="summary_large_image">' in head
    assert '<link rel="canonical" href="https://site.example/posts/hi">' in head
    assert '"@type":"BlogPosting"' in head.replace(": ", ":")
    assert '"headline":"Hi \\u003cthere\\u003e"' in head.replace(": ", ":")
    assert "Hi <there>" not in head  # escaped everywhere, JSON-LD included


# -- webhook-notifier -----------------------------------------------------------------------


def test_webhook_notifier_settings_and_refused_hosts(rt: Runtime, mode: str) -> None:
    add(rt, mode, "webhook-notifier")
    post = {"method": "POST"}
    with pytest.raises(PluginRouteError, match="^url must be an https:// URL$"):
        rt.invoke_route("webhook-notifier", "settings", input={"url": "http://x"}, request=post)
    settings = rt.invoke_route(
        "webhook-notifier",
        "settings",
        request=post,
        input={"url": "https://evil.example/hook", "secret_header": "s3cret"},
    )
    assert settings == {
        "settings": {"settings:url": "https://evil.example/hook", "settings:secret_header": "(set)"}
    }
    # Saving content notifies; the host is not in allowed_hosts, so the delivery is refused
    # by the bridge and recorded as failed. The save itself succeeds (error_policy continue).
    item = rt.content.create("posts", {"title": "Hi"})
    assert item["data"]["title"] == "Hi"
    assert rt.invoke_route("webhook-notifier", "status") == {
        "delivered": 0,
        "rejected": 0,
        "failed": 1,
    }
    rt.content.delete("posts", item["id"])
    assert rt.invoke_route("webhook-notifier", "status")["failed"] == 2
    hook = rt.get_plugin("webhook-notifier").definition_meta["hooks"]["content:afterSave"]
    assert hook == {
        "priority": 210,
        "timeout_ms": 10000,
        "dependencies": [],
        "error_policy": "continue",
        "exclusive": False,
    }


# -- forms ----------------------------------------------------------------------------------


def test_forms_public_submit_dedupes_and_lists(rt: Runtime, mode: str) -> None:
    add(rt, mode, "forms")
    meta = rt.get_plugin("forms").definition_meta["routes"]
    assert meta["submit"]["public"] is True
    assert meta["submissions/list"]["public"] is False
    sent = rt.invoke_route(
        "forms", "submit", input={"form": "contact", "email": "ada@example.com", "message": "Hi"}
    )
    assert sent["received"] is True
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route(
            "forms",
            "submit",
            input={"form": "contact", "email": "ADA@example.com", "message": " hi "},
        )
    assert (info.value.code, info.value.status) == ("CONFLICT", 409)
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route(
            "forms",
            "submit",
            input={"form": "contact", "email": "x@y.z", "message": "m", "extra": 1},
        )
    assert info.value.code == "VALIDATION_ERROR"
    listed = rt.invoke_route("forms", "submissions/list", input={"form": "contact"})
    assert [(s["email"], s["message"]) for s in listed["submissions"]] == [
        ("ada@example.com", "Hi"),
    ]
    deleted = rt.invoke_route("forms", "submissions/delete", input={"id": sent["id"]})
    assert deleted == {"deleted": sent["id"]}
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("forms", "submissions/delete", input={"id": sent["id"]})
    assert (info.value.code, info.value.message) == (
        "NOT_FOUND",
        f"No such submission: {sent['id']}",
    )


def test_forms_schedules_and_runs_its_weekly_cleanup(rt: Runtime, mode: str) -> None:
    from datetime import UTC, datetime, timedelta

    add(rt, mode, "forms")
    tasks = rt.cron.list("forms")
    assert [(t["name"], t["schedule"]) for t in tasks] == [("cleanup", "@weekly")]
    old = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    rt.store.plugin_documents.put(
        "forms",
        "submissions",
        "sub-old",
        {
            "form": "f",
            "email": "old@example.com",
            "message": "m",
            "fingerprint": "f|old|m",
            "createdAt": old,
        },
    )
    rt.invoke_route(
        "forms", "submit", input={"form": "f", "email": "new@example.com", "message": "fresh"}
    )
    runs = rt.cron.tick(now=datetime.now(UTC) + timedelta(days=8))
    assert [(r.plugin_id, r.name, r.success, r.outcome) for r in runs] == [
        ("forms", "cleanup", True, "rescheduled"),
    ]
    listed = rt.invoke_route("forms", "submissions/list")
    assert [s["email"] for s in listed["submissions"]] == ["new@example.com"]


def test_forms_admin_page_widget_and_settings(rt: Runtime, mode: str) -> None:
    add(rt, mode, "forms")
    entry = rt.admin.catalog()[0]
    assert entry["pages"] == [{"path": "/submissions", "label": "Submissions", "icon": "inbox"}]
    assert entry["widgets"] == [{"id": "recent", "title": "Recent submissions", "size": "half"}]
    assert entry["has_settings"] is True
    rt.invoke_route(
        "forms", "submit", input={"form": "contact", "email": "ada@example.com", "message": "Hi"}
    )

    page = rt.admin.interact("forms", {"type": "page_load", "page": "/submissions"})
    table = next(b for b in page["blocks"] if b["type"] == "table")
    assert [row["email"] for row in table["rows"]] == ["ada@example.com"]
    chart = next(b for b in page["blocks"] if b["type"] == "chart")
    assert chart["config"]["chart_type"] == "custom"
    assert chart["config"]["options"]["series"][0]["data"] == [1]
    widget = rt.admin.interact("forms", {"type": "page_load", "page": "widget:recent"})
    assert widget["blocks"][0]["items"] == [{"label": "Submissions", "value": 1}]

    # The page's form stores something and answers with a toast; submit then refuses it.
    blocked = rt.admin.interact(
        "forms",
        {"type": "form_submit", "action_id": "block", "values": {"email": "Spam@Example.com"}},
    )
    assert blocked["toast"] == {"message": "Blocked spam@example.com (spam)", "type": "success"}
    assert rt.store.kv_entries.get("forms", "blocked") == ["spam@example.com"]
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route(
            "forms",
            "submit",
            input={"form": "contact", "email": "spam@example.com", "message": "x"},
        )
    assert info.value.status == 403

    # Settings: a select, an email and a secret; the cleanup reads the retention from kv.
    settings = rt.admin.settings_page("forms")
    form = next(b for b in settings["blocks"] if b["type"] == "form")
    assert [(f["action_id"], f["type"]) for f in form["fields"]] == [
        ("retention_days", "select"),
        ("notify_email", "text_input"),
        ("spam_api_key", "secret_input"),
    ]
    saved = rt.admin.save_settings(
        "forms",
        {"retention_days": "30", "notify_email": "me@site.example", "spam_api_key": "k-123"},
    )
    assert saved["toast"] == {"message": "Settings saved", "type": "success"}
    assert "k-123" not in str(saved) and "k-123" not in str(rt.admin.settings_page("forms"))
    assert rt.store.kv_entries.get("forms", "settings:retention_days") == "30"
    page = rt.admin.interact("forms", {"type": "page_load", "page": "/submissions"})
    assert page["blocks"][1] == {"type": "context", "text": "Contact: me@site.example"}
    from datetime import UTC, datetime, timedelta

    forty_days = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    rt.store.plugin_documents.put(
        "forms",
        "submissions",
        "sub-40",
        {
            "form": "f",
            "email": "o@x.z",
            "message": "m",
            "fingerprint": "f|o|m",
            "createdAt": forty_days,
        },
    )
    rt.cron.tick(now=datetime.now(UTC) + timedelta(days=8))
    listed = rt.invoke_route("forms", "submissions/list")
    assert [s["email"] for s in listed["submissions"]] == ["ada@example.com"]
