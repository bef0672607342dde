"""Tripwires the audit sets up around every payload: anything that touches one is an escape.

* :class:`CanaryHttpServer` -- a real HTTP server on 127.0.0.1 (and ::1 when the same port is
  free there): SSRF payloads aim at it, and one connection reaching it is a failure whatever
  the plugin saw (a refused fetch and a failed connection look alike from the inside).
* :class:`AbstractSocketCanary` -- a listening abstract-namespace unix socket (escape class
  ``os``: abstract sockets ignore the file system, so only seccomp or a network namespace
  keep a worker away from them).
* :class:`EdgeTransport` -- the HTTP client's transport, wrapped at the true edge (the
  network): requests to :data:`REDIRECT_HOST` are answered with a redirect to the canary,
  everything else goes out through the real pinned transport. It records every request the
  client let through.
* :class:`LogCapture` -- a handler on the runtime's own logger, so the audit can read exactly
  what a plugin made the host log.
* :func:`processes_mentioning` -- which processes carry a token in their command line (an
  ``execve`` that got through shows up here).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from .._bridge._http import PinnedTransport

__all__ = [
    "REDIRECT_HOST",
    "REDIRECT_PATH",
    "AbstractSocketCanary",
    "CanaryHttpServer",
    "EdgeTransport",
    "LogCapture",
    "processes_mentioning",
]

# A globally routable address literal, so the client's SSRF policy lets the first hop through
# without DNS; EdgeTransport answers for it, so no packet is ever sent there.
REDIRECT_HOST = "1.1.1.1"
REDIRECT_PATH = "/emdash-audit-redirect"


class _Hit:
    """One connection to the canary: counted when accepted, its request line added when
    (if ever) the handler reads it."""

    __slots__ = ("peer", "request")

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.request = ""

    def __str__(self) -> str:
        return self.request or f"a connection from {self.peer}"


class _CanaryHandler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # a client that connects and sends nothing does not hold a thread for long

    def log_message(self, format: str, *args: Any) -> None:  # no stderr noise
        pass

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self.server.hit_of.pop(id(self.request), None)

    def _any(self) -> None:
        hit = self.server.hit_of.get(id(self.request))
        if hit is not None:
            # The path is the payload's choice: bounded, so a failure message stays readable.
            hit.request = f"{self.command} {self.path[:200]}"
        body = b"AUDIT-CANARY reached"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


class _Server(ThreadingHTTPServer):
    """Counts connections, not requests, and counts them when accepted.

    A request is handled in a thread of its own, after ``serve_forever`` (polling) accepted
    the connection: a payload that connects, sends and returns without waiting for the
    answer could be checked before either thread ran (a busy machine), and the reach go
    unseen. So the listening socket is non-blocking and the check accepts whatever is
    queued itself (:meth:`drain`), under the same lock as the serving thread's accepts.
    """

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], family: socket.AddressFamily, hits: list[_Hit]
    ) -> None:
        self.address_family = family
        # Shared by the 127.0.0.1 and ::1 servers, in the order of their accepts: the audit
        # takes a payload's hits as the list's tail past a mark, which per-server lists
        # joined one after the other would not be (a later 127.0.0.1 hit landed before an
        # earlier ::1 one, and the tail named the earlier payload's request).
        self.hits = hits
        self.hit_of: dict[int, _Hit] = {}  # id(accepted socket) -> its hit, until handled
        self.accept_lock = threading.Lock()
        super().__init__(address, _CanaryHandler)
        self.socket.setblocking(False)

    def get_request(self) -> tuple[socket.socket, Any]:
        with self.accept_lock:
            conn, addr = self.socket.accept()  # BlockingIOError: drain took it (ignored)
            self._count(conn, addr)
        conn.setblocking(True)
        return conn, addr

    def _count(self, conn: socket.socket, addr: Any) -> None:
        if isinstance(addr, tuple):
            host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
            peer = f"{host}:{addr[1]}"
        else:
            peer = str(addr)
        hit = _Hit(peer)
        self.hits.append(hit)
        self.hit_of[id(conn)] = hit

    def drain(self) -> None:
        """Accept (and count) every queued connection now, and hand each to a handler."""
        while True:
            with self.accept_lock:
                try:
                    conn, addr = self.socket.accept()
                except OSError:  # BlockingIOError: nothing queued; or closed
                    return
                self._count(conn, addr)
            conn.setblocking(True)
            self.process_request(conn, addr)


class CanaryHttpServer:
    """An HTTP server that must never be reached by a sandboxed plugin: one connection is an
    escape, whether or not a request followed (see :class:`_Server`)."""

    def __init__(self) -> None:
        self._hits: list[_Hit] = []
        self._v4 = _Server(("127.0.0.1", 0), socket.AF_INET, self._hits)
        self.port = self._v4.server_address[1]
        self._servers = [self._v4]
        try:
            # Same port on ::1, so http://[::1]:port/ is a real target too.
            self._servers.append(_Server(("::1", self.port), socket.AF_INET6, self._hits))
        except OSError:
            pass
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        for t in self._threads:
            t.start()

    @property
    def hits(self) -> list[str]:
        """Every connection so far, in order (queued ones accepted now): the request line
        where it was read already, else who connected."""
        for s in self._servers:
            s.drain()
        return [str(hit) for hit in self._hits]

    def close(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()


class AbstractSocketCanary:
    """A listening abstract unix socket; counts every connection.

    Counted when asked (:attr:`connections`), in the asking thread, not by a thread of its
    own: a client's ``connect()`` returns as soon as the connection is queued in the
    backlog, and a counting thread that had not run yet (a busy machine) let a check right
    after the payload see nothing. Queued connections are accepted by the check itself, so
    a connection the payload completed is always counted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._count = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind("\0" + name)
        # Room for every connection a payload makes before the check drains them (a full
        # backlog would make a payload's connect() block: caught by its wall time).
        self._sock.listen(128)
        self._sock.setblocking(False)

    @property
    def connections(self) -> int:
        """How many connections were made so far (the queued ones accepted now)."""
        with self._lock:
            while True:
                try:
                    conn, _ = self._sock.accept()
                except OSError:  # BlockingIOError: nothing queued; or closed
                    break
                self._count += 1
                conn.close()
            return self._count

    def close(self) -> None:
        with self._lock:
            self._sock.close()


class EdgeTransport(httpx.BaseTransport):
    """The audit's transport: a redirector for :data:`REDIRECT_HOST`, the real one otherwise."""

    def __init__(self, canary_port: int) -> None:
        self.canary_port = canary_port
        self.seen: list[tuple[str, str | None]] = []
        self._real = PinnedTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pinned = request.extensions.get("emdash.pinned_ip")
        self.seen.append((str(request.url), pinned if isinstance(pinned, str) else None))
        if request.url.host == REDIRECT_HOST and request.url.path == REDIRECT_PATH:
            target = f"http://127.0.0.1:{self.canary_port}/ssrf-redirect"
            return httpx.Response(302, headers={"Location": target}, request=request)
        return self._real.handle_request(request)

    def close(self) -> None:
        self._real.close()


class LogCapture(logging.Handler):
    """Keeps every record of one logger tree as ``(logger name, level, message)``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, int, str]] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception as exc:  # a record that cannot be formatted is evidence too
            message = f"<unformattable log record: {exc!r}>"
        with self._lock2:
            self.records.append((record.name, record.levelno, message))

    def since(self, index: int) -> list[tuple[str, int, str]]:
        with self._lock2:
            return list(self.records[index:])

    def __len__(self) -> int:
        with self._lock2:
            return len(self.records)


def processes_mentioning(token: str) -> list[int]:
    """Pids whose command line contains ``token`` (other than this process)."""
    found = []
    needle = token.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
