"""The bridge: the one place where a plugin's service calls are checked and executed.

``Bridge.dispatch(plugin_id, method, params)`` answers every ``ctx`` call, for native
plugins (called directly) and sandboxed ones (called with each RPC from the worker) alike,
so both modes see the same behaviour and the same error texts. For each call, in order:

1. the method must be one of the catalogue (``Unknown bridge method: <m>``);
2. ``params`` is rebuilt from exact JSON types with depth and size caps
   (:func:`emdash._bridge._params.plain_params`): it is hostile input;
3. the plugin is looked up by the **host-known** id the caller was created for; nothing
   the plugin sends is ever used to pick whose data is touched;
4. one subrequest is charged to the invocation's :class:`CallBudget` (``log`` excepted
   within its own per-invocation line cap, charged past it; ``http/fetch`` pays for each
   further redirect hop too);
5. the capability is checked against the descriptor's canonical, implication-closed list
   (``Missing capability: <cap>``);
6. the parameters are validated with the texts of spec/sandbox-contract.md §4.4 and the
   service runs, scoped by the plugin id.

Content, media, users and taxonomy methods live in :mod:`emdash._bridge._cms`.

The content-write fence (EmDash's ``beforeContentWrite``): a host may install one callable,
:attr:`Bridge.before_content_write`, that sees every content write (create, update, delete
and their batch forms) after the checks above and the collection name, and before anything
is written; reads never reach it. It refuses a write by raising, typically a
:class:`PluginRouteError` such as ``("MEDIA_USAGE_ACTIVATION_IN_PROGRESS", ..., 503)``: the
plugin gets that error (a sandboxed plugin too, rebuilt from the wire) and may catch it; a
route that lets it escape answers over HTTP with its code and status. A fence that fails with
anything but an emdash error refuses the write as ``CONTENT_WRITE_CHECK_FAILED`` (503): a
guard that cannot decide must not let the write through.

Quotas: KV and storage writes are checked against the plugin's stored bytes/rows quotas
by the store (:mod:`emdash._store._quotas`; ``QuotaExceededError``, which sandboxed
plugins can catch like native ones); ``log`` lines past the plugin's
``log_bytes_per_minute`` are dropped by :attr:`Bridge.log_window`, never failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._shared._errors import (
    BridgeError,
    CapabilityError,
    EmailNotConfiguredError,
    EmDashError,
    PluginRouteError,
    clean_text,
)
from . import _cms as cms
from ._budget import LOG_LINE_MAX_BYTES, CallBudget, LogWindow
from ._params import Params, plain_params

if TYPE_CHECKING:
    from .._model._descriptor import PluginDescriptor
    from .._store import Store
    from ._http import HttpClient

__all__ = ["METHODS", "Bridge", "CallBudget", "ContentWrite", "ContentWriteFence"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
NOT_DECLARED = (
    "Storage collection not declared: {name} (declare it under [storage] in the plugin descriptor)"
)
EMAIL_NOT_CONFIGURED = "Email is not configured. No email provider is available."


class CronService(Protocol):
    """What the bridge needs from the cron scheduler (scoped by the plugin id it passes)."""

    def schedule(self, plugin_id: str, name: str, schedule: str, data: Any) -> Any: ...
    def cancel(self, plugin_id: str, name: str) -> Any: ...
    def list(self, plugin_id: str) -> Any: ...


class EmailService(Protocol):
    """What the bridge needs from the email pipeline."""

    def is_available(self) -> bool: ...
    def send(
        self, message: dict[str, Any], *, source: str = ..., deadline: float | None = ...
    ) -> None: ...


Handler = Callable[["Bridge", "PluginDescriptor", Params, "CallBudget | None"], Any]


@dataclass(frozen=True)
class ContentWrite:
    """One content write a plugin is about to make through the bridge, as the
    ``before_content_write`` fence sees it.

    ``method`` is the bridge method (``content/create``, ``content/update``,
    ``content/delete``, ``content/createMany``, ``content/updateMany``,
    ``content/deleteMany``); ``ids`` the items an update or delete targets (``()`` for
    creates); ``count`` how many items the call writes. Everything but ``plugin_id`` (the
    host-known caller) comes from the plugin and is not yet validated beyond the collection
    name: use it to decide, never to trust.
    """

    plugin_id: str
    method: str
    collection: str
    ids: tuple[str, ...]
    count: int


# Called before each content write; refuses it by raising (see the module docstring).
ContentWriteFence = Callable[[ContentWrite], None]

CONTENT_WRITE_CHECK_FAILED = "CONTENT_WRITE_CHECK_FAILED"


class Bridge:
    """Answers plugin service calls. See the module docstring for the order of checks.

    ``plugins`` maps a plugin id to its :class:`PluginDescriptor` (raising if unknown);
    ``http`` performs ``http/fetch``; ``cron`` and ``email`` are optional services;
    ``logger`` is the parent of the per-plugin loggers (``emdash.plugins`` by default).
    ``log_window`` caps each plugin's log bytes per minute (by default with the
    ``log_bytes_per_minute`` quota of ``store.quotas``). ``before_content_write`` is the
    content-write fence (the module docstring; the attribute may be replaced at any time).
    """

    def __init__(
        self,
        *,
        store: Store,
        plugins: Callable[[str], PluginDescriptor],
        http: HttpClient,
        cron: CronService | None = None,
        email: EmailService | None = None,
        site: dict[str, Any] | None = None,
        logger: logging.Logger | None = None,
        log_window: LogWindow | None = None,
        before_content_write: ContentWriteFence | None = None,
    ) -> None:
        self.store = store
        self.before_content_write = before_content_write
        self.http = http
        self.cron = cron
        self.email = email
        self.site = dict(site or {})
        self._plugins = plugins
        self._logger = logger or logging.getLogger("emdash.plugins")
        self.log_window = log_window or LogWindow(
            lambda pid: store.quotas.for_plugin(pid).log_bytes_per_minute
        )

    def dispatch(
        self,
        plugin_id: str,
        method: str,
        params: Any,
        *,
        budget: CallBudget | None = None,
    ) -> Any:
        """Run one service call for ``plugin_id`` and return plain JSON data."""
        entry = METHODS.get(method) if type(method) is str else None
        if entry is None:
            shown = method[:200] if type(method) is str else type(method).__name__
            raise BridgeError(f"Unknown bridge method: {shown}", plugin_id=plugin_id)
        capability, handler = entry
        data = plain_params(params, plugin_id)
        plugin = self._plugin(plugin_id)
        if budget is not None and method != "log":
            budget.charge(plugin.id)
        if capability is not None and not plugin.has(capability):
            raise CapabilityError(capability, plugin_id=plugin.id)
        if method not in REPLAY_SAFE:
            # Deny by default: a call that may act outside the database (HTTP, email, or
            # any method not known to stay inside it) makes the invocation one that is
            # never re-run on a conflict (docs/integrity.md).
            self.store.mark_effect()
        return handler(self, plugin, Params(data, plugin.id), budget)

    def _plugin(self, plugin_id: str) -> PluginDescriptor:
        try:
            plugin = self._plugins(plugin_id)
        except EmDashError:
            raise
        except Exception:
            raise BridgeError(f"Unknown plugin: {plugin_id}", plugin_id=plugin_id) from None
        if plugin.id != plugin_id:  # a misbehaving lookup must not switch scopes
            raise BridgeError(f"Unknown plugin: {plugin_id}", plugin_id=plugin_id)
        return plugin

    def logger_for(self, plugin_id: str) -> logging.Logger:
        return self._logger.getChild(plugin_id)

    def check_content_write(
        self, plugin: PluginDescriptor, method: str, collection: str, p: Params
    ) -> None:
        """Run the content-write fence, if any, for one write; raises to refuse it."""
        fence = self.before_content_write  # one read: a concurrent swap sees one or the other
        if fence is None:
            return
        ids, count = _write_targets(method, p)
        try:
            fence(ContentWrite(plugin.id, method, collection, ids, count))
        except EmDashError:
            raise  # the host's structured refusal, as it raised it
        except Exception:
            # Fail closed, and keep the host's error text (it may name its database) out of
            # the plugin's reach: the operator's log gets it with the traceback.
            self._logger.exception(
                "The before_content_write fence failed on %s %s by plugin %s; the write is "
                "refused. Fix the host's fence.",
                method,
                collection,
                plugin.id,
            )
            raise PluginRouteError(
                CONTENT_WRITE_CHECK_FAILED,
                "Unable to verify that content writes are allowed; try again later",
                503,
            ) from None


def _write_targets(method: str, p: Params) -> tuple[tuple[str, ...], int]:
    """``(ids, count)`` of a content write, read leniently: validation comes after."""
    if method in ("content/update", "content/delete"):
        target = p.value("id")
        return ((target,) if type(target) is str else ()), 1
    if method == "content/deleteMany":
        ids = p.value("ids")
        found = ids if type(ids) is list else []
        return tuple(i for i in found if type(i) is str), len(found)
    items = p.value("items")
    found = items if type(items) is list else []
    if method == "content/updateMany":
        targets = (i.get("id") for i in found if type(i) is dict)
        return tuple(t for t in targets if type(t) is str), len(found)
    if method == "content/createMany":
        return (), len(found)
    return (), 1


# --- KV and storage (no capability) -------------------------------------------------------


def _kv_get(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.kv_entries.get(plugin.id, p.req_str("key"))


def _kv_set(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> None:
    b.store.kv_entries.set(plugin.id, p.req_str("key"), p.value("value"))


def _kv_increment(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    by = p.value("by") if p.has("by") else 1
    return b.store.kv_entries.increment(plugin.id, p.req_str("key"), by)


def _kv_compare_and_set(
    b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None
) -> bool:
    # expected / new absent or null: the key is absent / is to be deleted.
    return b.store.kv_entries.compare_and_set(
        plugin.id, p.req_str("key"), p.value("expected"), p.value("new")
    )


def _kv_delete(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> bool:
    return bool(b.store.kv_entries.delete(plugin.id, p.req_str("key")))


def _kv_list(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    # EmDash's kv.list(prefix) answers a bare list; with limit or cursor (an extension) it
    # answers one page, {items, hasMore, cursor?}. Both are bounded in bytes by the store.
    prefix = p.opt_str("prefix") or ""
    if p.has("limit") or p.has("cursor"):
        return b.store.kv_entries.page(
            plugin.id, prefix, limit=p.limit(), cursor=p.opt_str("cursor")
        )
    return b.store.kv_entries.list(plugin.id, prefix)


def _collection(plugin: PluginDescriptor, p: Params) -> str:
    name = p.req_str("collection")
    if name not in plugin.storage:
        raise p.error(NOT_DECLARED.format(name=name[:200]))
    return name


def _st_get(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return b.store.plugin_documents.get(plugin.id, _collection(plugin, p), p.req_str("id"))


def _st_put(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> None:
    coll = _collection(plugin, p)
    b.store.plugin_documents.put(plugin.id, coll, p.req_str("id"), p.value("data"))


def _st_delete(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> bool:
    return bool(b.store.plugin_documents.delete(plugin.id, _collection(plugin, p), p.req_str("id")))


def _st_exists(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> bool:
    return bool(b.store.plugin_documents.exists(plugin.id, _collection(plugin, p), p.req_str("id")))


def _st_query(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    coll = _collection(plugin, p)
    return b.store.plugin_documents.query(
        plugin.id,
        coll,
        plugin.storage[coll],
        where=p.opt_obj("where"),
        order_by=p.order_by(),
        limit=p.limit(),
        cursor=p.opt_str("cursor"),
    )


def _st_count(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> int:
    coll = _collection(plugin, p)
    where = p.opt_obj("where")
    return int(b.store.plugin_documents.count(plugin.id, coll, plugin.storage[coll], where))


def _st_get_many(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    coll = _collection(plugin, p)
    found = b.store.plugin_documents.get_many(plugin.id, coll, p.str_list("ids"))
    # Pairs, not an object: ids such as "__proto__" survive any JSON consumer unchanged.
    return [[doc_id, data] for doc_id, data in found.items()]


def _st_put_many(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> None:
    coll = _collection(plugin, p)
    items = p.id_data_list(
        "items", "Parameter items must be an array of { id: string, data } items"
    )
    b.store.plugin_documents.put_many(plugin.id, coll, items)


def _st_delete_many(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> int:
    coll = _collection(plugin, p)
    return int(b.store.plugin_documents.delete_many(plugin.id, coll, p.str_list("ids")))


# --- email, cron, log, http ---------------------------------------------------------------


def _email_send(b: Bridge, plugin: PluginDescriptor, p: Params, budget: CallBudget | None) -> None:
    message = p.value("message")
    # One text for every malformed message, a non-string html included: EmDash's contract
    # answers exactly this, and plugins written against it may match on it.
    if (
        type(message) is not dict
        or not all(type(message.get(k)) is str for k in ("to", "subject", "text"))
        or (message.get("html") is not None and type(message["html"]) is not str)
    ):
        raise p.error("email/send requires message with to, subject, and text")
    if b.email is None or not b.email.is_available():
        raise EmailNotConfiguredError(EMAIL_NOT_CONFIGURED, plugin_id=plugin.id)
    # The source is the host-known plugin id, never anything inside the message.
    # The email:* hooks of other plugins run inside this invocation: no longer than its
    # deadline allows (emdash._services._hook_runner.deadline_scope).
    b.email.send(message, source=plugin.id, deadline=budget.deadline if budget else None)
    return None


def _cron(b: Bridge, p: Params) -> CronService:
    if b.cron is None:
        raise p.error("Cron is not available on this host: the runtime has no scheduler")
    return b.cron


def _cron_schedule(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> None:
    _cron(b, p).schedule(plugin.id, p.req_str("name"), p.req_str("schedule"), p.value("data"))


def _cron_cancel(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> None:
    _cron(b, p).cancel(plugin.id, p.req_str("name"))


def _cron_list(b: Bridge, plugin: PluginDescriptor, p: Params, _: CallBudget | None) -> Any:
    return _cron(b, p).list(plugin.id)


def _log(b: Bridge, plugin: PluginDescriptor, p: Params, budget: CallBudget | None) -> None:
    level = p.value("level")
    if level not in _LEVELS:
        raise p.error("Parameter level must be one of: debug, info, warn, error")
    msg = p.req_str("msg")
    if budget is not None and not budget.take_log_line():
        if budget.log_dropped == 1:
            b.logger_for(plugin.id).warning(
                "[plugin:%s] more than %d log lines in one invocation; dropping the rest",
                plugin.id,
                budget.log_lines,
            )
        # A dropped line still costs the host a round trip: past the cap every log call
        # is a subrequest, so a logging loop ends instead of running to the wall limit.
        budget.charge(plugin.id, what=f" (ctx.log calls past {budget.log_lines} lines count)")
        return None
    line = msg
    if p.has("data"):
        line += " " + json.dumps(p.value("data"), ensure_ascii=False)
    # Cut before escaping (clean_text's bound): at most LOG_LINE_MAX_BYTES characters of
    # plugin text are ever looked at, however long the message was.
    raw, line = line, clean_text(line, limit=LOG_LINE_MAX_BYTES, ellipsis="")
    if len(raw) > LOG_LINE_MAX_BYTES or len(line.encode("utf-8")) > LOG_LINE_MAX_BYTES:
        line = line.encode("utf-8")[:LOG_LINE_MAX_BYTES].decode("utf-8", "ignore") + "…[truncated]"
    allowed, dropped = b.log_window.take(plugin.id, len(line.encode("utf-8")))
    if not allowed:
        if dropped == 1:  # once per window: the warning must not become the flood
            b.logger_for(plugin.id).warning(
                "[plugin:%s] logged more than %d bytes within %d s (its log_bytes_per_minute "
                "quota); dropping its log lines until the window ends. The site operator can "
                "raise the quota.",
                plugin.id,
                b.log_window.limit(plugin.id),
                int(b.log_window.window_s),
            )
        return None
    b.logger_for(plugin.id).log(_LEVELS[level], "[plugin:%s] %s", plugin.id, line)
    return None


_BODY_TYPES = ("string", "base64")


def _http_fetch(b: Bridge, plugin: PluginDescriptor, p: Params, budget: CallBudget | None) -> Any:
    url = p.req_str("url")
    init = p.value("init")
    if init is None:
        init = {}
    if type(init) is not dict:
        raise p.error("http/fetch: init must be an object")
    method = init.get("method", "GET")
    if type(method) is not str:
        raise p.error("http/fetch: init.method must be a string")
    redirect = init.get("redirect")
    if redirect is not None and redirect not in ("follow", "error", "manual"):
        # Accepted for compatibility, then ignored: redirects are always followed by hand.
        raise p.error('http/fetch: init.redirect must be "follow", "error", or "manual"')
    headers = init.get("headers", [])
    if type(headers) is not list or not all(
        type(h) is list and len(h) == 2 and type(h[0]) is str and type(h[1]) is str for h in headers
    ):
        raise p.error("http/fetch: init.headers must be an array of [name, value] pairs")
    body: bytes | None = None
    if init.get("body") is not None:
        body_type = init.get("bodyType", "string")
        if body_type not in _BODY_TYPES:
            raise p.error('http/fetch: init.bodyType must be "string" or "base64"')
        raw = init["body"]
        if type(raw) is not str:
            raise p.error("http/fetch: string/base64 body must be a string")
        if body_type == "string":
            body = raw.encode("utf-8", "replace")
        else:
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise p.error("http/fetch: base64 body is not valid base64") from None
    return b.http.fetch(
        plugin, url, method=method, headers=headers, body=body, budget=budget, prepaid=True
    )


#: Bridge methods whose only effects are on the site database (media files follow their
#: rows through commit/rollback callbacks): an invocation that used only these (and log)
#: may be re-run transparently when its commit conflicts. Everything else marks it.
REPLAY_SAFE = frozenset(
    {
        "kv/get",
        "kv/set",
        "kv/delete",
        "kv/list",
        "kv/increment",
        "kv/compareAndSet",
        "storage/get",
        "storage/put",
        "storage/delete",
        "storage/exists",
        "storage/query",
        "storage/count",
        "storage/getMany",
        "storage/putMany",
        "storage/deleteMany",
        "cron/schedule",
        "cron/cancel",
        "cron/list",
        "log",
        "content/get",
        "content/list",
        "taxonomy/list",
        "taxonomy/terms",
        "taxonomy/entryTerms",
        "media/get",
        "media/list",
        "users/get",
        "users/getByEmail",
        "users/list",
    }
)

METHODS: dict[str, tuple[str | None, Handler]] = {
    "kv/get": (None, _kv_get),
    "kv/set": (None, _kv_set),
    "kv/delete": (None, _kv_delete),
    "kv/list": (None, _kv_list),
    "kv/increment": (None, _kv_increment),
    "kv/compareAndSet": (None, _kv_compare_and_set),
    "storage/get": (None, _st_get),
    "storage/put": (None, _st_put),
    "storage/delete": (None, _st_delete),
    "storage/exists": (None, _st_exists),
    "storage/query": (None, _st_query),
    "storage/count": (None, _st_count),
    "storage/getMany": (None, _st_get_many),
    "storage/putMany": (None, _st_put_many),
    "storage/deleteMany": (None, _st_delete_many),
    "email/send": ("email:send", _email_send),
    "cron/schedule": (None, _cron_schedule),
    "cron/cancel": (None, _cron_cancel),
    "cron/list": (None, _cron_list),
    "log": (None, _log),
    "http/fetch": ("network:request", _http_fetch),
    **cms.METHODS,
}
