"""Errors raised by the generic sandbox.

The sandbox knows nothing about the host application, so these classes do not derive from
any host error root. A host that embeds the sandbox (emdash does) subclasses each of them
under its own root and translates, adding the names of the plugin and the operation.

    SandboxError
    ├── SandboxViolation          forbidden construct, import, attribute or syscall
    │   └── CompileError          the source was refused before any code ran (.errors)
    ├── CpuLimitExceeded
    ├── MemoryLimitExceeded
    ├── WallTimeExceeded
    ├── SubrequestLimitExceeded
    ├── SandboxNotAvailableError  this host cannot sandbox (no seccomp, no fork...)
    ├── SandboxUnavailableError   the worker keeps crashing; we gave up for a while
    ├── WorkerCrashed             the worker died for another reason (signal, protocol)
    └── RemoteError               the called code raised; .data describes it (JSON)
"""

from __future__ import annotations


class SandboxError(Exception):
    """Root of every error the sandbox raises."""


class SandboxViolation(SandboxError):
    """Sandboxed code attempted something the policy forbids."""


class CompileError(SandboxViolation):
    """Source was refused at compile time; ``errors`` lists every problem as ``file:line: msg``."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = list(errors or [])


class CpuLimitExceeded(SandboxError):
    """The invocation used more CPU time than its budget."""


class MemoryLimitExceeded(SandboxError):
    """The worker grew past its memory budget."""


class WallTimeExceeded(SandboxError):
    """The invocation ran longer (in wall-clock time) than its budget; the worker was killed."""


class SubrequestLimitExceeded(SandboxError):
    """The invocation made more host service calls than its budget allows."""


class SandboxNotAvailableError(SandboxError):
    """Sandboxing cannot work on this host (the message says why)."""


class SandboxUnavailableError(SandboxError):
    """The sandbox for this code crashed too often recently; calls fail until it recovers."""


class WorkerCrashed(SandboxError):
    """The worker process died or broke the protocol during a call."""


class RemoteError(SandboxError):
    """Code in the worker raised an exception that escaped the called function.

    ``data`` is the worker's plain-JSON description of it (at least ``type`` and
    ``message``; ``traceback`` when available). It is hostile input: the host application
    decides which ``type`` names it recognises.
    """

    def __init__(self, data: dict[str, object]) -> None:
        message = data.get("message")
        super().__init__(message if isinstance(message, str) else "error in sandboxed code")
        self.data = data
        kind = data.get("type")
        self.error_type = kind if isinstance(kind, str) else "Exception"
        tb = data.get("traceback")
        self.traceback_text = tb if isinstance(tb, str) else None
