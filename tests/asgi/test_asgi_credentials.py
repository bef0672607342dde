"""Inbound credential hygiene: credential-shaped request headers never reach a plugin route.

Real ASGI app, real runtime, the probe plugin natively and in a sandbox worker (the
``runtime`` fixture is parametrised over both), through a *public* route: no token needed,
so anything an anonymous client sends would reach plugin code.
"""

from __future__ import annotations

from emdash.asgi import EmDashASGI

from .conftest import API, call

CREDENTIALS = {
    "x-api-key": "k-123",
    "x-auth-token": "t-123",
    "x-csrf-token": "c-123",
    "x-xsrf-token": "x-123",
    "x-amz-security-token": "amz-123",
    "x-goog-api-key": "g-123",
    "ocp-apim-subscription-key": "az-123",
    "private-token": "gl-123",
    "x-session-id": "s-123",
    "x-client-secret": "cs-123",
    "x-hub-signature-256": "sha256=abc",
    "x-access-key": "ak-123",
    "api_key": "u-123",
    "cookie": "sid=1",
    "cf-access-client-id": "cf-123",
}
PLAIN = {"x-trace": "t1", "accept-language": "fr", "x-requested-with": "fetch"}


def test_credential_shaped_headers_do_not_reach_a_public_route(app: EmDashASGI) -> None:
    r = call(app, "GET", f"{API}/probe/public-echo", token=None, headers={**CREDENTIALS, **PLAIN})
    assert r.status_code == 200
    seen = r.json()["data"]["headers"]
    leaked = {name for name in seen if name in CREDENTIALS}
    assert leaked == set()
    for value in CREDENTIALS.values():
        assert value not in str(seen)
    for name, value in PLAIN.items():
        assert seen[name] == value


def test_private_routes_do_not_see_them_either(app: EmDashASGI) -> None:
    # The host token authenticates the caller; neither it nor other credentials are the
    # plugin's business.
    r = call(app, "GET", f"{API}/probe/echo", headers={"x-api-key": "k", "x-trace": "t"})
    assert r.status_code == 200
    seen = r.json()["data"]["headers"]
    assert "x-api-key" not in seen and "authorization" not in seen
    assert seen["x-trace"] == "t"
