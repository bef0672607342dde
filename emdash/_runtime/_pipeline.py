"""The hook pipeline: which handlers run for a hook, in what order, and what their results mean.

A :class:`HookPipeline` is built from the plugin hosts of the *enabled* plugins (native and
sandboxed alike; it never knows the mode) and is rebuilt whenever that set changes. At
construction it:

1. registers each plugin's hooks in registration order, dropping (with EmDash's warning) a
   hook whose required capability the plugin did not declare (``Runtime.add_plugin``
   refuses such a plugin first, naming the capability; this is the second line), and
   ``page:fragments`` of sandboxed plugins (fragments are raw HTML/script: trusted plugins
   only);
2. orders each hook's handlers with a **stable topological sort**: a handler runs after the
   handlers of the plugins it depends on; among the ready ones the lowest priority runs
   first, and equal priorities keep registration order. A cycle or a dependency on a plugin
   without a handler for that hook makes *all remaining* handlers fall back to priority
   order (EmDash's rule), with a warning;
3. resolves exclusive hooks (EmDash's 5 steps) against the selections persisted in the
   options store under ``emdash:exclusive_hook:<name>``.

Family rules (see ``_hooks_catalog``): ``None`` always means "unchanged" and only a result
that ``is False`` vetoes or cancels. ``error_policy="abort"`` re-raises the failing
handler's error out of :meth:`HookPipeline.run_hook` for chain, veto, middleware and notify
hooks; ``"continue"`` records it and goes on. Observe and collect hooks log errors and never
raise. Every handler invocation is audited (ok / error / timeout / limit).

Two deliberate differences from EmDash, the same in both modes:

- Chain and middleware results are checked: a chain handler must return a dict or
  ``None``; a middleware handler a dict, ``False`` or ``None``. Anything else is reported as
  that handler's :class:`PluginError` (under its error policy) instead of silently replacing
  the content with, say, a string.
- Every handler of an ``exclusive``-family hook (``email:deliver``, ``comment:moderate``) is a
  provider, with or without ``exclusive=True``: those hooks have no broadcast run, so a
  handler that forgot the flag would otherwise never be called.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .._bridge import _invocation_logs as invocation_logs
from .._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult, InvokeResult, PluginHost
from .._services._hook_runner import caller_deadline, remaining_ms
from .._shared._errors import (
    BridgeError,
    CpuLimitExceeded,
    EmDashError,
    HookTimeoutError,
    MemoryLimitExceeded,
    NotFoundError,
    PluginError,
    StorageError,
    SubrequestLimitExceeded,
    WallTimeExceeded,
)
from .._shared._hooks_catalog import HOOK_NAMES, HOOKS, HookSpec

__all__ = [
    "EXCLUSIVE_OPTION_PREFIX",
    "AuditSink",
    "HookEntry",
    "HookPipeline",
    "OptionStore",
    "PluginHost",
    "classify_error",
    "failed_cpu_ms",
    "sort_entries",
]

log = logging.getLogger("emdash.hooks")

EXCLUSIVE_OPTION_PREFIX = "emdash:exclusive_hook:"

# Families that run_hook broadcasts; the others have their own entry points.
_BROADCAST_FAMILIES = frozenset({"chain", "veto", "middleware", "notify", "observe", "collect"})


class OptionStore(Protocol):
    """Where exclusive-hook selections persist (the store's options table)."""

    def get(self, key: str, /) -> Any: ...

    def set(self, key: str, value: Any, /) -> None: ...

    def delete(self, key: str, /) -> object: ...


class AuditSink(Protocol):
    """Receives one record per handler invocation."""

    def __call__(
        self,
        *,
        plugin_id: str,
        kind: str,
        name: str,
        outcome: str,
        duration_ms: float,
        cpu_ms: float | None,
        error: str | None,
        limit: str | None,
        logs: str | None = None,
        committed: bool = False,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class HookEntry:
    """One registered handler: a plugin's settings for one hook."""

    plugin_id: str
    host: PluginHost
    priority: float
    timeout_ms: int
    dependencies: tuple[str, ...]
    error_policy: str
    exclusive: bool
    order: int
    """Registration order across the whole pipeline (the final tie-break)."""


def classify_error(err: BaseException) -> tuple[str, str | None]:
    """Audit outcome of a failed invocation: ``("timeout"|"limit"|"error", limit name)``.

    A :class:`StorageError` is an ``"error"`` whose message starts with ``Storage
    failure``: the site's storage failed while the plugin ran, not the plugin."""
    if isinstance(err, HookTimeoutError):
        return "timeout", None
    for cls, limit in _LIMITS:
        if isinstance(err, cls):
            # A limit the error names itself (a load over load_cpu_ms is a CPU error too).
            named = getattr(err, "limit_name", None)
            return "limit", named if type(named) is str else limit
    return "error", None


def failed_cpu_ms(err: BaseException) -> float | None:
    """The host-measured CPU time a failed sandboxed invocation carries, for the audit.

    The sandbox attaches it to its errors (a call killed by its own CPU timer: the limit,
    which it used at least); None for native plugins and errors with no figure.
    """
    cpu = getattr(err, "cpu_ms", None)
    if type(cpu) is float or (type(cpu) is int and cpu >= 0):
        return float(cpu)
    return None


_LIMITS: tuple[tuple[type[EmDashError], str], ...] = (
    (CpuLimitExceeded, "cpu_ms"),
    (MemoryLimitExceeded, "memory_mb"),
    (WallTimeExceeded, "wall_ms"),
    (SubrequestLimitExceeded, "subrequests"),
)


def sort_entries(
    entries: list[HookEntry], hook: str, logger: logging.Logger = log
) -> list[HookEntry]:
    """Order one hook's handlers: dependencies first, then priority, then registration.

    ``entries`` must be in registration order. Python's sort is stable, so equal
    priorities keep that order in the fallback too.
    """
    remaining = sorted(entries, key=lambda e: e.order)
    done: set[str] = set()
    ordered: list[HookEntry] = []
    while remaining:
        ready = [e for e in remaining if all(d in done for d in e.dependencies)]
        if not ready:
            logger.warning(
                "Hook dependency cycle or missing dependency detected among plugins: %s "
                '(hook "%s"). Falling back to priority order.',
                ", ".join(e.plugin_id for e in remaining),
                hook,
            )
            ordered.extend(sorted(remaining, key=lambda e: e.priority))
            break
        first = min(ready, key=lambda e: (e.priority, e.order))
        ordered.append(first)
        done.add(first.plugin_id)
        remaining.remove(first)
    return ordered


class HookPipeline:
    """Ordered handlers of the enabled plugins, and the rules that combine their results.

    ``hosts`` are the enabled plugins' hosts in registration order. ``options`` persists
    exclusive selections (in memory only when ``None``); ``audit`` receives one record per
    handler invocation. ``known`` is every plugin id the runtime has loaded, enabled or not
    (see :meth:`resolve_exclusive`). A pipeline is immutable apart from exclusive
    selections; the runtime builds a new one when the set of enabled plugins changes.
    """

    def __init__(
        self,
        hosts: Iterable[PluginHost],
        *,
        options: OptionStore | None = None,
        audit: AuditSink | None = None,
        logger: logging.Logger | None = None,
        known: Iterable[str] | None = None,
    ) -> None:
        self._log = logger or log
        self._known = None if known is None else frozenset(known)
        self._options = options
        self._audit = audit
        self._hosts: dict[str, PluginHost] = {}
        registered: dict[str, list[HookEntry]] = {}
        order = 0
        for host in hosts:
            self._hosts[host.plugin_id] = host
            for name, meta in host.definition_meta.get("hooks", {}).items():
                spec = HOOKS.get(name)
                if spec is None or not self._admit(host, spec):
                    continue
                registered.setdefault(name, []).append(
                    HookEntry(
                        plugin_id=host.plugin_id,
                        host=host,
                        priority=meta["priority"],
                        timeout_ms=meta["timeout_ms"],
                        dependencies=tuple(meta["dependencies"]),
                        error_policy=meta["error_policy"],
                        exclusive=bool(meta["exclusive"]) or spec.family == "exclusive",
                        order=order,
                    )
                )
                order += 1
        self._handlers = {
            name: sort_entries(entries, name, self._log) for name, entries in registered.items()
        }
        # Providers stay in registration order: "the first preferred match wins" is about
        # the order plugins were added, not about priorities.
        self._providers: dict[str, list[HookEntry]] = {}
        for name, entries in registered.items():
            providers = [e for e in entries if e.exclusive]
            if providers:
                self._providers[name] = providers
        self._selected: dict[str, str] = {}
        self.resolve_exclusive()

    # -- registration ----------------------------------------------------------------

    def _admit(self, host: PluginHost, spec: HookSpec) -> bool:
        pid = host.plugin_id
        cap = spec.capability
        if cap is not None and cap not in host.descriptor.capabilities:
            self._log.warning(
                '[hooks] Plugin "%s" declares %s hook without %s capability — skipping',
                pid,
                spec.name,
                cap,
            )
            return False
        if spec.name == "page:fragments" and not host.trusted:
            self._log.warning(
                '[hooks] Plugin "%s" declares page:fragments hook but is not trusted — '
                "page fragments are injected unescaped, so only trusted plugins may add "
                "them; skipping",
                pid,
            )
            return False
        return True

    @property
    def plugin_ids(self) -> list[str]:
        """The plugins in this pipeline, in registration order."""
        return list(self._hosts)

    def handlers(self, name: str) -> list[str]:
        """Plugin ids of ``name``'s broadcast handlers, in run order."""
        return [e.plugin_id for e in self._broadcast(name)]

    def has_handlers(self, name: str) -> bool:
        return bool(self._broadcast(name))

    # -- exclusive hooks -------------------------------------------------------------

    def resolve_exclusive(self) -> None:
        """EmDash's 5-step resolution, for every exclusive hook that has a provider.

        1. keep a stored selection that names an active provider; 2. delete a stale one;
        3. auto-select the only provider; 4. else the first provider whose descriptor lists
        the hook in ``preferred``; 5. else leave it unselected (an admin must choose).
        A failing options read skips that hook only.

        One refinement: a stored selection naming a plugin that is not loaded *at all*
        (not in ``known``) is not stale yet, because plugins are added one by one at boot
        and the runtime rebuilds after each. It is kept in the options untouched, and steps
        3-5 choose a provider in memory only, until that plugin is added (step 1 then
        applies) or an admin selects another. ``remove_plugin`` deletes selections of the
        plugin it removes, so those do become stale.
        """
        for name, providers in self._providers.items():
            ids = [e.plugin_id for e in providers]
            key = EXCLUSIVE_OPTION_PREFIX + name
            try:
                stored = (
                    self._options.get(key)
                    if self._options is not None
                    else (self._selected.get(name))
                )
            except Exception:
                self._log.exception('[hooks] Could not read the selection for "%s"', name)
                continue
            if isinstance(stored, str) and stored in ids:
                self._selected[name] = stored
                continue
            chosen: str | None = None
            absent = (
                isinstance(stored, str) and self._known is not None and (stored not in self._known)
            )
            if len(ids) == 1:
                chosen = ids[0]
            else:
                chosen = next(
                    (pid for pid in ids if name in self._hosts[pid].descriptor.preferred),
                    None,
                )
            if absent:
                if chosen is None:
                    self._selected.pop(name, None)
                else:
                    self._selected[name] = chosen
                continue
            self._persist(name, chosen, clear_stale=stored is not None)

    def _persist(self, name: str, plugin_id: str | None, *, clear_stale: bool = True) -> None:
        key = EXCLUSIVE_OPTION_PREFIX + name
        try:
            if self._options is not None:
                if plugin_id is not None:
                    self._options.set(key, plugin_id)
                elif clear_stale:
                    self._options.delete(key)
        except Exception:
            self._log.exception('[hooks] Could not persist the selection for "%s"', name)
        if plugin_id is None:
            self._selected.pop(name, None)
        else:
            self._selected[name] = plugin_id

    def exclusive_hooks(self) -> dict[str, dict[str, Any]]:
        """``{hook: {"providers": [plugin ids], "selected": plugin id or None}}``."""
        return {
            name: {
                "providers": [e.plugin_id for e in providers],
                "selected": self._selected.get(name),
            }
            for name, providers in self._providers.items()
        }

    def selected_provider(self, name: str) -> str | None:
        return self._selected.get(name)

    def select_provider(self, name: str, plugin_id: str | None) -> None:
        """Choose (or, with ``None``, clear) the provider of an exclusive hook; persisted."""
        providers = self._providers.get(name)
        if providers is None:
            raise NotFoundError(
                f'"{name}" is not an exclusive hook of any enabled plugin. Exclusive hooks now: '
                + (", ".join(sorted(self._providers)) or "none")
            )
        ids = [e.plugin_id for e in providers]
        if plugin_id is not None and plugin_id not in ids:
            raise BridgeError(
                f'Plugin "{plugin_id}" does not provide the exclusive hook "{name}". '
                f"Choose one of: {', '.join(ids)}"
            )
        self._persist(name, plugin_id)

    def invoke_exclusive(self, name: str, event: Any) -> ExclusiveOutcome | None:
        """Run only the selected provider of ``name``. Never raises.

        ``None`` when no provider is selected (or the selected plugin has no handler).
        A provider failure is returned in ``ExclusiveOutcome.error``.
        """
        pid = self._selected.get(name)
        if pid is None:
            return None
        entry = next((e for e in self._providers.get(name, ()) if e.plugin_id == pid), None)
        if entry is None:
            return None
        value, err, duration, _cpu = self._invoke(entry, name, event)
        if err is not None:
            self._report(entry, name, err)
            return ExclusiveOutcome(None, pid, err, duration)
        return ExclusiveOutcome(value, pid, None, duration)

    # -- single-target hooks ---------------------------------------------------------

    def cron_timeout_ms(self) -> int:
        """The longest timeout among the enabled plugins' cron hooks (ms; 0: none): how
        long a claimed task may legitimately stay ``running`` once it started."""
        return max((e.timeout_ms for e in self._handlers.get("cron", ())), default=0)

    def invoke_cron(self, plugin_id: str, event: Any) -> HookResult:
        """Dispatch a due cron task to the plugin that owns it. Never raises."""
        entry = next((e for e in self._handlers.get("cron", ()) if e.plugin_id == plugin_id), None)
        if entry is None:
            return HookResult(
                plugin_id,
                False,
                error=NotFoundError(
                    f'Plugin "{plugin_id}" has no cron hook registered (or is not enabled); '
                    'add a "cron" hook to handle its scheduled tasks',
                    plugin_id=plugin_id,
                ),
            )
        value, err, duration, cpu = self._invoke(entry, "cron", event)
        if err is not None:
            self._report(entry, "cron", err)
        return HookResult(plugin_id, err is None, value, err, duration, cpu)

    def invoke_target(self, host: PluginHost, name: str, event: Any) -> HookResult | None:
        """Run ``host``'s own handler for a lifecycle hook, in or out of the pipeline.

        Lifecycle hooks go to one plugin that may not be enabled (deactivate/uninstall run
        around removal), so this takes the host directly. ``None`` when the plugin has no
        handler for ``name``. Never raises.
        """
        meta = host.definition_meta.get("hooks", {}).get(name)
        if meta is None:
            return None
        entry = HookEntry(
            host.plugin_id,
            host,
            meta["priority"],
            meta["timeout_ms"],
            (),
            "continue",
            False,
            0,
        )
        value, err, duration, cpu = self._invoke(entry, name, event)
        if err is not None:
            self._report(entry, name, err)
        return HookResult(host.plugin_id, err is None, value, err, duration, cpu)

    # -- broadcast hooks -------------------------------------------------------------

    def run_hook(self, name: str, event: Any) -> HookOutcome:
        """Run every handler of a broadcast hook under its family's rule."""
        spec = HOOKS.get(name)
        if spec is None:
            raise EmDashError(f'Unknown hook "{name}". Valid hooks: {", ".join(HOOK_NAMES)}')
        if spec.family not in _BROADCAST_FAMILIES:
            where = {
                "exclusive": f'invoke_exclusive("{name}", event)',
                "cron": "invoke_cron(plugin_id, event)",
                "lifecycle": "enable_plugin / disable_plugin / remove_plugin",
            }[spec.family]
            article = "an" if spec.family[0] in "aeiou" else "a"
            raise EmDashError(
                f'Hook "{name}" is {article} {spec.family} hook and is not broadcast; use {where}'
            )
        if type(event) is not dict:
            raise EmDashError(f'The event for "{name}" must be a dict, got {type(event).__name__}')
        if spec.chain_key is not None and spec.chain_key not in event:
            raise EmDashError(f'The event for "{name}" must have a "{spec.chain_key}" key')
        return _RUNNERS[spec.family](self, spec, self._broadcast(name), event)

    def _broadcast(self, name: str) -> list[HookEntry]:
        """The handlers a broadcast of ``name`` runs (callers only read the list)."""
        entries = self._handlers.get(name, _NO_ENTRIES)
        if name in self._selected:
            # While a provider is selected, exclusive handlers run only through
            # invoke_exclusive; without a selection they take part in the broadcast.
            return [e for e in entries if not e.exclusive]
        return entries

    def _run_chain(
        self, spec: HookSpec, entries: list[HookEntry], event: dict[str, Any]
    ) -> HookOutcome:
        key = spec.chain_key or ""
        value = event[key]
        results: list[HookResult] = []
        for entry in entries:
            result, err, duration, cpu = self._invoke(
                entry, spec.name, {**event, key: value}, _expect_dict_or_none(key)
            )
            if err is not None:
                self._fail(entry, spec.name, err, duration, cpu, results, may_abort=True)
                continue
            if result is not None:
                value = result
            results.append(HookResult(entry.plugin_id, True, value, None, duration, cpu))
        return HookOutcome(spec.name, value, results)

    def _run_veto(
        self, spec: HookSpec, entries: list[HookEntry], event: dict[str, Any]
    ) -> HookOutcome:
        cancelled_by: str | None = None
        results: list[HookResult] = []
        for entry in entries:  # no short-circuit: every handler runs after a veto
            result, err, duration, cpu = self._invoke(entry, spec.name, event, vetoable=True)
            if err is not None:
                self._fail(entry, spec.name, err, duration, cpu, results, may_abort=True)
                continue
            allowed = result is not False
            if not allowed and cancelled_by is None:
                cancelled_by = entry.plugin_id
            results.append(HookResult(entry.plugin_id, True, allowed, None, duration, cpu))
        return HookOutcome(spec.name, cancelled_by is None, results, cancelled_by)

    def _run_middleware(
        self, spec: HookSpec, entries: list[HookEntry], event: dict[str, Any]
    ) -> HookOutcome:
        key = spec.chain_key
        current: Any = event[key] if key is not None else event
        results: list[HookResult] = []
        for entry in entries:
            # Each handler sees a shallow copy, so dropping a key in one handler does not
            # reach the caller's dict unless the handler returns the new version.
            copy = dict(current) if type(current) is dict else current
            step = {**event, key: copy} if key is not None else copy
            result, err, duration, cpu = self._invoke(
                entry, spec.name, step, _expect_middleware(key), vetoable=True
            )
            if err is not None:
                self._fail(entry, spec.name, err, duration, cpu, results, may_abort=True)
                continue
            if result is False:
                results.append(HookResult(entry.plugin_id, True, False, None, duration, cpu))
                return HookOutcome(spec.name, False, results, entry.plugin_id)
            if result is not None:
                current = result
            results.append(HookResult(entry.plugin_id, True, current, None, duration, cpu))
        return HookOutcome(spec.name, current, results)

    def _run_notify(
        self, spec: HookSpec, entries: list[HookEntry], event: dict[str, Any]
    ) -> HookOutcome:
        return self._run_all(spec, entries, event, may_abort=True)

    def _run_observe(
        self, spec: HookSpec, entries: list[HookEntry], event: dict[str, Any]
    ) -> HookOutcome:
        return self._run_all(spec, entries, event, may_abort=False)

    def _run_collect(
        self, spec: HookSpec, entries: list[HookEntry], event: dict[str, Any]
    ) -> HookOutcome:
        outcome = self._run_all(spec, entries, event, may_abort=False)
        contributions: list[Any] = []
        for r in outcome.results:
            if not r.success or r.value is None:
                continue
            if type(r.value) is list:
                contributions.extend(v for v in r.value if v is not None)
            else:
                contributions.append(r.value)
        return HookOutcome(spec.name, contributions, outcome.results)

    def _run_all(
        self,
        spec: HookSpec,
        entries: list[HookEntry],
        event: dict[str, Any],
        *,
        may_abort: bool,
    ) -> HookOutcome:
        results: list[HookResult] = []
        for entry in entries:
            result, err, duration, cpu = self._invoke(entry, spec.name, event)
            if err is not None:
                self._fail(entry, spec.name, err, duration, cpu, results, may_abort=may_abort)
                continue
            results.append(HookResult(entry.plugin_id, True, result, None, duration, cpu))
        return HookOutcome(spec.name, None, results)

    # -- one invocation --------------------------------------------------------------

    def _invoke(
        self,
        entry: HookEntry,
        name: str,
        event: Any,
        check: Callable[[Any, HookEntry, str], None] | None = None,
        *,
        vetoable: bool = False,
    ) -> tuple[Any, EmDashError | None, float, float | None]:
        """Call one handler; return (value, error, duration_ms, cpu_ms) and audit it.

        ``vetoable``: a ``False`` result is audited as ``vetoed`` (veto and middleware)."""
        started = time.perf_counter()
        value: Any = None
        err: EmDashError | None = None
        cpu: float | None = None
        committed = False  # the invocation's commit wrote its audit record already
        timeout_ms = entry.timeout_ms
        deadline = caller_deadline()
        # The log capture is opened and closed here directly, not through the
        # invocation_logs.capture() context manager: this runs once per handler call.
        logs, token = invocation_logs.begin()
        try:
            try:
                if deadline is not None:
                    # Run on behalf of another invocation (ctx.email.send): no longer than
                    # the time it has left, and not at all once it has none.
                    left = remaining_ms(deadline)
                    if left <= 0:
                        raise HookTimeoutError(
                            f"Hook {name} of plugin {entry.plugin_id} was not run: the "
                            "invocation it runs on behalf of reached its deadline first",
                            plugin_id=entry.plugin_id,
                        )
                    timeout_ms = min(timeout_ms, max(1, int(left)))
                result: InvokeResult = entry.host.invoke_hook(name, event, timeout_ms=timeout_ms)
            finally:
                invocation_logs.end(token)
            value, cpu, committed = result.value, result.cpu_ms, result.audited
            if check is not None:
                check(value, entry, name)
        except EmDashError as exc:
            err = exc
            cpu = failed_cpu_ms(exc)
        except Exception as exc:  # a host bug, not the plugin's: still never crash the run
            err = PluginError(
                f"Plugin {entry.plugin_id} failed during hook:{name}: {type(exc).__name__}: {exc}",
                plugin_id=entry.plugin_id,
                hook=name,
                error_type=type(exc).__name__,
            )
        duration = (time.perf_counter() - started) * 1000.0
        self._record(
            entry.plugin_id,
            name,
            err,
            duration,
            cpu,
            vetoed=vetoable and value is False,
            logs=logs.stored(),
            committed=committed,
        )
        return (None if err is not None else value), err, duration, cpu

    def _record(
        self,
        plugin_id: str,
        name: str,
        err: EmDashError | None,
        duration: float,
        cpu: float | None,
        *,
        vetoed: bool = False,
        logs: str | None = None,
        committed: bool = False,
    ) -> None:
        if self._audit is None:
            return
        if err is not None:
            outcome, limit = classify_error(err)
        else:
            outcome, limit = ("vetoed" if vetoed else "ok"), None
        try:
            self._audit(
                plugin_id=plugin_id,
                kind=_AUDIT_KIND[name],
                name=name,
                outcome=outcome,
                duration_ms=duration,
                cpu_ms=cpu,
                error=None if err is None else str(err),
                limit=limit,
                logs=logs,
                committed=committed,
            )
        except Exception:  # auditing must never change what a hook does
            self._log.exception("[hooks] Could not record the audit entry for %s", name)

    def _fail(
        self,
        entry: HookEntry,
        name: str,
        err: EmDashError,
        duration: float,
        cpu: float | None,
        results: list[HookResult],
        *,
        may_abort: bool,
    ) -> None:
        results.append(HookResult(entry.plugin_id, False, None, err, duration, cpu))
        self._report(entry, name, err)
        if may_abort and entry.error_policy == "abort":
            raise err

    def _report(self, entry: HookEntry, name: str, err: EmDashError) -> None:
        trace = getattr(err, "traceback_text", None)
        # Traceback lines are prefixed so that text the plugin controls (its exception
        # message is the traceback's last line) can never pass for a line of our own log.
        shown = "".join(f"\n    | {line}" for line in trace.splitlines()) if trace else ""
        if isinstance(err, StorageError):
            # Not the plugin's doing: say so, so an operator fixes the database instead.
            self._log.error(
                '[hooks] Storage failed while plugin "%s" ran its %s handler: %s',
                entry.plugin_id,
                name,
                err,
            )
            return
        self._log.error(
            '[hooks] Plugin "%s" %s handler failed: %s%s', entry.plugin_id, name, err, shown
        )


_NO_ENTRIES: list[HookEntry] = []

# Broadcast family -> the method that runs it.
_RUNNERS: dict[
    str, Callable[[HookPipeline, HookSpec, list[HookEntry], dict[str, Any]], HookOutcome]
] = {family: getattr(HookPipeline, f"_run_{family}") for family in _BROADCAST_FAMILIES}

# Hook name -> the audit record's kind.
_AUDIT_KIND = {
    name: spec.family if spec.family in ("lifecycle", "cron") else "hook"
    for name, spec in HOOKS.items()
}


def _expect_dict_or_none(key: str) -> Callable[[Any, HookEntry, str], None]:
    def check(value: Any, entry: HookEntry, name: str) -> None:
        if value is not None and not isinstance(value, dict):
            raise PluginError(
                f"Plugin {entry.plugin_id} returned {type(value).__name__} from {name}; "
                f'return a dict to replace "{key}", or None to keep it',
                plugin_id=entry.plugin_id,
                hook=name,
                error_type="TypeError",
            )

    return check


def _expect_middleware(key: str | None) -> Callable[[Any, HookEntry, str], None]:
    what = f'"{key}"' if key else "the event"

    def check(value: Any, entry: HookEntry, name: str) -> None:
        if value is not None and value is not False and not isinstance(value, dict):
            raise PluginError(
                f"Plugin {entry.plugin_id} returned {type(value).__name__} from {name}; "
                f"return a dict to replace {what}, False to cancel, or None to keep it",
                plugin_id=entry.plugin_id,
                hook=name,
                error_type="TypeError",
            )

    return check
