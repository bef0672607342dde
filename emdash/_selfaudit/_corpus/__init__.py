"""The escape corpus: attacks on the plugin sandbox, one module per escape class.

Each module of this package exports ``PAYLOADS: list[Payload]`` for one class of
``docs/escape-corpus.md``. A payload is *data*: plugin source (or, for the OS
layer, plain Python for a confined worker with the language layer bypassed) plus what a
correct sandbox must do with it. :mod:`emdash._selfaudit._runner` runs them against the installed
package through the public API, and ``tests/escapes/`` asserts the same outcomes in CI.

Conventions every payload follows (they are what makes the verdicts mechanical):

* **restricted** payloads define ``def handler(event, ctx)``; the harness appends a footer
  binding ``plugin = define_plugin(...)`` with ``handler`` as the route ``attack`` (or as the
  hook named by :attr:`Payload.hook`), a benign route ``ping`` (used to prove the plugin
  still works afterwards) and, when the source defines ``def followup(event, ctx)``, a route
  ``followup`` that the harness calls after the attack to observe *deferred* effects.
* **raw-worker** payloads are plain Python executed in a confined worker; they assign the
  module-level name ``result``.
* A payload that gets through returns a string starting with ``OK`` carrying the evidence;
  one that is stopped raises. Where the sandbox's correct answer is not an error but
  "nothing to see" (scoping, opaque reprs, scrubbed environment), the payload checks the
  answer itself and raises ``LookupError("DENIED ...")`` -- a sentinel, so the outcome is
  deterministic and any other error is a finding.
* ``@@NAME@@`` placeholders are filled in by the harness (:data:`PLACEHOLDERS`).
* Where the expected outcome is a stop by a limit, or the payload is ``contained`` (a
  resource bomb), a stop by *any* limit is accepted (:meth:`Payload.accepts`): which limit
  trips first can depend on how busy the machine is, and every one of them is containment.
"""

from __future__ import annotations

import importlib
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CLASSES",
    "DEFAULT_LIMITS",
    "Expect",
    "EXPECTS",
    "INTERPRETER_LIMITS",
    "LIMIT_ERRORS",
    "PLACEHOLDERS",
    "Payload",
    "all_payloads",
    "is_limit_stop",
    "payloads_for",
]

Expect = Literal["compile_error", "runtime_denied", "os_denied", "contained"]
Mode = Literal["restricted", "raw-worker"]

EXPECTS: tuple[str, ...] = ("compile_error", "runtime_denied", "os_denied", "contained")

# In the order of docs/escape-corpus.md (the classes).
CLASSES: tuple[str, ...] = (
    "import",
    "builtins",
    "attr",
    "frame",
    "format",
    "guardshadow",
    "class",
    "exc",
    "syntax",
    "shim",
    "iter",
    "ctx",
    "serial",
    "os",
    "dos",
)

# What the harness substitutes into sources (all values are plain text).
PLACEHOLDERS: dict[str, str] = {
    "@@CANARY_PORT@@": "port of the canary HTTP server on 127.0.0.1 (every request is a finding)",
    "@@REDIRECT_URL@@": "URL of an allowed test server that redirects to the canary",
    "@@HOST_PID@@": "pid of the host process running the audit",
    "@@CANARY_TOKEN@@": "a random token planted in the host's environment and memory",
    "@@CANARY_FILE@@": "a path the host watches: it must never come into existence",
    "@@ABSTRACT_NAME@@": "name of the host's canary abstract unix socket (without the NUL)",
    "@@VICTIM_ID@@": "id of the victim plugin",
    "@@VICTIM_SECRET@@": "the secret stored in the victim plugin's KV and storage",
    "@@CANARY_TOKEN_REVERSED@@": "the canary token reversed (so a heap scan does not find itself)",
    "@@VICTIM_SECRET_REVERSED@@": "the victim's secret reversed",
    "@@ARCH@@": "platform.machine() of the host (syscall numbers differ per architecture)",
}

# Small limits: every bomb must be stopped within them (docs/resource-model.md).
DEFAULT_LIMITS: dict[str, int] = {"cpu_ms": 50, "memory_mb": 64, "wall_ms": 2000, "subrequests": 10}

# The error classes (emdash's, or sandbox's for raw-worker payloads: same names) that say a
# limit of the sandbox ended the invocation. Which one ends a bomb first depends on the
# machine as well as on the payload: a loop that needs 50 ms of CPU meets its 2 s wall limit
# first when the host is too busy to give the worker that CPU, a memory bomb may use up its
# CPU budget first. Each is the containment docs/escape-corpus.md asks of a resource bomb.
LIMIT_ERRORS: tuple[str, ...] = (
    "CpuLimitExceeded",
    "MemoryLimitExceeded",
    "WallTimeExceeded",
    "HookTimeoutError",  # a hook's own timeout_ms: the wall limit of one hook run
    "SubrequestLimitExceeded",
)
# Exceptions the interpreter raises at a limit of its own (plugin-side, so they arrive as
# PluginError with this error_type, or under their own name from raw-worker code).
INTERPRETER_LIMITS: tuple[str, ...] = ("RecursionError",)


def is_limit_stop(error: str | None, error_type: str | None) -> bool:
    """True when an outcome (error class name, plugin-side type) is a stop by some limit.

    A plugin-raised ``SubrequestLimitExceeded`` look-alike is a ``PluginError`` whose
    ``error_type`` names it: that is not a stop (it is what a forged limit error looks like).
    """
    if error in LIMIT_ERRORS or error in INTERPRETER_LIMITS:
        return True
    return error == "PluginError" and error_type in INTERPRETER_LIMITS


@dataclass(frozen=True)
class Payload:
    """One attack and the outcome a correct sandbox produces for it.

    ``source`` is where the technique comes from (CVE/GHSA id, RestrictedPython changelog,
    codejail test, corpus number); ``code`` is the attack itself. ``error`` names the exact
    error class the caller must see: an ``emdash`` error class for restricted payloads
    (``CompileError``, ``SandboxViolation``, ``PluginError``, ``CpuLimitExceeded``...). For
    raw-worker payloads it is the exception type the confined code raised (``PermissionError``
    for an ``EPERM`` from seccomp) or a ``sandbox`` error class (``WorkerCrashed``,
    ``SandboxViolation`` for a seccomp kill, ``CpuLimitExceeded``...). ``error_type``
    additionally pins ``PluginError.error_type`` (the class of the plugin-side exception).
    ``message`` lists substrings the error message must contain (``{pid}`` is the attacking
    plugin's id, ``{op}`` the operation, e.g. ``route:attack``).
    """

    name: str
    technique: str
    source: str
    expect: Expect
    error: str
    mode: Mode = "restricted"
    hook: str = "route:attack"
    code: str = ""
    error_type: str | None = None
    message: tuple[str, ...] = ()
    ref: str = ""
    capabilities: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    storage: dict[str, Any] = field(default_factory=lambda: {"events": {"indexes": ["kind"]}})
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    # Host-side setup the harness performs around the attack ("store-lock": hold the
    # store's write lock from another thread while the attack runs).
    setup: str | None = None
    # For route attacks: a JSON Schema the plugin declares for the route's input (the host
    # validates requests against it), and the input the harness sends.
    route_schema: dict[str, Any] | None = None
    route_input: Any = None

    @property
    def any_limit_contains(self) -> bool:
        """True when a stop by any limit is as good as :attr:`error`: the payload is a
        resource bomb (``contained``), or the outcome it expects is itself a limit stop
        (the wall clock ending a stalled frame, the recursion limit ending a schema loop)."""
        return self.expect == "contained" or is_limit_stop(self.error, self.error_type)

    def accepts(self, error: str | None, error_type: str | None) -> bool:
        """Whether an outcome (error class name, plugin-side type) stops this payload as
        specified: the expected error exactly, or, where :attr:`any_limit_contains`, a stop
        by any limit. No error at all (the payload returned) is never accepted."""
        if error is None:
            return False
        if error == self.error and (self.error_type is None or error_type == self.error_type):
            return True
        return self.any_limit_contains and is_limit_stop(error, error_type)

    @property
    def has_followup(self) -> bool:
        """True when the code defines ``followup`` (observed in a second, later invocation)."""
        return "\ndef followup(" in "\n" + self.code


def P(
    name: str,
    technique: str,
    source: str,
    code: str,
    expect: Expect,
    error: str,
    **kwargs: Any,
) -> Payload:
    """Build a :class:`Payload` with its code dedented (used by the class modules)."""
    body = textwrap.dedent(code).strip("\n") + "\n"
    return Payload(name, technique, source, expect, error, code=body, **kwargs)


def payloads_for(klass: str) -> list[Payload]:
    """The payloads of one escape class (``import``, ``format``, ``os``...)."""
    if klass not in CLASSES:
        raise ValueError(f"Unknown escape class {klass!r}; choose one of: {', '.join(CLASSES)}")
    module = importlib.import_module(f"{__name__}.{_module_name(klass)}")
    payloads: list[Payload] = module.PAYLOADS
    return list(payloads)


def all_payloads() -> dict[str, list[Payload]]:
    """Every payload, keyed by escape class, in the order of docs/escape-corpus.md."""
    return {klass: payloads_for(klass) for klass in CLASSES}


def _module_name(klass: str) -> str:
    # `import` and `class` are keywords: their modules carry a trailing underscore.
    return f"{klass}_" if klass in ("import", "class") else klass
