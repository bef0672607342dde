"""emdash for Python: the EmDash CMS plugin runtime, with real isolation for untrusted plugins."""

from ._capabilities import CAPABILITIES as CAPABILITIES
from ._descriptor import Limits as Limits
from ._descriptor import PluginDescriptor as PluginDescriptor
from ._errors import *  # noqa: F403  (the curated error tree; see _errors.__all__)
from ._errors import __all__ as _error_names
from ._hooks_catalog import HOOK_NAMES as HOOK_NAMES
from ._plugin_api import HookConfig as HookConfig
from ._plugin_api import PluginDefinition as PluginDefinition
from ._plugin_api import RouteConfig as RouteConfig
from ._plugin_api import define_plugin as define_plugin

__version__ = "0.1.0"

__all__ = sorted(
    [
        "CAPABILITIES",
        "HOOK_NAMES",
        "HookConfig",
        "Limits",
        "PluginDefinition",
        "PluginDescriptor",
        "RouteConfig",
        "define_plugin",
        *[n for n in _error_names if n[0].isupper()],
    ]
)
