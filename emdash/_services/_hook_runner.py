"""What the services need from the runtime: :class:`HookRunner`.

A service gets the store it writes to, a ``HookRunner`` for the hooks it fires, and the
few collaborators it names in its constructor; never the runtime itself. That keeps each
service's reach visible in its signature and lets mypy check every call a service makes.
The runtime's implementation is :class:`emdash._runtime._live_pipeline.LivePipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult

__all__ = ["HookRunner", "caller_deadline", "deadline_scope"]

# The deadline (time.monotonic seconds) of the plugin invocation on whose behalf hooks run
# now. A plugin's ctx.email.send runs the email:* hooks of other plugins *inside* its own
# invocation: those handlers get no more time than the caller has left, so a plugin cannot
# make the host wait past its own wall_ms / timeout_ms through them. Context-local, so it
# follows the call into the thread that makes it and never leaks into another request.
_CALLER_DEADLINE: ContextVar[float | None] = ContextVar("emdash_caller_deadline", default=None)


def caller_deadline() -> float | None:
    """The deadline hooks started now must end by, or ``None`` (no caller bounds them)."""
    return _CALLER_DEADLINE.get()


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Run the body with hooks bounded by ``deadline`` (nested scopes keep the earlier)."""
    outer = _CALLER_DEADLINE.get()
    if deadline is None or (outer is not None and outer <= deadline):
        yield
        return
    token = _CALLER_DEADLINE.set(deadline)
    try:
        yield
    finally:
        _CALLER_DEADLINE.reset(token)


def remaining_ms(deadline: float) -> float:
    """Milliseconds left until ``deadline`` (negative once it passed)."""
    return (deadline - time.monotonic()) * 1000.0


class HookRunner(Protocol):
    """Hook running through the enabled plugins' pipeline, as services use it."""

    def run_hook(self, name: str, event: Any) -> HookOutcome:
        """Run a broadcast hook under its family's rule (an exclusive one: its provider)."""
        ...

    def invoke_exclusive(self, name: str, event: Any) -> ExclusiveOutcome | None:
        """Run the selected provider of an exclusive hook; ``None`` if none. Never raises."""
        ...

    def cron_timeout_ms(self) -> int:
        """The longest a cron hook of an enabled plugin may run (its timeout), in ms; 0
        when no plugin has one."""
        ...

    def invoke_cron(self, plugin_id: str, event: Any) -> HookResult:
        """Run ``plugin_id``'s cron hook for one due task. Never raises."""
        ...

    def selected_provider(self, hook: str) -> str | None:
        """The plugin selected to provide an exclusive hook, or ``None``."""
        ...

    def select_provider(self, hook: str, plugin_id: str | None) -> None:
        """Choose the provider of an exclusive hook (persisted); ``None`` clears it."""
        ...

    def exclusive_providers(self, hook: str) -> list[str]:
        """The enabled plugins that provide the exclusive hook ``hook`` (maybe none)."""
        ...
