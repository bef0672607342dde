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
changes origin, every credential-shaped header (:func:`is_credential_header`: authorization,
cookie, ``x-api-key``, ``x-auth-token``, ``*-signature``...) is dropped for the rest of the
chain; 303 turns the request into a body-less GET. Every hop costs one subrequest of the
invocation's budget. Nothing from the host environment leaks in: no proxy variables
(``trust_env`` is never consulted), no cookie jar, no netrc.

Bounds the plugin cannot move (the host pays for this work, so the host sets them):

- **Time.** One fetch, redirects and body included, ends by the *earlier* of its own
  ``timeout`` (10 s) and the invocation's deadline carried by its
  :class:`~emdash._bridge._budget.CallBudget` (``min(wall_ms, timeout_ms)`` from the
  invocation's start). Every wait is clamped to what is left: DNS, connect, TLS, each socket
  read and write (:class:`_DeadlineStream`), so a server trickling one byte at a time cannot
  stretch it. Past the invocation's deadline the fetch raises :class:`HttpAccessError`
  saying so (the supervisor then reports the invocation itself as ``WallTimeExceeded`` or
  ``HookTimeoutError``); past its own timeout, a "timed out" :class:`HttpAccessError`.
- **Bytes.** The body is read raw and decoded here, in bounded steps
  (``zlib.decompressobj().decompress(data, max_length)``), counting the *decoded* size as it
  grows: a few KB of gzip that would inflate to gigabytes stops at ``max_body`` (10 MiB)
  having allocated about that much. httpx's own decoders inflate a whole network chunk in
  one call, which is why they are not used. Only ``gzip`` and ``deflate`` are decoded; a
  response with several encodings (``gzip, gzip`` nests one bomb in another) or an unknown
  one is refused.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import certifi
import httpcore
import httpx

from .._shared._errors import BridgeError, CapabilityError, HttpAccessError
from ._hosts import PrivateHosts
from ._ssrf import (
    IPAddress,
    address_problem,
    host_problem,
    is_credential_header,
    normalize_host,
)

if TYPE_CHECKING:
    from .._model._descriptor import PluginDescriptor
    from ._budget import CallBudget

__all__ = [
    "DEADLINE_EXTENSION",
    "MAX_REDIRECTS",
    "PIN_EXTENSION",
    "HttpClient",
    "PinnedTransport",
    "Resolver",
    "is_credential_header",
    "resolve_host",
]

MAX_REDIRECTS = 5
PIN_EXTENSION = "emdash.pinned_ip"
# Absolute time.monotonic() by which every wait of the request must end (see _DeadlineStream).
DEADLINE_EXTENSION = "emdash.deadline"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Content-Encoding values decoded here (the value names the algorithm, aliases included).
_DECODED_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
# Decoded bytes produced per zlib call: the most a single step can allocate.
_INFLATE_STEP = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
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


#: ``resolver(host, port) -> addresses``: the DNS edge, replaceable by host code only
#: (``Runtime(resolver=...)``, :func:`emdash.testing.fake_dns`). Raising ``OSError`` means
#: "no such host". Whatever it answers is vetted like a real DNS answer.
Resolver = Callable[[str, int], Sequence[str]]

_log = logging.getLogger("emdash.http")


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to: the system resolver (the default :data:`Resolver`)."""
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

    ``resolver`` replaces the system resolver (the offline-testing seam): every address it
    answers is still vetted by the SSRF rules, and the connection is still pinned to it.

    ``allow_private`` is a **test escape hatch only**: exact IP addresses (e.g.
    ``["127.0.0.1"]``) exempt from the non-public-address check so a local test server can
    be reached. ``private_hosts`` is the operator's **development** exemption
    (:class:`~emdash._bridge._hosts.PrivateHosts`: ``localhost:8080``, ``10.0.0.5``): a
    request to such a host skips the private-address and internal-name checks, and the
    first one per plugin and host:port is logged as a WARNING. Both are empty by default; only host Python code (the
    ``Runtime`` arguments, the site config) sets them, never a plugin or a descriptor.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        timeout: float = 10.0,
        max_body: int = 10 * 1024 * 1024,
        allow_private: Iterable[str] = (),
        resolver: Resolver | None = None,
        private_hosts: PrivateHosts | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._allow: frozenset[IPAddress] = frozenset(
            ipaddress.ip_address(a) for a in allow_private
        )
        self._transport = transport or PinnedTransport()
        self._resolver = resolver
        self._private = private_hosts or PrivateHosts()
        self._log = logger or _log

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
        charged by the caller (the bridge charges every call up front). The budget's
        deadline, if any, bounds the whole fetch (see the module docstring).
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
        clock = _Clock(pid, time.monotonic() + self.timeout, self.timeout, budget)
        stripped = False
        previous: _Hop | None = None
        current = url
        for hop_number in range(MAX_REDIRECTS + 1):
            hop = self._vet(plugin, current, unrestricted, clock)
            clock.check(hop.host)
            if previous is not None and hop.origin != previous.origin and not stripped:
                # Credentials were meant for the origin the plugin addressed, not for
                # wherever that origin redirects (another allowed host included).
                request_headers = [
                    (k, v) for k, v in request_headers if not is_credential_header(k)
                ]
                stripped = True
            if budget is not None and (hop_number > 0 or not prepaid):
                budget.charge(pid)
            response = self._send(pid, hop, method, request_headers, body, clock)
            try:
                location = response.headers.get("location")
                if response.status_code not in REDIRECT_STATUSES or location is None:
                    return self._result(pid, hop, response, clock)
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

    def _vet(self, plugin: PluginDescriptor, url: str, unrestricted: bool, clock: _Clock) -> _Hop:
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
        # The development exemption names exact hosts (and ports) the operator runs locally;
        # it lifts the name and address checks for them only, never the allowlist below.
        exempt = self._private.allows(host, port)
        literal, problem = host_problem(host, self._allow)
        if problem and not exempt:
            raise self._blocked(pid, host, problem)
        if not unrestricted and not _host_allowed(host, port, plugin.allowed_hosts):
            raise HttpAccessError(
                f'Plugin "{pid}" is not allowed to fetch from host "{host}". Allowed hosts: '
                + ", ".join(plugin.allowed_hosts),
                plugin_id=pid,
            )
        if exempt:
            # Loud on purpose, but bounded: the first use per plugin and host:port is logged
            # (the plugin decides how many requests it makes, not how much log it writes).
            self._private.warn_once(self._log, pid, host, port)
        if literal is not None:
            return _Hop(parsed, host, port, str(literal))
        return _Hop(parsed, host, port, self._resolve(pid, raw_host, host, port, clock, exempt))

    def _resolve(
        self, pid: str, raw_host: str, host: str, port: int, clock: _Clock, exempt: bool
    ) -> str:
        # Looked up at call time so the module-level default stays the one DNS edge.
        resolver = self._resolver or resolve_host
        try:
            answers = _resolve_within(resolver, raw_host, port, clock.left())
        except TimeoutError:
            raise clock.expired(host) from None
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
            problem = None if exempt or addr in self._allow else address_problem(addr)
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
        clock: _Clock,
    ) -> httpx.Response:
        remaining = clock.left()
        if remaining <= 0:
            raise clock.expired(hop.host)
        names = {k.lower() for k, _ in headers}
        defaults = [("user-agent", f"emdash-plugin/{pid}"), ("accept", "*/*")]
        all_headers = [(k, v) for k, v in defaults if k not in names] + headers
        request = httpx.Request(
            method,
            hop.url,
            headers=all_headers,
            content=body,
            extensions={
                # Upper bounds for a replacement transport; PinnedTransport also clamps
                # every single wait to the deadline.
                "timeout": {
                    "connect": remaining,
                    "read": remaining,
                    "write": remaining,
                    "pool": remaining,
                },
                PIN_EXTENSION: hop.ip,
                DEADLINE_EXTENSION: clock.deadline,
            },
        )
        try:
            return self._transport.handle_request(request)
        except (httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
            raise clock.error_after(hop.host, exc) from None

    def _result(
        self, pid: str, hop: _Hop, response: httpx.Response, clock: _Clock
    ) -> dict[str, Any]:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_big(pid, hop.host)
        encoding = self._encoding(pid, hop.host, response)
        chunks: list[bytes] = []
        size = raw_size = 0

        def raw() -> Iterator[bytes]:
            # Compressed bytes are counted too (a stream of empty gzip members decodes to
            # nothing, forever); incompressible data grows a little in gzip, hence 2x.
            nonlocal raw_size
            source: Iterable[bytes] = response.iter_raw()
            if response.is_stream_consumed and isinstance(response.stream, httpx.ByteStream):
                # A replacement transport answered with an in-memory body (httpx reads those
                # at construction, e.g. httpx.MockTransport): its stream still holds the
                # raw bytes, which go through the same counting and decoding.
                source = response.stream
            for chunk in source:
                raw_size += len(chunk)
                if raw_size > 2 * self.max_body:
                    raise self._too_big(pid, hop.host)
                if clock.left() <= 0:
                    raise clock.expired(hop.host)
                yield chunk

        try:
            for piece in raw() if encoding is None else _inflate(raw(), encoding):
                # Counted before it is kept, and each piece is at most _INFLATE_STEP bytes
                # (raw chunks are bounded by the transport's read size): the body in memory
                # never exceeds max_body by more than one step.
                size += len(piece)
                if size > self.max_body:
                    raise self._too_big(pid, hop.host)
                chunks.append(piece)
        except zlib.error as exc:
            raise self._failed(
                pid, hop.host, f"the {encoding}-encoded body is corrupt ({exc})"
            ) from None
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise clock.error_after(hop.host, exc) from None
        if clock.left() <= 0:
            raise clock.expired(hop.host)
        return {
            "status": response.status_code,
            "statusText": response.reason_phrase,
            "headers": [[k, v] for k, v in response.headers.multi_items()],
            "bodyBase64": base64.b64encode(b"".join(chunks)).decode("ascii"),
        }

    @staticmethod
    def _encoding(pid: str, host: str, response: httpx.Response) -> str | None:
        """The one decoder the body needs (``None``: as sent), or a refusal."""
        codings = [
            token.strip().lower()
            for value in response.headers.get_list("content-encoding")
            for token in value.split(",")
        ]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return None
        # Server-controlled text going into an error message: printable ASCII only, short.
        shown = ", ".join(_UNPRINTABLE.sub("?", c[:32]) for c in codings[:8])
        if len(codings) > 1:
            # Each layer multiplies the expansion (gzip of gzip: KB -> GB); no legitimate
            # server stacks them.
            raise HttpAccessError(
                f'Plugin "{pid}": response from "{host}" has nested content-encodings '
                f"({shown}); they are refused. Ask the server for one encoding (send "
                '"accept-encoding: gzip" or "identity").',
                plugin_id=pid,
            )
        decoded = _DECODED_ENCODINGS.get(codings[0])
        if decoded is None:
            raise HttpAccessError(
                f'Plugin "{pid}": response from "{host}" uses content-encoding "{shown}", '
                'which is not supported; send "accept-encoding: gzip" or "identity".',
                plugin_id=pid,
            )
        return decoded

    def _too_big(self, pid: str, host: str) -> HttpAccessError:
        return HttpAccessError(
            # The limit counts decoded bytes (the module docstring says how).
            f'Plugin "{pid}": response from "{host}" exceeds the {self.max_body}-byte body limit',
            plugin_id=pid,
        )

    @staticmethod
    def _failed(pid: str, host: str, reason: str) -> HttpAccessError:
        return HttpAccessError(f'Plugin "{pid}": fetch to "{host}" failed: {reason}', plugin_id=pid)


class _Clock:
    """The time bounds of one fetch: its own timeout and the invocation's deadline.

    ``deadline`` is the earlier of the two; the errors say which one ran out.
    """

    __slots__ = ("_budget", "_own", "_pid", "_timeout", "deadline")

    def __init__(self, pid: str, own: float, timeout: float, budget: CallBudget | None) -> None:
        self._pid, self._own, self._timeout, self._budget = pid, own, timeout, budget
        invocation = budget.deadline if budget is not None else None
        self.deadline = own if invocation is None else min(own, invocation)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, host: str) -> None:
        if self.left() <= 0:
            raise self.expired(host)

    def expired(self, host: str) -> HttpAccessError:
        """The error for a fetch stopped by one of its bounds."""
        pid = self._pid
        budget = self._budget
        if budget is not None and budget.deadline is not None and budget.deadline <= self._own:
            limit = f" ({budget.deadline_ms} ms)" if budget.deadline_ms is not None else ""
            return HttpAccessError(
                f'Plugin "{pid}": fetch to "{host}" stopped: the invocation\'s deadline'
                f"{limit} passed. A host call cannot outlive the invocation that made it; "
                "raise limits.wall_ms (or the hook's timeout_ms), or call a faster service.",
                plugin_id=pid,
            )
        return HttpAccessError(
            f'Plugin "{pid}": fetch to "{host}" failed: timed out after {self._timeout:g}s',
            plugin_id=pid,
        )

    def error_after(self, host: str, exc: BaseException) -> HttpAccessError:
        """The error for ``exc`` raised by the transport: a timeout if the time is up."""
        # Every wait is clamped to the deadline, so a wait cut short by it ends at (about)
        # the deadline; the small margin only picks the clearer message.
        if self.left() <= 0.05:
            return self.expired(host)
        return HttpClient._failed(self._pid, host, _describe(exc))


def _resolve_within(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """``resolver(host, port)`` bounded by ``timeout`` (``getaddrinfo`` itself has none).

    The lookup runs on a daemon thread; if it does not answer in time the fetch gives up
    and the thread ends on its own when the system resolver does.
    """
    if timeout <= 0:
        raise TimeoutError
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(resolver(host, port))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    thread = threading.Thread(target=lookup, name="emdash-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise TimeoutError
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    # A replacement resolver is host code, but its answer is still checked for shape: only
    # strings go on to be parsed as addresses (anything else reads as "could not resolve").
    if isinstance(result, str) or not all(isinstance(a, str) for a in result):
        raise OSError("resolver answered something other than a list of addresses")
    return list(result)


def _inflate(raw: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Decode a gzip/deflate body in steps of at most ``_INFLATE_STEP`` output bytes.

    ``decompress(data, max_length)`` stops once it has produced ``max_length`` bytes and
    keeps the rest of the input in ``unconsumed_tail``, so however far a chunk would
    expand, one step allocates a bounded amount, and the consumer (which counts and stops
    at the cap) decides whether another step happens at all. Concatenated gzip members are
    decoded in turn (RFC 1952 allows them); other bytes after the end of the stream are
    ignored, as httpx does (they still count against the raw-size cap).
    """
    inflater: Any = None  # zlib's Decompress type is not importable for annotations
    pending = b""
    for chunk in raw:
        data = pending + chunk if pending else chunk
        pending = b""
        while data:
            if inflater is None:
                if encoding == "deflate" and len(data) < 2:
                    pending = data  # need two bytes to tell zlib-wrapped from raw deflate
                    break
                inflater = zlib.decompressobj(_wbits(encoding, data))
            elif inflater.eof:
                if encoding == "gzip" and data == _GZIP_MAGIC[:1]:
                    pending = data  # maybe the start of another member
                    break
                if encoding == "gzip" and data.startswith(_GZIP_MAGIC):
                    inflater = None  # another member follows
                    continue
                break  # trailing bytes after the stream
            out = inflater.decompress(data, _INFLATE_STEP)
            if out:
                yield out
            data = inflater.unconsumed_tail
            if inflater.eof and inflater.unused_data:
                data = inflater.unused_data + data
    if pending and inflater is None:
        raise zlib.error("truncated deflate stream")
    if inflater is not None and not inflater.eof:
        # Input ended mid-stream: what zlib still holds is at most one match (< 300 bytes),
        # because every earlier call ran until its input was consumed.
        tail = inflater.flush()
        if tail:
            yield tail


def _wbits(encoding: str, head: bytes) -> int:
    if encoding == "gzip":
        return 16 + zlib.MAX_WBITS
    # "deflate" is meant to be zlib-wrapped (RFC 9110), but servers also send raw deflate:
    # a zlib header is CM=8 with a 16-bit check value divisible by 31.
    if head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


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

    def __init__(self, host: str, port: int, ip: str, deadline: float | None = None) -> None:
        self._host, self._port, self._ip = host, port, ip
        self._deadline = deadline
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
        timeout = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(self._ip, port, timeout, local_address, socket_options)
        return stream if self._deadline is None else _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _clamp(timeout: float | None, deadline: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to what is left before ``deadline``; ``error`` if nothing is left."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by one absolute deadline.

    httpcore applies its read/write timeouts *per operation*: a server that sends one byte
    just before each read timeout would keep a request alive forever. Here each read and
    each write of at most 64 KiB gets ``min(timeout, time left)``, so the whole exchange,
    body included, ends by the deadline whatever the peer does.
    """

    _WRITE_SLICE = 64 * 1024

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), self._WRITE_SLICE):
            piece = bytes(view[start : start + self._WRITE_SLICE])
            self._inner.write(piece, _clamp(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


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
        deadline = request.extensions.get(DEADLINE_EXTENSION)
        if not isinstance(deadline, float):
            deadline = None
        url = request.url
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        pool = httpcore.ConnectionPool(
            ssl_context=self._ssl,
            max_connections=1,
            retries=0,
            network_backend=_PinnedBackend(host, port, ip, deadline),
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
