"""The ctx inside a real sandbox worker: every call is an RPC to the real bridge and store.

Plugin code here is restricted Python in a forked, seccomp-confined worker; what it can
reach of the ctx is exactly what a hostile plugin can reach.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emdash._bridge._http import HttpClient
from emdash._runtime._runtime import Runtime

SOURCE = """
from emdash import BridgeError, CapabilityError, define_plugin

def attempt(fn):
    try:
        return ["ok", fn()]
    except CapabilityError as exc:
        return ["CapabilityError", str(exc)]
    except BridgeError as exc:
        return ["BridgeError", str(exc)]
    except TypeError as exc:
        return ["TypeError", str(exc)]
    except Exception as exc:
        return ["Exception", str(exc)]

def probe(route_ctx, ctx):
    out = {}
    ctx.kv.set("settings:colour", {"v": 1})
    out["kv"] = ctx.kv.list("settings:")
    ctx.storage["events"].put("e1", {"type": "save", "n": 1})
    ctx.storage.events.put_many([{"id": "e2", "data": {"type": "save", "n": 2}}])
    out["many"] = ctx.storage.events.get_many(["e1", "e2", "nope"])
    out["query"] = ctx.storage.events.query(where={"type": "save"}, order_by={"n": "desc"}, limit=1)["items"]
    out["count"] = ctx.storage.events.count()
    out["url"] = ctx.url("/p")
    out["site"] = [ctx.site.name, ctx.site.url, ctx.plugin.id, ctx.plugin.version]
    out["undeclared"] = attempt(lambda: ctx.storage["secrets"])
    out["undeclared_attr"] = attempt(lambda: ctx.storage.secrets.get("x"))
    out["capability"] = attempt(lambda: ctx.content.get("posts", "x"))
    out["non_json"] = attempt(lambda: ctx.kv.set("k", {1, 2}))
    out["private"] = [attempt(lambda: getattr(t, n)) for t, n in [
        (ctx.kv, "_call"), (ctx.storage, "_names"), (ctx.kv.get, "__self__"),
        (ctx.storage.events, "_name"), (ctx, "__class__")]]
    out["iterate"] = attempt(lambda: list(ctx.storage))
    out["repr"] = [repr(ctx), repr(ctx.kv), repr(ctx.storage.events)]
    response = ctx.http.fetch(route_ctx["input"]["url"], method="POST", json={"a": 1})
    out["http"] = [response.status, response.ok, response.headers.get_all("x-multi"),
                   response.json()["body"], list(response.content[:2])]
    out["http_private"] = attempt(lambda: getattr(response, "_content"))
    return out

plugin = define_plugin(routes={"probe": probe})
"""


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        payload = json.dumps({"body": body}).encode()
        self.send_response(200)
        self.send_header("X-Multi", "1")
        self.send_header("X-Multi", "2")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def echo_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/echo"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_ctx_in_a_sandbox_worker(tmp_path: Path, echo_url: str) -> None:
    with Runtime(
        str(tmp_path / "site.db"), site={"name": "Site", "url": "https://site.test/"}
    ) as rt:
        # Test-only wiring: let this bridge reach the local echo server.
        rt.bridge.http = HttpClient(allow_private=["127.0.0.1"], timeout=5.0)
        rt.add_plugin(
            {
                "id": "probe",
                "version": "2.0.0",
                "capabilities": ["network:request"],
                "allowedHosts": ["127.0.0.1"],
                "storage": {"events": {"indexes": ["type", "n"]}},
            },
            source={"plugin.py": SOURCE},
        )
        out = rt.invoke_route("probe", "probe", input={"url": echo_url})
        assert rt.store.kv_entries.get("probe", "settings:colour") == {"v": 1}

    not_declared = "Storage collection not declared: secrets (declare it under [storage] in the plugin descriptor)"
    assert out["kv"] == [{"key": "settings:colour", "value": {"v": 1}}]
    assert out["many"] == {"e1": {"type": "save", "n": 1}, "e2": {"type": "save", "n": 2}}
    assert out["query"] == [{"id": "e2", "data": {"type": "save", "n": 2}}]
    assert out["count"] == 2
    assert out["url"] == "https://site.test/p"
    assert out["site"] == ["Site", "https://site.test", "probe", "2.0.0"]
    assert out["undeclared"] == ["BridgeError", not_declared]
    assert out["undeclared_attr"] == ["BridgeError", not_declared]
    assert out["capability"][0] == "CapabilityError"
    assert out["capability"][1].startswith("Missing capability: content:read")
    assert out["non_json"][0] == "BridgeError"
    assert out["non_json"][1].startswith("kv/set: arguments must be JSON data")
    for kind, _message in out["private"]:
        assert kind != "ok"
    assert out["iterate"][0] == "TypeError"
    assert out["repr"] == ["<ctx of plugin probe>", "<ctx.kv>", "<ctx.storage['events']>"]
    assert out["http"] == [200, True, ["1", "2"], '{"a": 1}', [123, 34]]
    assert out["http_private"][0] != "ok"
