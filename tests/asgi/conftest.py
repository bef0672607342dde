"""A real runtime with a probe plugin (both modes) and a helper to call the ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "test-token-0123456789abcdef"

PROBE_SOURCE = """
from emdash import PluginRouteError, RouteConfig, define_plugin


def echo(route_ctx, ctx):
    request = route_ctx["request"]
    return {
        "input": route_ctx["input"],
        "method": request["method"],
        "url": request["url"],
        "headers": request["headers"],
        "user": route_ctx["user"],
        "ip": route_ctx["requestMeta"]["ip"],
    }


def teapot(route_ctx, ctx):
    raise PluginRouteError("TEAPOT", "short and stout", 418)


def internal(route_ctx, ctx):
    raise PluginRouteError.internal("the database password is hunter2")


def crash(route_ctx, ctx):
    raise KeyError("secret-key-material")


def no_capability(route_ctx, ctx):
    return ctx.content.get("posts", "x")


def cached(route_ctx, ctx):
    return {"cached": True}


plugin = define_plugin(routes={
    "echo": echo,
    "public-echo": RouteConfig(echo, public=True),
    "deep/nested/route": echo,
    "teapot": teapot,
    "internal": internal,
    "crash": crash,
    "no-capability": no_capability,
    "cached": RouteConfig(cached, public=True, cache_control="public, max-age=60"),
    "private-cached": RouteConfig(cached, cache_control="public, max-age=60"),
    "evil-cache": RouteConfig(cached, public=True,
                              cache_control="max-age=1\\r\\nset-cookie: stolen=1"),
})
"""

PROBE = {"id": "probe", "version": "1.0.0"}


@pytest.fixture(scope="module", params=["trusted", "sandboxed"])
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    trusted = request.param == "trusted"
    with Runtime(":memory:", site={"name": "T", "url": "https://site.example"}) as rt:
        rt.add_plugin(PROBE, source=PROBE_SOURCE, trusted=trusted)
        rt.add_plugin(EXAMPLES / "forms", trusted=trusted)
        rt.add_plugin(EXAMPLES / "hello", trusted=trusted)
        yield rt


@pytest.fixture(scope="module")
def app(runtime: Runtime) -> EmDashASGI:
    return create_app(runtime, token=TOKEN, max_body_bytes=4096)


def call(
    app: Any,
    method: str,
    path: str,
    *,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request through httpx.ASGITransport (a real ASGI client, no server)."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://site.example") as c:
            return await c.request(method, path, headers=all_headers, **kwargs)

    return anyio.run(go)


API = "/_emdash/api/plugins"
