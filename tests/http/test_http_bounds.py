"""Bounds a plugin cannot move on the host's HTTP work: decoded bytes, time, credentials.

Everything runs against the real local server of ``conftest.py``. Nothing asserts a
duration: time bounds are shown structurally (the server's handler is still waiting or
still trickling when the fetch has already returned), memory bounds by tracemalloc peaks
compared with a same-run baseline, with a margin far below what the bomb would cost.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from emdash import HookConfig, define_plugin
from emdash._bridge._budget import CallBudget
from emdash._bridge._http import HttpClient, _inflate
from emdash._bridge._ssrf import is_credential_header
from emdash._runtime._runtime import Runtime
from emdash._shared._errors import HookTimeoutError, HttpAccessError, WallTimeExceeded

MiB = 1024 * 1024


def body(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["bodyBase64"])


def traced_peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    """``(peak bytes allocated while fn ran, what fn returned or raised)``."""
    tracemalloc.start()
    try:
        try:
            outcome: Any = fn()
        except Exception as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


# --- bytes: decoded size counted while decoding ------------------------------------------


def test_gzip_bomb_stops_at_the_cap_having_allocated_about_the_cap(
    server: Any, unrestricted: Any, bomb_size: int
) -> None:
    client = HttpClient(allow_private=["127.0.0.1"])  # the default 10 MiB cap
    # Same-run baseline: a legitimate gzip body just under the cap.
    baseline, ok = traced_peak(
        lambda: client.fetch(unrestricted, f"{server.base}/gzip?n={9 * MiB}")
    )
    assert len(body(ok)) == 9 * MiB
    bomb, refused = traced_peak(lambda: client.fetch(unrestricted, f"{server.base}/bomb?layers=1"))
    assert isinstance(refused, HttpAccessError)
    assert str(refused) == (
        f'Plugin "web": response from "127.0.0.1" exceeds the {10 * MiB}-byte body limit'
    )
    # The bomb decodes to 1 GiB; httpx's decoder would inflate a whole 64 KiB network read
    # (~64 MiB) in one call. Decoding in bounded steps keeps the peak near the cap itself.
    assert bomb_size > 100 * (10 * MiB)
    assert bomb < baseline + 16 * MiB
    assert bomb < 64 * MiB


def test_double_gzip_is_refused_before_any_decoding(
    server: Any, unrestricted: Any, bomb_size: int
) -> None:
    client = HttpClient(allow_private=["127.0.0.1"])
    baseline, _ = traced_peak(lambda: client.fetch(unrestricted, f"{server.base}/big?n=1000"))
    peak, refused = traced_peak(lambda: client.fetch(unrestricted, f"{server.base}/bomb?layers=2"))
    assert isinstance(refused, HttpAccessError)
    assert str(refused) == (
        'Plugin "web": response from "127.0.0.1" has nested content-encodings (gzip, gzip); '
        'they are refused. Ask the server for one encoding (send "accept-encoding: gzip" or '
        '"identity").'
    )
    assert refused.plugin_id == "web"
    # ~2.5 KB on the wire that would become 1 GiB: nothing near that was allocated.
    assert peak < baseline + 16 * MiB


@pytest.mark.parametrize("codings", ["gzip|gzip", "gzip, deflate", "deflate|gzip", "x-gzip, gzip"])
def test_nested_encodings_are_refused_in_any_spelling(
    client: HttpClient, server: Any, unrestricted: Any, codings: str
) -> None:
    with pytest.raises(HttpAccessError, match="has nested content-encodings"):
        client.fetch(unrestricted, f"{server.base}/encoded?ce={codings}")


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip;q=1"])
def test_unknown_encodings_are_refused(
    client: HttpClient, server: Any, unrestricted: Any, coding: str
) -> None:
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/encoded?ce={coding}")
    assert str(info.value).startswith(
        f'Plugin "web": response from "127.0.0.1" uses content-encoding "{coding}", which is '
        "not supported"
    )


def test_identity_is_no_encoding(client: HttpClient, server: Any, unrestricted: Any) -> None:
    assert body(client.fetch(unrestricted, f"{server.base}/encoded?ce=identity")) == b"plain"
    assert body(client.fetch(unrestricted, f"{server.base}/encoded?ce=identity,%20")) == b"plain"


def _chunked(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 2, 3, 7, 100, 4096])
        out.append(data[i : i + n])
        i += n
    return out


def _deflate(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("seed", range(5))
def test_bounded_decoder_matches_zlib_whatever_the_chunking(seed: int) -> None:
    rng = random.Random(seed)
    plain = bytes(rng.getrandbits(8) for _ in range(5000)) + b"a" * 300_000
    cases = [
        ("gzip", gzip.compress(plain), plain),
        ("gzip", gzip.compress(plain[:1000]) + gzip.compress(plain[1000:]), plain),  # 2 members
        ("gzip", gzip.compress(plain) + b"\x00\x00junk", plain),  # trailing bytes ignored
        ("deflate", _deflate(plain, zlib.MAX_WBITS), plain),  # zlib-wrapped (RFC 9110)
        ("deflate", _deflate(plain, -zlib.MAX_WBITS), plain),  # raw, as some servers send
        ("gzip", b"", b""),
    ]
    for encoding, wire, expected in cases:
        pieces = list(_inflate(_chunked(wire, rng), encoding))
        assert b"".join(pieces) == expected
        assert all(len(p) <= 64 * 1024 for p in pieces)


def test_bounded_decoder_refuses_corrupt_input() -> None:
    with pytest.raises(zlib.error):
        list(_inflate([b"\x1f\x8b not gzip at all"], "gzip"))


def test_corrupt_body_is_an_http_access_error(
    client: HttpClient, server: Any, unrestricted: Any
) -> None:
    # /encoded sends "plain" labelled as gzip.
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/encoded?ce=gzip")
    assert str(info.value).startswith(
        'Plugin "web": fetch to "127.0.0.1" failed: the gzip-encoded body is corrupt'
    )


# --- time: the invocation's deadline bounds the fetch --------------------------------------

DEADLINE_PASSED = (
    'Plugin "web": fetch to "127.0.0.1" stopped: the invocation\'s deadline (1000 ms) passed. '
    "A host call cannot outlive the invocation that made it; raise limits.wall_ms (or the "
    "hook's timeout_ms), or call a faster service."
)


def test_slow_server_is_cut_off_at_the_invocation_deadline(
    client: HttpClient, server: Any, unrestricted: Any
) -> None:
    budget = CallBudget(None, deadline_ms=1000)
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/slow?s=60", budget=budget)
    assert str(info.value) == DEADLINE_PASSED
    assert server.still_busy("/slow")  # not answered yet: the fetch did not wait for it


def test_redirect_chain_is_cut_off_at_the_deadline(
    client: HttpClient, server: Any, unrestricted: Any
) -> None:
    budget = CallBudget(None, deadline_ms=1000)
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/redirect?to=/slow%3Fs%3D60", budget=budget)
    assert str(info.value) == DEADLINE_PASSED
    assert server.still_busy("/slow")


def test_trickling_body_cannot_extend_the_deadline(
    client: HttpClient, server: Any, unrestricted: Any
) -> None:
    # Each byte arrives well within any per-read timeout; only an absolute deadline on every
    # read stops this.
    budget = CallBudget(None, deadline_ms=1000)
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/trickle", budget=budget)
    assert str(info.value) == DEADLINE_PASSED
    assert server.still_busy("/trickle")  # still sending: the client stopped, not the server


def test_trickling_body_cannot_extend_the_clients_own_timeout(
    server: Any, unrestricted: Any
) -> None:
    client = HttpClient(allow_private=["127.0.0.1"], timeout=1.0)
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/trickle")
    assert str(info.value) == 'Plugin "web": fetch to "127.0.0.1" failed: timed out after 1s'
    assert server.still_busy("/trickle")


def test_a_passed_deadline_sends_nothing(
    client: HttpClient, server: Any, unrestricted: Any
) -> None:
    budget = CallBudget(5, deadline=time.monotonic() - 1)
    with pytest.raises(HttpAccessError, match="stopped: the invocation's deadline passed"):
        client.fetch(unrestricted, f"{server.base}/echo", budget=budget)
    assert server.seen == []
    assert budget.used == 0


def test_a_hanging_dns_lookup_is_cut_off_at_the_deadline(unrestricted: Any) -> None:
    # getaddrinfo has no timeout of its own; a resolver that never answers must not hold
    # the host thread past the invocation's deadline.
    answer = threading.Event()
    in_lookup: list[str] = []
    answered: list[str] = []

    def hanging(host: str, port: int) -> list[str]:
        in_lookup.append(host)
        answer.wait(60)
        answered.append(host)
        return ["93.184.216.34"]

    client = HttpClient(allow_private=["127.0.0.1"], timeout=5.0, resolver=hanging)
    try:
        with pytest.raises(HttpAccessError) as info:
            client.fetch(
                unrestricted, "http://slow-dns.example/", budget=CallBudget(None, deadline_ms=1000)
            )
        assert str(info.value) == DEADLINE_PASSED.replace('"127.0.0.1"', '"slow-dns.example"')
        assert in_lookup == ["slow-dns.example"] and answered == []  # still waiting
    finally:
        answer.set()
        client.close()


def test_the_clients_own_timeout_still_applies_under_a_later_deadline(
    server: Any, unrestricted: Any
) -> None:
    client = HttpClient(allow_private=["127.0.0.1"], timeout=1.0)
    budget = CallBudget(None, deadline_ms=600_000)
    with pytest.raises(HttpAccessError, match="timed out after 1s$"):
        client.fetch(unrestricted, f"{server.base}/slow?s=60", budget=budget)
    assert server.still_busy("/slow")


SLOW_PLUGIN = """
from emdash import define_plugin

def fetch(route_ctx, ctx):
    return ctx.http.fetch(route_ctx["input"]["url"]).status

def on_save(event, ctx):
    ctx.http.fetch(event["url"])

plugin = define_plugin(routes={"fetch": fetch}, hooks={"content:afterSave": on_save})
"""


def _runtime_with_slow_plugin(tmp_path: Any, port: int, **limits: int) -> Runtime:
    rt = Runtime(str(tmp_path / "site.db"))
    # Test-only wiring: let this bridge reach the local server.
    rt.bridge.http = HttpClient(allow_private=["127.0.0.1"])
    rt.add_plugin(
        {
            "id": "slow",
            "version": "1.0.0",
            # content:read: the afterSave hook's own capability (refused at add without it).
            "capabilities": ["network:request", "content:read"],
            "allowedHosts": [f"127.0.0.1:{port}"],
            "limits": limits or None,
        },
        source={"plugin.py": SLOW_PLUGIN},
    )
    return rt


def test_sandboxed_route_with_wall_ms_1000_is_not_held_by_a_slow_server(
    tmp_path: Any, server: Any
) -> None:
    with _runtime_with_slow_plugin(tmp_path, server.port, wall_ms=1000) as rt:
        with pytest.raises((WallTimeExceeded, HttpAccessError)) as info:
            rt.invoke_route("slow", "fetch", input={"url": f"{server.base}/slow?s=60"})
        assert server.still_busy("/slow")
    assert info.value.plugin_id == "slow"


def test_sandboxed_hook_timeout_bounds_the_fetch(tmp_path: Any, server: Any) -> None:
    with _runtime_with_slow_plugin(tmp_path, server.port) as rt:  # default wall_ms (30 s)
        host = rt.get_plugin("slow").host
        with pytest.raises((HookTimeoutError, HttpAccessError)) as info:
            host.invoke_hook(
                "content:afterSave", {"url": f"{server.base}/slow?s=60"}, timeout_ms=500
            )
        assert server.still_busy("/slow")
    assert info.value.plugin_id == "slow"


def test_native_hook_timeout_bounds_the_fetch(tmp_path: Any, server: Any) -> None:
    # A native handler runs on the caller's thread and is interrupted only in its own code,
    # never inside a ctx call: its fetch must end at the hook's deadline by itself, and the
    # caller then gets HookTimeoutError.
    ended = threading.Event()
    seen: list[tuple[str, bool]] = []

    def on_save(event: Any, ctx: Any) -> None:
        try:
            ctx.http.fetch(f"{server.base}/slow?s=60")
            seen.append(("answered", server.still_busy("/slow")))
        except Exception as exc:
            seen.append((type(exc).__name__, server.still_busy("/slow")))
        finally:
            ended.set()

    definition = define_plugin(hooks={"content:afterSave": HookConfig(on_save)})
    with Runtime(str(tmp_path / "site.db")) as rt:
        rt.bridge.http = HttpClient(allow_private=["127.0.0.1"])
        info = rt.add_plugin(
            {
                "id": "native",
                "capabilities": ["network:request", "content:read"],
                "allowedHosts": [f"127.0.0.1:{server.port}"],
            },
            source=definition,
            trusted=True,
        )
        with pytest.raises(HookTimeoutError):
            info.host.invoke_hook("content:afterSave", {}, timeout_ms=500)
        # Generous wait; the verdict is structural: the fetch ended while the server was
        # still sleeping (an unbounded fetch would end only with the server's answer).
        assert ended.wait(55)
    # HttpAccessError: the fetch hit the deadline; BridgeError: on a loaded machine the
    # handler may reach its ctx call after the deadline, and then the call is refused.
    [(kind, busy)] = seen
    assert kind in ("HttpAccessError", "BridgeError") and busy


# --- credentials: one rule, by shape --------------------------------------------------------

CREDENTIAL_NAMES = [
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "x-api-key",
    "X-API-KEY",
    "x_api_key",
    "apikey",
    "X-ApiKey",
    "x-auth-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-csrftoken",
    "x-amz-security-token",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "private-token",
    "x-session-id",
    "x-client-secret",
    "x-hub-signature-256",
    "stripe-signature",
    "x-access-key",
    "x-vault-token",
    "x-jwt-assertion",
    "cf-access-client-id",
    "x-password",
    "x-credential",
    "x-oauth-scopes",
    "bearer",
    "x-sig",
    "x-otp",
]
PLAIN_NAMES = [
    "accept",
    "accept-encoding",
    "accept-language",
    "content-type",
    "user-agent",
    "referer",
    "origin",
    "x-forwarded-for",
    "x-request-id",
    "if-none-match",
    "sec-fetch-site",
    "cache-control",
    "traceparent",
    "x-requested-with",
    "range",
    "x-github-event",
    "content-security-policy",
    "x-keyword",
    "x-passthrough",
    "x-trace",
]


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_credential_shaped_names(name: str) -> None:
    assert is_credential_header(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name: str) -> None:
    assert not is_credential_header(name)


CUSTOM_CREDS = [
    ["X-Api-Key", "k-1"],
    ["X-Auth-Token", "t-1"],
    ["X-CSRF-Token", "c-1"],
    ["X-Amz-Security-Token", "a-1"],
    ["Stripe-Signature", "s-1"],
    ["Authorization", "Bearer b"],
    ["X-Keep", "yes"],
]


def test_redirect_to_another_allowed_origin_drops_credential_shaped_headers(
    client: HttpClient, server: Any, other_server: Any, make_plugin: Any
) -> None:
    plugin = make_plugin(["network:request"], ["127.0.0.1"])  # both servers are allowed
    result = client.fetch(
        plugin, f"{server.base}/redirect?to={other_server.base}/echo", headers=CUSTOM_CREDS
    )
    echoed = json.loads(body(result))
    names = {k for k, _ in echoed["headers"]}
    assert names.isdisjoint(n.lower() for n, _ in CUSTOM_CREDS[:-1])
    assert ["x-keep", "yes"] in echoed["headers"]
    # The origin the plugin addressed got them all.
    first = {k.lower() for k, _ in server.seen[0]["headers"]}
    assert {n.lower() for n, _ in CUSTOM_CREDS} <= first


def test_same_origin_redirect_keeps_custom_credentials(
    client: HttpClient, server: Any, make_plugin: Any
) -> None:
    plugin = make_plugin(["network:request"], ["127.0.0.1"])
    echoed = json.loads(
        body(client.fetch(plugin, f"{server.base}/redirect?to=/echo", headers=CUSTOM_CREDS))
    )
    assert ["x-api-key", "k-1"] in echoed["headers"]
