"""The outbound HTTP seams against a hostile plugin: log volume of the development
exemption, and resolvers that must stay with the runtime they were given to."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

import emdash
from emdash.testing import fake_dns

from .conftest import Server

# One call fetches the same private host several times, on two ports.
CHATTY = """
from emdash import define_plugin

def get(route_ctx, ctx):
    for url in route_ctx["input"]["urls"]:
        ctx.http.fetch(url)
    return {"ok": True}

plugin = define_plugin(routes={"get": get})
"""

MODES = pytest.mark.parametrize("sandbox", [True, False], ids=["sandboxed", "native"])


def descriptor(pid: str, hosts: list[str]) -> dict[str, Any]:
    return {"id": pid, "capabilities": ["network:request"], "allowedHosts": hosts}


@MODES
def test_the_private_host_warning_is_bounded_per_plugin_and_host(
    tmp_path: Path, server: Server, sandbox: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # A plugin that fetches an exempt host in a loop must not write one WARNING per request
    # (unbounded log volume, an easy way to bury other warnings): the first use of each
    # plugin/host/port is logged, later ones are not.
    caplog.set_level(logging.WARNING, logger="emdash")
    with emdash.Runtime(tmp_path / "site.db", allow_private_hosts=["localhost"]) as rt:
        rt.add_plugin(
            descriptor("chatty", ["localhost"]), source={"plugin.py": CHATTY}, trusted=not sandbox
        )
        urls = [f"http://localhost:{server.port}/echo"] * 4
        for _ in range(3):
            rt.invoke_route("chatty", "get", input={"urls": urls})
    assert len(server.seen) == 12  # every request went through
    warned = [r.getMessage() for r in caplog.records if "fetches private host" in r.getMessage()]
    assert warned == [
        f"DEVELOPMENT: plugin chatty fetches private host localhost:{server.port} "
        "(allow_private_hosts); never enable this on a production site (logged once per "
        "plugin and host)"
    ]


def test_the_warning_memory_is_bounded_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An exemption without a port covers 65535 of them: a plugin walking the ports must not
    # grow the "already logged" memory (or the log) without bound.
    from emdash._bridge._hosts import PrivateHosts

    hosts = PrivateHosts(["localhost"])
    caplog.set_level(logging.WARNING, logger="emdash")
    log = logging.getLogger("emdash.test")
    for port in range(1, 1001):
        hosts.warn_once(log, "walker", "localhost", port)
    warned = [r.getMessage() for r in caplog.records]
    assert 1 < len(warned) <= PrivateHosts.WARN_LIMIT + 1
    assert "further uses of allow_private_hosts are not logged" in warned[-1]


def test_a_fake_resolver_answers_only_its_own_runtime(tmp_path: Path) -> None:
    # Each runtime keeps its resolver: nothing one test's fake_dns answers leaks into
    # another runtime in the same process.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.host))
        return httpx.Response(200)

    first = fake_dns({"api.example.com": "93.184.216.34"})
    second = fake_dns({"other.example.com": "93.184.216.34"})
    with (
        emdash.Runtime(
            tmp_path / "a.db", resolver=first, http_transport=httpx.MockTransport(handler)
        ) as a,
        emdash.Runtime(
            tmp_path / "b.db", resolver=second, http_transport=httpx.MockTransport(handler)
        ) as b,
    ):
        for rt in (a, b):
            rt.add_plugin(
                descriptor("web", ["api.example.com"]),
                source={"plugin.py": CHATTY},
                trusted=True,
            )
        urls = ["https://api.example.com/"]
        assert a.invoke_route("web", "get", input={"urls": urls}) == {"ok": True}
        with pytest.raises(emdash.HttpAccessError, match="Could not resolve hostname"):
            b.invoke_route("web", "get", input={"urls": urls})
    assert seen == ["api.example.com"]
    assert [host for host, _ in first.lookups] == ["api.example.com"]
    assert [host for host, _ in second.lookups] == ["api.example.com"]


@pytest.mark.parametrize(
    ("entry", "url", "exempt"),
    [
        ("localhost:8080", "http://localhost:8080/", True),
        ("localhost:8080", "http://LOCALHOST.:8080/", True),  # same host, other spelling
        ("localhost:8080", "http://localhost:8081/", False),
        ("localhost:8080", "http://localhost/", False),  # port 80
        ("localhost:8080", "http://localhost.localdomain:8080/", False),
        ("localhost:8080", "http://sub.localhost:8080/", False),
        ("127.0.0.1", "http://127.1/", False),  # another spelling is refused, not exempt
        ("127.0.0.1", "http://2130706433/", False),
        ("127.0.0.1", "http://[::ffff:127.0.0.1]/", False),
        ("[::1]:3000", "http://[::1]:3000/", True),
        ("[::1]:3000", "http://[0:0::1]:3000/", False),
        ("[::1]:3000", "http://[::1]:3001/", False),
        ("10.0.0.5", "http://10.0.0.5:9999/", True),  # no port in the entry: every port
    ],
)
def test_the_exemption_matches_exactly(entry: str, url: str, exempt: bool) -> None:
    # The request side as HttpClient._vet sees it: httpx's parse, then normalize_host.
    from emdash._bridge._hosts import PrivateHosts
    from emdash._bridge._ssrf import normalize_host

    parsed = httpx.URL(url)
    host = normalize_host(parsed.raw_host.decode("ascii"))
    port = parsed.port or 80
    assert PrivateHosts([entry]).allows(host, port) is exempt


def test_production_config_cannot_switch_a_seam_on(tmp_path: Path) -> None:
    # Only [dev] allow_private_hosts exists, and only with environment = "development";
    # the resolver and the transport have no config key at all.
    from emdash._cli._config import load_config

    cases = [
        '[dev]\nallow_private_hosts = ["localhost:8080"]\n',
        'environment = "Development"\n[dev]\nallow_private_hosts = ["localhost"]\n',
        '[dev]\nresolver = "fake"\n',
        'http_transport = "mock"\n',
        'resolver = "fake"\n',
    ]
    for text in cases:
        config = tmp_path / "emdash.toml"
        config.write_text(text)
        with pytest.raises(emdash.ConfigError):
            load_config(config)
