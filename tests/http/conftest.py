"""A real local HTTP server (two, for cross-origin hops) and plugin descriptors for HTTP tests."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pytest

from emdash._bridge._http import HttpClient
from emdash._model._descriptor import PluginDescriptor


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(
        self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": list(self.headers.items()),
                "body": body,
            }
        )
        path = parts.path
        if path == "/echo":
            payload = {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": base64.b64encode(body).decode(),
            }
            self._reply(200, json.dumps(payload).encode(), [("Content-Type", "application/json")])
        elif path == "/redirect":
            self._reply(int(query.get("code", "302")), b"moved", [("Location", query["to"])])
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            if n == 0:
                self._reply(200, b"end of chain")
            else:
                self._reply(302, b"", [("Location", f"/chain/{n - 1}")])
        elif path == "/noloc":
            self._reply(302, b"no location here")
        elif path == "/big":
            self._reply(200, b"x" * int(query["n"]))
        elif path == "/stream-big":
            # No Content-Length: the client must count while reading.
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            for _ in range(int(query["chunks"])):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/binary":
            self._reply(200, bytes(range(256)), [("Content-Type", "application/octet-stream")])
        elif path == "/multi":
            self._reply(
                200,
                "héllo".encode("latin-1"),
                [
                    ("Set-Cookie", "a=1"),
                    ("Set-Cookie", "b=2"),
                    ("X-Multi", "one"),
                    ("X-Multi", "two"),
                    ("Content-Type", "text/plain; charset=latin-1"),
                ],
            )
        elif path == "/gzip":
            self._reply(200, gzip.compress(b"z" * int(query["n"])), [("Content-Encoding", "gzip")])
        elif path == "/status":
            self._reply(int(query["code"]), b"", [])
        else:
            self._reply(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _serve() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture
def other_server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    c = HttpClient(allow_private=["127.0.0.1"], timeout=5.0)
    yield c
    c.close()


class MakePlugin(Protocol):
    """The ``make_plugin`` fixture's type."""

    def __call__(
        self, caps: list[str], hosts: list[str] | None = None, pid: str = "web"
    ) -> PluginDescriptor: ...


def _plugin(caps: list[str], hosts: list[str] | None = None, pid: str = "web") -> PluginDescriptor:
    return PluginDescriptor.from_dict(
        {"id": pid, "capabilities": caps, "allowedHosts": hosts or []}
    )


@pytest.fixture
def make_plugin() -> MakePlugin:
    """``make_plugin(caps, hosts=None, pid="web")`` -> a real PluginDescriptor."""
    return _plugin


@pytest.fixture
def unrestricted() -> PluginDescriptor:
    return _plugin(["network:request:unrestricted"])
