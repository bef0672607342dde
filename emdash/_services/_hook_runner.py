"""What the services need from the runtime: :class:`HookRunner`.

A service gets the store it writes to, a ``HookRunner`` for the hooks it fires, and the
few collaborators it names in its constructor; never the runtime itself. That keeps each
service's reach visible in its signature and lets mypy check every call a service makes.
The runtime's implementation is :class:`emdash._runtime._live_pipeline.LivePipeline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult

__all__ = ["HookRunner"]


class HookRunner(Protocol):
    """Hook running through the enabled plugins' pipeline, as services use it."""

    def run_hook(self, name: str, event: Any) -> HookOutcome:
        """Run a broadcast hook under its family's rule (an exclusive one: its provider)."""
        ...

    def invoke_exclusive(self, name: str, event: Any) -> ExclusiveOutcome | None:
        """Run the selected provider of an exclusive hook; ``None`` if none. Never raises."""
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
