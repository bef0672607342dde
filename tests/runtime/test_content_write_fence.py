"""The host's content-write fence (EmDash's ``beforeContentWrite``), in both modes.

A host installs one callable that sees every content write a plugin makes through the
bridge, and only writes. When it raises a structured :class:`PluginRouteError` the write is
refused, the plugin sees that error (and may catch it), and an uncaught one leaves the route
with its code and status. Each test runs the same plugin natively and in a real sandbox.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import ContentWrite, PluginRouteError

WRITER = """
from emdash import define_plugin, PluginRouteError

def every_call(route_ctx, ctx):
    made = ctx.content.create("posts", {"title": "one"})
    ctx.content.get("posts", made["id"])
    ctx.content.list("posts")
    ctx.content.update("posts", made["id"], {"title": "two"})
    batch = ctx.content.create_many("posts", [{"title": "a"}, {"title": "b"}])
    ids = [item["id"] for item in batch]
    ctx.content.update_many("posts", [{"id": ids[0], "data": {"title": "c"}}])
    ctx.content.delete_many("posts", ids)
    ctx.content.delete("posts", made["id"])
    return {"made": made["id"], "batch": ids}

def write(route_ctx, ctx):
    return ctx.content.create("posts", {"title": "refused?"})

def catch(route_ctx, ctx):
    try:
        ctx.content.create("posts", {"title": "refused?"})
    except PluginRouteError as err:
        # Reads still work while writes are fenced.
        listed = ctx.content.list("posts")
        return {"code": err.code, "status": err.status, "message": str(err),
                "read": len(listed["items"])}
    return {"code": None}

def after_save(event, ctx):
    if event["collection"] == "posts":
        ctx.content.create("notes", {"about": event["content"]["id"]})

plugin = define_plugin(
    routes={"every_call": every_call, "write": write, "catch": catch},
    hooks={"content:afterSave": after_save},
)
"""

IN_PROGRESS = ("MEDIA_USAGE_ACTIVATION_IN_PROGRESS", "Media usage activation is in progress")


class Fence:
    """Records what it is shown; refuses every write while ``blocked``."""

    def __init__(self) -> None:
        self.seen: list[ContentWrite] = []
        self.blocked = False

    def __call__(self, write: ContentWrite) -> None:
        self.seen.append(write)
        if self.blocked:
            raise PluginRouteError(*IN_PROGRESS, 503)


@pytest.fixture(params=["native", "sandboxed"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[emdash.Runtime, Fence]]:
    fence = Fence()
    with emdash.Runtime(tmp_path / "site.db", before_content_write=fence) as rt:
        rt.add_plugin(
            {"id": "writer", "capabilities": ["content:write"]},
            source={"plugin.py": WRITER},
            trusted=request.param == "native",
        )
        yield rt, fence


def test_the_fence_sees_every_write_and_no_read(site: tuple[emdash.Runtime, Fence]) -> None:
    rt, fence = site
    out = rt.invoke_route("writer", "every_call")
    made, batch = out["made"], out["batch"]
    assert fence.seen == [
        ContentWrite("writer", "content/create", "posts", (), 1),
        ContentWrite("writer", "content/update", "posts", (made,), 1),
        ContentWrite("writer", "content/createMany", "posts", (), 2),
        ContentWrite("writer", "content/updateMany", "posts", (batch[0],), 1),
        ContentWrite("writer", "content/deleteMany", "posts", tuple(batch), 2),
        ContentWrite("writer", "content/delete", "posts", (made,), 1),
    ]


def test_a_refused_write_reaches_the_plugin_and_the_route_caller(
    site: tuple[emdash.Runtime, Fence],
) -> None:
    rt, fence = site
    rt.invoke_route("writer", "write")  # allowed: one item exists
    fence.blocked = True
    with pytest.raises(PluginRouteError) as info:
        rt.invoke_route("writer", "write")
    assert (info.value.code, info.value.message, info.value.status) == (*IN_PROGRESS, 503)
    # The plugin can catch it, and its reads still work meanwhile.
    assert rt.invoke_route("writer", "catch") == {
        "code": IN_PROGRESS[0],
        "status": 503,
        "message": IN_PROGRESS[1],
        "read": 1,
    }
    assert len(rt.store.content_items.list("posts")["items"]) == 1  # nothing was written
    assert [w.method for w in fence.seen] == ["content/create"] * 3


def test_the_fence_can_be_installed_and_removed_later(
    site: tuple[emdash.Runtime, Fence],
) -> None:
    rt, fence = site
    rt.set_before_content_write(None)
    fence.blocked = True
    rt.invoke_route("writer", "write")
    assert fence.seen == []
    rt.set_before_content_write(fence)
    with pytest.raises(PluginRouteError):
        rt.invoke_route("writer", "write")
    assert len(fence.seen) == 1


def test_a_failing_fence_refuses_the_write_and_keeps_its_text_from_the_plugin(
    site: tuple[emdash.Runtime, Fence], caplog: pytest.LogCaptureFixture
) -> None:
    rt, _ = site

    def broken(write: ContentWrite) -> None:
        raise RuntimeError("cannot reach db://admin:hunter2@db")

    rt.set_before_content_write(broken)
    with caplog.at_level(logging.ERROR, logger="emdash"):
        caught: Any = rt.invoke_route("writer", "catch")
    assert caught == {
        "code": "CONTENT_WRITE_CHECK_FAILED",
        "status": 503,
        "message": "Unable to verify that content writes are allowed; try again later",
        "read": 0,
    }
    assert rt.store.content_items.list("posts")["items"] == []
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "before_content_write fence failed on content/create posts by plugin writer" in logged
    assert "hunter2" in caplog.text  # the operator sees the cause; the plugin did not


def test_host_writes_are_not_fenced_and_a_refusal_in_a_hook_fails_the_hook(
    site: tuple[emdash.Runtime, Fence],
) -> None:
    rt, fence = site
    fence.blocked = True
    item = rt.content.create("posts", {"title": "by the host"})  # rt.content: not fenced
    assert rt.store.content_items.get("posts", item["id"]) is not None
    # The plugin's afterSave hook tried to write and was refused: a hook failure.
    assert fence.seen == [ContentWrite("writer", "content/create", "notes", (), 1)]
    assert rt.store.content_items.list("notes")["items"] == []
    hooks = [r for r in rt.audit_log(plugin_id="writer") if r["kind"] == "hook"]
    assert [(r["name"], r["outcome"] != "ok") for r in hooks] == [("content:afterSave", True)]
