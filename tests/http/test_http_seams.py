"""The supported seams for outbound HTTP: an offline resolver (``fake_dns``) with a mock
transport, and the development exemption for private hosts (``allow_private_hosts``).

Both modes, through the public API only (``Runtime`` / ``emdash.testing``); the private-host
path against the real local HTTP server.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

import emdash
from emdash.testing import PluginHarness, fake_dns

from .conftest import Server

SOURCE = """
from emdash import define_plugin

def get(route_ctx, ctx):
    response = ctx.http.fetch(route_ctx["input"]["url"])
    return {"status": response.status, "text": response.text()}

plugin = define_plugin(routes={"get": get})
"""

MODES = pytest.mark.parametrize("sandbox", [True, False], ids=["sandboxed", "native"])


def descriptor(hosts: list[str], pid: str = "weather") -> dict[str, Any]:
    return {"id": pid, "capabilities": ["network:request"], "allowedHosts": hosts}


class Recorder:
    """A ``MockTransport`` handler that answers 200 and remembers each request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"temp": 21, "host": request.url.host})


# --- offline: fake_dns + MockTransport --------------------------------------------------------


@MODES
def test_offline_happy_path_reaches_the_mock_transport(sandbox: bool) -> None:
    seen = Recorder()
    dns = fake_dns({"api.example.com": "93.184.216.34"})
    with PluginHarness(
        descriptor(["api.example.com"]),
        source={"plugin.py": SOURCE},
        sandbox=sandbox,
        resolver=dns,
        http_transport=httpx.MockTransport(seen),
    ) as h:
        result = h.route("get", {"url": "https://api.example.com/now?city=Oslo"})
    assert result["status"] == 200
    assert json.loads(result["text"]) == {"temp": 21, "host": "api.example.com"}
    assert [str(r.url) for r in seen.requests] == ["https://api.example.com/now?city=Oslo"]
    # The request still carries the vetted address the real transport would pin to.
    assert seen.requests[0].extensions["emdash.pinned_ip"] == "93.184.216.34"
    assert dns.lookups == [("api.example.com", 443)]


@MODES
@pytest.mark.parametrize("answer", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"])
def test_ssrf_rules_apply_to_what_the_fake_resolver_answers(sandbox: bool, answer: str) -> None:
    seen = Recorder()
    with PluginHarness(
        descriptor(["api.example.com"]),
        source={"plugin.py": SOURCE},
        sandbox=sandbox,
        resolver=fake_dns({"api.example.com": ["93.184.216.34", answer]}),
        http_transport=httpx.MockTransport(seen),
    ) as h:
        with pytest.raises(emdash.HttpAccessError) as info:
            h.route("get", {"url": "https://api.example.com/"})
    assert "Hostname resolves to a private IP address" in str(info.value)
    assert seen.requests == []


@MODES
def test_unknown_names_and_hosts_outside_allowed_hosts_still_fail(sandbox: bool) -> None:
    seen = Recorder()
    with PluginHarness(
        descriptor(["api.example.com", "other.example.com"]),
        source={"plugin.py": SOURCE},
        sandbox=sandbox,
        resolver=fake_dns({"api.example.com": "93.184.216.34"}),
        http_transport=httpx.MockTransport(seen),
    ) as h:
        with pytest.raises(emdash.HttpAccessError) as info:
            h.route("get", {"url": "https://other.example.com/"})
        assert str(info.value) == (
            'Plugin "weather": blocked fetch to "other.example.com": Could not resolve '
            "hostname: other.example.com"
        )
        with pytest.raises(emdash.HttpAccessError) as info:
            h.route("get", {"url": "https://evil.example.net/"})
        assert 'not allowed to fetch from host "evil.example.net"' in str(info.value)
    assert seen.requests == []


def test_fake_dns_refuses_a_malformed_table() -> None:
    with pytest.raises(emdash.EmDashError, match="must map to an address"):
        fake_dns({"api.example.com": []})


def test_a_descriptor_cannot_switch_the_seams_on() -> None:
    # The seams are Runtime arguments; a descriptor naming them is refused as unknown.
    for key in ("resolver", "allow_private_hosts", "allowPrivateHosts"):
        with pytest.raises(emdash.ManifestError):
            emdash.PluginDescriptor.from_dict({**descriptor(["localhost"]), key: ["localhost"]})


# --- development: allow_private_hosts against the real local server ----------------------------


@MODES
def test_dev_private_host_reaches_the_local_server_loudly(
    tmp_path: Path, server: Server, sandbox: bool, caplog: pytest.LogCaptureFixture
) -> None:
    entry = f"localhost:{server.port}"
    caplog.set_level(logging.WARNING, logger="emdash")
    with emdash.Runtime(tmp_path / "site.db", allow_private_hosts=[entry]) as rt:
        started = [r.getMessage() for r in caplog.records]
        assert any("DEVELOPMENT" in m and entry in m for m in started)
        rt.add_plugin(
            descriptor([entry], pid="local"), source={"plugin.py": SOURCE}, trusted=not sandbox
        )
        result = rt.invoke_route(
            "local", "get", input={"url": f"http://localhost:{server.port}/echo"}
        )
    echoed = json.loads(result["text"])
    assert echoed["path"] == "/echo"
    assert base64.b64decode(echoed["body"]) == b""
    assert len(server.seen) == 1
    per_request = [
        r.getMessage() for r in caplog.records if "fetches private host" in r.getMessage()
    ]
    assert per_request == [
        f"DEVELOPMENT: plugin local fetches private host localhost:{server.port} "
        "(allow_private_hosts); never enable this on a production site (logged once per "
        "plugin and host)"
    ]


@MODES
def test_dev_private_host_is_exact(tmp_path: Path, server: Server, sandbox: bool) -> None:
    # Another port of the same host, and another private address, stay refused; so does the
    # exempt host for a plugin that does not list it in its own allowedHosts.
    with emdash.Runtime(
        tmp_path / "site.db", allow_private_hosts=[f"127.0.0.1:{server.port}"]
    ) as rt:
        rt.add_plugin(
            descriptor(["127.0.0.1", "127.0.0.2"], pid="local"),
            source={"plugin.py": SOURCE},
            trusted=not sandbox,
        )
        rt.add_plugin(
            descriptor(["api.example.com"], pid="other"),
            source={"plugin.py": SOURCE},
            trusted=not sandbox,
        )
        ok = rt.invoke_route("local", "get", input={"url": f"{server.base}/echo"})
        assert ok["status"] == 200
        for url in (f"http://127.0.0.1:{server.port + 1}/", f"http://127.0.0.2:{server.port}/"):
            with pytest.raises(emdash.HttpAccessError, match="is not a public address"):
                rt.invoke_route("local", "get", input={"url": url})
        with pytest.raises(emdash.HttpAccessError, match="not allowed to fetch from host"):
            rt.invoke_route("other", "get", input={"url": f"{server.base}/echo"})
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    "entry", ["*.example.com", "http://localhost", "localhost:99999", "", "[::1"]
)
def test_dev_private_host_entries_are_checked(tmp_path: Path, entry: str) -> None:
    with pytest.raises(emdash.ConfigError, match="allow_private_hosts"):
        emdash.Runtime(tmp_path / "site.db", allow_private_hosts=[entry])
