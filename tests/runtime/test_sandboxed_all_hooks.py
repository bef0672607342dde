"""Every one of the 25 hooks reaches a *sandboxed* plugin through the real host operation
that fires it (EmDash's isolates only ever see content hooks and page metadata).

The plugin registers a recorder for every hook; each recorder stores what it saw in the
plugin's KV through the bridge, so the test also proves that each hook's ctx works in the
worker. ``page:fragments`` is the deliberate exception: raw HTML and scripts stay with
trusted plugins, so a sandboxed registration is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import emdash
from emdash import HOOK_NAMES, page_context

PLUGIN = """
from emdash import define_plugin

HOOKS = HOOK_LIST

def recorder(name):
    def handler(event, ctx):
        ctx.kv.set("seen:" + name, event)
        if name == "comment:moderate":
            return {"status": "approved", "reason": "sandboxed moderator"}
        if name == "page:metadata":
            return {"kind": "meta", "name": "x-sandboxed", "content": "yes"}
        return None
    return handler

plugin = define_plugin(hooks={name: recorder(name) for name in HOOKS})
""".replace("HOOK_LIST", repr(list(HOOK_NAMES)))

ALL_CAPS = list(emdash.CAPABILITIES)


def test_every_hook_reaches_a_sandboxed_plugin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with emdash.Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(
            {"id": "all", "capabilities": ALL_CAPS, "limits": {"cpu_ms": 500}},
            source={"plugin.py": PLUGIN},
            trusted=False,
        )
        assert rt.get_plugin("all").sandboxed
        kv = rt.store.kv_entries

        def seen(name: str) -> object:
            return kv.get("all", "seen:" + name)

        # lifecycle: install + activate on first sight
        assert seen("plugin:install") == {} and seen("plugin:activate") == {}

        # content
        item = rt.content.create("posts", {"title": "Hello"})
        assert seen("content:beforeSave") == {
            "content": {"title": "Hello"},
            "collection": "posts",
            "isNew": True,
        }
        assert seen("content:afterSave")["content"]["id"] == item["id"]  # type: ignore[index]
        rt.content.update("posts", item["id"], {"title": "Again"})
        rt.content.publish("posts", item["id"])
        assert seen("content:afterPublish")["content"]["status"] == "published"  # type: ignore[index]
        rt.content.unpublish("posts", item["id"])
        rt.content.schedule("posts", item["id"], "2099-01-01T00:00:00Z")
        rt.content.unschedule("posts", item["id"])
        rt.content.delete("posts", item["id"])
        assert seen("content:beforeDelete") == {
            "id": item["id"],
            "collection": "posts",
            "permanent": False,
        }
        rt.content.restore("posts", item["id"])
        rt.content.delete_permanently("posts", item["id"])
        assert seen("content:afterDelete") == {
            "id": item["id"],
            "collection": "posts",
            "permanent": True,
        }
        for name in (
            "content:afterUnpublish",
            "content:afterSchedule",
            "content:afterUnschedule",
            "content:afterRestore",
        ):
            assert seen(name) is not None, name

        # media
        media = rt.media.upload("pixel.png", "image/png", b"\x89PNG\r\n")
        assert seen("media:beforeUpload") == {
            "file": {"name": "pixel.png", "type": "image/png", "size": 6},
        }
        assert seen("media:afterUpload")["media"]["id"] == media["id"]  # type: ignore[index]

        # email: the sandboxed plugin is the only transport, so it is selected
        rt.email.send({"to": "a@example.com", "subject": "Hi", "text": "Body"})
        for name in ("email:beforeSend", "email:deliver", "email:afterSend"):
            assert seen(name)["message"]["subject"] == "Hi", name  # type: ignore[index]

        # comments: the sandboxed moderator decides the status
        post = rt.content.create("posts", {"title": "Commented"})
        rt.content.publish("posts", post["id"])  # comments go on published items
        comment = rt.comments.create(
            "posts", post["id"], author_name="Ada", author_email="ada@example.com", body="Nice"
        )
        assert comment["status"] == "approved"
        assert seen("comment:beforeCreate")["comment"]["body"] == "Nice"  # type: ignore[index]
        assert seen("comment:moderate")["priorApprovedCount"] == 0  # type: ignore[index]
        assert seen("comment:afterCreate")["comment"]["id"] == comment["id"]  # type: ignore[index]
        rt.comments.moderate(comment["id"], "spam", moderator={"id": "u1", "name": "Mod"})
        assert seen("comment:afterModerate")["newStatus"] == "spam"  # type: ignore[index]

        # cron: a due one-shot task of this plugin
        rt.cron.schedule("all", "job", "2020-01-01T00:00:00Z", data={"n": 1})
        rt.cron.tick()
        assert seen("cron") == {
            "name": "job",
            "data": {"n": 1},
            "scheduledAt": "2020-01-01T00:00:00.000Z",
        }

        # page metadata: the sandboxed contribution is rendered
        page = page_context("https://example.com/p", title="P")
        contributions = rt.page.metadata(page)
        assert {"kind": "meta", "name": "x-sandboxed", "content": "yes"} in [
            {k: c[k] for k in ("kind", "name", "content")} for c in contributions if c.get("name")
        ]
        assert seen("page:metadata") is not None
        rt.page.fragments(page, "head")
        assert seen("page:fragments") is None  # trusted plugins only
        assert 'Plugin "all" declares page:fragments hook but is not trusted' in caplog.text

        # lifecycle transitions
        rt.disable_plugin("all")
        assert seen("plugin:deactivate") == {}
        kv.delete("all", "seen:plugin:activate")
        rt.enable_plugin("all")
        assert seen("plugin:activate") == {}
        rt.remove_plugin("all")
        assert seen("plugin:uninstall") == {"deleteData": False}

        fired = {n for n in HOOK_NAMES if kv.get("all", "seen:" + n) is not None}
        assert fired == set(HOOK_NAMES) - {"page:fragments"}
