"""``Runtime``: one emdash site — its store, its plugins, their pipeline, bridge and services.

::

    with emdash.Runtime("site.db") as rt:
        rt.add_plugin("plugins/hello")                      # sandboxed
        rt.add_plugin(descriptor, source=code, trusted=True)  # in-process
        rt.run_hook("content:beforeSave", {...})
        rt.invoke_route("plugin-hello", "recent")

Plugins are sandboxed unless added with ``trusted=True``. ``Runtime(sandbox=False)`` is the
debugging bypass: untrusted plugins then run in-process, with a loud warning for each.

Per-plugin quotas are the operator's, never a descriptor's: ``quotas=`` (an
:class:`emdash.Quotas`, the default for every plugin) and ``plugin_quotas={id: Quotas}``
bound what each plugin stores (KV + storage bytes and rows) and logs per minute;
``audit_retention=`` how long audit rows are kept. ``rt.store.quotas.set(id, Quotas(...))``
changes one plugin's quotas while the site runs.

Lifecycle (docs/design.md): the first time this *database* sees a plugin id,
``plugin:install`` then (if enabled) ``plugin:activate`` fire. ``enable_plugin`` fires
``plugin:activate`` after the plugin joined the pipeline; ``disable_plugin`` fires
``plugin:deactivate`` before it leaves; ``remove_plugin`` fires ``plugin:deactivate`` (if
enabled) then ``plugin:uninstall {deleteData}``. Nothing fires at a later boot for a
plugin that is already installed in the state it is added with. The registry of seen
plugins is the store's ``plugins`` table, so this holds across restarts. Transitions are
crash-safe: the registry change and the hook it owes commit together (``pending``), and a
hook cut off by a crash (install, activate, deactivate) runs when the plugin is next
added. Hooks run at least once per transition, so write them to tolerate a repeat.

Mutations of the plugin set (add / remove / enable / disable) are serialised by one lock
and each builds a new :class:`HookPipeline`, swapped in atomically: a hook run that is under
way keeps the pipeline it started with. Lifecycle hooks run while that lock is held (so a
concurrent disable cannot overtake an activate); everything a handler reaches through
``ctx`` (services, hooks, exclusive selection) avoids that lock. A trusted lifecycle
handler that itself calls ``add_plugin``/``remove_plugin``/``enable_plugin``/
``disable_plugin`` directly would wait for it and time out.

Route calls are admitted per plugin (``Runtime(admission={"<id>": {"max_concurrency": 4,
"max_queue": 8}})``, ``rt.admission``): a bounded number run at once, a bounded queue
waits, the rest get :class:`PluginBusyError`; see :mod:`emdash._runtime._admission`.

The site (``site={...}``): ``name``, ``url`` (default ``""``, so ``ctx.url("/p")`` is
``"/p"``; one trailing slash is dropped), ``locale`` (the default content locale, ``en``
unless told), ``locales`` (optional list; when given, content and terms are written only
in these locales, an explicit one normalised to its configured spelling; ``locale``
defaults to the first) and ``trailing_slash``. Plugins see ``{name, url, locale,
trailingSlash}`` as ``ctx.site``.

Content-write fence (EmDash's ``beforeContentWrite``): ``Runtime(before_content_write=fn)``
or ``rt.set_before_content_write(fn)`` installs ``fn(write: ContentWrite)``, called before
every content write a plugin makes through ``ctx.content`` (never for reads, never for the
host's own ``rt.content``), in both modes. Raising refuses the write, e.g.
``PluginRouteError("MEDIA_USAGE_ACTIVATION_IN_PROGRESS", "Media usage activation is in
progress", 503)``: the plugin sees that error and may catch it; a route that lets it escape
answers over HTTP with that code and status. See :mod:`emdash._bridge._dispatch`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import httpx

from .._bridge._dispatch import Bridge, ContentWriteFence
from .._bridge._http import HttpClient
from .._hosting._loader import locate, sandbox_files
from .._hosting._native import NativePluginHost
from .._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult, PluginHost
from .._hosting._sandboxed import SandboxSupport
from .._model._descriptor import Limits, PluginDescriptor
from .._services._comments import CommentService
from .._services._content import ContentService
from .._services._cron import CronService
from .._services._email import EmailPipeline
from .._services._media import MediaService
from .._services._page import PageService
from .._shared._errors import (
    BridgeError,
    ConfigError,
    EmDashError,
    ManifestError,
    NotFoundError,
    PluginRouteError,
    clean_text,
)
from .._shared._hooks_catalog import HOOKS
from .._store import Store
from .._store._quotas import AuditRetention, QuotaPolicy, Quotas
from .._store._values import Locales
from ._admission import TRUSTED_CONCURRENCY, AdmissionControl, AdmissionPolicy, AdmissionSlot
from ._live_pipeline import LivePipeline
from ._pipeline import EXCLUSIVE_OPTION_PREFIX, HookPipeline, classify_error
from ._plugin_info import PluginInfo
from ._registry_sync import RegistryWatcher
from ._routes import check_route_schemas, route_context, validate_route_input

__all__ = ["PluginInfo", "Runtime"]

log = logging.getLogger("emdash")

# EmDash's defaults (createSiteInfo): no URL, so ctx.url("/p") is the path itself.
_DEFAULT_SITE = {"name": "", "url": "", "locale": "en", "trailingSlash": "ignore"}


class Runtime:
    """One emdash site. See the module docstring; use it as a context manager."""

    def __init__(
        self,
        database: str | Path = ":memory:",
        *,
        sandbox: bool = True,
        limits: Limits | None = None,
        site: dict[str, Any] | None = None,
        media_dir: str | Path | None = None,
        http_transport: httpx.BaseTransport | None = None,
        worker_pool_size: int = 2,
        logger: logging.Logger | None = None,
        quotas: Quotas | None = None,
        plugin_quotas: Mapping[str, Quotas] | None = None,
        audit_retention: AuditRetention | None = None,
        admission: Mapping[str, AdmissionPolicy | Mapping[str, int]] | None = None,
        before_content_write: ContentWriteFence | None = None,
        database_password: str | None = None,
        database_pool_size: int | None = None,
    ) -> None:
        self.log = logger or log
        self.sandbox = sandbox
        self.limits = limits or Limits.model_validate({})
        self.worker_pool_size = worker_pool_size
        self.site, locales = _site_info(site)
        # Quotas are the operator's (never the descriptor's: a plugin must not raise its own).
        self.store = Store(
            database,
            media_dir=Path(media_dir) if media_dir else None,
            quotas=QuotaPolicy(quotas, plugin_quotas),
            audit_retention=audit_retention,
            locales=locales,
            # PostgreSQL only (database="postgresql://..."): the password when it is not in
            # the URL or PGPASSWORD, and this host's connection pool size.
            password=database_password,
            pool_size=database_pool_size,
        )
        self._http = HttpClient(http_transport)
        self._lock = threading.RLock()
        self._plugins: dict[str, PluginInfo] = {}
        self._closed = False
        # Per-plugin route admission (see _admission): {plugin id: {max_concurrency: ..}}.
        self._admission = AdmissionControl(self._admission_defaults, admission)
        # Native handlers run here under their timeouts. Generous: a handler blocked past
        # its timeout keeps its thread until it returns by itself.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="emdash-native"
        )
        self._sandbox: SandboxSupport | None = None
        # The services, in dependency order. Each gets the store, the live pipeline (as its
        # HookRunner) and the collaborators its constructor names, never the runtime. So
        # none of them takes _lock (rt.email.use_console_provider aside, which adds a
        # plugin): a handler running under a plugin-set change (a lifecycle hook, on a
        # pool thread, while _lock is held) may still use them.
        self._hooks = LivePipeline(self._build_pipeline())
        self._content = ContentService(self.store, self._hooks)
        self._media = MediaService(self.store, self._hooks)
        self._comments = CommentService(self.store, self._hooks)
        self._page = PageService(self.store, self._hooks, plugins=MappingProxyType(self._plugins))
        self._email = EmailPipeline(self._hooks, add_plugin=self.add_plugin)
        # The scheduler thread starts only when a host calls rt.cron.start().
        self._cron = CronService(self.store, self._hooks, publish_due=self._content.publish_due)
        # Several hosts on one PostgreSQL database: follow the registry they share.
        self._registry_watch: RegistryWatcher | None = None
        if self.store.backend == "postgresql":
            self._registry_watch = RegistryWatcher(
                lambda: self.store.plugin_registry.list(), self._follow_registry
            )
            self._registry_watch.start()
        # The bridge answers ctx.cron / ctx.email with the services above.
        self.bridge = Bridge(
            store=self.store,
            plugins=self._descriptor_for_bridge,
            http=self._http,
            cron=self._cron,
            email=self._email,
            site=self.site,
            logger=self.log.getChild("plugins"),
            before_content_write=before_content_write,
        )

    # -- context manager / lifetime --------------------------------------------------------

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the services, every plugin, the sandbox and the thread pool; flush and close
        the store. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._registry_watch is not None:
                self._registry_watch.stop()
            # The cron scheduler may own a thread that runs hooks: stop it first.
            try:
                self._cron.stop()
            except Exception:
                self.log.exception("Stopping rt.cron failed")
            for info in self._plugins.values():
                try:
                    info.host.close()
                except Exception:
                    self.log.exception("Closing plugin %s failed", info.plugin_id)
            if self._sandbox is not None:
                self._sandbox.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._http.close()
            self.store.close()

    # -- services ------------------------------------------------------------------------

    @property
    def content(self) -> ContentService:
        """Content operations that fire the content hooks."""
        return self._content

    @property
    def media(self) -> MediaService:
        """Media operations that fire the media hooks."""
        return self._media

    @property
    def comments(self) -> CommentService:
        """Comment submission and moderation."""
        return self._comments

    @property
    def email(self) -> EmailPipeline:
        """The email pipeline."""
        return self._email

    @property
    def cron(self) -> CronService:
        """The cron scheduler (its background thread runs from ``rt.cron.start()`` on)."""
        return self._cron

    @property
    def page(self) -> PageService:
        """Page metadata and fragments."""
        return self._page

    @property
    def admission(self) -> AdmissionControl:
        """Per-plugin route admission: ``configure(plugin_id, max_concurrency=...,
        max_queue=..., queue_timeout_ms=..., retry_after_s=...)``, ``policy(id)``,
        ``stats(id)``. Bounds and defaults: :mod:`emdash._runtime._admission`."""
        return self._admission

    def set_before_content_write(self, fence: ContentWriteFence | None) -> None:
        """Install (or with ``None`` remove) the content-write fence; see the module
        docstring. Takes effect for the next write, including in running invocations."""
        self.bridge.before_content_write = fence

    # -- adding and removing plugins -------------------------------------------------------

    def add_plugin(
        self,
        descriptor: PluginDescriptor | dict[str, Any] | str | Path,
        source: Any = None,
        trusted: bool = False,
        enabled: bool | None = None,
    ) -> PluginInfo:
        """Load a plugin and add it to the site; returns its :class:`PluginInfo`.

        ``descriptor``: a :class:`PluginDescriptor`, a dict, JSON text, or a path to
        ``emdash-plugin.toml`` (or its directory). ``source``: see :mod:`emdash._hosting._loader`
        (``None`` means the descriptor's ``entrypoint``). ``enabled``: ``None`` keeps the
        state this database remembers (enabled for a new plugin); a bool sets it, firing
        ``plugin:activate`` / ``plugin:deactivate`` if that changes it.
        """
        desc = PluginDescriptor.load(descriptor)
        pid = desc.id
        with self._lock:
            self._check_open()
            if pid in self._plugins:
                raise ManifestError(
                    f'Plugin "{pid}" is already added; remove_plugin("{pid}") first to replace it',
                    plugin_id=pid,
                )
            code = locate(desc, source)
            host, sandboxed = self._make_host(desc, code, trusted)
            # Hosts sharing the database take turns deciding and running the plugin's
            # transition (PostgreSQL: a server lock): install runs once per site.
            lock = self.store.lifecycle_lock(pid)
            try:
                lock.__enter__()
            except BaseException:
                host.close()
                raise
            try:
                try:
                    check_route_schemas(host)
                    self.store.plugin_documents.sync_indexes(pid, desc.storage)
                    known = self.store.plugin_registry.get(pid)
                    owed = None if known is None else known.get("pending")
                    if enabled is not None:
                        want = enabled
                    elif known is None:
                        want = True
                    elif owed == "deactivate":
                        # A disable whose deactivate hook never completed: finish the disable.
                        want = False
                    else:
                        want = known["enabled"]
                    # The transition is recorded as owed in the same commit as the registry
                    # change, and cleared once its hook ran: a crash in between leaves it owed,
                    # and the next add_plugin completes it (at least once, never lost).
                    if known is None or owed == "install":
                        transition: str | None = "install"
                    elif owed in ("activate", "deactivate"):
                        # Owed an activate the caller now disables (or the reverse): the hook
                        # that never completed has nothing left to pair with, so none runs.
                        transition = owed if want == (owed == "activate") else None
                    elif want != known["enabled"]:
                        transition = "activate" if want else "deactivate"
                    else:
                        transition = None
                    self.store.plugin_registry.upsert(
                        pid, version=desc.version, enabled=want, trusted=trusted, pending=transition
                    )
                except BaseException:
                    host.close()
                    raise
                info = PluginInfo(host, sandboxed=sandboxed, enabled=want)
                self._plugins[pid] = info
                self._rebuild()
                if known is not None and want != known["enabled"]:
                    self._cron.set_plugin_enabled(pid, want)
                if transition == "install":
                    self._lifecycle(host, "plugin:install", {})
                    if want:
                        # Installed: from here on only the activate is owed.
                        self.store.plugin_registry.set_pending(pid, "activate")
                        self._lifecycle(host, "plugin:activate", {})
                elif transition is not None:
                    self._lifecycle(host, f"plugin:{transition}", {})
                if transition is not None:
                    self.store.plugin_registry.clear_pending(pid)
            finally:
                lock.__exit__(None, None, None)
            return info

    def _make_host(
        self, desc: PluginDescriptor, code: Any, trusted: bool
    ) -> tuple[PluginHost, bool]:
        info = self._plugin_info(desc)
        if not trusted and self.sandbox:
            files, entry = sandbox_files(code, desc.id)
            return self._sandbox_support().load(desc, files, entry, info), True
        if not trusted:
            self.log.warning(
                "SANDBOX BYPASS: untrusted plugin %s runs IN-PROCESS without isolation or "
                "limits because the runtime was created with sandbox=False. Never do this "
                "with code you do not trust.",
                desc.id,
            )
        host = NativePluginHost(
            desc,
            code,
            bridge=self.bridge,
            store=self.store,
            info=info,
            executor=self._executor,
            trusted=trusted,
            inline=self._inside_invocation,
        )
        return host, False

    def _sandbox_support(self) -> SandboxSupport:
        # Built on the first sandboxed plugin; a host that cannot sandbox raises
        # SandboxNotAvailableError from its supervisor, when a plugin is loaded.
        if self._sandbox is None:
            self._sandbox = SandboxSupport(
                store=self.store,
                bridge=self.bridge,
                limits=self.limits,
                pool_size=self.worker_pool_size,
            )
        return self._sandbox

    def remove_plugin(self, plugin_id: str, delete_data: bool = False) -> None:
        """Uninstall a plugin: deactivate (if enabled), uninstall, forget it.

        Its cron tasks are deleted; with ``delete_data`` also its KV, storage documents and
        storage indexes.
        """
        with self._lock:
            info = self._get(plugin_id)
            if info.enabled:
                self._lifecycle(info.host, "plugin:deactivate", {})
                info.enabled = False
                self._rebuild()
            # Still registered (so its ctx works) but out of the pipeline: uninstall it.
            self._lifecycle(info.host, "plugin:uninstall", {"deleteData": bool(delete_data)})
            del self._plugins[plugin_id]
            # Its exclusive-hook selections are stale now (a plugin that is merely not added
            # yet keeps them: see HookPipeline.resolve_exclusive).
            for key, value in self.store.options.list(EXCLUSIVE_OPTION_PREFIX).items():
                if value == plugin_id:
                    self.store.options.delete(key)
            self._rebuild()
            self._admission.forget(plugin_id)
            self._cron.delete_plugin_tasks(plugin_id)
            with self.store.transaction():
                if delete_data:
                    self.store.kv_entries.delete_all(plugin_id)
                    self.store.plugin_documents.delete_plugin_data(plugin_id)
                    self.store.plugin_documents.drop_indexes(plugin_id)
                self.store.plugin_registry.delete(plugin_id)
            info.host.close()

    def enable_plugin(self, plugin_id: str) -> None:
        """Enable a disabled plugin: it joins the pipeline, then ``plugin:activate`` fires."""
        with self._lock:
            info = self._get(plugin_id)
            if info.enabled:
                return
            self.store.plugin_registry.upsert(
                plugin_id,
                version=info.descriptor.version,
                enabled=True,
                trusted=info.trusted,
                pending="activate",
            )
            info.enabled = True
            self._rebuild()
            self._cron.set_plugin_enabled(plugin_id, True)
            self._lifecycle(info.host, "plugin:activate", {})
            self.store.plugin_registry.clear_pending(plugin_id)

    def disable_plugin(self, plugin_id: str) -> None:
        """Disable an enabled plugin: ``plugin:deactivate`` fires, then it leaves the pipeline."""
        with self._lock:
            info = self._get(plugin_id)
            if not info.enabled:
                return
            # Recorded (disabled, deactivate owed) before the hook: a crash during it
            # leaves the plugin disabled with its deactivate run at the next add_plugin.
            self.store.plugin_registry.upsert(
                plugin_id,
                version=info.descriptor.version,
                enabled=False,
                trusted=info.trusted,
                pending="deactivate",
            )
            self._lifecycle(info.host, "plugin:deactivate", {})
            self.store.plugin_registry.clear_pending(plugin_id)
            info.enabled = False
            self._rebuild()
            self._cron.set_plugin_enabled(plugin_id, False)

    def plugins(self) -> list[PluginInfo]:
        """Every added plugin (enabled or not), in the order they were added."""
        return list(self._plugins.values())

    def get_plugin(self, plugin_id: str) -> PluginInfo:
        """The plugin's :class:`PluginInfo`; ``NotFoundError`` for an unknown id."""
        return self._get(plugin_id)

    # -- hooks -----------------------------------------------------------------------------

    def run_hook(self, name: str, event: Any, *, plugin_id: str | None = None) -> HookOutcome:
        """Run a hook through the pipeline of the enabled plugins.

        Broadcast families follow their rules (see :class:`HookPipeline`). An exclusive hook
        runs its selected provider; lifecycle and cron hooks need ``plugin_id``. With
        ``plugin_id``, only that plugin's handler runs (same rules), which is what the CLI's
        ``run-hook --plugin`` uses.
        """
        spec = HOOKS.get(name)
        if spec is None or plugin_id is None:
            return self._hooks.run_hook(name, event)
        pipeline = self._hooks.pipeline
        info = self._get(plugin_id)
        if spec.family in ("lifecycle", "cron", "exclusive"):
            result = pipeline.invoke_target(info.host, name, event)
            return HookOutcome(
                name, None if result is None else result.value, [] if result is None else [result]
            )
        if not info.enabled:
            return HookOutcome(name, None, [])
        return HookPipeline(
            [info.host], options=None, audit=self.store.audit_records.record, logger=self.log
        ).run_hook(name, event)

    def invoke_exclusive(self, name: str, event: Any) -> ExclusiveOutcome | None:
        """Run the selected provider of an exclusive hook; ``None`` if none. Never raises."""
        return self._hooks.invoke_exclusive(name, event)

    def invoke_cron(self, plugin_id: str, event: Any) -> HookResult:
        """Run ``plugin_id``'s cron hook for one due task. Never raises."""
        return self._hooks.invoke_cron(plugin_id, event)

    def select_provider(self, hook: str, plugin_id: str | None) -> None:
        """Choose the provider of an exclusive hook (persisted); ``None`` clears it."""
        self._hooks.select_provider(hook, plugin_id)

    def selected_provider(self, hook: str) -> str | None:
        return self._hooks.selected_provider(hook)

    def exclusive_hooks(self) -> dict[str, dict[str, Any]]:
        """``{hook: {"providers": [...], "selected": id or None}}`` for the admin UI."""
        return self._hooks.exclusive_hooks()

    @property
    def pipeline(self) -> HookPipeline:
        return self._hooks.pipeline

    # -- routes ----------------------------------------------------------------------------

    def invoke_route(
        self,
        plugin_id: str,
        name: str,
        *,
        input: Any = None,
        request: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
        admitted: AdmissionSlot | None = None,
    ) -> Any:
        """Call a plugin route and return its data.

        Raises ``PluginRouteError("NOT_FOUND", "Plugin route not found: ...", 404)`` for an
        unknown or disabled plugin or route (the message names both and says why), ``PluginRouteError("VALIDATION_ERROR",
        "Invalid request body", 400, details)`` for input that fails the route's schema;
        :class:`PluginBusyError` when the plugin's admission queue is full or the wait for
        a turn timed out (see :attr:`admission`); any other error (the plugin's
        ``PluginRouteError``, ``PluginError``, limits...) propagates unchanged for the HTTP
        layer to map.

        The call first takes a turn at the plugin's admission gate, waiting in this thread
        if needed. ``admitted``: a turn the caller already holds (the HTTP app takes it in
        its event loop, holding no thread while it waits); the caller releases it. A call
        from inside an invocation (a trusted handler calling a route) is not gated again.
        """
        info = self._plugins.get(plugin_id)
        routes = info.definition_meta.get("routes", {}) if info is not None else {}
        if info is None or not info.enabled or name not in routes:
            raise PluginRouteError("NOT_FOUND", self._route_not_found(plugin_id, name), 404)
        if admitted is not None:
            if admitted.plugin_id != plugin_id or not admitted.active:
                raise EmDashError(
                    f"invoke_route({plugin_id!r}, ...) was handed an admission slot of "
                    f"plugin {admitted.plugin_id} that is {'active' if admitted.active else 'released'}; "
                    "pass a slot taken from rt.admission.gate(plugin_id) and not yet released",
                    plugin_id=plugin_id,
                )
        elif not self._inside_invocation():
            with self._admission.gate(plugin_id).enter() as slot:
                return self.invoke_route(
                    plugin_id, name, input=input, request=request, user=user, admitted=slot
                )
        meta = routes[name]
        route_ctx = route_context(
            value=validate_route_input(info.host, name, meta, input),
            request=request,
            user=user,
            public=meta.get("public") is True,
            site=self.site,
            plugin_id=plugin_id,
            name=name,
        )
        started = time.perf_counter()
        try:
            result = info.host.invoke_route(name, route_ctx)
        except Exception as exc:
            outcome, limit = classify_error(exc)
            cpu = getattr(exc, "cpu_ms", None)  # the host's figure, sandboxed plugins only
            self._audit(plugin_id, "route", name, outcome, started, cpu, limit, str(exc))
            raise
        self._audit(
            plugin_id, "route", name, "ok", started, result.cpu_ms, None, None, result.audited
        )
        return result.value

    # -- audit -----------------------------------------------------------------------------

    def audit_log(self, limit: int = 100, plugin_id: str | None = None) -> list[dict[str, Any]]:
        """The newest audit records first (every hook, route, lifecycle and cron invocation, and every sandboxed load)."""
        return self.store.audit_records.list(limit=limit, plugin_id=plugin_id)

    def _audit(
        self,
        pid: str,
        kind: str,
        name: str,
        outcome: str,
        started: float,
        cpu: float | None,
        limit: str | None,
        error: str | None,
        committed: bool = False,
    ) -> None:
        try:
            self.store.audit_records.record(
                pid,
                kind,
                name,
                outcome,
                (time.perf_counter() - started) * 1000,
                cpu_ms=cpu,
                limit=limit,
                error=error,
                committed=committed,
            )
        except Exception:
            self.log.exception("Could not record the audit entry for %s %s", pid, name)

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EmDashError("This Runtime is closed; create a new one")

    def _get(self, plugin_id: str) -> PluginInfo:
        info = self._plugins.get(plugin_id)
        if info is None:
            raise NotFoundError(
                f'No plugin "{plugin_id}" in this runtime. Added plugins: '
                + (", ".join(self._plugins) or "none")
            )
        return info

    def _route_not_found(self, plugin_id: str, name: str) -> str:
        """Why ``plugin_id``/``name`` is not a route to call: both named, and what to do.

        Both may come from a client: shown cut and with control characters escaped."""
        shown = "/".join(
            clean_text(text.encode("utf-8", "backslashreplace").decode("utf-8"), limit=limit)
            for text, limit in ((plugin_id, 100), (name, 200))
        )
        shown = f'"{shown}"'
        info = self._plugins.get(plugin_id)
        if info is None:
            added = ", ".join(list(self._plugins)[:20]) or "none"
            return (
                f"Plugin route not found: {shown}: no plugin with that id is added to this "
                f"site (added plugins: {added})"
            )
        if not info.enabled:
            return (
                f"Plugin route not found: {shown}: plugin {plugin_id} is disabled; "
                "enable it to call its routes"
            )
        routes = sorted(info.definition_meta.get("routes", {}))
        listed = ", ".join(routes[:50]) + (", ..." if len(routes) > 50 else "")
        return f"Plugin route not found: {shown}: plugin {plugin_id} has " + (
            f"no route of that name (its routes: {listed})" if routes else "no routes"
        )

    def _descriptor_for_bridge(self, plugin_id: str) -> PluginDescriptor:
        info = self._plugins.get(plugin_id)
        if info is None:
            raise BridgeError(
                f'Plugin "{plugin_id}" is not loaded; it cannot make service calls',
                plugin_id=plugin_id,
            )
        return info.descriptor

    def _plugin_info(self, desc: PluginDescriptor) -> dict[str, Any]:
        return {
            "plugin": {"id": desc.id, "version": desc.version},
            "capabilities": list(desc.capabilities),
            "storage": list(desc.storage),
            "site": dict(self.site),
        }

    def _build_pipeline(self) -> HookPipeline:
        return HookPipeline(
            [p.host for p in self._plugins.values() if p.enabled],
            options=self.store.options,
            audit=self.store.audit_records.record,
            logger=self.log,
            known=self._plugins,
        )

    def _follow_registry(self, site: Mapping[str, tuple[str, bool]]) -> list[str]:
        """Bring this host's plugins in line with the registry another host changed (see
        ``_registry_sync``); no lifecycle hook runs here, the changing host ran it."""
        changed: list[str] = []
        with self._lock:
            if self._closed:
                return changed
            for pid, info in self._plugins.items():
                version, enabled = site.get(pid, (None, False))
                if version is not None and version != info.descriptor.version:
                    if info.enabled:
                        self.log.error(
                            "[registry] plugin %s: the site runs version %s, this host loaded "
                            "%s; it is out of this host's pipeline until the host is deployed "
                            "with %s",
                            pid,
                            version,
                            info.descriptor.version,
                            version,
                        )
                    enabled = False
                if enabled != info.enabled:
                    # Only the pipeline: the cron rows are the site's, already updated by
                    # the host that made the change.
                    info.enabled = enabled
                    changed.append(pid)
            if changed:
                self._rebuild()
        return changed

    def _rebuild(self) -> None:
        self._hooks.pipeline = self._build_pipeline()

    def _lifecycle(self, host: PluginHost, name: str, event: dict[str, Any]) -> None:
        result = self._hooks.pipeline.invoke_target(host, name, event)
        if result is not None and not result.success:
            # Lifecycle failures never undo the transition (EmDash's rule); say so loudly.
            self.log.error(
                "Plugin %s: %s failed: %s (the plugin's state changed anyway)",
                host.plugin_id,
                name,
                result.error,
            )

    def _admission_defaults(self, plugin_id: str) -> tuple[int, int]:
        """``(max_concurrency, queue wait in ms)`` for a plugin without explicit bounds:
        a sandboxed plugin runs as many calls as it has workers (an admitted call never
        waits for one) and a caller waits at most its wall limit for a turn."""
        info = self._plugins.get(plugin_id)
        if info is not None and info.sandboxed:
            limits = getattr(info.host, "limits", self.limits)
            return self.worker_pool_size, limits.wall_ms
        return TRUSTED_CONCURRENCY, self.limits.wall_ms

    def _inside_invocation(self) -> bool:
        """Whether this thread is inside a plugin invocation or a store transaction.

        A native handler started from such a thread must run on it (inline): the scope's
        transaction, and the store lock it may hold, belong to this thread.
        """
        return self.store.in_scope_here()


def _site_info(site: Mapping[str, Any] | None) -> tuple[dict[str, str], Locales]:
    """``{name, url, locale, trailingSlash}`` with defaults (``trailing_slash`` accepted),
    and the site's :class:`Locales` (``locale`` is their default, ``locales`` the list)."""
    site = dict(site or {})
    out = dict(_DEFAULT_SITE)
    for key, value in site.items():
        key = "trailingSlash" if key == "trailing_slash" else key
        if key in out and isinstance(value, str):
            out[key] = value
    out["url"] = out["url"].removesuffix("/")
    configured = site.get("locales")
    if configured is not None and (
        isinstance(configured, str)
        or not isinstance(configured, (list, tuple))
        or not all(isinstance(c, str) for c in configured)
    ):
        raise ConfigError('Site "locales" must be a list of locale codes, e.g. ["en", "zh-TW"]')
    default = site.get("locale")
    if default is None:
        default = configured[0] if configured else "en"
    try:
        locales = Locales(default, configured)
    except BridgeError as exc:
        hint = ' (codes like "en" or "zh-TW")'
        if configured:
            hint += f'; "locale" must be one of "locales": {", ".join(configured)}'
        raise ConfigError(f"Site locale setting is invalid: {exc}{hint}") from None
    # ctx.site.locale is the default content locale, in its configured spelling.
    out["locale"] = locales.default
    return out, locales
