"""Result types of hook and route invocations, and the plugin-host interface.

These are plain dataclasses: what one handler did (:class:`HookResult`), what a whole hook
run produced (:class:`HookOutcome`), what an exclusive provider returned
(:class:`ExclusiveOutcome`) and what a plugin host hands back for one invocation
(:class:`InvokeResult`).

:class:`PluginHost` is the one interface the pipeline and the runtime drive, whatever the
mode: ``NativePluginHost`` (in-process, trusted) and ``SandboxedPluginHost`` (forked
workers) both implement it, so ordering, family rules, auditing and error policy are
written once and apply identically to both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._shared._errors import EmDashError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._model._descriptor import PluginDescriptor

__all__ = [
    "ExclusiveOutcome",
    "HookOutcome",
    "HookResult",
    "InvokeResult",
    "PluginHost",
]


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """What a plugin host returns for one invocation: the handler's value and CPU used.

    ``cpu_ms`` is measured by the sandbox for sandboxed plugins; native plugins run on
    shared threads where per-invocation CPU time is not meaningful, so it is ``None``.
    """

    value: Any
    cpu_ms: float | None = None
    #: The invocation committed writes, and its audit record with them: the caller must
    #: not record it again (unless it reports a different outcome).
    audited: bool = False


@dataclass(frozen=True, slots=True)
class HookResult:
    """One handler's part in a hook run.

    ``value`` depends on the family: for chain hooks the chained value *after* this step,
    for veto hooks ``True`` (allowed) or ``False`` (vetoed), for middleware the event or
    message after this step (``False`` when it cancelled), otherwise the handler's return.
    ``error`` is set exactly when ``success`` is false.
    """

    plugin_id: str
    success: bool
    value: Any = None
    error: EmDashError | None = None
    duration_ms: float = 0.0
    cpu_ms: float | None = None

    def __repr__(self) -> str:
        state = "ok" if self.success else f"error={type(self.error).__name__}: {self.error}"
        cpu = "" if self.cpu_ms is None else f", cpu_ms={self.cpu_ms:.1f}"
        return (
            f"HookResult({self.plugin_id!r}, {state}, value={_short(self.value)}, "
            f"duration_ms={self.duration_ms:.1f}{cpu})"
        )


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """The result of ``run_hook``: the final value and every handler's :class:`HookResult`.

    ``value`` is, per family: chain -> the final chained value (``content`` for
    ``content:beforeSave``, ``file`` for ``media:beforeUpload``); veto -> ``True`` unless a
    handler vetoed; middleware -> the final event (or ``message``), or ``False`` when
    cancelled; collect -> the list of contributions; notify / observe -> ``None``.
    ``cancelled_by`` names the first plugin that vetoed (veto) or cancelled (middleware).
    """

    hook: str
    value: Any
    results: list[HookResult] = field(default_factory=list)
    cancelled_by: str | None = None

    @property
    def ok(self) -> bool:
        """True when every handler that ran succeeded."""
        return all(r.success for r in self.results)

    @property
    def allowed(self) -> bool:
        """False when a veto or middleware handler said no (``cancelled_by`` is set)."""
        return self.cancelled_by is None

    @property
    def errors(self) -> list[EmDashError]:
        """The errors of the handlers that failed, in run order."""
        return [r.error for r in self.results if r.error is not None]

    def __repr__(self) -> str:
        extra = f", cancelled_by={self.cancelled_by!r}" if self.cancelled_by else ""
        return (
            f"HookOutcome({self.hook!r}, value={_short(self.value)}, "
            f"results={self.results!r}{extra})"
        )


@dataclass(frozen=True, slots=True)
class ExclusiveOutcome:
    """What the selected provider of an exclusive hook did.

    ``result`` is the provider's return value (``None`` when it failed); ``error`` is set
    when it raised or timed out. ``invoke_exclusive`` never raises: callers decide what a
    provider failure means (a pending comment, a failed email...).
    """

    result: Any
    plugin_id: str
    error: EmDashError | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        state = "ok" if self.error is None else f"error={type(self.error).__name__}: {self.error}"
        return (
            f"ExclusiveOutcome({self.plugin_id!r}, {state}, result={_short(self.result)}, "
            f"duration_ms={self.duration_ms:.1f})"
        )


@runtime_checkable
class PluginHost(Protocol):
    """The interface every loaded plugin offers the pipeline and the runtime.

    ``definition_meta`` is plain data::

        {"hooks":  {name: {"priority", "timeout_ms", "dependencies", "error_policy", "exclusive"}},
         "routes": {name: {"public", "input", "permission", "cache_control"}}}

    ``invoke_hook`` / ``invoke_route`` raise: ``PluginError`` for the plugin's own
    exceptions, ``HookTimeoutError`` when ``timeout_ms`` passed, the sandbox limit errors,
    and bridge errors (``CapabilityError``...) the plugin let escape, unchanged.
    """

    plugin_id: str
    descriptor: PluginDescriptor
    trusted: bool
    definition_meta: dict[str, Any]

    def invoke_hook(self, name: str, event: Any, *, timeout_ms: int) -> InvokeResult: ...

    def invoke_route(
        self, name: str, route_ctx: dict[str, Any], *, timeout_ms: int | None = None
    ) -> InvokeResult: ...

    def route_input_validator(self, name: str) -> Callable[[Any], Any] | None: ...

    def close(self) -> None: ...


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
