"""The one load path of a plugin: what ``Runtime.add_plugin`` and ``emdash check`` both run.

:func:`plugin_problems` is every reason a loaded plugin may not join a site, found from its
host's definition (hook names were already checked where the plugin defined them, by
``define_plugin``). ``add_plugin`` refuses the plugin with all of them in one error;
``emdash check`` prints one per line. A hook whose capability is missing used to be skipped
at every pipeline build with a warning: the plugin was "added" and then silently did nothing
for that hook. Refusing it at load says what to add, once.
"""

from __future__ import annotations

from .._hosting._outcome import PluginHost
from .._shared._errors import ManifestError
from .._shared._hooks_catalog import HOOKS

__all__ = ["check_plugin_hooks", "hook_problems"]


def hook_problems(host: PluginHost) -> list[str]:
    """One sentence per hook the plugin declares without the capability that hook needs."""
    granted = host.descriptor.capabilities
    problems = []
    for name in host.definition_meta.get("hooks", {}):
        spec = HOOKS.get(name)
        if spec is None or spec.capability is None or spec.capability in granted:
            continue
        problems.append(
            f'hook {name} needs capability "{spec.capability}": add it to capabilities in '
            f"emdash-plugin.toml, or remove the hook"
        )
    return problems


def check_plugin_hooks(host: PluginHost) -> None:
    """Raise a :class:`ManifestError` naming every hook that lacks its capability."""
    problems = hook_problems(host)
    if problems:
        raise ManifestError(
            f"Plugin {host.plugin_id} cannot be added: " + "; ".join(problems),
            plugin_id=host.plugin_id,
        )
