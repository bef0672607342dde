"""Capability vocabulary: the 12 canonical names, 10 deprecated aliases, and implications.

Normalisation happens once, when a descriptor is loaded: aliases become canonical names,
duplicates go, and the three implications are added (write implies read, unrestricted
network implies restricted network). Every later check (hook registration gate, bridge)
compares against that closed set, in both modes. EmDash's isolate bridges skip the
implication step; we do not (docs/plugin-reference.md, capabilities).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

__all__ = [
    "CAPABILITIES",
    "CAPABILITY_ALIASES",
    "CAPABILITY_IMPLICATIONS",
    "expand_capabilities",
    "normalize_capabilities",
    "normalize_capability",
]

CAPABILITIES: tuple[str, ...] = (
    "network:request",
    "network:request:unrestricted",
    "content:read",
    "content:write",
    "taxonomies:read",
    "media:read",
    "media:write",
    "users:read",
    "email:send",
    "hooks.email-transport:register",
    "hooks.email-events:register",
    "hooks.page-fragments:register",
)

CAPABILITY_ALIASES: MappingProxyType[str, str] = MappingProxyType(
    {
        "network:fetch": "network:request",
        "network:fetch:any": "network:request:unrestricted",
        "read:content": "content:read",
        "write:content": "content:write",
        "read:media": "media:read",
        "write:media": "media:write",
        "read:users": "users:read",
        "email:provide": "hooks.email-transport:register",
        "email:intercept": "hooks.email-events:register",
        "page:inject": "hooks.page-fragments:register",
    }
)

CAPABILITY_IMPLICATIONS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "content:write": ("content:read",),
        "media:write": ("media:read",),
        "network:request:unrestricted": ("network:request",),
    }
)


def normalize_capability(name: str) -> str:
    """Map a deprecated alias to its canonical name; pass anything else through unchanged."""
    return CAPABILITY_ALIASES.get(name, name)


def normalize_capabilities(names: Iterable[str]) -> list[str]:
    """Canonicalise, keep first-occurrence order, drop duplicates. Never mutates its input."""
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(normalize_capability(name), None)
    return list(seen)


def expand_capabilities(names: Iterable[str]) -> list[str]:
    """Normalise, then add the implied capabilities right after the ones implying them."""
    out: dict[str, None] = {}
    for name in normalize_capabilities(names):
        out.setdefault(name, None)
        for implied in CAPABILITY_IMPLICATIONS.get(name, ()):
            out.setdefault(implied, None)
    return list(out)
