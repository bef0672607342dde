"""The admin web UI over HTTP against a real runtime: sign-in, sessions, CSRF and Origin
checks, security headers, the plugins, providers and audit pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import EmDashError
from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI, create_app

from .admin_client import ADMIN, CSP, AdminClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "admin-token-0123456789abcdef"

TRANSPORT_SOURCE = """
from emdash import define_plugin

def deliver(event, ctx):
    return None

plugin = define_plugin(hooks={"email:deliver": deliver})
"""


def transport(pid: str) -> dict[str, object]:
    return {"id": pid, "version": "1.0.0", "capabilities": ["hooks.email-transport:register"]}


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    with Runtime(":memory:", site={"name": "T", "url": "https://site.example"}) as rt:
        rt.add_plugin(EXAMPLES / "hello", trusted=True)
        rt.add_plugin(EXAMPLES / "audit-trail", trusted=True)
        rt.add_plugin(transport("mail-one"), source=TRANSPORT_SOURCE, trusted=True)
        rt.add_plugin(transport("mail-two"), source=TRANSPORT_SOURCE, trusted=True)
        yield rt


@pytest.fixture
def app(runtime: Runtime) -> EmDashASGI:
    return create_app(runtime, token=TOKEN)


@pytest.fixture
def client(app: EmDashASGI) -> AdminClient:
    c = AdminClient(app)
    assert c.sign_in(TOKEN).status_code == 303
    return c


def test_pages_redirect_to_sign_in_without_a_session(app: EmDashASGI) -> None:
    c = AdminClient(app)
    for path in ("", "plugins", "audit", "providers", "plugins/plugin-hello/settings"):
        r = c.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"] == ADMIN + "login"
    r = c.get("login")
    assert r.status_code == 200
    assert '<label for="token">API token</label>' in r.text
    assert 'id="token" name="token"' in r.text


def test_sign_in_sets_a_strict_http_only_cookie(app: EmDashASGI) -> None:
    c = AdminClient(app)
    r = c.sign_in(TOKEN)
    assert r.status_code == 303 and r.headers["location"] == ADMIN
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("emdash_admin=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert c.get("plugins").status_code == 200


def test_over_https_the_cookie_is_secure_and_host_prefixed(app: EmDashASGI) -> None:
    c = AdminClient(app, origin="https://testserver")
    cookie = c.sign_in(TOKEN).headers["set-cookie"]
    assert cookie.startswith("__Host-emdash_admin=")
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert c.get("plugins").status_code == 200


def test_a_wrong_token_signs_nobody_in(app: EmDashASGI) -> None:
    c = AdminClient(app)
    for token in ("", "nope", TOKEN + "x", TOKEN[:-1], TOKEN.upper()):
        r = c.sign_in(token)
        assert r.status_code == 401
        assert "set-cookie" not in r.headers
        assert "not this site&#x27;s API token" in r.text
    assert c.get("plugins").status_code == 303


def test_without_a_configured_token_nobody_can_sign_in(runtime: Runtime) -> None:
    c = AdminClient(create_app(runtime, token=None))
    assert "No API token is configured" in c.get("login").text
    r = c.sign_in("")
    assert r.status_code == 401 and "set-cookie" not in r.headers


def test_a_forged_cookie_is_no_session(app: EmDashASGI) -> None:
    c = AdminClient(app)
    c.cookies["emdash_admin"] = "A" * 43
    assert c.get("plugins").status_code == 303


def test_posts_need_the_session_csrf_token(client: AdminClient, runtime: Runtime) -> None:
    for form in ({}, {"_csrf": ""}, {"_csrf": client.csrf + "x"}, {"_csrf": "A" * 43}):
        r = client.request("POST", ADMIN + "plugins/plugin-hello/disable", data=form)
        assert r.status_code == 403
        assert "security token is missing or stale" in r.text
        assert runtime.get_plugin("plugin-hello").enabled
    # Another session's token is not this session's.
    other = AdminClient(client.app)
    other.sign_in(TOKEN)
    other.get("plugins")
    assert other.csrf and other.csrf != client.csrf
    r = client.request("POST", ADMIN + "plugins/plugin-hello/disable", data={"_csrf": other.csrf})
    assert r.status_code == 403 and runtime.get_plugin("plugin-hello").enabled


def test_posts_from_another_origin_are_refused(client: AdminClient, runtime: Runtime) -> None:
    client.get("plugins")
    for origin in ("https://evil.example", "http://testserver.evil.example", "null", None):
        r = client.post("plugins/plugin-hello/disable", origin=origin)
        assert r.status_code == 403, origin
        assert "Origin did not match" in r.text
        assert client.csrf not in r.text  # the refusal names no token to the other origin
        assert runtime.get_plugin("plugin-hello").enabled
    # Without Origin, a same-origin Referer is accepted (older browsers); another is not.
    r = client.post(
        "plugins/plugin-hello/disable",
        origin=None,
        headers={"referer": "https://evil.example/_emdash/admin/plugins"},
    )
    assert r.status_code == 403


def test_disable_and_enable_from_the_plugins_page(client: AdminClient, runtime: Runtime) -> None:
    page = client.get("plugins").text
    assert "Disable Audit trail</button>" in page
    r = client.post("plugins/audit-trail/disable")
    assert r.status_code == 303 and r.headers["location"] == ADMIN + "plugins"
    assert not runtime.get_plugin("audit-trail").enabled
    page = client.get("plugins").text
    assert 'role="status"' in page and "Plugin audit-trail disabled." in page
    assert "badge-disabled" in page
    # The flash shows once.
    assert "Plugin audit-trail disabled." not in client.get("plugins").text
    # The deactivate hook ran and was audited.
    audit = client.get("audit?plugin=audit-trail&kind=lifecycle&since=all").text
    assert "plugin:deactivate" in audit
    client.post("plugins/audit-trail/enable")
    assert runtime.get_plugin("audit-trail").enabled


def test_plugins_page_shows_the_trust_contract(client: AdminClient) -> None:
    page = client.get("plugins").text
    assert "<code>plugin-hello</code>" in page
    assert "<code>content:read</code>" in page
    assert "<code>content:afterSave</code>" in page
    assert "<code>recent</code>" in page
    assert "trusted" in page
    assert re.search(r"<nav aria-label=\"Admin sections\">", page)
    assert '<main id="main">' in page and "<h1>Plugins" in page


def test_session_expires_after_idle_time(client: AdminClient) -> None:
    table = client.app.admin.sessions
    now = [1000.0]
    table.clock = lambda: now[0]
    try:
        fresh = AdminClient(client.app)
        fresh.sign_in(TOKEN)
        assert fresh.get("plugins").status_code == 200
        now[0] += table.idle_s - 1
        assert fresh.get("plugins").status_code == 200  # activity restarts the idle clock
        now[0] += table.idle_s + 1
        assert fresh.get("plugins").status_code == 303
        r = fresh.post("plugins/plugin-hello/disable")
        assert r.status_code == 401 and "session has ended" in r.text
    finally:
        table.clock = __import__("time").monotonic


def test_session_expires_at_its_maximum_age_even_when_busy(client: AdminClient) -> None:
    table = client.app.admin.sessions
    now = [5000.0]
    table.clock = lambda: now[0]
    try:
        fresh = AdminClient(client.app)
        fresh.sign_in(TOKEN)
        while now[0] + table.idle_s / 2 < 5000.0 + table.max_age_s:
            now[0] += table.idle_s / 2
            assert fresh.get("").status_code == 200
        now[0] = 5000.0 + table.max_age_s + 1  # well inside the idle window, past the age
        assert fresh.get("").status_code == 303
    finally:
        table.clock = __import__("time").monotonic


def test_sign_out_ends_the_session(client: AdminClient) -> None:
    client.get("plugins")
    saved = dict(client.cookies)
    r = client.post("logout")
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    client.cookies = saved  # a copy of the cookie kept by an attacker is dead too
    assert client.get("plugins").status_code == 303


def test_every_page_sends_the_security_headers(client: AdminClient) -> None:
    responses = [
        client.get("login"),
        client.get(""),
        client.get("plugins"),
        client.get("providers"),
        client.get("audit"),
        client.get("audit?plugin=nope&kind=%3Cscript%3E&since=zzz"),
        client.get("no-such-page"),
        client.get("plugins/plugin-hello/settings"),
        client.get("plugins/plugin-hello/pages/nothing"),
        client.get("static/admin.css"),
        client.post("plugins/plugin-hello/disable", origin="https://evil.example"),
        AdminClient(client.app).get("plugins"),
        client.request("PUT", ADMIN + "plugins"),
    ]
    for r in responses:
        assert r.headers["content-security-policy"] == CSP, r.url
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "DENY"
    assert responses[-1].status_code == 405
    css = responses[9]
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_pages_carry_no_script_and_no_inline_style(client: AdminClient) -> None:
    for path in ("", "plugins", "providers", "audit?since=all"):
        page = client.get(path).text
        assert "<script" not in page and " style=" not in page and "on" + "click" not in page


def test_providers_page_selects_an_exclusive_provider(
    client: AdminClient, runtime: Runtime
) -> None:
    page = client.get("providers").text
    assert "<legend><code>email:deliver</code></legend>" in page
    assert "mail-one" in page and "mail-two" in page
    r = client.post("providers", {"hook": "email:deliver", "provider": "mail-two"})
    assert r.status_code == 303
    assert runtime.selected_provider("email:deliver") == "mail-two"
    assert "Provider of email:deliver: mail-two." in client.get("providers").text
    # Only an offered provider can be chosen.
    client.post("providers", {"hook": "email:deliver", "provider": "plugin-hello"})
    assert runtime.selected_provider("email:deliver") == "mail-two"
    client.post("providers", {"hook": "not:a-hook", "provider": "mail-one"})
    assert "not offered" in client.get("providers").text
    client.post("providers", {"hook": "email:deliver", "provider": ""})
    assert runtime.selected_provider("email:deliver") is None


def test_audit_log_filters_and_figures(client: AdminClient, runtime: Runtime) -> None:
    runtime.invoke_route("plugin-hello", "recent")
    page = client.get("audit?plugin=plugin-hello&kind=route&since=all").text
    assert "<code>recent</code>" in page
    assert '<svg viewBox="0 0 640' in page and '<title id="chart-title">' in page
    assert 'aria-labelledby="chart-title"' in page
    assert '<option value="plugin-hello" selected>' in page
    none = client.get("audit?plugin=plugin-hello&outcome=timeout&since=all").text
    assert "No audit entries match these filters." in none
    # Unknown filter values are ignored, never echoed.
    odd = client.get("audit?kind=%3Cscript%3Ealert(1)%3C/script%3E").text
    assert "<script" not in odd and "alert(1)" not in odd


def test_unknown_plugin_pages_are_404(client: AdminClient) -> None:
    for path in (
        "plugins/nope/pages/x",
        "plugins/%3Cscript%3E/settings",
        "plugins/plugin-hello/pages/x",
    ):
        r = client.get(path)
        assert r.status_code == 404
        assert "<script" not in r.text
    r = client.post("plugins/nope/disable")
    assert r.status_code == 404


def test_repeated_failed_sign_ins_are_throttled(app: EmDashASGI) -> None:
    from emdash._asgi._admin_app import MAX_SIGN_IN_FAILURES, SIGN_IN_WINDOW_S

    now = [100.0]
    app.admin.sessions.clock = lambda: now[0]
    app.admin.throttled_delay_s = 0.0
    c = AdminClient(app)
    for _ in range(MAX_SIGN_IN_FAILURES):
        assert c.sign_in("wrong-token-0123456789").status_code == 401
    r = c.sign_in("wrong-token-0123456789")
    assert r.status_code == 429 and "set-cookie" not in r.headers
    assert "Too many failed sign-ins" in r.text
    now[0] += SIGN_IN_WINDOW_S + 1
    assert c.sign_in("wrong-token-0123456789").status_code == 401


def test_a_throttled_address_still_signs_in_with_the_right_token(app: EmDashASGI) -> None:
    # Behind a proxy the server does not trust, every client shares the proxy's address:
    # a stranger's wrong guesses must not lock the administrator out.
    from emdash._asgi._admin_app import MAX_SIGN_IN_FAILURES

    app.admin.throttled_delay_s = 0.0
    stranger, administrator = AdminClient(app), AdminClient(app)  # one address: the proxy's
    for _ in range(MAX_SIGN_IN_FAILURES + 3):
        stranger.sign_in("wrong-token-0123456789")
    assert stranger.sign_in("wrong-token-0123456789").status_code == 429
    r = administrator.sign_in(TOKEN)
    assert r.status_code == 303 and "set-cookie" in r.headers
    assert administrator.get("plugins").status_code == 200
    # Throttled wrong tokens are not counted further: the tracked list stays bounded.
    assert len(app.admin._recent_failures("127.0.0.1")) == MAX_SIGN_IN_FAILURES


def test_a_query_with_too_many_fields_is_ignored_not_a_crash(client: AdminClient) -> None:
    # parse_qsl(max_num_fields=50) raises ValueError: it escaped as a bare 500 (no CSP,
    # no X-Frame-Options) from the server instead of a page.
    query = "&".join(f"f{i}=1" for i in range(60))
    signed_out = AdminClient(client.app)
    for c, path in ((client, "audit"), (client, "plugins"), (signed_out, "login")):
        r = c.get(path + "?" + query)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CSP


def test_an_unexpected_failure_is_a_page_with_the_security_headers(
    client: AdminClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store unavailable")

    monkeypatch.setattr(runtime, "audit_query", broken)
    r = client.get("audit")
    assert r.status_code == 500
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert "store unavailable" not in r.text and "server log" in r.text


def test_nobody_without_the_token_can_push_the_admin_out(app: EmDashASGI) -> None:
    # The session table is bounded (the oldest session goes when it is full): only a
    # sign-in with the right token may create a row, or a stranger could sign the
    # administrator out by filling it. Failed sign-ins from many addresses create none.
    import anyio
    import httpx

    from emdash._asgi._admin_app import MAX_SIGN_IN_FAILURES

    app.admin.throttled_delay_s = 0.0
    admin = AdminClient(app)
    assert admin.sign_in(TOKEN).status_code == 303
    table = app.admin.sessions

    async def stranger(n: int) -> int:
        transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{n % 250}", 1000 + n))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.post(
                ADMIN + "login",
                data={"token": f"guess-{n}-0123456789"},
                headers={"origin": "http://testserver"},
            )
            return r.status_code

    async def flood() -> list[int]:
        return [await stranger(n) for n in range(table.max_sessions + 10)]

    statuses = anyio.run(flood)
    assert set(statuses) <= {401, 429}
    assert len(table) == 1
    assert admin.get("plugins").status_code == 200

    # One address throttled by its own failures does not throttle the administrator's.
    async def hammer() -> list[int]:
        return [await stranger(250) for _ in range(MAX_SIGN_IN_FAILURES + 2)]

    assert anyio.run(hammer)[-1] == 429
    assert AdminClient(app).sign_in(TOKEN).status_code == 303


BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "Safe\u202etxt.exe" reads as "Safeexe.txt"

SPOOF_SOURCE = """
from emdash import blocks as bk, define_plugin

def admin(route_ctx, ctx):
    return bk.response([bk.context("ok")])

def fail(route_ctx, ctx):
    raise ValueError("looks fine\\u202e\\u0007 reversed")

plugin = define_plugin(routes={"admin": admin, "fail": fail})
"""


def test_descriptor_and_audit_text_cannot_reorder_or_hide_what_the_admin_reads() -> None:
    # Block Kit text refuses bidirectional overrides and controls ("a label must read as
    # what it is"); descriptor text (plugin name, page labels, widget titles) is refused at
    # load for them too; plugin error text in the audit log is not checked anywhere, so
    # the page shows its controls as U+FFFD.
    clean = {
        "id": "spoof",
        "version": "1.0.0",
        "name": "Harmless tool",
        "admin": {
            "pages": [{"path": "/main", "label": "Main page"}],
            "widgets": [{"id": "w", "title": "Widget title"}],
        },
    }
    for where, bad in (
        ("name", {"name": f"Harmless{BIDI} \u2066tool\u0008"}),
        ("admin.pages.0.label", {"admin": {"pages": [{"path": "/m", "label": f"M{BIDI}p"}]}}),
        ("admin.widgets.0.title", {"admin": {"widgets": [{"id": "w", "title": f"W{BIDI}"}]}}),
    ):
        with Runtime(":memory:") as rt, pytest.raises(EmDashError) as caught:
            rt.add_plugin({**clean, **bad}, source=SPOOF_SOURCE, trusted=True)
        assert f"{where}:" in str(caught.value) and "U+" in str(caught.value)
    with Runtime(":memory:", site={"name": "T", "url": "https://site.example"}) as rt:
        rt.add_plugin(clean, source=SPOOF_SOURCE, trusted=True)
        with pytest.raises(EmDashError):
            rt.invoke_route("spoof", "fail")
        c = AdminClient(create_app(rt, token=TOKEN))
        assert c.sign_in(TOKEN).status_code == 303
        audit = c.get("audit").text
    assert "looks fine" in audit
    for char in (BIDI, "\u0007"):
        assert char not in audit


def test_audit_log_pages_with_older_and_newer_links(client: AdminClient, runtime: Runtime) -> None:
    for i in range(130):
        runtime.store.audit_records.record("mail-two", "cron", f"tick-{i}", "ok", 1.0)
    first = client.get("audit?plugin=mail-two&kind=cron&since=all").text
    assert "<code>tick-129</code>" in first and "<code>tick-30</code>" in first
    assert "<code>tick-29</code>" not in first and "Newer entries" not in first
    assert "100 of 130 matching entries shown" in first
    older = re.search(r'<a rel="next" href="([^"]+)">Older entries</a>', first)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "plugin=mail-two" in link and "kind=cron" in link and "before=" in link
    second = client.get(link.removeprefix(ADMIN)).text
    assert "<code>tick-29</code>" in second and "<code>tick-0</code>" in second
    assert "<code>tick-30</code>" not in second and "Older entries" not in second
    newer = re.search(r'<a rel="prev" href="([^"]+)">Newer entries</a>', second)
    assert newer is not None
    back = client.get(newer.group(1).replace("&amp;", "&").removeprefix(ADMIN)).text
    assert "<code>tick-129</code>" in back and "<code>tick-30</code>" in back
    assert "<code>tick-29</code>" not in back
    # A cursor that is not a row id is ignored: the newest page.
    assert "<code>tick-129</code>" in client.get("audit?kind=cron&before=1e9&since=all").text
