"""A generic restricted-Python sandbox: RestrictedPython compiler, guards, forked seccomp workers.

This package knows nothing about the application embedding it.

Host-facing API (the process layer):

- :func:`is_available` -> :class:`Availability` ``(ok, reason)``, false when unavailable
- :class:`SandboxLimits` ``(cpu_ms, memory_mb, wall_ms, load_cpu_ms, worker_cpu_s)``
- :class:`Supervisor` -> ``.load(key, files, entry, limits=..., pool_size=..., init=...,
  fresh_worker=..., on_load=...)`` -> :class:`WorkerPool` -> ``.call(fn, args,
  on_host_call=...)`` -> :class:`CallResult` ``(value, cpu_ms, rss_kb, worker_cpu_ms)``:
  ``cpu_ms`` is measured by the host from the kernel, ``worker_cpu_ms`` is what the worker
  said (a diagnostic); ``on_load`` gets a :class:`LoadReport` ``(outcome, cpu_ms, wall_ms)``
  for every worker the pool loads

Language layer (also usable on its own, e.g. to check code before installing it):

- :func:`compile_bundle` ``(files) -> {module: code}``, raising :class:`CompileError` with
  every problem as ``file:line: message``
- :data:`INTERPRETER_BUGS`: the CPython memory bugs plugin code could reach, and how each is
  closed; :func:`interpreter_has_bug` says whether the running interpreter has one
"""

from ._availability import Availability as Availability
from ._availability import is_available as is_available
from ._call import CallResult as CallResult
from ._call import LoadReport as LoadReport
from ._call import SandboxLimits as SandboxLimits
from ._compiler import compile_bundle as compile_bundle
from ._errors import CompileError as CompileError
from ._errors import CpuLimitExceeded as CpuLimitExceeded
from ._errors import MemoryLimitExceeded as MemoryLimitExceeded
from ._errors import RemoteError as RemoteError
from ._errors import SandboxError as SandboxError
from ._errors import SandboxNotAvailableError as SandboxNotAvailableError
from ._errors import SandboxUnavailableError as SandboxUnavailableError
from ._errors import SandboxViolation as SandboxViolation
from ._errors import SubrequestLimitExceeded as SubrequestLimitExceeded
from ._errors import WallTimeExceeded as WallTimeExceeded
from ._errors import WorkerCrashed as WorkerCrashed
from ._interpreters import INTERPRETER_BUGS as INTERPRETER_BUGS
from ._interpreters import InterpreterBug as InterpreterBug
from ._interpreters import interpreter_has_bug as interpreter_has_bug
from ._pool import WorkerPool as WorkerPool
from ._supervisor import Supervisor as Supervisor
