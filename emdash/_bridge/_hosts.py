"""Host names outside the request path: what ``allowed_hosts`` can reach, and dev private hosts.

Two questions about hosts that are answered before any request is made:

- :func:`unreachable_allowed_hosts`: which entries of a descriptor's ``allowedHosts`` can
  *never* be fetched, because the SSRF policy (:mod:`emdash._bridge._ssrf`) refuses them
  whatever DNS says (a private, loopback or link-local literal, an internal name such as
  ``localhost``) or because they are not a valid host name at all. ``emdash check`` shows
  them as warnings: the descriptor is valid, the plugin simply cannot use that entry.
- :class:`PrivateHosts`: the operator's **development** exemption for a local site
  (``Runtime(allow_private_hosts=[...])``, ``[dev] allow_private_hosts`` in
  ``emdash.toml``). It names exact hosts (``localhost:8080``, ``10.0.0.5``) whose requests
  skip the private-address and internal-name checks. It is host configuration only: no
  descriptor field and no ``ctx`` call reaches it, and a plugin still needs the host in its
  own ``allowedHosts`` (or unrestricted network) to fetch it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from .._shared._errors import ConfigError
from ._ssrf import address_problem, hostname_problem, normalize_host, parse_ip_literal

__all__ = ["PrivateHosts", "unreachable_allowed_hosts"]

# One DNS label: letters, digits and inner hyphens, at most 63 characters (RFC 1123).
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")
# Private and internal hosts are not useless: a development site can exempt them. The
# entry must then stay in allowedHosts (the exemption lifts only the SSRF checks), so the
# hint must not tell the author to move it elsewhere.
_DEV_HINT = (
    "only a development site reaches it, by also listing it in emdash.toml [dev] "
    'allow_private_hosts (with environment = "development"); a production site refuses '
    "every request to it"
)


def unreachable_allowed_hosts(patterns: Iterable[str]) -> list[str]:
    """One line per ``allowedHosts`` entry that no request can ever reach (empty: all fine).

    Each line names the entry, says why, and what to do. ``*`` is always reachable.
    Private and internal hosts count as unreachable (production refuses them); their line
    says how a development site reaches them.
    """
    problems: list[str] = []
    for pattern in patterns:
        reason = _pattern_problem(pattern)
        if reason is None:
            continue
        if reason.endswith(f"({_DEV_HINT})"):
            problems.append(
                f'allowedHosts entry "{pattern}" is refused on a production site: {reason}'
            )
        else:
            problems.append(f'allowedHosts entry "{pattern}" can never be reached: {reason}')
    return problems


def _pattern_problem(pattern: str) -> str | None:
    name, sep, port = pattern.strip().partition(":")
    if sep and (not _PORT_RE.fullmatch(port) or not 0 < int(port) < 65536):
        return f"the port {port!r} is not a TCP port (1-65535); fix or drop it"
    if name == "*":
        return None
    wildcard = name.startswith("*.")
    host = normalize_host(name[2:] if wildcard else name)
    if not host:
        return "it names no host; give a name such as api.example.com"
    try:
        literal = parse_ip_literal(host)
    except ValueError as exc:
        return f"{exc}; give a public host name or address"
    if literal is not None:
        if wildcard:
            return "a wildcard cannot apply to an IP address; list the address itself"
        problem = address_problem(literal)
        return (
            None
            if problem is None
            else f"{problem}, and plugins may only fetch public ones ({_DEV_HINT})"
        )
    if len(host) > 253 or not all(_LABEL_RE.match(label) for label in host.split(".")):
        return (
            "it is not a valid host name (labels of letters, digits and inner hyphens, "
            "at most 63 characters each); fix the spelling"
        )
    blocked = hostname_problem(host)
    if blocked is not None:
        return f"{blocked} for plugins ({_DEV_HINT})"
    return None


@dataclass(frozen=True)
class _Entry:
    host: str  # normalised; an IPv6 address without brackets
    port: int | None  # None: every port


class PrivateHosts:
    """The development exemption from the SSRF address and name checks (see the module).

    Entries: ``name``, ``name:port``, ``a.b.c.d[:port]``, ``[v6]`` or ``[v6]:port``. A
    request matches when its host equals an entry's (after the usual normalisation) and the
    entry names no port or the request's port. Wildcards are refused: the exemption is for
    one local site, never for a whole domain.
    """

    __slots__ = ("_entries", "_lock", "_warned")

    #: How many distinct (plugin, host, port) uses are logged; then one closing line. The
    #: requests are the plugin's to make, so the log lines they cause must be bounded: one
    #: WARNING per request let a plugin flood the log (and bury other warnings), and an
    #: entry without a port covers 65535 ports to walk.
    WARN_LIMIT: ClassVar[int] = 100

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._entries = tuple(_parse_entry(e) for e in entries)
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str, int]] = set()

    def warn_once(self, log: logging.Logger, plugin_id: str, host: str, port: int) -> None:
        """Log the first use of the exemption by ``plugin_id`` for ``host:port`` (a WARNING:
        loud, and the runtime's start already warned), at most :data:`WARN_LIMIT` of them."""
        key = (plugin_id, host, port)
        with self._lock:
            if key in self._warned or len(self._warned) > self.WARN_LIMIT:
                return
            self._warned.add(key)
            last = len(self._warned) > self.WARN_LIMIT
        if last:
            log.warning(
                "DEVELOPMENT: further uses of allow_private_hosts are not logged (more than "
                "%d plugin and host pairs); never enable this on a production site",
                self.WARN_LIMIT,
            )
            return
        shown = f"[{host}]" if ":" in host else host
        log.warning(
            "DEVELOPMENT: plugin %s fetches private host %s:%d (allow_private_hosts); never "
            "enable this on a production site (logged once per plugin and host)",
            plugin_id,
            shown,
            port,
        )

    def __bool__(self) -> bool:
        return bool(self._entries)

    def describe(self) -> list[str]:
        """The entries as written back (for logs)."""
        out: list[str] = []
        for e in self._entries:
            host = f"[{e.host}]" if ":" in e.host else e.host
            out.append(host if e.port is None else f"{host}:{e.port}")
        return out

    def allows(self, host: str, port: int) -> bool:
        """Whether a request to ``host`` (normalised) on ``port`` is exempt."""
        return any(e.host == host and e.port in (None, port) for e in self._entries)


def _parse_entry(entry: str) -> _Entry:
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(
            f"allow_private_hosts: {entry!r} is not a host; give entries such as "
            '"localhost:8080" or "10.0.0.5"'
        )
    text = entry.strip()
    port: str | None = None
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ConfigError(f"allow_private_hosts: {entry!r}: write IPv6 as [::1] or [::1]:8080")
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    if "*" in host or "/" in host or not host:
        raise ConfigError(
            f"allow_private_hosts: {entry!r}: name one exact host (no wildcard, scheme or "
            'path), e.g. "localhost:8080"'
        )
    number: int | None = None
    if port is not None:
        if not _PORT_RE.fullmatch(port) or not 0 < int(port) < 65536:
            raise ConfigError(f"allow_private_hosts: {entry!r}: the port must be 1-65535")
        number = int(port)
    return _Entry(normalize_host(host), number)
