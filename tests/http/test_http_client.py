"""HttpClient against a real local HTTP server: requests, redirects, caps, SSRF, pinning."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emdash._bridge._budget import CallBudget
from emdash._bridge._http import HttpClient, PinnedTransport
from emdash._model._descriptor import PluginDescriptor
from emdash._shared._errors import (
    BridgeError,
    CapabilityError,
    HttpAccessError,
    SubrequestLimitExceeded,
)

from .conftest import MakePlugin, Server


def body(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["bodyBase64"])


def echo(result: dict[str, Any]) -> dict[str, Any]:
    assert result["status"] == 200
    echoed: dict[str, Any] = json.loads(body(result))
    return echoed


def loopback_resolver(calls: list[tuple[str, int]]) -> Callable[[str, int], list[str]]:
    """A stand-in for resolve_host that records each lookup and answers 127.0.0.1."""

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return ["127.0.0.1"]

    return resolve


def header(echoed: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k == name]


# --- plain requests --------------------------------------------------------------------


def test_get_returns_status_text_headers_and_bytes(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    result = client.fetch(unrestricted, f"{server.base}/echo?x=1")
    assert set(result) == {"status", "statusText", "headers", "bodyBase64"}
    assert (result["status"], result["statusText"]) == (200, "OK")
    assert ["content-type", "application/json"] in result["headers"]
    echoed = echo(result)
    assert (echoed["method"], echoed["path"]) == ("GET", "/echo?x=1")
    assert header(echoed, "host") == [f"127.0.0.1:{server.port}"]
    assert header(echoed, "user-agent") == ["emdash-plugin/web"]
    assert header(echoed, "accept") == ["*/*"]


def test_post_sends_body_and_repeated_headers(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    result = client.fetch(
        unrestricted,
        f"{server.base}/echo",
        method="post",
        headers=[
            ["X-A", "1"],
            ["X-A", "2"],
            ["User-Agent", "mine"],
            ["Content-Type", "text/plain"],
        ],
        body=b"\x00\xffpayload",
    )
    echoed = echo(result)
    assert echoed["method"] == "POST"
    assert base64.b64decode(echoed["body"]) == b"\x00\xffpayload"
    assert header(echoed, "x-a") == ["1", "2"]
    assert header(echoed, "user-agent") == ["mine"]
    assert header(echoed, "content-length") == ["9"]


def test_binary_body_round_trips_exactly(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    assert body(client.fetch(unrestricted, f"{server.base}/binary")) == bytes(range(256))


def test_repeated_response_headers_survive(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    result = client.fetch(unrestricted, f"{server.base}/multi")
    assert [p for p in result["headers"] if p[0] in ("set-cookie", "x-multi")] == [
        ["set-cookie", "a=1"],
        ["set-cookie", "b=2"],
        ["x-multi", "one"],
        ["x-multi", "two"],
    ]
    assert body(result) == "héllo".encode("latin-1")


def test_non_2xx_statuses_are_returned_not_raised(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    result = client.fetch(unrestricted, f"{server.base}/status?code=503")
    assert (result["status"], result["statusText"]) == (503, "Service Unavailable")


def test_gzip_bodies_are_decoded(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    assert body(client.fetch(unrestricted, f"{server.base}/gzip?n=5000")) == b"z" * 5000


# --- capability and allowlist ----------------------------------------------------------


def test_no_network_capability_is_refused(
    client: HttpClient, server: Server, make_plugin: MakePlugin
) -> None:
    with pytest.raises(CapabilityError) as info:
        client.fetch(make_plugin(["content:read"]), f"{server.base}/echo")
    assert str(info.value).startswith("Missing capability: network:request")
    assert server.seen == []


def test_restricted_with_empty_allowlist_is_deny_all(
    client: HttpClient, server: Server, make_plugin: MakePlugin
) -> None:
    with pytest.raises(HttpAccessError) as info:
        client.fetch(make_plugin(["network:request"]), f"{server.base}/echo")
    assert str(info.value) == (
        'Plugin "web" has no allowed hosts configured. Add hosts to the plugin\'s allowedHosts '
        "array to enable HTTP requests."
    )
    assert server.seen == []


def test_restricted_host_not_in_allowlist(
    client: HttpClient, server: Server, make_plugin: MakePlugin
) -> None:
    p = make_plugin(["network:request"], ["api.example.com", "*.cdn.example.com"])
    with pytest.raises(HttpAccessError) as info:
        client.fetch(p, f"{server.base}/echo")
    assert str(info.value) == (
        'Plugin "web" is not allowed to fetch from host "127.0.0.1". Allowed hosts: '
        "api.example.com, *.cdn.example.com"
    )
    assert server.seen == []


def test_restricted_allowlist_with_port(
    client: HttpClient, server: Server, make_plugin: MakePlugin
) -> None:
    ok = make_plugin(["network:request"], [f"127.0.0.1:{server.port}"])
    assert client.fetch(ok, f"{server.base}/echo")["status"] == 200
    other_port = make_plugin(["network:request"], [f"127.0.0.1:{server.port + 1}"])
    with pytest.raises(HttpAccessError, match="is not allowed to fetch from host"):
        client.fetch(other_port, f"{server.base}/echo")


def test_star_allowlist_still_gets_ssrf_checks(server: Server, make_plugin: MakePlugin) -> None:
    star = make_plugin(["network:request"], ["*"])
    with HttpClientNoEscape() as plain:
        with pytest.raises(HttpAccessError) as info:
            plain.fetch(star, f"{server.base}/echo")
    assert str(info.value) == (
        'Plugin "web": blocked fetch to "127.0.0.1": 127.0.0.1 is not a public address'
    )
    assert server.seen == []


# --- SSRF without the escape hatch -----------------------------------------------------


class HttpClientNoEscape(HttpClient):
    """The production configuration: no allow_private."""

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@pytest.mark.parametrize(
    ("host", "shown", "reason"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1 is not a public address"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "127.0.0.1 is not a public address"),
        ("[::1]", "::1", "::1 is not a public address"),
        ("2130706433", "2130706433", "127.0.0.1 is not a public address"),
        ("0x7f.1", "0x7f.1", "127.0.0.1 is not a public address"),
        ("0x7f000001", "0x7f000001", "127.0.0.1 is not a public address"),
        ("127.1", "127.1", "127.0.0.1 is not a public address"),
        ("localhost.", "localhost", "internal hostname localhost is blocked"),
        ("LocalHost", "localhost", "internal hostname localhost is blocked"),
        ("169.254.169.254", "169.254.169.254", "169.254.169.254 is not a public address"),
        (
            "metadata.google.internal",
            "metadata.google.internal",
            "internal hostname metadata.google.internal is blocked",
        ),
    ],
)
def test_loopback_in_every_spelling_is_refused(
    server: Server,
    unrestricted: PluginDescriptor,
    host: str,
    shown: str,
    reason: str,
) -> None:
    calls: list[tuple[str, int]] = []
    with HttpClientNoEscape(resolver=loopback_resolver(calls)) as plain:
        with pytest.raises(HttpAccessError) as info:
            plain.fetch(unrestricted, f"http://{host}:{server.port}/echo")
    assert str(info.value) == f'Plugin "web": blocked fetch to "{shown}": {reason}'
    assert calls == []  # refused before any DNS lookup
    assert server.seen == []


def test_name_resolving_to_loopback_is_refused(
    server: Server, unrestricted: PluginDescriptor
) -> None:
    calls: list[tuple[str, int]] = []
    with HttpClientNoEscape(resolver=loopback_resolver(calls)) as plain:
        with pytest.raises(HttpAccessError) as info:
            plain.fetch(unrestricted, f"http://innocent.example:{server.port}/echo")
    assert str(info.value) == (
        'Plugin "web": blocked fetch to "innocent.example": Hostname resolves to a private IP '
        "address (127.0.0.1 is not a public address)"
    )
    assert calls == [("innocent.example", server.port)]
    assert server.seen == []


def test_one_private_answer_among_public_ones_refuses(unrestricted: PluginDescriptor) -> None:
    mixed = HttpClientNoEscape(resolver=lambda h, p: ["93.184.216.34", "10.0.0.7"])
    with mixed as plain, pytest.raises(HttpAccessError) as info:
        plain.fetch(unrestricted, "http://mixed.example/")
    assert str(info.value).endswith(
        "Hostname resolves to a private IP address (10.0.0.7 is not a public address)"
    )


def test_resolution_failures_fail_closed(unrestricted: PluginDescriptor) -> None:
    def fail(h: str, p: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with HttpClientNoEscape(resolver=fail) as plain, pytest.raises(HttpAccessError) as info:
        plain.fetch(unrestricted, "http://nowhere.example/")
    assert str(info.value) == (
        'Plugin "web": blocked fetch to "nowhere.example": Could not resolve hostname: nowhere.example'
    )
    empty = HttpClientNoEscape(resolver=lambda h, p: [])
    with empty as plain, pytest.raises(HttpAccessError) as info:
        plain.fetch(unrestricted, "http://empty.example/")
    assert str(info.value) == (
        'Plugin "web": blocked fetch to "empty.example": Hostname resolved to no addresses'
    )


def test_octal_dotted_quad_is_refused_as_an_invalid_url(
    client: HttpClient, unrestricted: PluginDescriptor
) -> None:
    # httpx itself rejects leading-zero dotted quads, so "0177.0.0.1" never reaches a socket.
    with HttpClientNoEscape() as plain, pytest.raises(HttpAccessError) as info:
        plain.fetch(unrestricted, "http://0177.0.0.1/")
    assert str(info.value) == 'Plugin "web": blocked fetch to "http://0177.0.0.1/": invalid URL'


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "Unsupported scheme: file:"),
        ("ftp://example.com/x", "Unsupported scheme: ftp:"),
        ("http://user:pw@example.com/", "URLs with credentials are not allowed"),
    ],
)
def test_schemes_and_credentials_in_urls_are_refused(
    client: HttpClient, unrestricted: PluginDescriptor, url: str, reason: str
) -> None:
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, url)
    assert str(info.value).endswith(f": {reason}")
    assert str(info.value).startswith('Plugin "web": blocked fetch to ')


# --- pinning ---------------------------------------------------------------------------


def test_connection_is_pinned_to_the_vetted_address(
    server: Server, unrestricted: PluginDescriptor
) -> None:
    # "pinned.test" exists in no DNS: the request can only succeed if the transport connects
    # to the address our resolver vetted, and never looks the name up again.
    calls: list[tuple[str, int]] = []
    client = HttpClient(allow_private=["127.0.0.1"], timeout=5.0, resolver=loopback_resolver(calls))
    echoed = echo(client.fetch(unrestricted, f"http://pinned.test:{server.port}/echo"))
    client.close()
    assert header(echoed, "host") == [f"pinned.test:{server.port}"]
    assert calls == [("pinned.test", server.port)]


def test_rebinding_after_the_check_is_never_used(
    server: Server,
    unrestricted: PluginDescriptor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The system resolver (which a non-pinning client would use at connect time) is made to
    # answer with an unreachable address; the vetted answer from our resolver still wins.
    answers = iter([["127.0.0.1"]])
    client = HttpClient(
        allow_private=["127.0.0.1"], timeout=5.0, resolver=lambda h, p: next(answers)
    )
    real = socket.getaddrinfo

    def rebound(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            return real("192.0.2.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    try:
        assert client.fetch(unrestricted, f"http://rebind.test:{server.port}/echo")["status"] == 200
    finally:
        client.close()


def test_transport_refuses_requests_without_a_vetted_address() -> None:
    transport = PinnedTransport()
    with pytest.raises(httpx.ConnectError, match="no vetted address"):
        transport.handle_request(httpx.Request("GET", "http://example.com/"))


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    import subprocess

    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=secure.test",
            "-addext",
            "subjectAltName=DNS:secure.test",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_uses_the_original_name_for_sni_and_certificate(
    tls_material: tuple[str, str], unrestricted: PluginDescriptor
) -> None:
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    cert, key = tls_material
    sni: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = b"secure " + self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=cert)
        c = HttpClient(
            PinnedTransport(client_ctx),
            allow_private=["127.0.0.1"],
            timeout=5,
            resolver=lambda h, p: ["127.0.0.1"],
        )
        result = c.fetch(unrestricted, f"https://secure.test:{port}/")
        assert body(result) == f"secure secure.test:{port}".encode()
        assert sni == ["secure.test"]
        # The same server reached by its address fails verification: the certificate is
        # checked against the name in the URL, not against wherever we connected.
        with pytest.raises(HttpAccessError) as info:
            c.fetch(unrestricted, f"https://127.0.0.1:{port}/")
        assert str(info.value).startswith(
            'Plugin "web": fetch to "127.0.0.1" failed: ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]'
        )
        c.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# --- redirects -------------------------------------------------------------------------


def test_five_redirects_are_followed(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    result = client.fetch(unrestricted, f"{server.base}/chain/5")
    assert body(result) == b"end of chain"
    assert [r["path"] for r in server.seen] == [f"/chain/{n}" for n in range(5, -1, -1)]


def test_a_sixth_redirect_is_refused(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/chain/6")
    assert str(info.value) == 'Plugin "web": too many redirects (max 5)'
    assert len(server.seen) == 6


def test_each_hop_costs_one_subrequest(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    budget = CallBudget(10)
    client.fetch(unrestricted, f"{server.base}/chain/3", budget=budget)
    assert (budget.used, budget.exceeded) == (4, False)

    tight = CallBudget(2)
    server.seen.clear()
    with pytest.raises(SubrequestLimitExceeded) as info:
        client.fetch(unrestricted, f"{server.base}/chain/3", budget=tight)
    assert str(info.value).startswith(
        "Plugin web exceeded its subrequest limit of 2 calls during this invocation"
    )
    assert tight.exceeded and len(server.seen) == 2


def test_redirect_without_location_is_returned_as_is(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    result = client.fetch(unrestricted, f"{server.base}/noloc")
    assert (result["status"], body(result)) == (302, b"no location here")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            'blocked fetch to "169.254.169.254": 169.254.169.254 is not a public address',
        ),
        (
            "http://localhost:1/",
            'blocked fetch to "localhost": internal hostname localhost is blocked',
        ),
        ("http://[::1]:1/", 'blocked fetch to "::1": ::1 is not a public address'),
        ("file:///etc/passwd", 'blocked fetch to "file:/etc/passwd": Unsupported scheme: file:'),
    ],
)
def test_every_redirect_hop_is_revalidated(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor, target: str, message: str
) -> None:
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, f"{server.base}/redirect?to={target}")
    assert str(info.value) == f'Plugin "web": {message}'
    assert len(server.seen) == 1


def test_redirect_leaving_the_allowlist_is_refused(
    client: HttpClient, server: Server, other_server: Server, make_plugin: MakePlugin
) -> None:
    p = make_plugin(["network:request"], [f"127.0.0.1:{server.port}"])
    with pytest.raises(HttpAccessError) as info:
        client.fetch(p, f"{server.base}/redirect?to={other_server.base}/echo")
    assert str(info.value).startswith('Plugin "web" is not allowed to fetch from host "127.0.0.1"')
    assert other_server.seen == []


CREDS = [
    ["Authorization", "Bearer s3cret"],
    ["Cookie", "sid=1"],
    ["Proxy-Authorization", "Basic x"],
    ["X-Keep", "yes"],
]


def test_credentials_are_stripped_when_the_origin_changes_and_stay_stripped(
    client: HttpClient, server: Server, other_server: Server, unrestricted: PluginDescriptor
) -> None:
    back_home = f"{server.base}/echo"
    url = f"{server.base}/redirect?to={other_server.base}/redirect?to={back_home}"
    echoed = echo(client.fetch(unrestricted, url, headers=CREDS))
    assert header(echoed, "x-keep") == ["yes"]
    for name in ("authorization", "cookie", "proxy-authorization"):
        assert header(echoed, name) == []
    # The first request (same origin as the caller's URL) still carried them.
    first = {k.lower(): v for k, v in server.seen[0]["headers"]}
    assert first["authorization"] == "Bearer s3cret"
    second = {k.lower() for k, _ in other_server.seen[0]["headers"]}
    assert not second & {"authorization", "cookie", "proxy-authorization"}


def test_same_origin_redirects_keep_credentials(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    echoed = echo(client.fetch(unrestricted, f"{server.base}/redirect?to=/echo", headers=CREDS))
    assert header(echoed, "authorization") == ["Bearer s3cret"]
    assert header(echoed, "cookie") == ["sid=1"]


def test_303_becomes_a_bodyless_get(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    echoed = echo(
        client.fetch(
            unrestricted,
            f"{server.base}/redirect?code=303&to=/echo",
            method="POST",
            headers=[["Content-Type", "text/plain"]],
            body=b"form",
        )
    )
    assert (echoed["method"], echoed["body"]) == ("GET", "")
    assert header(echoed, "content-type") == []


def test_307_resends_method_and_body(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    echoed = echo(
        client.fetch(
            unrestricted,
            f"{server.base}/redirect?code=307&to=/echo",
            method="PUT",
            body=b"again",
        )
    )
    assert (echoed["method"], base64.b64decode(echoed["body"])) == ("PUT", b"again")


# --- size caps and bad input -----------------------------------------------------------


def test_body_cap_by_content_length(server: Server, unrestricted: PluginDescriptor) -> None:
    c = HttpClient(allow_private=["127.0.0.1"], max_body=1000)
    assert len(body(c.fetch(unrestricted, f"{server.base}/big?n=1000"))) == 1000
    with pytest.raises(HttpAccessError) as info:
        c.fetch(unrestricted, f"{server.base}/big?n=1001")
    assert (
        str(info.value)
        == 'Plugin "web": response from "127.0.0.1" exceeds the 1000-byte body limit'
    )


def test_body_cap_while_streaming_and_after_decompression(
    server: Server, unrestricted: PluginDescriptor
) -> None:
    c = HttpClient(allow_private=["127.0.0.1"], max_body=100_000)
    with pytest.raises(HttpAccessError, match="exceeds the 100000-byte body limit"):
        c.fetch(unrestricted, f"{server.base}/stream-big?chunks=3")
    # ~2 KB on the wire, 1 MB once decoded: the cap applies to what the plugin would get.
    with pytest.raises(HttpAccessError, match="exceeds the 100000-byte body limit"):
        c.fetch(unrestricted, f"{server.base}/gzip?n=1000000")


def test_request_body_cap(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    small = HttpClient(allow_private=["127.0.0.1"], max_body=10)
    with pytest.raises(BridgeError) as info:
        small.fetch(unrestricted, f"{server.base}/echo", method="POST", body=b"x" * 11)
    assert str(info.value) == "http/fetch: request body of 11 bytes exceeds the limit of 10 bytes"
    assert server.seen == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"headers": [["Host", "evil.example"]]},
            'http/fetch: header "host" is set by the host and cannot be given',
        ),
        (
            {"headers": [["Transfer-Encoding", "chunked"]]},
            'http/fetch: header "transfer-encoding" is set by the host and cannot be given',
        ),
        (
            {"headers": [["X-A", "1\r\nX-Injected: 1"]]},
            "http/fetch: header 'X-A' has a line break or NUL in its value",
        ),
        ({"headers": [["Bad Name", "1"]]}, "http/fetch: invalid header name 'Bad Name'"),
        (
            {"headers": [["X-A"]]},
            "http/fetch: init.headers must be an array of [name, value] pairs",
        ),
        (
            {"headers": [["X-A", 1]]},
            "http/fetch: init.headers must be an array of [name, value] pairs",
        ),
        ({"method": "CONNECT"}, "http/fetch: method CONNECT is not allowed"),
        ({"method": "GE T"}, "http/fetch: init.method must be a valid HTTP method name"),
        ({"method": "GET", "body": b"x"}, "http/fetch: a GET request cannot have a body"),
    ],
)
def test_bad_requests_are_refused_before_sending(
    client: HttpClient,
    server: Server,
    unrestricted: PluginDescriptor,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(BridgeError) as info:
        client.fetch(unrestricted, f"{server.base}/echo", **kwargs)
    assert str(info.value) == message
    assert server.seen == []


def test_connection_failures_name_the_plugin_and_host(
    client: HttpClient, unrestricted: PluginDescriptor
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(HttpAccessError) as info:
            client.fetch(unrestricted, f"http://127.0.0.1:{port}/")
    assert str(info.value).startswith('Plugin "web": fetch to "127.0.0.1" failed: ConnectError:')


def test_no_cookie_jar_between_requests(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    client.fetch(unrestricted, f"{server.base}/multi")  # sets cookies a=1, b=2
    echoed = echo(client.fetch(unrestricted, f"{server.base}/echo"))
    assert header(echoed, "cookie") == []


def test_overlong_urls_are_refused(
    client: HttpClient, server: Server, unrestricted: PluginDescriptor
) -> None:
    url = f"{server.base}/echo?" + "a" * 9000
    with pytest.raises(HttpAccessError) as info:
        client.fetch(unrestricted, url)
    assert (
        str(info.value)
        == f'Plugin "web": blocked fetch to "{url[:100]}...": URL longer than 8192 characters'
    )
    assert server.seen == []
