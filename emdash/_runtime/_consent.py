"""Consent: what the operator approved for a plugin, and what a descriptor now asks beyond it.

A descriptor is a trust contract (capabilities and allowed hosts), and the plugin's files,
descriptor included, are the author's: editing ``emdash-plugin.toml`` on disk, or shipping
a new version, must not silently widen what the plugin may do. So the runtime records the
access approved when the plugin was first added (the registry's ``approved`` column) and
compares every later load against it:

- asking for **more** (a capability not approved, ``network:request:unrestricted``
  included, or an allowed host no approved entry covers) refuses the load with
  :class:`ConsentRequiredError`, until the operator approves it with
  ``emdash plugins upgrade ID`` / ``rt.upgrade_plugin(path, approve=True)``;
- asking for **less** is accepted and recorded, so a later request to grow back asks again.

A registry row written before consent existed has no approval: its first load records
what the descriptor asks then (there is nothing older to compare with).

Sandbox limits: a descriptor's ``[limits]`` replace the site's defaults for that plugin,
so they are approved with it. Raising any limit above the approved value (the site's
defaults when the approved descriptor set none), or turning ``fresh_worker`` off, needs
consent too; lower limits, or none (the operator's own defaults), do not.

Host coverage: an approved ``*`` covers every host, ``*.example.com`` covers
``example.com``, its subdomains and narrower wildcards below it; an entry without a port
covers the same host with any port; ``host:443`` covers only that port.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._model._descriptor import Limits, PluginDescriptor
from .._shared._errors import ManifestError

__all__ = ["AccessDiff", "Approval", "ConsentRequiredError", "UpgradePlan"]


class ConsentRequiredError(ManifestError):
    """A plugin's descriptor asks for more access than the operator approved.

    ``diff`` is the :class:`AccessDiff`; the message lists it and names the command that
    reviews and approves it.
    """

    def __init__(self, message: str, *, plugin_id: str, diff: AccessDiff) -> None:
        super().__init__(message, plugin_id=plugin_id)
        self.diff = diff


@dataclass(frozen=True)
class Approval:
    """Capabilities, allowed hosts and the descriptor's own sandbox limits (``None``: it sets
    none, the site's defaults apply), as approved or as a descriptor asks for them."""

    capabilities: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    limits: dict[str, int | bool] | None = None

    @classmethod
    def of(cls, descriptor: PluginDescriptor) -> Approval:
        limits = None if descriptor.limits is None else descriptor.limits.model_dump()
        return cls(tuple(descriptor.capabilities), tuple(descriptor.allowed_hosts), limits)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Approval:
        """Parse :meth:`to_json`'s text; ``ValueError`` for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an approval is a JSON object")
        caps, hosts = data.get("capabilities"), data.get("allowedHosts")
        for value in (caps, hosts):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("an approval holds two lists of strings")
        assert isinstance(caps, list) and isinstance(hosts, list)
        limits = data.get("limits")
        if limits is not None:
            # Validated like a descriptor's [limits]: a row that does not parse is an
            # error (the caller says so), never read as "no limits approved".
            limits = Limits.model_validate(limits).model_dump()
        return cls(tuple(caps), tuple(hosts), limits)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "capabilities": list(self.capabilities),
            "allowedHosts": list(self.allowed_hosts),
        }
        if self.limits is not None:
            out["limits"] = dict(self.limits)
        return out


@dataclass(frozen=True)
class AccessDiff:
    """What a descriptor asks for compared with the approval: added and dropped entries.

    ``added_hosts`` are the requested host entries no approved entry covers (the ones that
    need consent); ``removed_hosts`` the approved entries no longer listed.
    """

    added_capabilities: tuple[str, ...]
    removed_capabilities: tuple[str, ...]
    added_hosts: tuple[str, ...]
    removed_hosts: tuple[str, ...]
    #: ``"cpu_ms 50 -> 600000"``, ``"fresh_worker true -> false"``: limits the descriptor
    #: raises above what was approved (see the module docstring).
    raised_limits: tuple[str, ...] = ()
    #: The descriptor's limits differ from the approved ones at all (lower ones included).
    limits_changed: bool = False

    @classmethod
    def between(
        cls, approved: Approval, wanted: Approval, *, default_limits: Limits | None = None
    ) -> AccessDiff:
        """``default_limits``: the site's (what a descriptor without ``[limits]`` gets)."""
        return cls(
            added_capabilities=tuple(
                c for c in wanted.capabilities if c not in approved.capabilities
            ),
            removed_capabilities=tuple(
                c for c in approved.capabilities if c not in wanted.capabilities
            ),
            added_hosts=tuple(
                h for h in wanted.allowed_hosts if not _covered(h, approved.allowed_hosts)
            ),
            removed_hosts=tuple(h for h in approved.allowed_hosts if h not in wanted.allowed_hosts),
            raised_limits=_raised_limits(approved, wanted, default_limits or Limits()),
            limits_changed=approved.limits != wanted.limits,
        )

    @property
    def escalates(self) -> bool:
        """Whether the descriptor asks for anything not approved."""
        return bool(self.added_capabilities or self.added_hosts or self.raised_limits)

    @property
    def changed(self) -> bool:
        return (
            self.escalates
            or self.limits_changed
            or bool(self.removed_capabilities or self.removed_hosts)
        )

    def lines(self) -> list[str]:
        """One line per change: ``+ capability users:read``, ``- host api.example.com``."""
        out = [f"+ capability {c}" for c in self.added_capabilities]
        out += [f"+ host {h}" for h in self.added_hosts]
        out += [f"+ limits {limit}" for limit in self.raised_limits]
        out += [f"- capability {c}" for c in self.removed_capabilities]
        out += [f"- host {h}" for h in self.removed_hosts]
        if self.limits_changed and not self.raised_limits:
            out.append("- limits lowered or left to the site's defaults")
        return out

    def summary(self) -> str:
        """The additions on one line (for error messages)."""
        parts = []
        if self.added_capabilities:
            parts.append("capabilities " + ", ".join(self.added_capabilities))
        if self.added_hosts:
            parts.append("allowed hosts " + ", ".join(self.added_hosts))
        if self.raised_limits:
            parts.append("limits " + ", ".join(self.raised_limits))
        return "; ".join(parts) or "nothing new"

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "addedCapabilities": list(self.added_capabilities),
            "removedCapabilities": list(self.removed_capabilities),
            "addedHosts": list(self.added_hosts),
            "removedHosts": list(self.removed_hosts),
            "raisedLimits": list(self.raised_limits),
        }


@dataclass(frozen=True)
class UpgradePlan:
    """What ``upgrade_plugin`` would change for one plugin (what the CLI shows to confirm)."""

    plugin_id: str
    old_version: str | None
    new_version: str
    approved: Approval | None
    wanted: Approval
    diff: AccessDiff
    old_sha256: str | None
    new_sha256: str | None

    @property
    def needs_consent(self) -> bool:
        return self.diff.escalates

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.plugin_id,
            "oldVersion": self.old_version,
            "newVersion": self.new_version,
            "approved": None if self.approved is None else self.approved.as_dict(),
            "wanted": self.wanted.as_dict(),
            "diff": self.diff.as_dict(),
            "needsConsent": self.needs_consent,
            "oldSha256": self.old_sha256,
            "newSha256": self.new_sha256,
        }

    def lines(self) -> list[str]:
        """The human-readable review: version, digests, access changes."""
        out = [f"{self.plugin_id}: version {self.old_version or '(none)'} -> {self.new_version}"]
        if self.old_sha256 != self.new_sha256 and (self.old_sha256 or self.new_sha256):
            out.append(f"  bundle sha256 {self.old_sha256 or '(none)'}")
            out.append(f"             -> {self.new_sha256 or '(none)'}")
        changes = self.diff.lines()
        out += [f"  {line}" for line in changes] or ["  access unchanged"]
        return out


def refusal(plugin_id: str, diff: AccessDiff) -> ConsentRequiredError:
    """The error for a load that asks for more than was approved."""
    return ConsentRequiredError(
        f'Plugin "{plugin_id}" now asks for more access than was approved: {diff.summary()}. '
        f"Review and approve it with: emdash plugins upgrade {plugin_id} "
        "(from Python: rt.upgrade_plugin(path, approve=True))",
        plugin_id=plugin_id,
        diff=diff,
    )


def _raised_limits(approved: Approval, wanted: Approval, defaults: Limits) -> tuple[str, ...]:
    """Limits ``wanted`` sets above what was approved (see the module docstring)."""
    if wanted.limits is None:
        return ()  # the operator's own defaults: nothing the author raised
    # Approved without [limits]: the plugin ran under the site's defaults, so those are
    # what a new [limits] table is compared with (a descriptor that adds a table of
    # higher limits takes them from the operator's hands).
    base: dict[str, int | bool] = (
        approved.limits if approved.limits is not None else defaults.model_dump()
    )
    out: list[str] = []
    for key, value in wanted.limits.items():
        old = base.get(key)
        if isinstance(value, bool) or isinstance(old, bool):
            # fresh_worker: on isolates invocations from each other; off is the weaker one.
            if old is True and value is not True:
                out.append(f"{key} true -> false")
        elif not isinstance(old, int) or value > old:
            out.append(f"{key} {old} -> {value}")
    return tuple(out)


def _covered(host: str, approved: Sequence[str]) -> bool:
    return any(_covers(pattern, host) for pattern in approved)


def _covers(pattern: str, host: str) -> bool:
    """Whether approving ``pattern`` already approved every request ``host`` allows."""
    p_name, _, p_port = pattern.partition(":")
    h_name, _, h_port = host.partition(":")
    if p_port and p_port != h_port:
        return False  # a pinned port covers only that port (an unpinned request is wider)
    if p_name == "*":
        return True
    if h_name == "*":
        return False
    if p_name.startswith("*."):
        apex = p_name[2:]
        bare = h_name[2:] if h_name.startswith("*.") else h_name
        return bare == apex or bare.endswith("." + apex)
    return p_name == h_name
