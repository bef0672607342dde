"""Fairness over real HTTP (issue row 3): one plugin's flooded slow route cannot make another
plugin's route wait, because admission is taken in uvicorn's event loop before a thread.

Plugin ``slow`` has a public route that blocks on an event the test controls; 80 clients
call it at once, more than its turns (2) and queue (4). The server's thread pool is cut to
3 threads: if waiting callers held threads (as they did before admission), plugin
``quick``'s call could not even start. Verdicts are structural: exactly the excess callers
get 503 with ``Retry-After`` while ``quick`` answers 200, then the admitted ones finish.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any

import anyio
import anyio.to_thread
import httpx

from emdash import RouteConfig, define_plugin
from emdash._runtime._runtime import Runtime
from emdash.asgi import create_app

from .conftest import API
from .test_uvicorn import serving

CLIENTS = 80
CONCURRENCY, QUEUE, THREADS = 2, 4, 3


class SmallThreadPool:
    """ASGI wrapper: cut the server's default thread pool at startup (in its event loop)."""

    def __init__(self, app: Any, tokens: int) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.tokens
        await self.app(scope, receive, send)


def test_flooded_plugin_refuses_its_excess_while_another_plugin_answers() -> None:
    release = threading.Event()
    lock = threading.Lock()
    started: list[int] = []

    def slow(route_ctx: Any, ctx: Any) -> str:
        with lock:
            started.append(1)
        release.wait(300)
        return "slow"

    with Runtime(":memory:") as rt:
        rt.add_plugin(
            {"id": "slow", "version": "1.0.0"},
            source=define_plugin(routes={"wait": RouteConfig(slow, public=True)}),
            trusted=True,
        )
        rt.add_plugin(
            {"id": "quick", "version": "1.0.0"},
            source=define_plugin(routes={"ping": RouteConfig(lambda rc, c: "pong", public=True)}),
            trusted=True,
        )
        # A queue wait far beyond the test's length: a queued caller is never timed out,
        # however slow the machine, so the counts below are exact.
        rt.admission.configure(
            "slow", max_concurrency=CONCURRENCY, max_queue=QUEUE, queue_timeout_ms=3_600_000
        )
        gate = rt.admission.gate("slow")
        app = SmallThreadPool(create_app(rt), THREADS)
        with serving(app) as base:
            try:
                outcome = anyio.run(flood, base, gate.stats, release)
            finally:
                release.set()
        statuses, quick_status, stats_during = outcome
        assert quick_status == 200
        assert stats_during["running"] == CONCURRENCY
        assert stats_during["queued"] == QUEUE
        assert statuses.count(200) == CONCURRENCY + QUEUE
        assert statuses.count(503) == CLIENTS - CONCURRENCY - QUEUE
        assert len(started) == CONCURRENCY + QUEUE  # refused callers ran no plugin code
        assert rt.admission.stats("slow")["refused"] == CLIENTS - CONCURRENCY - QUEUE


async def flood(
    base: str, stats: Any, release: threading.Event
) -> tuple[list[int], int, dict[str, int]]:
    statuses: list[int] = []
    refused = anyio.Event()
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base, trust_env=False, timeout=120, limits=limits
    ) as client:

        async def one() -> None:
            r = await client.get(f"{API}/slow/wait")
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "PLUGIN_BUSY"
            statuses.append(r.status_code)
            if statuses.count(503) == CLIENTS - CONCURRENCY - QUEUE:
                refused.set()

        async with anyio.create_task_group() as tg:
            for _ in range(CLIENTS):
                tg.start_soon(one)
            # Every excess caller has its 503 while the admitted ones are still held.
            await refused.wait()
            stats_during = stats()
            quick = await client.get(f"{API}/quick/ping")
            assert quick.json() == {"success": True, "data": "pong"}
            release.set()
    return statuses, quick.status_code, stats_during
