"""A real local HTTP server (two, for cross-origin hops) and plugin descriptors for HTTP tests."""

from __future__ import annotations

import base64
import collections
import functools
import gzip
import json
import struct
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pytest

from emdash._bridge._http import HttpClient
from emdash._model._descriptor import PluginDescriptor

_LONG_PATHS = frozenset({"/slow", "/trickle"})


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
        path = parts.path
        with self.server.lock:
            # Counted busy in the same step as seen, so still_busy never sees one without
            # the other; the handler below un-counts it when it is done.
            if path in _LONG_PATHS:
                self.server.busy[path] += 1
            self.server.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": list(self.headers.items()),
                    "body": body,
                }
            )
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
        elif path == "/bomb":
            # ?layers=1: 1 GiB of zeros gzip-encoded once (~1 MB on the wire);
            # ?layers=2: that, gzip-encoded again (~2.5 KB on the wire), declared as such.
            layers = int(query.get("layers", "1"))
            body = gzip_bomb()
            for _ in range(layers - 1):
                body = gzip.compress(body, 9)
            self._reply(200, body, [("Content-Encoding", ", ".join(["gzip"] * layers))])
        elif path == "/encoded":
            # Any Content-Encoding the test asks for, over a plain body.
            self._reply(200, b"plain", [("Content-Encoding", v) for v in query["ce"].split("|")])
        elif path == "/slow":
            # Answers only when released (teardown) or after ?s= seconds; see still_busy.
            self.server.release.wait(float(query.get("s", "20")))
            with self.server.lock:
                self.server.busy[path] -= 1
            try:
                self._reply(200, b"late")
            except OSError:
                pass  # the client gave up long ago
        elif path == "/trickle":
            # One byte every 50 ms (each well within any read timeout) for ?s= seconds, or
            # until released. A client that gives up does not end the handler early: `busy`
            # says whether the *server* had finished (see still_busy).
            seconds = float(query.get("s", "30"))
            try:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(int(seconds * 20)):
                    if self.server.release.wait(0.05):
                        break
                    self.wfile.write(b"1\r\nt\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.server.release.wait(seconds)  # the client gave up: what the test wants
            finally:
                with self.server.lock:
                    self.server.busy[path] -= 1
        else:
            self._reply(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.busy: collections.Counter[str] = collections.Counter()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up mid-answer (what the bounds tests provoke) is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def still_busy(self, path: str) -> bool:
        """Whether every request for ``path`` that reached this server is still unanswered.

        The structural proof that a client gave up on its own: had it waited for the answer
        (or the end of a trickle), the handler would have finished first.
        """
        with self.lock:
            started = sum(1 for r in self.seen if urlsplit(r["path"]).path == path)
            return self.busy[path] == started

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
        server.release.set()  # wake /slow and /trickle handlers so nothing outlives the test
        server.shutdown()
        server.server_close()
        thread.join()


GZIP_BOMB_BYTES = 1 << 30


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip body (~1 MB) that decodes to ``GZIP_BOMB_BYTES`` zeros, built in about a second.

    Compressing 1 GiB would take ~10 s; instead one 1 MiB block of zeros is compressed with
    a full flush (which resets the compressor, so every block compresses identically) and
    repeated, then wrapped in a gzip header and trailer.
    """
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    blocks = GZIP_BOMB_BYTES // len(zeros)
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, GZIP_BOMB_BYTES & 0xFFFFFFFF)
    return header + block * blocks + end + trailer


@pytest.fixture
def bomb_size() -> int:
    """Builds the bomb the server serves at ``/bomb`` (before any tracing) and returns its
    decoded size."""
    gzip_bomb()
    return GZIP_BOMB_BYTES


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
