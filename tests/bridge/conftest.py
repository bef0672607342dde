"""A real Store on a tmp_path SQLite file, real descriptors, a real HttpClient, and the Bridge.

The cron scheduler and the email pipeline are the bridge's outer edges; they are replaced
by recording spies so each test sees exactly what the bridge handed on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emdash._bridge._dispatch import Bridge
from emdash._bridge._http import HttpClient
from emdash._model._descriptor import PluginDescriptor
from emdash._store import Store

EVENTS = {"indexes": ["type", "timestamp"], "uniqueIndexes": ["ref"]}

DESCRIPTORS: dict[str, dict[str, Any]] = {
    "alpha": {"id": "alpha", "storage": {"events": EVENTS, "notes": {}}},
    "beta": {"id": "beta", "storage": {"events": EVENTS}},
    "bare": {"id": "bare"},
    "reader": {
        "id": "reader",
        "capabilities": ["content:read", "media:read", "users:read", "taxonomies:read"],
    },
    "writer": {"id": "writer", "capabilities": ["content:write", "media:write"]},
    "web": {"id": "web", "capabilities": ["network:request"], "allowedHosts": ["127.0.0.1"]},
    "webany": {"id": "webany", "capabilities": ["network:request:unrestricted"]},
    "mailer": {"id": "mailer", "capabilities": ["email:send"]},
}


class CronSpy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def schedule(self, plugin_id: str, name: str, schedule: str, data: Any) -> None:
        self.calls.append(("schedule", plugin_id, name, schedule, data))

    def cancel(self, plugin_id: str, name: str) -> None:
        self.calls.append(("cancel", plugin_id, name))

    def list(self, plugin_id: str) -> list[dict[str, Any]]:
        self.calls.append(("list", plugin_id))
        return [
            {
                "name": "t",
                "schedule": "@daily",
                "nextRunAt": "2030-01-01T00:00:00.000Z",
                "lastRunAt": None,
            }
        ]


class EmailSpy:
    def __init__(self) -> None:
        self.available = True
        self.sent: list[tuple[dict[str, Any], str]] = []

    def is_available(self) -> bool:
        return self.available

    def send(
        self, message: dict[str, Any], *, source: str = "admin", deadline: float | None = None
    ) -> None:
        self.sent.append((message, source))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "site.db")
    yield s
    s.close()


@pytest.fixture
def descriptors(store: Store) -> dict[str, PluginDescriptor]:
    out = {pid: PluginDescriptor.from_dict(d) for pid, d in DESCRIPTORS.items()}
    for d in out.values():
        store.plugin_documents.sync_indexes(d.id, d.storage)
    return out


@pytest.fixture
def cron() -> CronSpy:
    return CronSpy()


@pytest.fixture
def email() -> EmailSpy:
    return EmailSpy()


@pytest.fixture
def http_client() -> Iterator[HttpClient]:
    client = HttpClient(allow_private=["127.0.0.1"], timeout=5.0)
    yield client
    client.close()


@pytest.fixture
def bridge(
    store: Store,
    descriptors: dict[str, PluginDescriptor],
    cron: CronSpy,
    email: EmailSpy,
    http_client: HttpClient,
) -> Bridge:
    def lookup(pid: str) -> PluginDescriptor:
        return descriptors[pid]

    return Bridge(
        store=store,
        plugins=lookup,
        http=http_client,
        cron=cron,
        email=email,
        site={"name": "Test", "url": "https://site.test"},
    )


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/hop/"):
            n = int(self.path.rsplit("/", 1)[1])
            self.send_response(302 if n else 200)
            if n:
                self.send_header("Location", f"/hop/{n - 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body.decode("latin-1"),
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Multi", "1")
        self.send_header("X-Multi", "2")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
