"""SSRF policy for plugin HTTP: which hosts and addresses a plugin may never reach.

Used by :mod:`emdash._bridge._http` on every hop of every request, in restricted and unrestricted
mode alike (``allowed_hosts = ["*"]`` included). The policy is the union of what EmDash
applies anywhere (docs/plugin-reference.md, outbound HTTP), plus what Python needs on top:

- **Canonicalise before checking.** ``urllib``/``httpx`` do not turn ``2130706433``,
  ``0x7f.1`` or ``0177.0.0.1`` into ``127.0.0.1`` the way the WHATWG URL parser does, but
  ``getaddrinfo`` (inet_aton) would happily connect there. :func:`parse_ipv4` implements the
  inet_aton / WHATWG number rules; a host whose last label is numeric is *only* an address.
- **Allowlist addresses, not denylist ranges.** An address must be globally routable
  (``ipaddress`` ``is_global``), and on top the explicit reserved ranges are listed here,
  because ``is_global`` differs across Python versions and misses multicast. IPv6 forms that
  embed an IPv4 address (mapped, NAT64) are judged by the embedded address; deprecated
  embeddings (IPv4-compatible, 6to4, Teredo, SIIT-translated) are refused outright.
- **Names that always mean "inside"**: ``localhost`` and its subdomains, cloud metadata
  names, the private-use TLDs, and the wildcard-DNS services (``nip.io``...) that map any
  name onto any address.

Resolution and pinning (the DNS-rebinding defence) live in :mod:`emdash._bridge._http`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "IPAddress",
    "address_problem",
    "host_problem",
    "is_credential_header",
    "normalize_host",
    "parse_ipv4",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Exact names that resolve to the host itself or to a cloud metadata service.
BLOCKED_NAMES = frozenset(
    {
        "localhost",
        "metadata",
        "metadata.google.internal",
        "metadata.google",
        "instance-data",
        "ip6-localhost",
        "ip6-loopback",
    }
)
# Names blocked together with every subdomain: RFC 6761 localhost, private-use TLDs, and
# wildcard-DNS services that resolve <anything>.<ip>.nip.io to <ip>.
BLOCKED_SUFFIXES = (
    "localhost",
    "internal",
    "local",
    "localdomain",
    "home.arpa",
    "nip.io",
    "sslip.io",
    "xip.io",
    "traefik.me",
    "lvh.me",
    "localtest.me",
)

_V4_BLOCKED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
    )
)
_V6_BLOCKED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0:0/96",  # SIIT IPv4-translated
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (embeds an IPv4 address; deprecated)
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_HEX_RE = re.compile(r"^0[xX][0-9a-fA-F]*$")
_OCT_RE = re.compile(r"^0[0-7]+$")
_DEC_RE = re.compile(r"^(0|[1-9][0-9]*)$")


def normalize_host(host: str) -> str:
    """Lower-case, without IPv6 brackets and trailing dots (``LocalHost.`` -> ``localhost``)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def _ends_in_number(host: str) -> bool:
    """WHATWG "ends in a number": such a host can only be an IPv4 address."""
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return bool(last) and (last.isdigit() and last.isascii() or bool(_HEX_RE.match(last)))


def parse_ipv4(host: str) -> ipaddress.IPv4Address:
    """Parse every inet_aton spelling: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``.

    Raises ``ValueError`` if ``host`` is not a valid IPv4 number in any of them.
    """
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"not an IPv4 address: {host}")
    numbers: list[int] = []
    for part in parts:
        if _HEX_RE.match(part):
            numbers.append(int(part[2:] or "0", 16))
        elif _OCT_RE.match(part):
            numbers.append(int(part, 8))
        elif _DEC_RE.match(part) and part.isascii():
            numbers.append(int(part))
        else:
            raise ValueError(f"not an IPv4 address: {host}")
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"IPv4 address out of range: {host}")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, ``None`` for a hostname; ``ValueError`` if malformed."""
    if ":" in host:
        if "%" in host:
            # A zone index picks an interface: meaningless for a public address.
            raise ValueError(f"IPv6 zone identifiers are not allowed: {host}")
        return ipaddress.IPv6Address(host)
    if _ends_in_number(host):
        return parse_ipv4(host)
    return None


def address_problem(addr: IPAddress) -> str | None:
    """Why ``addr`` must not be contacted, or ``None`` if it is a public unicast address."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return address_problem(addr.ipv4_mapped)
        if addr in _NAT64:
            # Well-known NAT64 prefix: the packet goes to the embedded IPv4 address.
            return address_problem(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if any(addr in net for net in _V6_BLOCKED) or not addr.is_global:
            return f"{addr} is not a public address"
        return None
    if any(addr in net for net in _V4_BLOCKED) or not addr.is_global:
        return f"{addr} is not a public address"
    return None


def hostname_problem(host: str) -> str | None:
    """Why the *name* ``host`` (normalised) is refused before any resolution, or ``None``."""
    if host in BLOCKED_NAMES:
        return f"internal hostname {host} is blocked"
    for suffix in BLOCKED_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return f"internal hostname {host} is blocked"
    return None


def host_problem(
    host: str, allow: frozenset[IPAddress] = frozenset()
) -> tuple[IPAddress | None, str | None]:
    """Check a normalised URL host: ``(literal address or None, problem or None)``.

    ``allow`` lists addresses exempt from the address check (the test/dev escape hatch of
    :class:`emdash._bridge._http.HttpClient`); blocked hostnames are never exempt.
    """
    if not host:
        return None, "URL has no host"
    try:
        literal = parse_ip_literal(host)
    except ValueError as exc:
        return None, f"invalid address: {exc}"
    if literal is not None:
        if literal in allow:
            return literal, None
        return literal, address_problem(literal)
    return None, hostname_problem(host)


# --- credential-shaped header names ---------------------------------------------------------
#
# One rule, used in both directions: what the host strips from inbound requests before a
# plugin route sees them (:mod:`emdash._asgi._io`), and what :mod:`emdash._bridge._http` drops
# from an outgoing request once a redirect leaves the origin the plugin addressed. A short
# list of names is not enough: services invent their own (``x-api-key``, ``x-auth-token``,
# ``x-amz-security-token``, ``stripe-signature``, ``ocp-apim-subscription-key``...), so the
# rule is by *shape*, and deliberately errs on the side of stripping: a header wrongly taken
# for a credential costs a plugin one header; a credential wrongly passed on leaks it.

# Exact names (lower-case).
_CREDENTIAL_NAMES = frozenset(
    {"authorization", "proxy-authorization", "cookie", "cookie2", "set-cookie", "set-cookie2"}
)
# Name prefixes: whole families of identity headers set by access proxies.
_CREDENTIAL_PREFIXES = ("cf-access-", "x-ms-client-principal", "x-goog-authenticated-")
# Fragments searched in the name with its separators (``-``, ``_``, ``.``) removed, so
# ``x-api-key``, ``x_api_key``, ``apikey`` and ``X-ApiKey`` are one case.
_CREDENTIAL_FRAGMENTS = (
    "auth",  # authorization, x-auth-token, oauth, authentication
    "token",  # x-csrf-token, x-amz-security-token, private-token
    "secret",
    "session",
    "password",
    "passwd",
    "passphrase",
    "csrf",
    "xsrf",
    "signature",  # x-hub-signature, stripe-signature
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "cookie",
    "jwt",
    "bearer",
    "assertion",  # cf-access-jwt-assertion, SAML assertions
)
# Whole tokens of the name split on its separators: too short or too common to search for
# as fragments (``pass`` is inside ``passthrough``, ``key`` inside ``keyword``).
_CREDENTIAL_TOKENS = frozenset({"key", "sig", "pass", "pwd", "pin", "sid", "otp"})
_SEPARATORS = re.compile(r"[-_.]+")


def is_credential_header(name: str) -> bool:
    """Whether the header ``name`` (any case) is shaped like a credential.

    Table-driven (see the tables above): an exact name, a prefix, a fragment of the name
    with its separators removed, or a whole separator-delimited token.
    """
    low = name.strip().lower()
    if low in _CREDENTIAL_NAMES or low.startswith(_CREDENTIAL_PREFIXES):
        return True
    squashed = _SEPARATORS.sub("", low)
    if any(fragment in squashed for fragment in _CREDENTIAL_FRAGMENTS):
        return True
    return any(token in _CREDENTIAL_TOKENS for token in _SEPARATORS.split(low))
