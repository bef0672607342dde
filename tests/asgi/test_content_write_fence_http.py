"""A content write refused by the host's fence, escaping a route, over HTTP (both modes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emdash import ContentWrite, PluginRouteError
from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

from .conftest import API, TOKEN, call

WRITER = """
from emdash import define_plugin

def write(route_ctx, ctx):
    return ctx.content.create("posts", {"title": "x"})["id"]

def read(route_ctx, ctx):
    return len(ctx.content.list("posts")["items"])

plugin = define_plugin(routes={"write": write, "read": read})
"""


def activation_in_progress(write: ContentWrite) -> None:
    raise PluginRouteError(
        "MEDIA_USAGE_ACTIVATION_IN_PROGRESS", "Media usage activation is in progress", 503
    )


@pytest.fixture(params=["trusted", "sandboxed"])
def app(request: pytest.FixtureRequest) -> Iterator[EmDashASGI]:
    with Runtime(":memory:", before_content_write=activation_in_progress) as rt:
        rt.add_plugin(
            {"id": "writer", "capabilities": ["content:write"]},
            source={"plugin.py": WRITER},
            trusted=request.param == "trusted",
        )
        yield create_app(rt, token=TOKEN)


def test_a_fenced_write_answers_with_the_fence_code_and_status(app: EmDashASGI) -> None:
    r = call(app, "POST", f"{API}/writer/write", json={})
    assert r.status_code == 503
    assert r.json() == {
        "success": False,
        "error": {
            "code": "MEDIA_USAGE_ACTIVATION_IN_PROGRESS",
            "message": "Media usage activation is in progress",
        },
    }
    # Reads are not fenced, and nothing was written.
    r = call(app, "GET", f"{API}/writer/read")
    assert (r.status_code, r.json()) == (200, {"success": True, "data": 0})
