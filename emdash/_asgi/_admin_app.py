"""The admin web UI under ``/_emdash/admin/``: sign-in, plugins, Block Kit pages, settings,
audit log, exclusive-hook providers. Served by :class:`emdash._asgi._app.EmDashASGI`.

Security model (deny by default):

- **Sign-in** with the site's API token (the same one private routes take), compared in
  constant time. The right token always signs in; after ``MAX_SIGN_IN_FAILURES`` failures
  in ``SIGN_IN_WINDOW_S`` a client address's *wrong* tokens are answered 429, each after
  ``THROTTLED_DELAY_S`` (see :meth:`AdminApp._login` for why a lockout would be worse).
  It starts a server-side session (:mod:`._admin_session`); the cookie is
  ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, and ``Secure`` (with the ``__Host-``
  prefix) when the request came over https. Without a configured token nobody can sign in.
- **Every POST** must carry the session's CSRF token (``_csrf``, constant-time compare) and
  come from this origin: ``Origin`` (or, without it, ``Referer``) must equal
  ``<scheme>://<Host>``. A POST with neither is refused. ``Referrer-Policy: same-origin``
  keeps browsers sending a real ``Origin`` on our own forms.
- **Every signed-in GET** (it may run plugin code: a page's ``page_load``, the dashboard's
  widgets) must be a top-level navigation from this origin or the address bar, as far as
  Fetch Metadata says (``Sec-Fetch-Site`` ``same-origin``/``none``, ``Sec-Fetch-Dest``
  ``document``): ``SameSite=Strict`` does not keep the cookie off a same-origin ``<img>``
  nor off a link from a sibling subdomain.
- **Every response** carries a strict Content-Security-Policy (no script at all, styles and
  images from this server only, forms post only here, no framing), ``nosniff``,
  ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``.
- **Plugin output** reaches the page only through :mod:`._admin_html`'s renderer, which
  escapes everything and drops unknown types; the host has already validated it
  (``rt.admin.interact`` raises rather than return an invalid response).
- A form or button the page showed is remembered server-side (its plugin, page, action
  id, block id, field types, the options of every choice); the browser names it by a
  random key. A POST naming an unknown key is refused, so a crafted POST cannot reach an
  action the page never offered, and a select/radio/checkbox value the form did not offer
  is refused before the plugin is called (:mod:`._admin_forms`).

Plugin calls block (a sandboxed plugin runs in a worker), so they run in a thread; the
admission gate is taken by the runtime's route call, as for any caller.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import anyio.to_thread

from .._shared._errors import EmDashError
from ._admin_forms import NOT_OFFERED, convert, read_form
from ._admin_html import BlockRenderer, esc, layout
from ._admin_pages import (
    AUDIT_KINDS,
    AUDIT_OUTCOMES,
    AUDIT_WINDOWS,
    audit_body,
    login_body,
    plugin_url,
    plugins_body,
    providers_body,
)
from ._admin_session import AdminSession, SessionTable
from ._io import BodyTooLarge, Receive, Scope, Send, header, read_body

if TYPE_CHECKING:
    from .._admin import AdminService
    from .._runtime._runtime import Runtime

__all__ = ["ADMIN_PREFIXES", "AdminApp", "admin_target"]

log = logging.getLogger("emdash.admin")

ADMIN_PREFIXES = ("/_emdash/admin", "/admin")
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
MAX_FORM_BYTES = 256 * 1024
MAX_FORM_FIELDS = 1000
AUDIT_PAGE = 100  # audit entries per page
_CURSOR_RE = re.compile(r"[0-9]{1,18}")
# Failed sign-ins allowed per client address in SIGN_IN_WINDOW_S; past that a wrong token
# from that address is answered 429 after THROTTLED_DELAY_S (the right one still signs in).
MAX_SIGN_IN_FAILURES = 10
SIGN_IN_WINDOW_S = 300.0
THROTTLED_DELAY_S = 1.0
_MAX_TRACKED_CLIENTS = 1024
_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_STATIC = {"admin.css": "text/css; charset=utf-8"}

T = TypeVar("T")
SETTINGS_PAGE = "emdash:settings"
_STALE_FORM = (
    "error",
    "That form is no longer known (the page was reloaded or you signed in again); the page "
    "has been reloaded, submit it again.",
)


def admin_target(scope: Scope) -> tuple[str, str] | None:
    """``(base, rest)`` for an admin request: ``base`` is the admin root as the browser
    sees it (ends in ``/``), ``rest`` the path below it. ``None`` for other paths."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    rel = path[len(root) :] if root and path.startswith(root + "/") else path
    for prefix in ADMIN_PREFIXES:
        if rel == prefix or rel.startswith(prefix + "/"):
            return root + prefix + "/", rel[len(prefix) + 1 :]
    return None


class _Request:
    """What one admin request needs: method, path below the admin root, form, session."""

    def __init__(self, scope: Scope, base: str, rest: str) -> None:
        self.scope = scope
        self.base = base
        self.rest = rest
        self.method = str(scope.get("method", "GET")).upper()
        self.https = scope.get("scheme") == "https"
        self.form: dict[str, list[str]] = {}
        self.session: AdminSession | None = None
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        try:
            self.query = {k: v for k, v in parse_qsl(query, max_num_fields=50)}
        except ValueError:
            # More fields than any admin page reads: nothing of it is used.
            self.query = {}

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[-1] if values else None


class AdminApp:
    """The admin UI's request handler (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        token: bytes | None,
        on_plugin_toggled: Callable[[str, bool], None] | None = None,
        unloaded_plugins: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.runtime = runtime
        self._token = token
        # Configured plugins the host left out (they did not load): shown, never run.
        self._unloaded = [dict(u) for u in unloaded_plugins]
        # Where the host records an enable/disable (emdash serve: emdash.toml); without it
        # the next start would load the plugin in its configured state again.
        self._on_toggled = on_plugin_toggled
        self.sessions = SessionTable()
        self._failures: dict[str, list[float]] = {}
        #: How long a throttled address's wrong token waits for its 429 (tests set 0).
        self.throttled_delay_s = THROTTLED_DELAY_S

    @property
    def admin(self) -> AdminService:
        return self.runtime.admin

    # -- dispatch ---------------------------------------------------------------------

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, base: str, rest: str
    ) -> None:
        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self._handle(scope, receive, tracked, base, rest)
        except Exception:
            # Whatever failed, the client gets a page with the security headers (the
            # server's own 500 has no CSP and no X-Frame-Options) and no detail.
            log.exception("Admin request %s failed", str(scope.get("path", ""))[:200])
            if not started:
                body = (
                    b"<!doctype html><title>Server error</title><p>The admin could not "
                    b"answer this request; the server log has the details.</p>"
                )
                await _send(send, 500, body, b"text/html; charset=utf-8")

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, base: str, rest: str
    ) -> None:
        req = _Request(scope, base, rest)
        if req.method not in ("GET", "HEAD", "POST"):
            await self._page(send, req, 405, "Method not allowed", "<p>Use GET or POST.</p>")
            return
        if rest.startswith("static/"):
            await self._static(send, req, rest[len("static/") :])
            return
        if not str(scope.get("path", "")).startswith(base) and rest == "":
            await _redirect(send, base)  # "/_emdash/admin" -> "/_emdash/admin/"
            return
        req.session = self.sessions.get(_cookie(scope, self._cookie_name(req)))
        if req.method == "POST":
            if not _same_origin(scope):
                await self._page(
                    send,
                    req,
                    403,
                    "Request refused",
                    "<p>This form was not sent from this site's admin (its Origin did not "
                    "match), so it was refused. Open the admin page again and resubmit.</p>",
                    # No navigation, so no CSRF token: this answer goes to another origin's
                    # request (a sibling subdomain's form carries the SameSite cookie).
                    signed_in=False,
                )
                return
            try:
                req.form = await _read_form(scope, receive)
            except BodyTooLarge:
                await self._page(
                    send, req, 413, "Request too large", "<p>The form is too large.</p>"
                )
                return
        if rest == "login":
            await self._login(send, req)
            return
        if req.session is None:
            if req.method == "POST":
                await self._page(
                    send,
                    req,
                    401,
                    "Signed out",
                    f'<p>Your session has ended. <a href="{esc(base)}login">Sign in</a> again '
                    "and resubmit.</p>",
                )
            else:
                await _redirect(send, base + "login")
            return
        if req.method != "POST" and not _navigated_from_here(scope):
            # A signed-in GET runs plugin code (a page's page_load, the dashboard's widgets)
            # and a plugin may do anything then. SameSite=Strict keeps the cookie off
            # cross-site requests, not off same-origin subresources (a plugin's <img> whose
            # src is another plugin's admin page) nor off links from sibling subdomains.
            await self._page(
                send,
                req,
                403,
                "Open this page from the admin",
                "<p>This admin page was requested by another page or site (not opened from "
                "this admin), so it was not shown and no plugin ran. "
                f'<a href="{esc(base)}">Open the admin</a> and navigate to it from there.</p>',
                signed_in=False,
            )
            return
        if req.method == "POST" and not req.session.check_csrf(req.field("_csrf")):
            await self._page(
                send,
                req,
                403,
                "Request refused",
                "<p>This form's security token is missing or stale, so it was refused. "
                "Reload the page and submit it again.</p>",
            )
            return
        await self._route(send, req)

    async def _route(self, send: Send, req: _Request) -> None:
        rest, post = req.rest, req.method == "POST"
        parts = [unquote(p) for p in rest.split("/")] if rest else []
        if not parts and not post:
            await self._dashboard(send, req)
        elif parts == ["logout"] and post:
            assert req.session is not None
            self.sessions.drop(req.session)
            await _redirect(send, req.base + "login", cookie=self._clear_cookie(req))
        elif parts == ["plugins"] and not post:
            await self._plugins(send, req)
        elif parts == ["providers"]:
            await self._providers(send, req)
        elif parts == ["audit"] and not post:
            await self._audit(send, req)
        elif (
            len(parts) == 3 and parts[0] == "plugins" and parts[2] in ("enable", "disable") and post
        ):
            await self._toggle(send, req, parts[1], parts[2] == "enable")
        elif len(parts) == 3 and parts[0] == "plugins" and parts[2] == "settings":
            await self._settings(send, req, parts[1])
        elif len(parts) >= 4 and parts[0] == "plugins" and parts[2] == "pages":
            await self._plugin_page(send, req, parts[1], "/" + "/".join(parts[3:]))
        elif len(parts) == 4 and parts[0] == "plugins" and parts[2] == "widgets" and post:
            await self._plugin_page(send, req, parts[1], "widget:" + parts[3])
        else:
            await self._page(send, req, 404, "Not found", "<p>There is no such admin page.</p>")

    # -- sign-in ----------------------------------------------------------------------

    def _cookie_name(self, req: _Request) -> str:
        # __Host-: the browser accepts it only with Secure, Path=/ and no Domain, so no
        # other host or plain-http page can plant or shadow it.
        return "__Host-emdash_admin" if req.https else "emdash_admin"

    def _set_cookie(self, req: _Request, value: str) -> bytes:
        secure = "; Secure" if req.https else ""
        return (
            f"{self._cookie_name(req)}={value}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()
        )

    def _clear_cookie(self, req: _Request) -> bytes:
        secure = "; Secure" if req.https else ""
        return f"{self._cookie_name(req)}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}".encode()

    async def _login(self, send: Send, req: _Request) -> None:
        can = self._token is not None
        if req.method != "POST":
            if req.session is not None:
                await _redirect(send, req.base)
                return
            await self._page(
                send, req, 200, "Sign in", login_body(req.base, can_sign_in=can), signed_in=False
            )
            return
        client = req.scope.get("client")
        address = str(client[0]) if client else "?"
        presented = (req.field("token") or "").strip().encode("utf-8", "surrogateescape")
        # The token is checked before the throttle, and the right one always signs in. A
        # lockout (refusing even the right token while an address is throttled) lets anyone
        # lock the administrator out: behind a proxy the server is not told to trust, every
        # client has the proxy's address, so ten wrong guesses by a stranger would shut the
        # admin for everyone. What the throttle gave up is not what protects the token: an
        # API token is at least 16 characters (emdash.toml refuses shorter), and a random
        # one of 32 hex digits is one of 2**128; even 16 hex digits (2**64) outlast an
        # attacker guessing a million times a second for a century (under 2**52 tries). The
        # throttle only makes guessing slow and visible: a throttled address's wrong tokens
        # wait THROTTLED_DELAY_S (a sleeping coroutine, no thread) and get a 429.
        right = self._token is not None and hmac.compare_digest(presented, self._token)
        if not right and self._throttled(address):
            await anyio.sleep(self.throttled_delay_s)
            await self._page(
                send,
                req,
                429,
                "Sign in",
                login_body(req.base, can_sign_in=can),
                signed_in=False,
                notice=(
                    "error",
                    "Too many failed sign-ins from this address; check the token and try "
                    "again in a few minutes.",
                ),
            )
            return
        if not right:
            self._failed(address)
            await self._page(
                send,
                req,
                401,
                "Sign in",
                login_body(req.base, can_sign_in=can),
                signed_in=False,
                notice=("error", "That token is not this site's API token."),
            )
            return
        if req.session is not None:
            self.sessions.drop(req.session)  # a fresh session id at every sign-in
        cookie, _session = self.sessions.create()
        await _redirect(send, req.base, cookie=self._set_cookie(req, cookie))

    def _recent_failures(self, address: str) -> list[float]:
        now = self.sessions.clock()
        recent = [t for t in self._failures.get(address, ()) if now - t < SIGN_IN_WINDOW_S]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return recent

    def _throttled(self, address: str) -> bool:
        return len(self._recent_failures(address)) >= MAX_SIGN_IN_FAILURES

    def _failed(self, address: str) -> None:
        # Bounded: a flood from many addresses forgets the oldest-tracked ones first.
        if address not in self._failures and len(self._failures) >= _MAX_TRACKED_CLIENTS:
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(address, []).append(self.sessions.clock())

    # -- pages ------------------------------------------------------------------------

    async def _dashboard(self, send: Send, req: _Request) -> None:
        assert req.session is not None
        sections = []
        for info in self.runtime.plugins():
            if not info.enabled:
                continue
            for widget in info.descriptor.admin.widgets:
                wid = str(widget.id)
                title = getattr(widget, "title", None) or wid
                size = getattr(widget, "size", None) or "full"
                load = {"type": "page_load", "page": f"widget:{wid}"}
                inner, toast = await self._respond(
                    req,
                    info.plugin_id,
                    f"widget:{wid}",
                    functools.partial(self.admin.interact, info.plugin_id, load, user=None),
                    action=plugin_url(req.base, info.plugin_id, "widgets", quote(wid, safe="")),
                    heading=3,
                )
                note = f'<p class="toast-inline">{esc(toast[1])}</p>' if toast else ""
                hid = f"w-{esc(info.plugin_id)}-{esc(wid)}"
                sections.append(
                    f'<section class="widget widget-{esc(size)}" aria-labelledby="{hid}">'
                    f'<h2 id="{hid}">{esc(title)} <span class="muted">· {esc(info.plugin_id)}</span></h2>'
                    f"{note}{inner}</section>"
                )
        body = (
            f'<div class="widgets">{"".join(sections)}</div>'
            if sections
            else "<p>No enabled plugin has a dashboard widget.</p>"
        )
        await self._page(send, req, 200, "Dashboard", body, active="dashboard")

    async def _plugins(self, send: Send, req: _Request) -> None:
        assert req.session is not None
        rows = []
        for info in self.runtime.plugins():
            d = info.descriptor
            data = dict(info)
            rows.append(
                {
                    **data,
                    "name": d.name,
                    "allowed_hosts": list(d.allowed_hosts),
                    "pages": [{"path": p.path, "label": p.label} for p in d.admin.pages],
                    "settings": bool(d.admin.settings_schema),
                }
            )
        await self._page(
            send,
            req,
            200,
            "Plugins",
            plugins_body(req.base, req.session.csrf, rows, self._unloaded),
            active="plugins",
        )

    async def _toggle(self, send: Send, req: _Request, plugin_id: str, enable: bool) -> None:
        assert req.session is not None
        if self._plugin(plugin_id) is None:
            await self._no_plugin(send, req, plugin_id)
            return
        call = self.runtime.enable_plugin if enable else self.runtime.disable_plugin
        word = "enabled" if enable else "disabled"
        try:
            await _in_thread(call, plugin_id)
        except EmDashError as exc:
            req.session.flash = ("error", str(exc))
            await _redirect(send, req.base + "plugins")
            return
        req.session.flash = ("success", f"Plugin {plugin_id} {word}.")
        if self._on_toggled is not None:
            try:
                await _in_thread(self._on_toggled, plugin_id, enable)
            except (EmDashError, OSError) as exc:
                req.session.flash = (
                    "error",
                    f"Plugin {plugin_id} {word} until the site restarts: recording it "
                    f"failed ({exc}); run: emdash plugins {'enable' if enable else 'disable'} "
                    f"{plugin_id}",
                )
        await _redirect(send, req.base + "plugins")

    async def _providers(self, send: Send, req: _Request) -> None:
        assert req.session is not None
        hooks = self.runtime.exclusive_hooks()
        if req.method == "POST":
            hook = req.field("hook") or ""
            provider = req.field("provider") or ""
            info = hooks.get(hook)
            if info is None or (provider and provider not in (info.get("providers") or [])):
                req.session.flash = (
                    "error",
                    "That provider is not offered for that hook; choose one from the list.",
                )
            else:
                try:
                    await _in_thread(self.runtime.select_provider, hook, provider or None)
                except EmDashError as exc:
                    req.session.flash = ("error", str(exc))
                else:
                    req.session.flash = ("success", f"Provider of {hook}: {provider or 'none'}.")
            await _redirect(send, req.base + "providers")
            return
        body = providers_body(req.base, req.session.csrf, hooks)
        await self._page(send, req, 200, "Exclusive hook providers", body, active="providers")

    async def _audit(self, send: Send, req: _Request) -> None:
        q = req.query
        plugin_ids = [p.plugin_id for p in self.runtime.plugins()]
        filters = {
            "plugin": q.get("plugin", "") if q.get("plugin", "") in plugin_ids else "",
            "kind": q.get("kind", "") if q.get("kind", "") in AUDIT_KINDS else "",
            "outcome": q.get("outcome", "") if q.get("outcome", "") in AUDIT_OUTCOMES else "",
            "since": q.get("since", "24h") if q.get("since", "24h") in AUDIT_WINDOWS else "24h",
        }
        seconds = AUDIT_WINDOWS[filters["since"]][1]
        since = None
        if seconds is not None:
            # Stored timestamps are fixed-width ISO-8601 UTC, so they compare as strings.
            moment = datetime.now(UTC) - timedelta(seconds=seconds)
            since = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        # Keyset cursors from the "older"/"newer" links: row ids, anything else ignored.
        cursor = {
            name: int(q[name])
            for name in ("before", "after")
            if _CURSOR_RE.fullmatch(q.get(name, ""))
        }
        if len(cursor) > 1:
            cursor = {}
        page = await _in_thread(
            functools.partial(
                self.runtime.audit_query,
                plugin_id=filters["plugin"] or None,
                kind=filters["kind"] or None,
                outcome=filters["outcome"] or None,
                since=since,
                limit=AUDIT_PAGE,
                **cursor,
            )
        )
        body = audit_body(req.base, page, plugin_ids=plugin_ids, filters=filters)
        await self._page(send, req, 200, "Audit log", body, active="audit")

    async def _settings(self, send: Send, req: _Request, plugin_id: str) -> None:
        """The settings page the host generates from the plugin's ``settingsSchema`` (Block
        Kit from ``rt.admin.settings_page``); a submission goes to ``save_settings``, never
        to the plugin."""
        assert req.session is not None
        info = self._plugin(plugin_id)
        if info is None or not info.enabled or not info.descriptor.admin.settings_schema:
            await self._no_plugin(send, req, plugin_id)
            return
        action = plugin_url(req.base, plugin_id, "settings")
        refused: tuple[str, str] | None = None
        call: Callable[[], dict[str, Any]] = functools.partial(self.admin.settings_page, plugin_id)
        if req.method == "POST":
            spec = req.session.forms.get(req.field("_key") or "")
            if spec is None or spec.get("plugin") != plugin_id or spec.get("page") != SETTINGS_PAGE:
                refused = _STALE_FORM
            else:
                # The submitted text as typed: save_settings converts and checks it against
                # the schema, so a bad number is a field error, not a silently unset value.
                values = {
                    aid: (req.form.get(f"f.{aid}") or [""])[-1]
                    for aid in (spec.get("fields") or {})
                }
                call = functools.partial(self.admin.save_settings, plugin_id, values)
        body, toast = await self._respond(
            req, plugin_id, SETTINGS_PAGE, call, action=action, heading=2
        )
        title = f"{info.descriptor.name or plugin_id}: settings"
        await self._page(send, req, 200, title, body, active="plugins", notice=refused or toast)

    async def _plugin_page(self, send: Send, req: _Request, plugin_id: str, page: str) -> None:
        """A plugin's Block Kit page (GET: page_load; POST: the form or button it showed)."""
        assert req.session is not None
        info = self._plugin(plugin_id)
        declared: dict[str, str] = {}
        if info is not None and info.enabled:
            declared = {p.path: p.label for p in info.descriptor.admin.pages}
            declared.update(
                {
                    f"widget:{w.id}": (getattr(w, "title", None) or w.id)
                    for w in info.descriptor.admin.widgets
                }
            )
        if info is None or page not in declared:
            await self._no_plugin(send, req, plugin_id)
            return
        if page.startswith("widget:"):
            action = plugin_url(req.base, plugin_id, "widgets", quote(page[7:], safe=""))
        else:
            action = plugin_url(req.base, plugin_id, "pages", quote(page.lstrip("/")))
        interaction: dict[str, Any] = {"type": "page_load", "page": page}
        refused: tuple[str, str] | None = None
        form_state: dict[int, dict[str, Any]] = {}
        call: Callable[[], dict[str, Any]] | None = None
        if req.method == "POST":
            spec = req.session.forms.get(req.field("_key") or "")
            if spec is None or spec.get("plugin") != plugin_id or spec.get("page") != page:
                refused = _STALE_FORM
            else:
                interaction, errors = _interaction(spec, req.form)
                refresh = req.field("_refresh")
                shown = req.session.shown_page(plugin_id, page, spec.get("render"))
                if (errors or refresh) and shown is not None:
                    # Not sent to the plugin: the page it last answered is shown again,
                    # this form refilled with what was submitted and marked.
                    notice: dict[str, str] | None = None
                    if errors:
                        count = len(errors)
                        notice = {
                            "message": f"Not sent to {plugin_id}: {count} "
                            + ("field needs" if count == 1 else "fields need")
                            + " attention.",
                            "type": "error",
                        }
                    if isinstance(spec.get("form"), int):
                        # Refilled with everything typed, fields that do not apply too.
                        typed = read_form(spec, req.form, keep_inapplicable=True)[0]
                        form_state[spec["form"]] = {
                            "values": typed,
                            "errors": errors,
                            "add": refresh[4:] if refresh and refresh.startswith("add:") else None,
                        }
                    answer = {"blocks": shown, "toast": notice}
                    call = functools.partial(dict, answer)
                elif errors or refresh:
                    refused = _STALE_FORM  # the page it belongs to is no longer remembered
                    interaction = {"type": "page_load", "page": page}
        if call is None:
            call = functools.partial(self.admin.interact, plugin_id, interaction, user=None)
        body, toast = await self._respond(
            req, plugin_id, page, call, action=action, heading=2, form_state=form_state
        )
        title = f"{info.descriptor.name or plugin_id}: {declared[page]}"
        await self._page(send, req, 200, title, body, active="plugins", notice=refused or toast)

    async def _respond(
        self,
        req: _Request,
        plugin_id: str,
        page: str,
        call: Callable[[], dict[str, Any]],
        *,
        action: str,
        heading: int,
        form_state: dict[int, dict[str, Any]] | None = None,
    ) -> tuple[str, tuple[str, str] | None]:
        """Run ``call`` (an ``rt.admin`` method answering ``{"blocks", "toast"}``) in a
        thread; return the rendered blocks and the toast."""
        session = req.session
        assert session is not None
        try:
            response = await _in_thread(call)
        except EmDashError as exc:
            # The message names the plugin (and, for an invalid response, the block path).
            return (
                f'<p class="bk-banner bk-banner-error" role="alert">{esc(str(exc))}</p>',
                None,
            )
        except Exception:
            log.exception("Admin interaction with plugin %s failed", plugin_id)
            return (
                f'<p class="bk-banner bk-banner-error" role="alert">Plugin {esc(plugin_id)} '
                "could not answer (the server log has the details).</p>",
                None,
            )

        def remember(spec: dict[str, Any]) -> str:
            key = secrets.token_urlsafe(12)
            session.remember_form(key, spec)
            return key

        render = secrets.token_urlsafe(9)
        renderer = BlockRenderer(
            csrf=session.csrf,
            action=action,
            remember=remember,
            context={"plugin": plugin_id, "page": page, "render": render},
            heading=heading,
            form_state=form_state,
        )
        blocks = response.get("blocks") if isinstance(response, dict) else None
        if isinstance(blocks, list):
            session.remember_page(plugin_id, page, render, blocks)
        html = renderer.render(blocks)
        toast = response.get("toast") if isinstance(response, dict) else None
        notice = None
        if isinstance(toast, dict) and isinstance(toast.get("message"), str):
            kind = toast.get("type")
            notice = (kind if kind in ("success", "error", "info") else "info", toast["message"])
        return html, notice

    # -- helpers ----------------------------------------------------------------------

    def _plugin(self, plugin_id: str) -> Any:
        if not _ID_RE.match(plugin_id):
            return None
        try:
            return self.runtime.get_plugin(plugin_id)
        except EmDashError:
            return None

    async def _no_plugin(self, send: Send, req: _Request, plugin_id: str) -> None:
        await self._page(
            send,
            req,
            404,
            "Not found",
            f"<p>Plugin {esc(plugin_id[:100])} has no such admin page, or it is not installed or "
            f'is disabled. See the <a href="{esc(req.base)}plugins">plugins page</a>.</p>',
        )

    async def _page(
        self,
        send: Send,
        req: _Request,
        status: int,
        title: str,
        body: str,
        *,
        active: str = "",
        notice: tuple[str, str] | None = None,
        signed_in: bool = True,
    ) -> None:
        session = req.session if signed_in else None
        if session is not None and notice is None and session.flash is not None:
            notice, session.flash = session.flash, None
        page = layout(
            base=req.base,
            title=title,
            body=body,
            csrf=session.csrf if session is not None else None,
            active=active,
            notice=notice,
        )
        await _send(
            send, status, page.encode(), b"text/html; charset=utf-8", head=req.method == "HEAD"
        )

    async def _static(self, send: Send, req: _Request, name: str) -> None:
        kind = _STATIC.get(name)
        if kind is None or req.method == "POST":
            await _send(send, 404, b"Not found", b"text/plain; charset=utf-8")
            return
        data = resources.files("emdash._asgi").joinpath("static", name).read_bytes()
        await _send(send, 200, data, kind.encode(), head=req.method == "HEAD", cache=b"max-age=300")


def _interaction(
    spec: dict[str, Any], form: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The Block Kit interaction for a remembered form/button and the submitted fields,
    and the field errors that keep it from the plugin (:func:`._admin_forms.read_form`)."""
    out: dict[str, Any] = {"type": spec["kind"], "action_id": spec.get("action_id")}
    errors: dict[str, str] = {}
    if isinstance(spec.get("block_id"), str):
        out["block_id"] = spec["block_id"]
    if spec["kind"] == "form_submit":
        out["values"], errors = read_form(spec, form)
    elif "input" in spec:
        out["value"] = convert(spec["input"], form.get("value"))
        choices = spec.get("choices")
        if isinstance(choices, list):
            sent = out["value"] if isinstance(out["value"], list) else [out["value"]]
            if any(v != "" and v not in choices for v in sent):
                errors[str(spec.get("action_id"))] = NOT_OFFERED
    elif spec.get("value") is not None:
        out["value"] = spec["value"]
    return out, errors


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args))


def _cookie(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _navigated_from_here(scope: Scope) -> bool:
    """Whether a GET is a top-level page load from this origin or the address bar, as
    far as Fetch Metadata tells: ``Sec-Fetch-Site`` ``same-origin``/``none`` and
    ``Sec-Fetch-Dest`` ``document``. Browsers that predate these headers send neither; for
    them SameSite=Strict and the renderer's rule on image paths (nothing under the admin)
    remain the guards."""
    site = header(scope, b"sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return False
    dest = header(scope, b"sec-fetch-dest")
    return dest is None or dest.strip().lower() == "document"


def _same_origin(scope: Scope) -> bool:
    """Whether a POST comes from this origin (``Origin``, else ``Referer``; neither: no)."""
    host = header(scope, b"host")
    if not host:
        return False
    expected = f"{scope.get('scheme', 'http')}://{host}".lower()
    origin = header(scope, b"origin")
    if origin is None or origin == "null":
        referer = header(scope, b"referer")
        if referer is None or origin == "null":
            return False
        try:
            parts = urlsplit(referer)
        except ValueError:
            return False
        origin = f"{parts.scheme}://{parts.netloc}"
    return hmac.compare_digest(origin.lower().encode("latin-1"), expected.encode("latin-1"))


async def _read_form(scope: Scope, receive: Receive) -> dict[str, list[str]]:
    body = await read_body(scope, receive, MAX_FORM_BYTES)
    kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    form: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:
        return {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


async def _send(
    send: Send,
    status: int,
    body: bytes,
    kind: bytes,
    *,
    head: bool = False,
    cache: bytes | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        *[
            (k, cache) if cache is not None and k == b"cache-control" else (k, v)
            for k, v in SECURITY_HEADERS
        ],
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _redirect(send: Send, location: str, *, cookie: bytes | None = None) -> None:
    extra = [(b"location", location.encode("latin-1", "replace"))]
    if cookie is not None:
        extra.append((b"set-cookie", cookie))
    await _send(send, 303, b"", b"text/plain; charset=utf-8", extra=extra)
