"""``PluginInfo``: what ``rt.get_plugin`` / ``rt.plugins()`` return for one added plugin."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._hosting._outcome import PluginHost
    from .._model._descriptor import PluginDescriptor

__all__ = ["PluginInfo"]


class PluginInfo(Mapping[str, Any]):
    """One added plugin: its descriptor, host and state.

    Attribute access (``plugin_id``, ``descriptor``, ``host``, ``trusted``, ``sandboxed``,
    ``enabled``, ``definition_meta``) for host code, and a read-only mapping view
    (``id``, ``version``, ``mode``, ``trusted``, ``enabled``, ``capabilities``, ``hooks``,
    ``routes``) that serialises as plain JSON for listings.
    """

    def __init__(self, host: PluginHost, *, sandboxed: bool, enabled: bool) -> None:
        self.host = host
        self.sandboxed = sandboxed
        self.enabled = enabled

    @property
    def plugin_id(self) -> str:
        return self.host.plugin_id

    @property
    def descriptor(self) -> PluginDescriptor:
        return self.host.descriptor

    @property
    def trusted(self) -> bool:
        return self.host.trusted

    @property
    def definition_meta(self) -> dict[str, Any]:
        return self.host.definition_meta

    def _data(self) -> dict[str, Any]:
        d = self.descriptor
        mode = "sandboxed" if self.sandboxed else ("trusted" if self.trusted else "unsandboxed")
        return {
            "id": d.id,
            "version": d.version,
            "mode": mode,
            "trusted": self.trusted,
            "enabled": self.enabled,
            "capabilities": list(d.capabilities),
            "hooks": sorted(self.definition_meta.get("hooks", {})),
            "routes": sorted(self.definition_meta.get("routes", {})),
        }

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"<PluginInfo {self._data()}>"
