"""Capability enforcement at the bridge: every gated method is refused without its capability."""

from __future__ import annotations

import pytest

from emdash._bridge._dispatch import METHODS, Bridge
from emdash._model._descriptor import PluginDescriptor
from emdash._shared._errors import CapabilityError, HttpAccessError

GATED = {method: cap for method, (cap, _) in METHODS.items() if cap is not None}


def test_gates_match_the_spec() -> None:
    assert GATED == {
        "content/get": "content:read",
        "content/list": "content:read",
        "content/create": "content:write",
        "content/update": "content:write",
        "content/delete": "content:write",
        "content/createMany": "content:write",
        "content/updateMany": "content:write",
        "content/deleteMany": "content:write",
        "taxonomy/list": "taxonomies:read",
        "taxonomy/terms": "taxonomies:read",
        "taxonomy/entryTerms": "taxonomies:read",
        "media/get": "media:read",
        "media/list": "media:read",
        "media/upload": "media:write",
        "media/delete": "media:write",
        "users/get": "users:read",
        "users/getByEmail": "users:read",
        "users/list": "users:read",
        "email/send": "email:send",
        "http/fetch": "network:request",
    }
    ungated = {m for m, (cap, _) in METHODS.items() if cap is None}
    assert all(m.startswith(("kv/", "storage/", "cron/")) or m == "log" for m in ungated)


@pytest.mark.parametrize(("method", "capability"), sorted(GATED.items()))
def test_denied_without_the_capability_before_params_are_read(
    bridge: Bridge, method: str, capability: str
) -> None:
    with pytest.raises(CapabilityError) as info:
        bridge.dispatch("bare", method, {})
    assert info.value.capability == capability
    assert info.value.plugin_id == "bare"
    assert str(info.value) == (
        f'Missing capability: {capability} (plugin "bare" must declare "{capability}" in its '
        "descriptor's capabilities to do this)"
    )


def _bridge_with(bridge: Bridge, caps: list[str]) -> tuple[Bridge, str]:
    d = PluginDescriptor.from_dict({"id": "probe", "capabilities": caps})
    return Bridge(store=bridge.store, plugins=lambda pid: d, http=bridge.http), "probe"


@pytest.mark.parametrize(
    ("caps", "method", "missing"),
    [
        (["content:read"], "content/create", "content:write"),
        (["content:read"], "taxonomy/list", "taxonomies:read"),
        (["taxonomies:read"], "content/get", "content:read"),
        (["media:read"], "media/upload", "media:write"),
        (["users:read"], "email/send", "email:send"),
        (["hooks.email-transport:register"], "email/send", "email:send"),
        (["content:write"], "users/get", "users:read"),
    ],
)
def test_one_capability_does_not_grant_another(
    bridge: Bridge, caps: list[str], method: str, missing: str
) -> None:
    b, pid = _bridge_with(bridge, caps)
    with pytest.raises(CapabilityError) as info:
        b.dispatch(pid, method, {})
    assert info.value.capability == missing


def test_deprecated_aliases_are_checked_by_canonical_name(bridge: Bridge, server: str) -> None:
    b, pid = _bridge_with(bridge, ["network:fetch"])
    # Passes the gate (then fails on the allowlist, which is empty).
    with pytest.raises(HttpAccessError) as info:
        b.dispatch(pid, "http/fetch", {"url": f"{server}/echo"})
    assert str(info.value).startswith('Plugin "probe" has no allowed hosts configured.')


def test_unrestricted_network_implies_restricted(bridge: Bridge, server: str) -> None:
    assert bridge.dispatch("webany", "http/fetch", {"url": f"{server}/echo"})["status"] == 200
