"""emdash for Python: the EmDash CMS plugin runtime, with real isolation for untrusted plugins.

Plugin authors use :func:`define_plugin`, :class:`HookConfig`, :class:`RouteConfig` and
:class:`PluginRouteError`. Hosts use :class:`Runtime` (and ``emdash.asgi.create_app`` to
serve plugin routes). Every error derives from :class:`EmDashError`.
"""

from ._capabilities import CAPABILITIES as CAPABILITIES
from ._comment_service import CommentRejectedError as CommentRejectedError
from ._content_service import DeleteBlockedError as DeleteBlockedError
from ._cron_schedule import CronScheduleError as CronScheduleError
from ._descriptor import Limits as Limits
from ._descriptor import PluginDescriptor as PluginDescriptor
from ._descriptor import StorageCollection as StorageCollection
from ._email import ConsoleEmailProvider as ConsoleEmailProvider
from ._errors import BridgeError as BridgeError
from ._errors import CapabilityError as CapabilityError
from ._errors import CompileError as CompileError
from ._errors import ConfigError as ConfigError
from ._errors import CpuLimitExceeded as CpuLimitExceeded
from ._errors import EmailError as EmailError
from ._errors import EmailNotConfiguredError as EmailNotConfiguredError
from ._errors import EmailRecursionError as EmailRecursionError
from ._errors import EmDashError as EmDashError
from ._errors import HookTimeoutError as HookTimeoutError
from ._errors import HttpAccessError as HttpAccessError
from ._errors import InvalidCursorError as InvalidCursorError
from ._errors import ManifestError as ManifestError
from ._errors import MemoryLimitExceeded as MemoryLimitExceeded
from ._errors import NotFoundError as NotFoundError
from ._errors import PluginError as PluginError
from ._errors import PluginRouteError as PluginRouteError
from ._errors import SandboxError as SandboxError
from ._errors import SandboxNotAvailableError as SandboxNotAvailableError
from ._errors import SandboxUnavailableError as SandboxUnavailableError
from ._errors import SandboxViolation as SandboxViolation
from ._errors import StorageQueryError as StorageQueryError
from ._errors import SubrequestLimitExceeded as SubrequestLimitExceeded
from ._errors import WallTimeExceeded as WallTimeExceeded
from ._hooks_catalog import HOOK_NAMES as HOOK_NAMES
from ._outcome import ExclusiveOutcome as ExclusiveOutcome
from ._outcome import HookOutcome as HookOutcome
from ._outcome import HookResult as HookResult
from ._page import InvalidPageContextError as InvalidPageContextError
from ._page import page_context as page_context
from ._plugin_api import HookConfig as HookConfig
from ._plugin_api import PluginDefinition as PluginDefinition
from ._plugin_api import RouteConfig as RouteConfig
from ._plugin_api import define_plugin as define_plugin
from ._runtime import Runtime as Runtime

__version__ = "0.1.0"

__all__ = [
    "CAPABILITIES",
    "HOOK_NAMES",
    "BridgeError",
    "CapabilityError",
    "CommentRejectedError",
    "CompileError",
    "ConfigError",
    "ConsoleEmailProvider",
    "CpuLimitExceeded",
    "CronScheduleError",
    "DeleteBlockedError",
    "EmDashError",
    "EmailError",
    "EmailNotConfiguredError",
    "EmailRecursionError",
    "ExclusiveOutcome",
    "HookConfig",
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
    "PluginDescriptor",
    "PluginError",
    "PluginRouteError",
    "RouteConfig",
    "Runtime",
    "SandboxError",
    "SandboxNotAvailableError",
    "SandboxUnavailableError",
    "SandboxViolation",
    "StorageCollection",
    "StorageQueryError",
    "SubrequestLimitExceeded",
    "WallTimeExceeded",
    "define_plugin",
    "page_context",
]
