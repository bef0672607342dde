"""Running untrusted plugins in sandbox workers: the host side.

:class:`SandboxSupport` owns one :class:`sandbox.Supervisor` per runtime (one fork server,
started on first use) configured with emdash's *shared modules* as preludes, so that plugin
code in a worker imports the same ``define_plugin``/``HookConfig``/``ctx`` as native code.

:class:`SandboxedPluginHost` is the plugin-host interface the pipeline drives, for one
sandboxed plugin: it turns each hook or route invocation into a worker call whose service
calls are answered by ``Bridge.dispatch`` for that plugin (so the bridge stays the only
place capabilities and scoping are enforced), counts subrequests, wraps the invocation in
``store.invocation()`` (a failed invocation leaves no partial write), and translates the
sandbox's generic errors into emdash errors that name the plugin and the operation.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import sandbox

from .._bridge._dispatch import CallBudget
from .._model._descriptor import Limits, PluginDescriptor
from .._shared import _errors as errors
from .._shared import prelude_sources
from .._shared._plugin_api import check_route_name
from ._outcome import InvokeResult

if TYPE_CHECKING:
    from .._bridge._dispatch import Bridge
    from .._store import Store
    from .._store._db import InvocationScope

__all__ = ["SandboxSupport", "SandboxedPluginHost", "prelude_sources"]

log = logging.getLogger("emdash.sandbox")

_HOOK_META_KEYS = {"priority", "timeout_ms", "dependencies", "error_policy", "exclusive"}
# The worker-side functions (prelude "module:function" names) behind each invocation kind.
_ENTRY_POINTS = {
    fn: f"emdash._shared._worker_dispatch:{fn}" for fn in ("invoke_hook", "invoke_route")
}
_ROUTE_META_KEYS = {"public", "input", "permission", "cache_control"}


class SandboxSupport:
    """One per runtime: the supervisor and the defaults for sandboxed plugins."""

    def __init__(self, *, store: Store, bridge: Bridge, limits: Limits, pool_size: int = 2) -> None:
        self.store = store
        self.bridge = bridge
        self.limits = limits
        self.pool_size = pool_size
        # Tests only: lets a test act as code that broke out of the language layer
        # (sandbox's raw_exec_for_tests). Read when the supervisor starts.
        self.allow_raw_exec_for_tests = False
        self._supervisor: sandbox.Supervisor | None = None
        self._lock = threading.Lock()

    def supervisor(self) -> sandbox.Supervisor:
        with self._lock:
            if self._supervisor is None:
                availability = sandbox.is_available()
                if not availability.ok:
                    raise errors.SandboxNotAvailableError(
                        "Plugin sandboxing is not available on this host: "
                        f"{availability.reason}. Run untrusted plugins on a Linux host with "
                        "seccomp, or add this plugin with trusted=True if you trust its code."
                    )
                self._supervisor = sandbox.Supervisor(
                    preludes=prelude_sources(),
                    expose={"emdash": "emdash._shared._plugin_api"},
                    worker_error_encoder="emdash._shared._errors:error_to_wire",
                    worker_error_decoder="emdash._shared._errors:error_from_wire",
                    host_error_encoder=errors.error_to_wire,
                    allow_raw_exec_for_tests=self.allow_raw_exec_for_tests,
                )
                self._supervisor.start()
            return self._supervisor

    def load(
        self, descriptor: PluginDescriptor, files: dict[str, str], entry: str, info: dict[str, Any]
    ) -> SandboxedPluginHost:
        return SandboxedPluginHost(self, descriptor, files, entry, info)

    def close(self) -> None:
        with self._lock:
            if self._supervisor is not None:
                self._supervisor.close()
                self._supervisor = None


class SandboxedPluginHost:
    """The plugin-host interface for one plugin running in sandbox workers."""

    trusted = False
    # Route input schemas are checked and applied in the worker, under the plugin's limits
    # (see _route_input): the host never evaluates a schema an untrusted plugin wrote.
    validates_route_input = True

    def __init__(
        self,
        support: SandboxSupport,
        descriptor: PluginDescriptor,
        files: dict[str, str],
        entry: str,
        info: dict[str, Any],
    ) -> None:
        self.plugin_id = descriptor.id
        self.descriptor = descriptor
        self._support = support
        self.limits = descriptor.effective_limits(support.limits)
        self._sb_limits = sandbox.SandboxLimits(
            cpu_ms=self.limits.cpu_ms,
            memory_mb=self.limits.memory_mb,
            wall_ms=self.limits.wall_ms,
            load_cpu_ms=self.limits.load_cpu_ms,
        )
        self.loads = 0
        """How many times the plugin's code was loaded (one per sandbox worker started)."""
        self.load_cpu_ms = 0.0
        """The host-measured CPU time of all those loads, in ms (a killed load counts its
        limit, which it used at least)."""
        _check_encodable(files, self.plugin_id)
        try:
            self._pool = support.supervisor().load(
                f"{descriptor.id}:{descriptor.version}",
                files,
                entry,
                limits=self._sb_limits,
                pool_size=support.pool_size,
                init=("emdash._shared._worker_dispatch:load", [info]),
                fresh_worker=self.limits.fresh_worker,
                on_load=self._on_load,
            )
        except sandbox.SandboxError as exc:
            raise self._translate(exc, "load") from None
        self.definition_meta = _validate_meta(self._pool.init_result, self.plugin_id)

    # -- the plugin-host interface -----------------------------------------------------

    def invoke_hook(self, name: str, event: Any, *, timeout_ms: int | None = None) -> InvokeResult:
        return self._invoke("invoke_hook", name, event, f"hook:{name}", timeout_ms)

    def invoke_route(
        self, name: str, route_ctx: dict[str, Any], *, timeout_ms: int | None = None
    ) -> InvokeResult:
        return self._invoke("invoke_route", name, route_ctx, f"route:{name}", timeout_ms)

    def route_input_validator(self, name: str) -> None:
        # Sandboxed routes can only declare JSON Schemas (plain data); the runtime validates
        # those itself from definition_meta.
        return None

    def is_healthy(self) -> bool:
        return bool(self._pool.is_healthy())

    def close(self) -> None:
        self._pool.close()

    # -- internals ---------------------------------------------------------------------

    def _on_load(self, report: sandbox.LoadReport) -> None:
        """Count one load of the plugin's code and audit it (kind ``load``).

        Runs in the thread that started the worker: the caller whose call needed one, or the
        pool's background thread for ``fresh_worker``. The audit buffer is thread-safe and
        written outside any invocation's transaction, so a load is recorded even when the
        invocation that caused it fails and rolls back."""
        self.loads += 1
        if report.cpu_ms is not None:
            self.load_cpu_ms += report.cpu_ms
        limit = "load_cpu_ms" if report.outcome == "limit" else None
        if report.outcome == "timeout":
            limit = "wall_ms"
        error = None
        if report.outcome == "limit":
            error = (
                f"Plugin {self.plugin_id} exceeded its load CPU limit of "
                f"{self.limits.load_cpu_ms}ms while loading its code"
            )
        elif report.outcome != "ok":
            error = f"Plugin {self.plugin_id} failed to load its code ({report.outcome})"
        try:
            self._support.store.audit_records.record(
                self.plugin_id,
                "load",
                "load",
                report.outcome,
                report.wall_ms,
                cpu_ms=report.cpu_ms,
                limit=limit,
                error=error,
            )
        except Exception:
            log.exception("Could not record the audit entry for loading %s", self.plugin_id)

    def _invoke(
        self, fn: str, name: str, payload: Any, operation: str, timeout_ms: int | None
    ) -> InvokeResult:
        # The deadline bounds host-side work for this call (http.fetch) like the worker's.
        wall = self.limits.wall_ms if timeout_ms is None else min(self.limits.wall_ms, timeout_ms)
        budget = CallBudget(self.limits.subrequests, deadline_ms=wall)
        dispatch = self._support.bridge.dispatch
        pid = self.plugin_id

        # The first storage failure the bridge hit while serving this call (the host's own
        # error object, never anything the worker says).
        storage_failure: list[errors.StorageError] = []

        def on_host_call(method: str, params: dict[str, Any]) -> Any:
            # Runs in this (the calling) thread: the same store.invocation() scope applies.
            try:
                return dispatch(pid, method, params, budget=budget)
            except errors.StorageError as exc:
                if not storage_failure:
                    storage_failure.append(exc)
                raise

        store = self._support.store
        deadline = time.monotonic() + wall / 1000
        tries = 0

        def attempt(scope: InvocationScope | None) -> sandbox.CallResult:
            # A re-run after a conflict starts over: a fresh budget and failure record,
            # and no more time than the first run had left.
            nonlocal budget, tries
            tries += 1
            left = timeout_ms
            if tries > 1:
                budget = CallBudget(self.limits.subrequests, deadline_ms=wall)
                storage_failure.clear()
                left_ms = max(1, int((deadline - time.monotonic()) * 1000))
                left = left_ms if timeout_ms is None else min(timeout_ms, left_ms)
            try:
                result = self._pool.call(
                    _ENTRY_POINTS[fn],
                    [name, payload],
                    on_host_call=on_host_call,
                    timeout_ms=left,
                )
            except sandbox.SandboxError as exc:
                if storage_failure and isinstance(exc, sandbox.RemoteError):
                    # The plugin's code failed after the site's storage failed under one of
                    # its calls (whether it let the StorageError escape or raised something
                    # else in its place): report the storage failure, not the plugin.
                    failure = storage_failure[0]
                    failure.plugin_id = pid
                    raise failure from None
                err = self._translate(exc, operation, timeout_ms)
                # The host's CPU measurement of a call that failed after its answer came
                # (a plugin exception, a call found over its budget), for the audit.
                cpu = getattr(exc, "cpu_ms", None)
                if cpu is not None:
                    setattr(err, "cpu_ms", cpu)  # noqa: B010
                raise err from None
            if budget.exceeded:
                # The plugin may have caught the error in its own code; the invocation
                # still failed, and store.invocation() rolls its writes back.
                raise errors.SubrequestLimitExceeded(
                    f"Plugin {pid} exceeded its subrequest limit of {self.limits.subrequests} "
                    f"calls during {operation}. Make fewer ctx calls per invocation or raise "
                    "limits.subrequests in the plugin descriptor.",
                    plugin_id=pid,
                )
            if scope is not None:  # for the audit row written with the commit
                scope.cpu_ms = result.cpu_ms
                last[0] = scope
            return result

        # Re-run on a conflict only when the invocation's ctx calls stayed inside the
        # database (the bridge marks the scope for http.fetch, email.send...).
        last: list[InvocationScope | None] = [None]
        result = store.run_invocation(pid, operation, attempt, deadline=deadline)
        audited = last[0] is not None and last[0].audited
        # The host's own measurement of the worker's CPU time (the kernel's count), never the
        # figure the worker reports about itself: that is what the audit records.
        return InvokeResult(result.value, result.cpu_ms, audited=audited)

    def _translate(
        self, exc: sandbox.SandboxError, operation: str, timeout_ms: int | None = None
    ) -> errors.EmDashError:
        """Turn a generic sandbox error into the emdash error the host API documents."""
        pid = self.plugin_id
        lim = self.limits
        if isinstance(exc, errors.EmDashError):
            return exc
        if isinstance(exc, sandbox.CompileError):
            return errors.CompileError(
                f"Plugin {pid} failed to compile: " + "; ".join(exc.errors or [str(exc)]),
                exc.errors,
                plugin_id=pid,
            )
        if isinstance(exc, sandbox.CpuLimitExceeded) and getattr(exc, "phase", None) == "load":
            err = errors.CpuLimitExceeded(
                f"Plugin {pid} exceeded its load CPU limit of {lim.load_cpu_ms}ms while its "
                f"code was loaded in a new sandbox worker (during {operation}): module-level "
                "code and define_plugin run again in every worker. Do less work at import "
                "time or raise limits.load_cpu_ms in the plugin descriptor.",
                plugin_id=pid,
            )
            setattr(err, "limit_name", "load_cpu_ms")  # noqa: B010  (for the audit)
            return err
        if isinstance(exc, sandbox.CpuLimitExceeded):
            return errors.CpuLimitExceeded(
                f"Plugin {pid} exceeded CPU limit of {lim.cpu_ms}ms during {operation}. "
                "Do less work per invocation or raise limits.cpu_ms in the plugin descriptor.",
                plugin_id=pid,
            )
        if isinstance(exc, sandbox.WallTimeExceeded):
            if getattr(exc, "kind", "wall") == "timeout" and timeout_ms is not None:
                return errors.HookTimeoutError(
                    f"Hook timeout after {timeout_ms}ms (plugin {pid}, {operation}); the "
                    "worker was stopped. Raise the hook's timeout_ms if it needs longer.",
                    plugin_id=pid,
                )
            # Exact EmDash wording first, then what to do.
            return errors.WallTimeExceeded(
                f"Plugin {pid} exceeded wall-time limit of {lim.wall_ms}ms during {operation}. "
                "The worker was stopped; raise limits.wall_ms if the plugin needs longer.",
                plugin_id=pid,
            )
        if isinstance(exc, sandbox.MemoryLimitExceeded):
            return errors.MemoryLimitExceeded(
                f"Plugin {pid} exceeded memory limit of {lim.memory_mb} MB during {operation}. "
                "Use less memory or raise limits.memory_mb in the plugin descriptor.",
                plugin_id=pid,
            )
        if isinstance(exc, sandbox.SubrequestLimitExceeded):
            return errors.SubrequestLimitExceeded(str(exc), plugin_id=pid)
        if isinstance(exc, sandbox.SandboxViolation):
            return errors.SandboxViolation(
                f"Plugin {pid} was refused during {operation}: {exc}", plugin_id=pid
            )
        if isinstance(exc, sandbox.SandboxUnavailableError):
            unavailable = errors.SandboxUnavailableError(
                f"Plugin sandbox unavailable for {pid}: {exc}", plugin_id=pid
            )
            # Seconds until the back-off lets a new worker start (None: unknown or now).
            retry = getattr(exc, "retry_after_s", None)
            setattr(unavailable, "retry_after_s", retry)  # noqa: B010
            return unavailable
        if isinstance(exc, sandbox.SandboxNotAvailableError):
            return errors.SandboxNotAvailableError(str(exc), plugin_id=pid)
        if isinstance(exc, sandbox.RemoteError):
            return self._translate_remote(exc, operation)
        return errors.PluginError(
            f"Plugin {pid} failed during {operation}: {exc}",
            plugin_id=pid,
            hook=_hook_of(operation),
            route=_route_of(operation),
            error_type=type(exc).__name__,
        )

    def _translate_remote(self, exc: sandbox.RemoteError, operation: str) -> errors.EmDashError:
        pid = self.plugin_id
        kind = exc.error_type
        if errors.passes_through(kind) and exc.data.get("ours") is True:
            # A bridge error the plugin let escape (or a PluginRouteError raised on purpose):
            # rebuild the same class the native mode would raise.
            err = errors.error_from_wire(exc.data, plugin_id=pid)
            err.plugin_id = pid
            return err
        # Everything in a RemoteError was written by the plugin's side: escape control
        # characters before it reaches logs, the audit table or a terminal.
        kind = errors.clean_text(kind, limit=200)
        return errors.PluginError(
            f"Plugin {pid} raised {kind} during {operation}: {errors.clean_text(str(exc))}",
            plugin_id=pid,
            hook=_hook_of(operation),
            route=_route_of(operation),
            error_type=kind,
            traceback_text=(
                errors.clean_text(exc.traceback_text, limit=20_000, keep_newlines=True)
                if exc.traceback_text is not None
                else None
            ),
        )


def _hook_of(operation: str) -> str | None:
    return operation.removeprefix("hook:") if operation.startswith("hook:") else None


def _route_of(operation: str) -> str | None:
    return operation.removeprefix("route:") if operation.startswith("route:") else None


def _check_encodable(files: dict[str, str], plugin_id: str) -> None:
    """Refuse source that is not valid Unicode text (lone surrogates) before it is sent.

    Such text cannot be encoded as UTF-8, so it could not cross to the worker as JSON; the
    author should hear which file is wrong, as a compile error.
    """
    bad = []
    for path, text in files.items():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            bad.append(f"{path}:{line}: the source contains a character that is not valid text")
    if bad:
        raise errors.CompileError(
            f"Plugin {plugin_id} failed to compile: " + "; ".join(bad), bad, plugin_id=plugin_id
        )


def _validate_meta(raw: Any, plugin_id: str) -> dict[str, Any]:
    """Check the hook/route settings a worker reported: hostile input, exact shapes only."""

    def bad(why: str) -> errors.ManifestError:
        return errors.ManifestError(
            f"Plugin {plugin_id} reported an invalid definition: {why}", plugin_id=plugin_id
        )

    if type(raw) is not dict or set(raw) != {"hooks", "routes"}:
        raise bad("expected {hooks, routes}")
    hooks, routes = raw["hooks"], raw["routes"]
    if type(hooks) is not dict or type(routes) is not dict:
        raise bad("hooks and routes must be objects")
    from .._shared._hooks_catalog import HOOKS

    out_hooks: dict[str, dict[str, Any]] = {}
    for name, meta in hooks.items():
        if name not in HOOKS or type(meta) is not dict or set(meta) != _HOOK_META_KEYS:
            raise bad(f"hook {ascii(name)[:80]}")
        if (
            type(meta["priority"]) not in (int, float)
            or type(meta["timeout_ms"]) is not int
            or meta["timeout_ms"] <= 0
            or type(meta["dependencies"]) is not list
            or not all(type(d) is str for d in meta["dependencies"])
            or meta["error_policy"] not in ("abort", "continue")
            or type(meta["exclusive"]) is not bool
        ):
            raise bad(f"settings of hook {ascii(name)[:80]}")
        out_hooks[name] = dict(meta)
    out_routes: dict[str, dict[str, Any]] = {}
    for name, meta in routes.items():
        if type(name) is not str or type(meta) is not dict or set(meta) != _ROUTE_META_KEYS:
            raise bad(f"route {ascii(name)[:80]}")
        # The worker checked the name too (PluginDefinition.manifest), but a worker may have
        # been taken over: a name with CR/LF or ESC would forge host log lines and audit rows.
        try:
            check_route_name(name)
        except errors.ManifestError:
            raise bad(f"route name {ascii(name[:64])}") from None
        if (
            type(meta["public"]) is not bool
            or (meta["input"] is not None and type(meta["input"]) is not dict)
            or (meta["permission"] is not None and type(meta["permission"]) is not str)
            or (meta["cache_control"] is not None and type(meta["cache_control"]) is not str)
        ):
            raise bad(f"settings of route {ascii(name)[:80]}")
        out_routes[name] = dict(meta)
    return {"hooks": out_hooks, "routes": out_routes}
