"""The SSRF policy on its own: address spellings, reserved ranges, internal names."""

from __future__ import annotations

import ipaddress

import pytest

from emdash._bridge._http import _host_allowed
from emdash._bridge._ssrf import address_problem, host_problem, normalize_host, parse_ipv4


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_every_inet_aton_spelling_is_canonicalised(spelling: str, address: str) -> None:
    assert parse_ipv4(spelling) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize(
    "bad", ["1.2.3.4.5", "256.1.1.1", "1.2.3.256", "08.1.1.1", "0x1g", "1..2", "4294967296"]
)
def test_malformed_numbers_are_not_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ipv4(bad)


@pytest.mark.parametrize(
    "host",
    [
        # IPv4 loopback / private / link-local / metadata / reserved, in several spellings
        "127.0.0.1",
        "127.9.9.9",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "0",
        "100.64.0.1",
        "198.18.0.1",
        "192.0.2.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        # IPv6 loopback and every IPv4 embedding of it
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "0:0:0:0:0:ffff:7f00:1",
        "::ffff:169.254.169.254",
        "::ffff:a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "::7f00:1",
        "::127.0.0.1",
        "::ffff:0:7f00:1",
        "2002:7f00:1::1",
        "2001:0:4136:e378::1",
        "64:ff9b:1::1",
        # IPv6 private scopes
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(host: str) -> None:
    literal, problem = host_problem(normalize_host(host))
    assert literal is not None
    assert problem is not None and problem.endswith(" is not a public address")


def test_mapped_address_is_judged_by_the_embedded_ipv4() -> None:
    assert host_problem("::ffff:7f00:1") == (
        ipaddress.IPv6Address("::ffff:7f00:1"),
        "127.0.0.1 is not a public address",
    )
    assert host_problem("64:ff9b::a9fe:a9fe")[1] == "169.254.169.254 is not a public address"


@pytest.mark.parametrize(
    "host",
    ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"],
)
def test_public_addresses_pass(host: str) -> None:
    literal, problem = host_problem(host)
    assert literal is not None and problem is None
    assert address_problem(literal) is None


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST.",
        "localhost.",
        "foo.localhost",
        "a.b.localhost.",
        "metadata.google.internal",
        "metadata.google",
        "metadata",
        "instance-data",
        "anything.internal",
        "printer.local",
        "nas.home.arpa",
        "127.0.0.1.nip.io",
        "nip.io",
        "x.sslip.io",
        "a.xip.io",
        "app.traefik.me",
        "lvh.me",
        "www.localtest.me",
    ],
)
def test_internal_hostnames_are_refused_before_resolution(host: str) -> None:
    name = normalize_host(host)
    assert host_problem(name) == (None, f"internal hostname {name} is blocked")


@pytest.mark.parametrize(
    "host", ["example.com", "api.example.com", "notlocalhost.com", "nip.io.example.org"]
)
def test_ordinary_hostnames_pass_the_name_check(host: str) -> None:
    assert host_problem(host) == (None, None)


def test_zone_identifiers_and_bad_numbers_are_refused() -> None:
    assert host_problem("fe80::1%eth0") == (
        None,
        "invalid address: IPv6 zone identifiers are not allowed: fe80::1%eth0",
    )
    assert host_problem("1.2.3.4.5")[1] == "invalid address: not an IPv4 address: 1.2.3.4.5"
    assert host_problem("") == (None, "URL has no host")


def test_allow_set_exempts_exact_addresses_but_never_names() -> None:
    allow = frozenset({ipaddress.ip_address("127.0.0.1")})
    assert host_problem("127.0.0.1", allow) == (ipaddress.IPv4Address("127.0.0.1"), None)
    assert host_problem("2130706433", allow) == (ipaddress.IPv4Address("127.0.0.1"), None)
    assert host_problem("127.0.0.2", allow)[1] == "127.0.0.2 is not a public address"
    assert host_problem("localhost", allow)[1] == "internal hostname localhost is blocked"


def test_normalize_host() -> None:
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("API.Example.COM..") == "api.example.com"


@pytest.mark.parametrize(
    ("host", "port", "patterns", "allowed"),
    [
        ("example.com", 443, ["*"], True),
        ("example.com", 443, ["*.example.com"], True),
        ("a.b.example.com", 80, ["*.example.com"], True),
        ("badexample.com", 80, ["*.example.com"], False),
        ("example.com.evil.org", 80, ["example.com"], False),
        ("api.example.com", 80, ["example.com"], False),
        ("example.com", 80, ["example.com"], True),
        ("example.com", 8080, ["example.com:8080"], True),
        ("example.com", 80, ["example.com:8080"], False),
        ("example.com", 80, [], False),
    ],
)
def test_allowlist_matching(host: str, port: int, patterns: list[str], allowed: bool) -> None:
    assert _host_allowed(host, port, patterns) is allowed
