"""The ASGI app behind a real uvicorn server on 127.0.0.1, spoken to over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from emdash._runtime._runtime import Runtime
from emdash.asgi import create_app

from .conftest import API, TOKEN


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` behind a real uvicorn on a free 127.0.0.1 port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with serving(create_app(runtime, token=TOKEN)) as url:
        yield url


def test_routes_over_real_http(server: str) -> None:
    with httpx.Client(base_url=server, trust_env=False, timeout=30) as client:
        denied = client.get(f"{API}/probe/echo")
        assert denied.status_code == 401
        assert denied.json() == {
            "success": False,
            "error": {"code": "UNAUTHORIZED", "message": "Authentication required"},
        }
        ok = client.post(
            f"{API}/probe/echo", json={"n": 1}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert ok.status_code == 200
        data = ok.json()["data"]
        assert data["input"] == {"n": 1}
        assert data["ip"] == "127.0.0.1"
        assert data["url"] == f"{server}/_emdash/api/plugins/probe/echo"
        assert "authorization" not in data["headers"]
        cached = client.get(f"{API}/probe/cached")
        assert cached.headers["cache-control"] == "public, max-age=60"
        head = client.head(f"{API}/probe/cached")
        assert head.status_code == 200
        assert head.content == b""
        big = client.post(f"{API}/probe/public-echo", content=b"x" * (1024 * 1024 + 1))
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
