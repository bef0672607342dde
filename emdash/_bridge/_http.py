"""Outbound HTTP for plugins (``http/fetch``): allowlist, SSRF defence, pinning, redirects.

:class:`HttpClient` is called by the bridge after the capability check. For every hop of a
request, before any byte goes out, it

1. parses the URL with httpx's own parser (the same object is then sent, so there is no
   parser differential between what we check and what we fetch), rejects non-http(s)
   schemes and URLs carrying credentials;
2. refuses literal private/reserved addresses in any spelling and internal hostnames
   (:mod:`emdash._bridge._ssrf`), in restricted *and* unrestricted mode, ``["*"]`` included;
3. in restricted mode, matches the host against the plugin's ``allowed_hosts``;
4. resolves the name itself (:func:`resolve_host`) and refuses it if *any* address is not
   public (fail closed: no answer, an error, or a single private address all refuse);
5. **pins** the connection to the vetted address: the transport connects to that IP and to
   nothing else, while the Host header and TLS SNI/certificate check use the original name.
   A DNS answer that changes between the check and the connect (rebinding) is never used.

Redirects are followed by hand (at most 5, each hop re-vetted from step 1); once a hop
changes origin, ``authorization``, ``cookie`` and ``proxy-authorization`` are dropped for the
rest of the chain; 303 turns the request into a body-less GET. Every hop costs one
subrequest of the invocation's budget. Nothing from the host environment leaks in: no proxy
variables (``trust_env`` is never consulted), no cookie jar, no netrc.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import certifi
import httpcore
import httpx

from .._shared._errors import BridgeError, CapabilityError, HttpAccessError
from ._ssrf import IPAddress, address_problem, host_problem, normalize_host

if TYPE_CHECKING:
    from .._model._descriptor import PluginDescriptor
    from ._budget import CallBudget

__all__ = ["MAX_REDIRECTS", "PIN_EXTENSION", "HttpClient", "PinnedTransport", "resolve_host"]

MAX_REDIRECTS = 5
PIN_EXTENSION = "emdash.pinned_ip"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# Headers the transport owns: letting a plugin set them would allow request smuggling or
# sending one Host while we vetted another.
HOST_CONTROLLED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "expect",
    }
)
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})
_MAX_HEADERS = 100
_MAX_HEADER_BYTES = 16 * 1024
_MAX_URL_CHARS = 8 * 1024


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the DNS edge; tests replace it with a spy)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Hop:
    url: httpx.URL
    host: str  # normalised (lower-case, no trailing dot) for policy and messages
    port: int
    ip: str  # the vetted address the connection is pinned to

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.url.scheme, self.host, self.port)


class HttpClient:
    """Performs ``http/fetch`` for plugins under the allowlist and SSRF policy.

    ``transport`` replaces the built-in :class:`PinnedTransport` (e.g. to route egress
    through the host's own proxy); every request it receives has already been vetted and
    carries the vetted address in ``request.extensions["emdash.pinned_ip"]``, which a
    replacement must honour to keep the rebinding defence.

    ``allow_private`` is a **test/development escape hatch only**: exact IP addresses (e.g.
    ``["127.0.0.1"]``) exempt from the non-public-address check so a local test server can
    be reached. It is empty by default and nothing in emdash sets it.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        timeout: float = 10.0,
        max_body: int = 10 * 1024 * 1024,
        allow_private: Iterable[str] = (),
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._allow: frozenset[IPAddress] = frozenset(
            ipaddress.ip_address(a) for a in allow_private
        )
        self._transport = transport or PinnedTransport()

    def close(self) -> None:
        self._transport.close()

    # -- the one public operation -------------------------------------------------------

    def fetch(
        self,
        plugin: PluginDescriptor,
        url: str,
        *,
        method: str = "GET",
        headers: list[list[str]] | None = None,
        body: bytes | None = None,
        budget: CallBudget | None = None,
        prepaid: bool = False,
    ) -> dict[str, Any]:
        """Fetch ``url`` for ``plugin``; ``{"status", "statusText", "headers", "bodyBase64"}``.

        Each hop is charged to ``budget``; with ``prepaid`` the first one was already
        charged by the caller (the bridge charges every call up front).
        """
        pid = plugin.id
        unrestricted = plugin.has("network:request:unrestricted")
        if not unrestricted and not plugin.has("network:request"):
            # The bridge checked already; refusing here too keeps this class safe on its own.
            raise CapabilityError("network:request", plugin_id=pid)
        if not unrestricted and not plugin.allowed_hosts:
            raise HttpAccessError(
                f'Plugin "{pid}" has no allowed hosts configured. Add hosts to the plugin\'s '
                "allowedHosts array to enable HTTP requests.",
                plugin_id=pid,
            )
        method = _check_method(method)
        request_headers = _check_headers(headers or [])
        if body is not None and method in ("GET", "HEAD"):
            raise BridgeError(f"http/fetch: a {method} request cannot have a body")
        if body is not None and len(body) > self.max_body:
            raise BridgeError(
                f"http/fetch: request body of {len(body)} bytes exceeds the limit of "
                f"{self.max_body} bytes"
            )
        deadline = time.monotonic() + self.timeout
        stripped = False
        previous: _Hop | None = None
        current = url
        for hop_number in range(MAX_REDIRECTS + 1):
            hop = self._vet(plugin, current, unrestricted)
            if previous is not None and hop.origin != previous.origin and not stripped:
                request_headers = [
                    (k, v) for k, v in request_headers if k.lower() not in CREDENTIAL_HEADERS
                ]
                stripped = True
            if budget is not None and (hop_number > 0 or not prepaid):
                budget.charge(pid)
            response = self._send(pid, hop, method, request_headers, body, deadline)
            try:
                location = response.headers.get("location")
                if response.status_code not in REDIRECT_STATUSES or location is None:
                    return self._result(pid, hop, response, deadline)
                try:
                    current = str(hop.url.join(location))
                except (httpx.InvalidURL, ValueError):
                    raise self._blocked(
                        pid, hop.host, "redirect Location is not a valid URL"
                    ) from None
                if response.status_code == 303 and method != "HEAD":
                    method, body = "GET", None
                    request_headers = [
                        (k, v) for k, v in request_headers if k.lower() != "content-type"
                    ]
                previous = hop
            finally:
                response.close()
        raise HttpAccessError(
            f'Plugin "{pid}": too many redirects (max {MAX_REDIRECTS})', plugin_id=pid
        )

    # -- policy -------------------------------------------------------------------------

    def _vet(self, plugin: PluginDescriptor, url: str, unrestricted: bool) -> _Hop:
        pid = plugin.id
        if len(url) > _MAX_URL_CHARS:
            raise self._blocked(
                pid, url[:100] + "...", f"URL longer than {_MAX_URL_CHARS} characters"
            )
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise self._blocked(pid, url[:200], "invalid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise self._blocked(
                pid, parsed.host or url[:200], f"Unsupported scheme: {parsed.scheme}:"
            )
        if parsed.userinfo:
            raise self._blocked(pid, parsed.host, "URLs with credentials are not allowed")
        raw_host = parsed.raw_host.decode("ascii")
        host = normalize_host(raw_host)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        literal, problem = host_problem(host, self._allow)
        if problem:
            raise self._blocked(pid, host, problem)
        if not unrestricted and not _host_allowed(host, port, plugin.allowed_hosts):
            raise HttpAccessError(
                f'Plugin "{pid}" is not allowed to fetch from host "{host}". Allowed hosts: '
                + ", ".join(plugin.allowed_hosts),
                plugin_id=pid,
            )
        if literal is not None:
            return _Hop(parsed, host, port, str(literal))
        return _Hop(parsed, host, port, self._resolve(pid, raw_host, host, port))

    def _resolve(self, pid: str, raw_host: str, host: str, port: int) -> str:
        try:
            answers = resolve_host(raw_host, port)
        except (OSError, UnicodeError):
            raise self._blocked(pid, host, f"Could not resolve hostname: {host}") from None
        if not answers:
            raise self._blocked(pid, host, "Hostname resolved to no addresses")
        vetted: list[str] = []
        for answer in answers:
            try:
                addr = ipaddress.ip_address(answer.split("%", 1)[0])
            except ValueError:
                raise self._blocked(pid, host, f"Could not resolve hostname: {host}") from None
            # Every answer must be public: a name that also maps to 127.0.0.1 is refused
            # even if another answer would have been fine (the client could pick either).
            problem = None if addr in self._allow else address_problem(addr)
            if problem:
                raise self._blocked(
                    pid, host, f"Hostname resolves to a private IP address ({problem})"
                )
            vetted.append(str(addr))
        return vetted[0]

    @staticmethod
    def _blocked(pid: str, host: str, reason: str) -> HttpAccessError:
        return HttpAccessError(
            f'Plugin "{pid}": blocked fetch to "{host}": {reason}', plugin_id=pid
        )

    # -- I/O ----------------------------------------------------------------------------

    def _send(
        self,
        pid: str,
        hop: _Hop,
        method: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        deadline: float,
    ) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._failed(pid, hop.host, f"timed out after {self.timeout:g}s")
        names = {k.lower() for k, _ in headers}
        defaults = [("user-agent", f"emdash-plugin/{pid}"), ("accept", "*/*")]
        all_headers = [(k, v) for k, v in defaults if k not in names] + headers
        request = httpx.Request(
            method,
            hop.url,
            headers=all_headers,
            content=body,
            extensions={
                "timeout": {
                    "connect": remaining,
                    "read": remaining,
                    "write": remaining,
                    "pool": remaining,
                },
                PIN_EXTENSION: hop.ip,
            },
        )
        try:
            return self._transport.handle_request(request)
        except (httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
            raise self._failed(pid, hop.host, _describe(exc)) from None

    def _result(
        self, pid: str, hop: _Hop, response: httpx.Response, deadline: float
    ) -> dict[str, Any]:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_big(pid, hop.host)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_body:
                    raise self._too_big(pid, hop.host)
                if time.monotonic() > deadline:
                    raise self._failed(pid, hop.host, f"timed out after {self.timeout:g}s")
                chunks.append(chunk)
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise self._failed(pid, hop.host, _describe(exc)) from None
        return {
            "status": response.status_code,
            "statusText": response.reason_phrase,
            "headers": [[k, v] for k, v in response.headers.multi_items()],
            "bodyBase64": base64.b64encode(b"".join(chunks)).decode("ascii"),
        }

    def _too_big(self, pid: str, host: str) -> HttpAccessError:
        return HttpAccessError(
            f'Plugin "{pid}": response from "{host}" exceeds the {self.max_body}-byte body limit',
            plugin_id=pid,
        )

    @staticmethod
    def _failed(pid: str, host: str, reason: str) -> HttpAccessError:
        return HttpAccessError(f'Plugin "{pid}": fetch to "{host}" failed: {reason}', plugin_id=pid)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _host_allowed(host: str, port: int, patterns: list[str]) -> bool:
    """Allowlist match: ``*``, ``*.example.com`` (apex too), exact; ``host:port`` pins a port.

    Patterns are normalised by the descriptor (lower-case, no trailing dot); ``host`` is
    normalised by the caller.
    """
    for pattern in patterns:
        name, _, want_port = pattern.partition(":")
        if want_port and (not want_port.isdigit() or int(want_port) != port):
            continue
        if name == "*":
            return True
        if name.startswith("*."):
            apex = name[2:]
            if host == apex or host.endswith("." + apex):
                return True
        elif host == name:
            return True
    return False


def _check_method(method: str) -> str:
    if type(method) is not str or not _TOKEN_RE.match(method) or len(method) > 32:
        raise BridgeError("http/fetch: init.method must be a valid HTTP method name")
    upper = method.upper()
    if upper in _FORBIDDEN_METHODS:
        raise BridgeError(f"http/fetch: method {upper} is not allowed")
    return upper


def _check_headers(pairs: list[list[str]]) -> list[tuple[str, str]]:
    if len(pairs) > _MAX_HEADERS:
        raise BridgeError(f"http/fetch: at most {_MAX_HEADERS} request headers are allowed")
    out: list[tuple[str, str]] = []
    total = 0
    for pair in pairs:
        if len(pair) != 2 or not all(type(x) is str for x in pair):
            raise BridgeError("http/fetch: init.headers must be an array of [name, value] pairs")
        name, value = pair
        if not _TOKEN_RE.match(name):
            raise BridgeError(f"http/fetch: invalid header name {name[:64]!r}")
        if any(c in value for c in "\r\n\x00"):
            raise BridgeError(f"http/fetch: header {name!r} has a line break or NUL in its value")
        if name.lower() in HOST_CONTROLLED_HEADERS:
            raise BridgeError(
                f'http/fetch: header "{name.lower()}" is set by the host and cannot be given'
            )
        total += len(name) + len(value)
        out.append((name, value))
    if total > _MAX_HEADER_BYTES:
        raise BridgeError(f"http/fetch: request headers exceed {_MAX_HEADER_BYTES} bytes")
    return out


# --- the pinning transport ------------------------------------------------------------------


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the one vetted address, whatever name httpcore asks for.

    A request whose host/port differ from the pinned ones is refused: nothing reaches a
    socket that the policy did not see.
    """

    def __init__(self, host: str, port: int, ip: str) -> None:
        self._host, self._port, self._ip = host, port, ip
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host != self._host or port != self._port:
            raise httpcore.ConnectError(f"refusing to connect to unvetted {host}:{port}")
        # self._ip is a canonical numeric address, so create_connection does no DNS lookup.
        return self._inner.connect_tcp(self._ip, port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport that connects only to ``request.extensions["emdash.pinned_ip"]``.

    Each request gets its own one-connection pool (no connection is reused across plugins
    or hops); the TLS handshake uses the URL's hostname for SNI and certificate checks.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        ip = request.extensions.get(PIN_EXTENSION)
        if not isinstance(ip, str):
            raise httpx.ConnectError("refusing to connect: request has no vetted address")
        url = request.url
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        pool = httpcore.ConnectionPool(
            ssl_context=self._ssl,
            max_connections=1,
            retries=0,
            network_backend=_PinnedBackend(host, port, ip),
        )
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions={"timeout": request.extensions.get("timeout", {})},
        )
        try:
            with _mapped():
                core_response = pool.handle_request(core_request)
        except BaseException:
            pool.close()
            raise
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_PoolStream(core_response, pool),
            extensions=core_response.extensions,
        )


class _PoolStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response, pool: httpcore.ConnectionPool) -> None:
        self._response, self._pool = response, pool

    def __iter__(self) -> Iterator[bytes]:
        with _mapped():
            yield from self._response.iter_stream()

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._pool.close()


class _mapped:
    """Translate httpcore errors into the httpx errors of the same name (as httpx does)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, Exception) and type(exc).__module__.startswith("httpcore"):
            target = getattr(httpx, type(exc).__name__, None)
            if not (isinstance(target, type) and issubclass(target, httpx.TransportError)):
                target = httpx.TransportError
            raise target(str(exc)) from exc
