"""Plugins of a site that did not load, and why: what keeps the rest of the site up.

A site is more than any one plugin. When a configured plugin cannot be loaded, the CLI's
commands (``serve`` included) go on without it rather than refuse to start; the plugin
is left out of the pipeline entirely (none of its code runs, none of its hooks or routes
answer), a WARNING names it and says what to do, ``plugins list`` / ``plugins show`` show
its state, and the admin UI's plugins page lists it. Two kinds:

- ``needs-upgrade``: its descriptor asks for more access than was approved
  (:class:`emdash.ConsentRequiredError`); ``emdash plugins upgrade ID`` reviews it;
- ``failed``: anything else (a descriptor or code that no longer loads, a changed id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Unloaded", "unloaded_from_error"]


@dataclass(frozen=True)
class Unloaded:
    """A configured plugin left out of this run of the site."""

    plugin_id: str
    path: str
    trusted: bool
    enabled: bool
    status: Literal["needs-upgrade", "failed"]
    #: The load error, one line (it names the plugin and says what to do).
    error: str

    @property
    def hint(self) -> str:
        """The command that fixes it."""
        if self.status == "needs-upgrade":
            return f"emdash plugins upgrade {self.plugin_id}"
        return (
            f"see what is wrong with: emdash check {self.path}; or take it out of the site: "
            f"emdash plugins remove {self.plugin_id}"
        )

    @property
    def state(self) -> str:
        """What ``plugins list`` shows in its STATE column."""
        if self.status == "needs-upgrade":
            return f"needs upgrade ({self.hint})"
        return f"failed to load (emdash plugins show {self.plugin_id})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.plugin_id,
            "path": self.path,
            "trusted": self.trusted,
            "enabled": self.enabled,
            "status": self.status,
            "error": self.error,
            "hint": self.hint,
        }


def unloaded_from_error(
    exc: BaseException, *, plugin_id: str, path: str, trusted: bool, enabled: bool
) -> Unloaded:
    from .._runtime._consent import ConsentRequiredError

    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return Unloaded(
        plugin_id=plugin_id,
        path=path,
        trusted=trusted,
        enabled=enabled,
        status="needs-upgrade" if isinstance(exc, ConsentRequiredError) else "failed",
        error=" ".join(str(message).split()),
    )
