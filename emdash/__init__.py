"""emdash for Python: the EmDash CMS plugin runtime, with real isolation for untrusted plugins.

Plugin authors use :func:`define_plugin`, :class:`HookConfig`, :class:`RouteConfig` and
:class:`PluginRouteError`. Hosts use :class:`Runtime` (and ``emdash.asgi.create_app`` to
serve plugin routes). Every error derives from :class:`EmDashError`.
"""

from ._bridge._dispatch import ContentWrite as ContentWrite
from ._hosting._outcome import ExclusiveOutcome as ExclusiveOutcome
from ._hosting._outcome import HookOutcome as HookOutcome
from ._hosting._outcome import HookResult as HookResult
from ._model._capabilities import CAPABILITIES as CAPABILITIES
from ._model._descriptor import Limits as Limits
from ._model._descriptor import PluginDescriptor as PluginDescriptor
from ._model._descriptor import StorageCollection as StorageCollection
from ._model._json import JSON as JSON
from ._runtime._runtime import Runtime as Runtime
from ._services._email import ConsoleEmailProvider as ConsoleEmailProvider
from ._services._page import page_context as page_context
from ._shared._context import Context as Context
from ._shared._errors import BridgeError as BridgeError
from ._shared._errors import CapabilityError as CapabilityError
from ._shared._errors import CommentRejectedError as CommentRejectedError
from ._shared._errors import CompileError as CompileError
from ._shared._errors import ConfigError as ConfigError
from ._shared._errors import ConflictError as ConflictError
from ._shared._errors import CpuLimitExceeded as CpuLimitExceeded
from ._shared._errors import CronScheduleError as CronScheduleError
from ._shared._errors import DeleteBlockedError as DeleteBlockedError
from ._shared._errors import EmailError as EmailError
from ._shared._errors import EmailNotConfiguredError as EmailNotConfiguredError
from ._shared._errors import EmailRecursionError as EmailRecursionError
from ._shared._errors import EmDashError as EmDashError
from ._shared._errors import HookTimeoutError as HookTimeoutError
from ._shared._errors import HttpAccessError as HttpAccessError
from ._shared._errors import InvalidCursorError as InvalidCursorError
from ._shared._errors import InvalidPageContextError as InvalidPageContextError
from ._shared._errors import ManifestError as ManifestError
from ._shared._errors import MemoryLimitExceeded as MemoryLimitExceeded
from ._shared._errors import NotFoundError as NotFoundError
from ._shared._errors import PluginBusyError as PluginBusyError
from ._shared._errors import PluginError as PluginError
from ._shared._errors import PluginRouteError as PluginRouteError
from ._shared._errors import QuotaExceededError as QuotaExceededError
from ._shared._errors import SandboxError as SandboxError
from ._shared._errors import SandboxNotAvailableError as SandboxNotAvailableError
from ._shared._errors import SandboxUnavailableError as SandboxUnavailableError
from ._shared._errors import SandboxViolation as SandboxViolation
from ._shared._errors import StorageError as StorageError
from ._shared._errors import StorageQueryError as StorageQueryError
from ._shared._errors import SubrequestLimitExceeded as SubrequestLimitExceeded
from ._shared._errors import WallTimeExceeded as WallTimeExceeded
from ._shared._hooks_catalog import HOOK_NAMES as HOOK_NAMES
from ._shared._hooks_catalog import HookName as HookName
from ._shared._plugin_api import HookConfig as HookConfig
from ._shared._plugin_api import PluginDefinition as PluginDefinition
from ._shared._plugin_api import RouteConfig as RouteConfig
from ._shared._plugin_api import define_plugin as define_plugin
from ._store._quotas import Quotas as Quotas

__version__ = "0.1.0"

__all__ = [
    "CAPABILITIES",
    "HOOK_NAMES",
    "JSON",
    "BridgeError",
    "CapabilityError",
    "CommentRejectedError",
    "CompileError",
    "ConfigError",
    "ConflictError",
    "ConsoleEmailProvider",
    "ContentWrite",
    "Context",
    "CpuLimitExceeded",
    "CronScheduleError",
    "DeleteBlockedError",
    "EmDashError",
    "EmailError",
    "EmailNotConfiguredError",
    "EmailRecursionError",
    "ExclusiveOutcome",
    "HookConfig",
    "HookName",
    "HookOutcome",
    "HookResult",
    "HookTimeoutError",
    "HttpAccessError",
    "InvalidCursorError",
    "InvalidPageContextError",
    "Limits",
    "ManifestError",
    "MemoryLimitExceeded",
    "NotFoundError",
    "PluginDefinition",
    "PluginBusyError",
    "PluginDescriptor",
    "PluginError",
    "PluginRouteError",
    "QuotaExceededError",
    "Quotas",
    "RouteConfig",
    "Runtime",
    "SandboxError",
    "SandboxNotAvailableError",
    "SandboxUnavailableError",
    "SandboxViolation",
    "StorageCollection",
    "StorageError",
    "StorageQueryError",
    "SubrequestLimitExceeded",
    "WallTimeExceeded",
    "define_plugin",
    "page_context",
]


def _claim_public_names() -> None:
    """Make exported classes and functions report ``emdash`` as their module.

    They are defined in private modules (``emdash._shared._errors``...), which is where a
    traceback or a ``repr`` would otherwise send the reader: ``emdash.CapabilityError`` is
    the name to look up and the one that stays stable when files move.
    """
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__code__"):
            if getattr(obj, "__module__", "").startswith("emdash."):
                obj.__module__ = __name__


_claim_public_names()
