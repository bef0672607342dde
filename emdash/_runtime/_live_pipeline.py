"""The runtime's current hook pipeline, as the services see it.

:class:`LivePipeline` holds the :class:`HookPipeline` of the enabled plugins. The runtime
swaps in a new pipeline on every plugin-set change; each call reads the current one once,
so a hook run under way keeps the pipeline it started with. The services get this object
(typed as :class:`~emdash._services._hook_runner.HookRunner`) instead of the runtime.
"""

from __future__ import annotations

from typing import Any

from .._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult
from .._shared._hooks_catalog import HOOKS
from ._pipeline import HookPipeline

__all__ = ["LivePipeline", "as_outcome"]


class LivePipeline:
    """Hook running, exclusive selection and cron dispatch through the current pipeline."""

    def __init__(self, pipeline: HookPipeline) -> None:
        # Replaced as a whole (one attribute store) by the runtime, never mutated in place.
        self.pipeline = pipeline

    def run_hook(self, name: str, event: Any) -> HookOutcome:
        """Run a broadcast hook; an exclusive hook runs its selected provider only."""
        pipeline = self.pipeline
        spec = HOOKS.get(name)
        if spec is not None and spec.family == "exclusive":
            return as_outcome(name, pipeline.invoke_exclusive(name, event))
        return pipeline.run_hook(name, event)

    def invoke_exclusive(self, name: str, event: Any) -> ExclusiveOutcome | None:
        """Run the selected provider of an exclusive hook; ``None`` if none. Never raises."""
        return self.pipeline.invoke_exclusive(name, event)

    def invoke_cron(self, plugin_id: str, event: Any) -> HookResult:
        """Run ``plugin_id``'s cron hook for one due task. Never raises."""
        return self.pipeline.invoke_cron(plugin_id, event)

    def cron_timeout_ms(self) -> int:
        """The longest timeout among the enabled plugins' cron hooks (ms; 0: none)."""
        return self.pipeline.cron_timeout_ms()

    def selected_provider(self, hook: str) -> str | None:
        return self.pipeline.selected_provider(hook)

    def select_provider(self, hook: str, plugin_id: str | None) -> None:
        """Choose the provider of an exclusive hook (persisted); ``None`` clears it."""
        self.pipeline.select_provider(hook, plugin_id)

    def exclusive_providers(self, hook: str) -> list[str]:
        """The enabled plugins that provide the exclusive hook ``hook`` (maybe none)."""
        providers: list[str] = self.pipeline.exclusive_hooks().get(hook, {}).get("providers", [])
        return providers

    def exclusive_hooks(self) -> dict[str, dict[str, Any]]:
        """``{hook: {"providers": [...], "selected": id or None}}`` for the admin UI."""
        return self.pipeline.exclusive_hooks()


def as_outcome(name: str, outcome: ExclusiveOutcome | None) -> HookOutcome:
    """An exclusive provider's result in the shape ``run_hook`` returns."""
    if outcome is None:
        return HookOutcome(name, None, [])
    result = HookResult(
        outcome.plugin_id,
        outcome.error is None,
        outcome.result,
        outcome.error,
        outcome.duration_ms,
    )
    return HookOutcome(name, outcome.result, [result])
