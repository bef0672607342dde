"""A generic restricted-Python sandbox: RestrictedPython compiler, guards, forked seccomp workers.

This package knows nothing about the application embedding it.
"""

from ._errors import CompileError as CompileError
from ._errors import CpuLimitExceeded as CpuLimitExceeded
from ._errors import MemoryLimitExceeded as MemoryLimitExceeded
from ._errors import SandboxError as SandboxError
from ._errors import SandboxNotAvailableError as SandboxNotAvailableError
from ._errors import SandboxUnavailableError as SandboxUnavailableError
from ._errors import SandboxViolation as SandboxViolation
from ._errors import SubrequestLimitExceeded as SubrequestLimitExceeded
from ._errors import WallTimeExceeded as WallTimeExceeded
from ._errors import WorkerCrashed as WorkerCrashed
from ._errors import RemoteError as RemoteError
