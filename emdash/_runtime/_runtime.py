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
added. A removal cut off by a crash is finished (its owed hooks, its data) when the plugin
is next added, which is then a first add (install, activate). Hooks run at least once per
transition, so write them to tolerate a repeat.

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

Outbound HTTP seams (docs/testing-plugins.md): ``resolver=`` replaces DNS for plugin
fetches (its answers are still vetted by the SSRF rules; ``emdash.testing.fake_dns``), and
``allow_private_hosts=["localhost:8080"]`` exempts exact hosts of a local development site
from those rules, with a WARNING at start and at the first use per plugin and host.

Consent (docs/consent-and-upgrades.md): the access a plugin is first added with is recorded;
a later ``add_plugin`` whose descriptor asks for more raises ``ConsentRequiredError`` until
``upgrade_plugin(path, approve=True)`` approves it (``upgrade_plan`` shows the diff).

Content-write fence (EmDash's ``beforeContentWrite``): ``Runtime(before_content_write=fn)``
or ``rt.set_before_content_write(fn)`` installs ``fn(write: ContentWrite)``, called before
every content write a plugin makes through ``ctx.content`` (never for reads, never for the
host's own ``rt.content``), in both modes. Raising refuses the write, e.g.
``PluginRouteError("MEDIA_USAGE_ACTIVATION_IN_PROGRESS", "Media usage activation is in
progress", 503)``: the plugin sees that error and may catch it; a route that lets it escape
answers over HTTP with that code and status. See :mod:`emdash._bridge._dispatch`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import httpx

from .._admin import AdminService, check_admin_surface
from .._bridge import _invocation_logs as invocation_logs
from .._bridge._dispatch import Bridge, ContentWriteFence
from .._bridge._hosts import PrivateHosts
from .._bridge._http import HttpClient, Resolver
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
from .._store._audit_query import AuditPage, query_audit
from .._store._plugins import REMOVAL_TRANSITIONS
from .._store._quotas import AuditRetention, QuotaPolicy, Quotas
from .._store._values import Locales
from ._admission import TRUSTED_CONCURRENCY, AdmissionControl, AdmissionPolicy, AdmissionSlot
from ._admit_plugin import check_plugin_hooks, hook_problems
from ._consent import AccessDiff, Approval, UpgradePlan, refusal
from ._live_pipeline import LivePipeline
from ._pipeline import EXCLUSIVE_OPTION_PREFIX, HookPipeline, classify_error
from ._plugin_info import PluginInfo
from ._registry_sync import RegistryWatcher
from ._routes import check_route_schemas, route_context, validate_route_input

__all__ = ["PluginInfo", "Runtime"]

log = logging.getLogger("emdash")


def _recorded_approval(known: Mapping[str, Any]) -> Approval | None:
    text = known.get("approved")
    if text is None:
        return None
    try:
        return Approval.from_json(text)
    except (ValueError, KeyError, TypeError):
        # Never read as "nothing approved" (which would record whatever is asked now).
        raise ConfigError(
            f'The approval recorded for plugin "{known["id"]}" in this site\'s database is '
            "unreadable; remove the plugin (emdash plugins remove "
            f"{known['id']}) and add it again to approve its access afresh",
            plugin_id=str(known["id"]),
        ) from None


def _same_workers(a: PluginHost, b: PluginHost) -> bool:
    """Whether two sandboxed hosts share one worker pool (the supervisor hands back the
    same pool for an identical load)."""
    pool = getattr(a, "_pool", None)
    return pool is not None and pool is getattr(b, "_pool", None)


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
        resolver: Resolver | None = None,
        allow_private_hosts: Sequence[str] = (),
        database_password: str | None = None,
        database_pool_size: int | None = None,
    ) -> None:
        self.log = logger or log
        # Outbound HTTP seams (docs/testing-plugins.md): resolver= replaces DNS (its answers
        # are still vetted), allow_private_hosts= is the development exemption. Host
        # arguments only: no descriptor field or ctx call reaches them.
        private_hosts = PrivateHosts(allow_private_hosts)
        if private_hosts:
            self.log.warning(
                "DEVELOPMENT: plugins may fetch the private hosts %s (allow_private_hosts); "
                "the SSRF protection is off for them. Never do this on a production site.",
                ", ".join(private_hosts.describe()),
            )
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
        # An invocation that commits writes records its audit row in that commit: the row
        # keeps the invocation's log lines, which the pipeline captures.
        self.store.audit_records.current_logs = invocation_logs.current_stored
        for record in self.store.plugin_registry.list():
            if record.get("pending") in REMOVAL_TRANSITIONS:
                self.log.warning(
                    "Plugin %s: its removal was cut off by a crash; add it once "
                    "(rt.add_plugin) to finish the removal with its uninstall hook, then "
                    "remove it again if it should stay removed",
                    record["id"],
                )
        self._http = HttpClient(
            http_transport,
            resolver=resolver,
            private_hosts=private_hosts,
            logger=self.log.getChild("http"),
        )
        self._lock = threading.RLock()
        self._plugins: dict[str, PluginInfo] = {}
        self._closed = False
        # Per-plugin route admission (see _admission): {plugin id: {max_concurrency: ..}}.
        self._admission = AdmissionControl(self._admission_defaults, admission)
        self._sandbox: SandboxSupport | None = None
        # The services, in dependency order. Each gets the store, the live pipeline (as its
        # HookRunner) and the collaborators its constructor names, never the runtime. So
        # none of them takes _lock (rt.email.use_console_provider aside, which adds a
        # plugin): a handler running under a plugin-set change (a lifecycle hook, on the
        # thread that holds _lock) may still use them.
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
                lambda: self.store.plugin_registry.list(),
                self._follow_registry,
                notices=self.store.registry_notices(),
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
        self._admin = AdminService(
            plugins=self.plugins,
            invoke_route=self.invoke_route,
            kv=self.store.kv_entries,
            transaction=self.store.transaction,
            audit=self.store.audit_records.record,
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
        """Stop the services, every plugin and the sandbox; flush and close
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
    def admin(self) -> AdminService:
        """The plugin admin's server half: ``catalog()``, ``interact(...)``, settings
        (see :mod:`emdash._admin._service`)."""
        return self._admin

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
        *,
        bundle_sha256: str | None = None,
    ) -> PluginInfo:
        """Load a plugin and add it to the site; returns its :class:`PluginInfo`.

        ``descriptor``: a :class:`PluginDescriptor`, a dict, JSON text, or a path to
        ``emdash-plugin.toml`` (or its directory). ``source``: see :mod:`emdash._hosting._loader`
        (``None`` means the descriptor's ``entrypoint``). ``enabled``: ``None`` keeps the
        state this database remembers (enabled for a new plugin); a bool sets it, firing
        ``plugin:activate`` / ``plugin:deactivate`` if that changes it. The access the
        descriptor asks for is recorded as approved the first time; later it must not grow
        (:class:`ConsentRequiredError`; see :meth:`upgrade_plugin`). ``bundle_sha256``
        pins the digest of the bundle the plugin was unpacked from.
        """
        return self._add(
            PluginDescriptor.load(descriptor),
            source,
            trusted,
            enabled,
            approve=False,
            bundle_sha256=bundle_sha256,
        )

    def _add(
        self,
        desc: PluginDescriptor,
        source: Any,
        trusted: bool,
        enabled: bool | None,
        *,
        approve: bool,
        bundle_sha256: str | None,
    ) -> PluginInfo:
        pid = desc.id
        with self._lock:
            self._check_open()
            if pid in self._plugins:
                raise ManifestError(
                    f'Plugin "{pid}" is already added; remove_plugin("{pid}") first to replace it',
                    plugin_id=pid,
                )
            known = self.store.plugin_registry.get(pid)
            # A removal cut off by a crash is finished below: this add is then a first add,
            # and its consent is asked afresh rather than against the removed plugin's.
            removing = known is not None and known.get("pending") in REMOVAL_TRANSITIONS
            # Consent before any of the plugin's code runs (loading runs its module code).
            self._approval_to_record(desc, None if removing else known, approve)
            host, sandboxed = self.load_host(desc, source, trusted)
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
                    # Read again under the lock: another host may have changed it meanwhile
                    # (and the approval is decided against what is recorded now).
                    known = self.store.plugin_registry.get(pid)
                    removing = known is not None and known.get("pending") in REMOVAL_TRANSITIONS
                    approval = self._approval_to_record(desc, None if removing else known, approve)
                    owed = None if known is None else known.get("pending")
                    if owed in REMOVAL_TRANSITIONS:
                        # A remove_plugin cut off by a crash: finish it (its owed hooks, then
                        # its data), and this add is then the first add of a new plugin.
                        self.log.warning(
                            "Plugin %s: finishing its removal, cut off by a crash (%s owed); "
                            "it is then installed anew",
                            pid,
                            owed,
                        )
                        self._plugins[pid] = PluginInfo(host, sandboxed=sandboxed, enabled=False)
                        self._finish_removal(self._plugins[pid], owed)
                        known = owed = None
                    self.store.plugin_documents.sync_indexes(pid, desc.storage)
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
                    # change, and cleared once its hook ran: a crash in between leaves it
                    # owed, and the next add_plugin completes it (at least once, never lost).
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
                        pid,
                        version=desc.version,
                        enabled=want,
                        trusted=trusted,
                        pending=transition,
                        approved=approval,
                        bundle_sha256=bundle_sha256,
                    )
                except BaseException:
                    if self._plugins.pop(pid, None) is not None:  # a removal left unfinished
                        self._rebuild()
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

    # -- consent and upgrades (emdash._runtime._consent) ----------------------------------

    def upgrade_plan(
        self,
        descriptor: PluginDescriptor | dict[str, Any] | str | Path,
        *,
        bundle_sha256: str | None = None,
    ) -> UpgradePlan:
        """What :meth:`upgrade_plugin` would change for this descriptor: versions, bundle
        digests and the access diff against what was approved. Changes nothing."""
        desc = PluginDescriptor.load(descriptor)
        known = self.store.plugin_registry.get(desc.id)
        if known is None:
            raise NotFoundError(
                f'Plugin "{desc.id}" is not installed in this site, so there is nothing to '
                "upgrade; install it with: emdash plugins add PATH (rt.add_plugin)",
                plugin_id=desc.id,
            )
        approved = _recorded_approval(known)
        wanted = Approval.of(desc)
        return UpgradePlan(
            plugin_id=desc.id,
            old_version=known["version"],
            new_version=desc.version,
            approved=approved,
            wanted=wanted,
            diff=AccessDiff.between(approved or wanted, wanted, default_limits=self.limits),
            old_sha256=known.get("bundleSha256"),
            new_sha256=bundle_sha256,
        )

    def upgrade_plugin(
        self,
        descriptor: PluginDescriptor | dict[str, Any] | str | Path,
        source: Any = None,
        *,
        approve: bool = False,
        trusted: bool | None = None,
        bundle_sha256: str | None = None,
    ) -> PluginInfo:
        """Replace an installed plugin's code and descriptor, keeping its data and state.

        The new descriptor's access is compared with what was approved
        (:meth:`upgrade_plan`): asking for more needs ``approve=True`` (else
        :class:`ConsentRequiredError`); the approval recorded becomes what it asks now.
        No lifecycle hook fires (EmDash has no upgrade hook; the plugin stays installed and
        keeps its enabled state, KV, storage and cron tasks). A plugin already added to
        this runtime is swapped in place: calls that start afterwards use the new code.
        ``trusted=None`` keeps the recorded mode; ``bundle_sha256`` pins the bundle's digest.
        """
        desc = PluginDescriptor.load(descriptor)
        pid = desc.id
        with self._lock:
            self._check_open()
            plan = self.upgrade_plan(desc, bundle_sha256=bundle_sha256)
            if plan.needs_consent and not approve:
                raise refusal(pid, plan.diff)
            known = self.store.plugin_registry.get(pid)
            assert known is not None  # upgrade_plan raised otherwise
            current = self._plugins.get(pid)
            if current is None:
                mode = bool(known["trusted"]) if trusted is None else trusted
                return self._add(
                    desc, source, mode, None, approve=True, bundle_sha256=bundle_sha256
                )
            mode = current.trusted if trusted is None else trusted
            # The same load checks as add (load_host): new code must not get past an upgrade
            # what add refuses (a public "admin" route would publish admin answers).
            host, sandboxed = self.load_host(desc, source, mode)
            old = current.host
            try:
                self.store.plugin_documents.sync_indexes(pid, desc.storage)
                self.store.plugin_registry.upsert(
                    pid,
                    version=desc.version,
                    enabled=current.enabled,
                    trusted=mode,
                    pending=known.get("pending"),
                    approved=plan.wanted.to_json(),
                    bundle_sha256=bundle_sha256,
                )
            except BaseException:
                if not _same_workers(host, old):
                    host.close()
                raise
            info = PluginInfo(host, sandboxed=sandboxed, enabled=current.enabled)
            self._plugins[pid] = info  # same key: the plugin keeps its place in the order
            self._rebuild()
            # Identical code and info load into the very same sandbox workers: closing the
            # old host would then stop the new one.
            if not _same_workers(host, old):
                old.close()
            if plan.diff.changed or plan.old_version != plan.new_version:
                self.log.info(
                    "Plugin %s upgraded %s -> %s (%s)",
                    pid,
                    plan.old_version,
                    plan.new_version,
                    "; ".join(plan.diff.lines()) or "access unchanged",
                )
            return info

    def _approval_to_record(
        self, desc: PluginDescriptor, known: dict[str, Any] | None, approve: bool
    ) -> str | None:
        """The approval to write with this add (``None``: keep the recorded one), or
        :class:`ConsentRequiredError` when the descriptor asks for more than was approved."""
        wanted = Approval.of(desc)
        approved = None if known is None else _recorded_approval(known)
        if approved is None:
            # First add (or a row from before consent was recorded): what it asks now is
            # what the operator approves by adding it.
            return wanted.to_json()
        diff = AccessDiff.between(approved, wanted, default_limits=self.limits)
        if diff.escalates and not approve:
            raise refusal(desc.id, diff)
        return wanted.to_json() if diff.changed else None

    def load_host(
        self,
        desc: PluginDescriptor,
        source: Any = None,
        trusted: bool = False,
        *,
        problems: list[str] | None = None,
    ) -> tuple[PluginHost, bool]:
        """Load a plugin's code into its host and check it; ``(host, sandboxed)``.

        The one load path: ``add_plugin`` and ``emdash check`` both run it (allowed
        imports and the ``plugin`` binding in the worker or importer, hook names, route
        schemas, each hook's capability). Nothing is registered and no hook runs; a
        failure closes the host and raises the first error (it names the plugin).
        ``problems``: a list to append each hook problem to instead of raising them (what
        ``emdash check`` reports line by line); the host is then returned anyway.
        """
        code = locate(desc, source)
        host, sandboxed = self._make_host(desc, code, trusted)
        try:
            check_route_schemas(host)
            check_admin_surface(host)
            if problems is None:
                check_plugin_hooks(host)
            else:
                problems.extend(hook_problems(host))
        except BaseException:
            host.close()
            raise
        return host, sandboxed

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
            trusted=trusted,
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
        storage indexes. Crash-safe: the removal is recorded (``pending``) before its first
        hook, and a removal cut off by a crash is finished when the plugin is next added.
        """
        with self._lock:
            info = self._get(plugin_id)
            owed = ("remove" if info.enabled else "uninstall") + ("-data" if delete_data else "")
            # Recorded (disabled, removal owed) before any hook runs: from here on a crash
            # leaves a plugin that the next add_plugin finishes removing, never a plugin
            # half-uninstalled with nothing saying so.
            self.store.plugin_registry.upsert(
                plugin_id,
                version=info.descriptor.version,
                enabled=False,
                trusted=info.trusted,
                pending=owed,
            )
            self._finish_removal(info, owed)
            info.host.close()

    def _finish_removal(self, info: PluginInfo, owed: str) -> None:
        """Run the hooks a removal still owes, then delete what goes with the plugin.

        ``info`` is in ``self._plugins`` (its ctx works during the hooks) and leaves it.
        The data and the registry row are deleted in one transaction: a crash before that
        commit leaves the removal owed (its uninstall hook runs again: at least once), a
        crash after it leaves nothing of the plugin."""
        plugin_id = info.plugin_id
        delete_data = owed.endswith("-data")
        if owed.startswith("remove"):
            self._lifecycle(info.host, "plugin:deactivate", {})
            self.store.plugin_registry.set_pending(
                plugin_id, "uninstall-data" if delete_data else "uninstall"
            )
        if info.enabled:
            info.enabled = False
            self._rebuild()
        # Still registered (so its ctx works) but out of the pipeline: uninstall it.
        self._lifecycle(info.host, "plugin:uninstall", {"deleteData": delete_data})
        del self._plugins[plugin_id]
        self._rebuild()
        self._admission.forget(plugin_id)
        with self.store.transaction():
            # Its exclusive-hook selections are stale now (a plugin that is merely not added
            # yet keeps them: see HookPipeline.resolve_exclusive).
            for key, value in self.store.options.list(EXCLUSIVE_OPTION_PREFIX).items():
                if value == plugin_id:
                    self.store.options.delete(key)
            self._cron.delete_plugin_tasks(plugin_id)
            if delete_data:
                self.store.kv_entries.delete_all(plugin_id)
                self.store.plugin_documents.delete_plugin_data(plugin_id)
                self.store.plugin_documents.drop_indexes(plugin_id)
            self.store.plugin_registry.delete(plugin_id)

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
        logs = invocation_logs.InvocationLogs()
        try:
            with invocation_logs.capture() as logs:
                result = info.host.invoke_route(name, route_ctx)
        except Exception as exc:
            outcome, limit = classify_error(exc)
            cpu = getattr(exc, "cpu_ms", None)  # the host's figure, sandboxed plugins only
            self._audit(
                plugin_id, "route", name, outcome, started, cpu, limit, str(exc), logs.stored()
            )
            raise
        self._audit(
            plugin_id,
            "route",
            name,
            "ok",
            started,
            result.cpu_ms,
            None,
            None,
            logs.stored(),
            committed=result.audited,
        )
        return result.value

    # -- audit -----------------------------------------------------------------------------

    def audit_log(self, limit: int = 100, plugin_id: str | None = None) -> list[dict[str, Any]]:
        """The newest audit records first (every hook, route, lifecycle and cron invocation, and every sandboxed load)."""
        return self.store.audit_records.list(limit=limit, plugin_id=plugin_id)

    def audit_query(self, **filters: Any) -> AuditPage:
        """One page of audit records matching ``filters``, filtered and paged by SQLite
        (:func:`emdash._store._audit_query.query_audit`: plugin_id, kind, outcome,
        since, until, before, after, limit)."""
        return query_audit(self.store.audit_records, **filters)

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
        logs: str | None = None,
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
                logs=logs,
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

        A native handler started from such a thread must run on it (inline): the store's
        transaction and invocation scope are per thread (see ``Store.in_scope_here``).
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
