"""Plugin routes over HTTP: a plain ASGI app any host can mount.

``create_app(runtime, token=...)`` serves ``/_emdash/api/plugins/<plugin id>/<route>`` for
every plugin route (the route name may itself contain ``/``). It behaves like EmDash's
route endpoint (docs/plugin-reference.md, routes):

- every method reaches the same handler (GET, HEAD, POST, PUT, PATCH, DELETE);
- routes are **private by default**: a request needs ``Authorization: Bearer <token>``
  (compared in constant time). Without a configured token no private route is reachable.
  The token stands for a site administrator, so it satisfies any ``permission``; routes see
  ``user = None`` (a machine token has no user, as in EmDash). ``public=True`` routes skip
  authentication;
- input is the JSON body for POST/PUT/PATCH (invalid or missing: ``None``) and the query
  string otherwise (a repeated key becomes a list); input that is JSON but breaks the
  exact-JSON rule (``sandbox._jsonrule``: integers beyond int64, nesting past 64 levels,
  lone surrogates, NaN) is a 400 ``INVALID_INPUT`` before any plugin runs: the client's
  fault, so no audit row and no error log line name the plugin;
- replies are ``{"success": true, "data": ...}`` or
  ``{"success": false, "error": {"code", "message"}}``; a :class:`PluginRouteError` passes
  its code, message and status through; ``INTERNAL_ERROR`` (and any plugin crash) is masked
  as "Plugin route error" and logged to the plugin's own logger (``ctx.log``'s,
  ``emdash.plugins.<id>`` by default) with the message and traceback; EmDash answers a crash
  with 400 ``ROUTE_ERROR`` and its message (docs/design.md says why we do not); other emdash
  errors, sandbox limits included, are 400 ``ROUTE_ERROR`` with their message (docs/plugin-reference.md, responses and errors);
- ``Cache-Control: private, no-store`` on everything except a successful GET/HEAD of a
  public route that declares ``cache_control``.

Mounting: the app accepts the full path, or the path below a mount at ``/_emdash``
(``Mount("/_emdash", app)`` in Starlette, ``app.mount("/_emdash", ...)`` in FastAPI).
Handlers run in worker threads, so a slow plugin never blocks the event loop.

Fairness: a call takes a turn at its plugin's admission gate (``rt.admission``, see
:mod:`emdash._runtime._admission`) *in the event loop*, before a server thread (anyio's
pool, 40 threads by default) or a plugin worker is taken; callers waiting for a turn hold
no thread. A plugin whose queue is full, or whose caller waited ``queue_timeout_ms``
without a turn, answers ``503 PLUGIN_BUSY`` with ``Retry-After``; other plugins' routes
are not affected. A waiting client that disconnects leaves the queue. The wait needs an
asyncio loop (uvicorn, hypercorn's asyncio worker); under another async library a waiting
caller holds a thread, as before.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from sandbox._jsonrule import NotExactJSON, exact_copy

from .._shared._errors import (
    ConflictError,
    EmDashError,
    InvalidCursorError,
    PluginBusyError,
    PluginError,
    PluginRouteError,
    SandboxNotAvailableError,
    SandboxUnavailableError,
    clean_text,
)
from ._admin_app import AdminApp, admin_target
from ._io import (
    BadInput,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    check_input,
    header,
    parse_json_body,
    parse_query,
    read_body,
    request_headers,
    send_json,
)

if TYPE_CHECKING:
    from .._runtime._admission import AdmissionSlot
    from .._runtime._runtime import Runtime

__all__ = ["EmDashASGI", "create_app"]

log = logging.getLogger("emdash.asgi")

PREFIXES = ("/_emdash/api/plugins/", "/api/plugins/")
DEFAULT_MAX_BODY = 1024 * 1024
_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_HEADER_RE = re.compile(r"^[\x20-\x7e]{1,512}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE"})
_ALLOW = b"GET, HEAD, POST, PUT, PATCH, DELETE"
_NO_STORE = (b"cache-control", b"private, no-store")
MASKED_MESSAGE = "Plugin route error"


def create_app(
    runtime: Runtime,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    on_plugin_toggled: Callable[[str, bool], None] | None = None,
    unloaded_plugins: Sequence[Mapping[str, Any]] = (),
) -> EmDashASGI:
    """Build the ASGI app serving ``runtime``'s plugin routes.

    ``token`` is the API token private routes require (``None``: private routes always
    answer 401). ``max_body_bytes`` caps request bodies (413 beyond it).
    ``on_plugin_toggled(plugin_id, enabled)`` runs (in a worker thread) after the admin UI
    enabled or disabled a plugin, so the host can record it where it keeps its plugin list
    (``emdash serve`` writes ``emdash.toml``); an ``EmDashError`` or ``OSError`` it raises
    is shown to the admin. ``unloaded_plugins``: configured plugins the host left out
    because they did not load (``{"id", "status", "error", "hint"}`` each), shown on the
    admin UI's plugins page.
    """
    if token is not None and len(token) < 16:
        raise ValueError("The API token must be at least 16 characters long")
    return EmDashASGI(
        runtime,
        token=token,
        max_body_bytes=max_body_bytes,
        on_plugin_toggled=on_plugin_toggled,
        unloaded_plugins=unloaded_plugins,
    )


class EmDashASGI:
    """The ASGI 3 application; see the module docstring for the HTTP contract."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        token: str | None,
        max_body_bytes: int,
        on_plugin_toggled: Callable[[str, bool], None] | None = None,
        unloaded_plugins: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.runtime = runtime
        self._token = token.encode() if token is not None else None
        self.max_body_bytes = max_body_bytes
        # Plugins the host left out (id -> why, and what fixes it), for the answer to an
        # authenticated call of one of their routes.
        self._left_out = {
            str(item.get("id")): (str(item.get("error", "")), str(item.get("hint", "")))
            for item in unloaded_plugins
        }
        # The admin web UI under /_emdash/admin/ (signs in with the same token).
        self.admin = AdminApp(
            runtime,
            token=self._token,
            on_plugin_toggled=on_plugin_toggled,
            unloaded_plugins=unloaded_plugins,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    # -- one HTTP request -----------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = admin_target(scope)
        if admin is not None:
            await self.admin(scope, receive, send, *admin)
            return
        method = str(scope.get("method", "GET")).upper()
        head = method == "HEAD"
        target = _split_path(scope)
        if target is None:
            await _error(send, 404, "NOT_FOUND", "Not found", head=head)
            return
        plugin_id, route = target
        if method not in _BODY_METHODS and method not in _QUERY_METHODS:
            await _error(
                send,
                405,
                "METHOD_NOT_ALLOWED",
                f"Method {method} not allowed",
                extra=[(b"allow", _ALLOW)],
            )
            return
        meta = self._route_meta(plugin_id, route)
        if meta is None:
            left_out = self._left_out.get(plugin_id)
            if left_out is not None and self._authenticated(scope):
                # The operator (or a client with the token) learns why, and what fixes it.
                why, fix = left_out
                await _error(
                    send,
                    503,
                    "PLUGIN_NOT_LOADED",
                    f"Plugin {plugin_id} is not loaded: {why[:400]} (fix: {fix[:200]})",
                    head=head,
                )
                return
            # Names the plugin and route the client asked for (from its own path), and no
            # more: whether the plugin exists, is disabled, is left out, or which private
            # routes it has is not for an unauthenticated client (Runtime.invoke_route
            # tells the host).
            shown = f"{_shown(plugin_id, 100)}/{_shown(route, 200)}"
            await _error(send, 404, "NOT_FOUND", f'Plugin route not found: "{shown}"', head=head)
            return
        public = meta.get("public") is True
        if not public and not self._authenticated(scope):
            await _error(
                send,
                401,
                "UNAUTHORIZED",
                "Authentication required",
                head=head,
                extra=[(b"www-authenticate", b"Bearer")],
            )
            return
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge:
            await _error(
                send,
                413,
                "PAYLOAD_TOO_LARGE",
                f"Request body too large (limit {self.max_body_bytes} bytes)",
                head=head,
            )
            return
        client = scope.get("client")
        try:
            route_input = (
                parse_json_body(body)
                if method in _BODY_METHODS
                else parse_query(scope.get("query_string", b""))
            )
            request = {
                "url": _url(scope),
                "method": method,
                "headers": request_headers(scope),
                # The direct peer only: forwarded-for headers are client-controlled unless a
                # proxy the operator trusts set them, and the runtime validates the shape.
                "ip": client[0] if client else None,
            }
            # The path comes decoded from the server (a %ED%A0%80 can become a lone
            # surrogate): everything handed to the plugin obeys the same rule as the body.
            check_input(request, "The request")
        except BadInput as exc:
            await _error(send, 400, "INVALID_INPUT", str(exc)[:500], head=head)
            return
        # Admission comes after the body is read (bounded by max_body_bytes, in the loop):
        # a client trickling its body must not sit on one of the plugin's turns meanwhile.
        try:
            slot = await self._admit(plugin_id, receive)
        except PluginBusyError as exc:
            status, error = describe_error(exc, plugin_id, route)
            await _reply_error(send, status, error, head=head, extra=_retry_after(exc))
            return
        if slot is None:
            return  # the client went away while it waited: nobody to answer
        call = functools.partial(
            self.runtime.invoke_route,
            plugin_id,
            route,
            input=route_input,
            request=request,
            user=None,
            admitted=slot,
        )
        try:
            # Not abandoned on cancellation: the turn is released only once the call ended.
            data = await anyio.to_thread.run_sync(call)
        except Exception as exc:  # every failure becomes an envelope; none escapes the app
            plugin_log = self.runtime.bridge.logger_for(plugin_id)
            status, error = describe_error(exc, plugin_id, route, plugin_log=plugin_log)
            extra = _retry_after(exc)
            await _reply_error(send, status, error, head=head, extra=extra)
            return
        finally:
            slot.release()
        cache = meta.get("cache_control")
        headers = [_NO_STORE]
        # The value comes from plugin code: only plain printable ASCII may become a header
        # (a CR/LF would let a plugin inject headers such as Set-Cookie).
        if (
            public
            and method in ("GET", "HEAD")
            and isinstance(cache, str)
            and _HEADER_RE.match(cache)
        ):
            headers = [(b"cache-control", cache.encode("ascii"))]
        try:
            # exact_copy: json.dumps would write {1: .., "1": ..} with a duplicate key.
            data = exact_copy(data)
            await send_json(
                send, 200, {"success": True, "data": data}, headers=headers, include_body=not head
            )
        except (TypeError, ValueError, NotExactJSON) as exc:
            log.error(
                "Plugin %s route %s returned data that is not JSON: %s", plugin_id, route, exc
            )
            await _error(send, 500, "INTERNAL_ERROR", MASKED_MESSAGE, head=head)

    async def _admit(self, plugin_id: str, receive: Receive) -> AdmissionSlot | None:
        """A turn at the plugin's gate, waited for in the event loop; ``None`` if the
        client disconnected first. :class:`PluginBusyError` when the queue is full or the
        wait reached the plugin's ``queue_timeout_ms``."""
        gate = self.runtime.admission.gate(plugin_id)
        slot = gate.try_enter()
        if slot is not None:
            return slot
        waiter = gate.enqueue()  # PluginBusyError at once when the queue is full
        if waiter.granted:
            return gate.granted_slot(waiter)
        if not _on_asyncio():
            # No thread-safe wake-up for this loop: wait in a thread (the old behaviour).
            await anyio.to_thread.run_sync(waiter.event.wait, gate.policy.queue_timeout_ms / 1000)
            slot = gate.withdraw(waiter, timed_out=True)
            if slot is None:
                raise gate.timeout_error()
            return slot
        gone = anyio.Event()
        try:
            with anyio.move_on_after(gate.policy.queue_timeout_ms / 1000):
                async with anyio.create_task_group() as tg:

                    async def watch_disconnect() -> None:
                        # The body has been read: the next message is the client going away.
                        while (await receive())["type"] != "http.disconnect":
                            pass
                        gone.set()
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch_disconnect)
                    await gate.enter_async(waiter)
                    tg.cancel_scope.cancel()
        except BaseException:
            # Cancelled from outside (server shutdown...): leave the queue, and give back a
            # turn granted meanwhile, or it would be lost to the plugin for good.
            lost = gate.withdraw(waiter, timed_out=False)
            if lost is not None:
                lost.release()
            raise
        # Granted meanwhile (even just as the wait was cancelled): the turn is ours.
        slot = gate.withdraw(waiter, timed_out=not gone.is_set())
        if gone.is_set():
            if slot is not None:
                slot.release()
            return None
        if slot is None:
            raise gate.timeout_error()
        return slot

    def _route_meta(self, plugin_id: str, route: str) -> dict[str, Any] | None:
        """The route's settings, or ``None`` for an unknown/disabled plugin or route."""
        if not _ID_RE.match(plugin_id):
            return None
        try:
            plugin = self.runtime.get_plugin(plugin_id)
        except EmDashError:
            return None
        if plugin is None or getattr(plugin, "enabled", True) is not True:
            return None
        routes = (getattr(plugin, "definition_meta", None) or {}).get("routes") or {}
        meta = routes.get(route)
        return meta if isinstance(meta, dict) else None

    def _authenticated(self, scope: Scope) -> bool:
        if self._token is None:
            return False
        value = header(scope, b"authorization")
        if value is None:
            return False
        scheme, _, presented = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant-time comparison: the token must not leak one byte at a time.
        return hmac.compare_digest(presented.strip().encode("latin-1"), self._token)


def describe_error(
    exc: BaseException, plugin_id: str, route: str, *, plugin_log: logging.Logger | None = None
) -> tuple[int, dict[str, Any]]:
    """Map an exception from ``invoke_route`` to ``(status, {"code", "message"[, "details"]})``.

    ``details`` is kept for ``VALIDATION_ERROR`` (which fields failed, never values) and any
    other non-internal :class:`PluginRouteError` that carries them; EmDash drops them, which
    leaves clients guessing. What the reply masks (a plugin's crash or
    ``INTERNAL_ERROR``) is logged to ``plugin_log``, the plugin's own logger (this module's
    when not given), so an operator following one plugin's log sees why its route failed.
    """
    own_log = plugin_log or log
    if isinstance(exc, PluginRouteError):
        status = exc.status if type(exc.status) is int and 400 <= exc.status <= 599 else 400
        if exc.code == "INTERNAL_ERROR":
            own_log.error("[plugin:%s] route %s: internal error: %s", plugin_id, route, exc.message)
            return status, _body("INTERNAL_ERROR", MASKED_MESSAGE)
        return status, _body(exc.code, exc.message, exc.details)
    if isinstance(exc, PluginError):
        # The plugin crashed: its message and traceback are for the operator's log only
        # (a sandboxed plugin's text was cleaned of control characters when it crossed).
        own_log.error(
            "[plugin:%s] route %s raised: %s\n%s",
            plugin_id,
            route,
            exc.message,
            exc.traceback_text or "",
        )
        return 500, _body("INTERNAL_ERROR", MASKED_MESSAGE)
    if isinstance(exc, PluginBusyError):
        # No log line per refusal (a flood must not become a log flood): the gate warns
        # once a minute, and rt.admission.stats() counts them.
        return 503, _body(exc.code, exc.public_message)
    if isinstance(exc, InvalidCursorError):
        return 400, _body("INVALID_CURSOR", exc.message)
    if isinstance(exc, ConflictError):
        # A concurrent change won (docs/integrity.md); nothing of the call was kept. The
        # contended scope names the plugin's keys: the operator's log gets it, not the client.
        own_log.warning("[plugin:%s] route %s: %s", plugin_id, route, exc.message)
        return 409, _body(
            "CONFLICT",
            "The request conflicted with a concurrent change and was not applied; retry it",
        )
    if isinstance(exc, (SandboxUnavailableError, SandboxNotAvailableError)):
        # While a plugin is backed off every call is refused at once: one log line per
        # plugin per minute, not one per refused call (a flood must not become a log flood).
        if _UNAVAILABLE_LOG.due(plugin_id):
            log.error("Plugin %s route %s: sandbox unavailable: %s", plugin_id, route, exc.message)
        return 503, _body("SANDBOX_UNAVAILABLE", exc.message)
    if isinstance(exc, EmDashError):
        return 400, _body("ROUTE_ERROR", exc.message)
    log.error("Plugin %s route %s: unexpected host error", plugin_id, route, exc_info=exc)
    return 500, _body("INTERNAL_ERROR", MASKED_MESSAGE)


def _shown(text: str, limit: int) -> str:
    """Client text made safe to echo: a lone surrogate (a decoded %ED%A0%80 in the path)
    would make the UTF-8 reply fail, control characters could forge log lines."""
    return clean_text(text.encode("utf-8", "backslashreplace").decode("utf-8"), limit=limit)


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _retry_after(exc: BaseException) -> list[tuple[bytes, bytes]] | None:
    """A ``Retry-After`` header for refusals that know when to retry: a full admission
    queue (``retry_after``) or a plugin whose sandbox is backed off (``retry_after_s``)."""
    seconds: object = getattr(exc, "retry_after", None)
    if seconds is None:
        seconds = getattr(exc, "retry_after_s", None)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    # Whole seconds, rounded up: a client that retries at 0 would hit the same refusal.
    return [(b"retry-after", str(max(1, math.ceil(seconds))).encode("ascii"))]


class _OncePerWindow:
    """Whether a per-plugin message is due: at most once per ``window_s`` per plugin."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._window_s:
                return False
            if len(self._last) > 10_000:  # bounded: plugin ids are few, but never trust that
                self._last.clear()
            self._last[key] = now
            return True


_UNAVAILABLE_LOG = _OncePerWindow(60.0)


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        out["details"] = details
    return out


def _split_path(scope: Scope) -> tuple[str, str] | None:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    for prefix in PREFIXES:
        if path.startswith(prefix):
            plugin_id, _, route = path[len(prefix) :].partition("/")
            return (plugin_id, route) if plugin_id and route else None
    return None


def _url(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    host = header(scope, b"host")
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    if root and not path.startswith(root + "/"):
        path = root + path  # servers that strip the mount point from `path`
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


async def _error(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    head: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await _reply_error(send, status, _body(code, message), head=head, extra=extra)


async def _reply_error(
    send: Send,
    status: int,
    error: dict[str, Any],
    *,
    head: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = {"success": False, "error": error}
    await send_json(
        send, status, payload, headers=[_NO_STORE, *(extra or [])], include_body=not head
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    # The runtime's lifetime belongs to whoever created it; we only acknowledge the events.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
