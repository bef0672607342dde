"""``emdash audit``: run the escape corpus against the installed package and report.

:func:`run_audit` runs every payload of :mod:`emdash._selfaudit._corpus` through the *public*
API of the installed package, exactly as a site would run a hostile plugin:

* **restricted** payloads become sandboxed plugins of a fresh :class:`emdash.Runtime` per
  escape class (real SQLite file, real fork server, real seccomp workers), next to a
  sandboxed *victim* plugin whose KV entry and storage document hold a secret;
* **raw-worker** payloads run in a confined worker with the language layer bypassed,
  through ``sandbox.Supervisor(allow_raw_exec_for_tests=True)``, next to a victim bundle
  loaded in another worker of the same supervisor.

A payload passes only if *all* of these hold (:meth:`AuditSession.run` checks each and says
which failed): the exact expected error class (and plugin-side type and message parts), or,
for a resource bomb or a payload whose expected outcome is itself a limit stop, a stop by any
limit with that limit's own message (:meth:`Payload.accepts`: which limit trips first can
depend on the machine's load); no
``OK`` evidence anywhere in what came back; the plugin still answers afterwards (its worker
was replaced where needed); the victim's KV, storage and worker are untouched; the database
is byte-for-byte what it was before the attack (audit records aside), also after the
follow-up calls that look for deferred effects; no request reached the canary HTTP server or
the abstract-socket canary; the canary file does not exist; no process carries the canary
token; the host log holds no injected line, no host-side formatting of plugin text and no
line written after a handler returned; the host process's environment, working directory
and core functions are unchanged; the host spent no more CPU on one call than the plugin's
wall limit plus a slack; error messages are bounded.

Besides its verdict, each result says which layer stopped the payload, from what the host
observed (:func:`classify_stop`), and whether the language layer held, was broken or, for
raw-worker payloads, bypassed (:attr:`PayloadResult.language_layer`); the verdict does not
depend on either.

The CLI calls :func:`run_audit` and prints :meth:`AuditReport.render` (or
:meth:`AuditReport.to_json`); ``tests/escapes/``
drives :class:`AuditSession` per class and asserts the same verdicts field by field.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import platform
import re
import secrets
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .._shared import _errors as errors
from ._canaries import (
    REDIRECT_HOST,
    REDIRECT_PATH,
    AbstractSocketCanary,
    CanaryHttpServer,
    EdgeTransport,
    LogCapture,
    processes_mentioning,
)
from ._corpus import CLASSES, INTERPRETER_LIMITS, Payload, is_limit_stop, payloads_for

__all__ = [
    "FAILURE_KINDS",
    "LAYERS",
    "LAYER_NAMES",
    "AuditReport",
    "AuditSession",
    "Containment",
    "Failure",
    "PayloadResult",
    "classify_stop",
    "run_audit",
]

VICTIM_ID = "victim"
_HOOK_EVENT = {"content": {"id": "01AUDIT", "title": "audit"}, "collection": "posts", "isNew": True}
# Bounded reporting: no error that reaches the host API may carry an unbounded message.
MAX_MESSAGE_CHARS = 16 * 1024
# Control characters a plugin could use to forge log lines or drive a terminal (C0, DEL, C1).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# How much host CPU one invocation may cost beyond its wall limit (kills, replacement,
# bookkeeping): CPU time, not elapsed time, see AuditSession._record.
_HOST_SLACK_S = 2.0
# How long past its wall limit the audit waits for an invocation before calling it hung.
_HANG_GRACE_S = 20.0
# Tables whose rows legitimately change when a plugin is merely invoked.
_VOLATILE_TABLE_WORDS = ("audit",)

_VICTIM_PLUGIN = """
from emdash import define_plugin

SECRET = "@@VICTIM_SECRET@@"

def seed(route_ctx, ctx):
    ctx.kv.set("secret", {"token": SECRET})
    ctx.storage["notes"].put("n1", {"text": SECRET, "n": 1})
    return "seeded"

def check(route_ctx, ctx):
    return {"kv": ctx.kv.get("secret"), "note": ctx.storage["notes"].get("n1")}

plugin = define_plugin(routes={"seed": seed, "check": check})
"""

# Raw-worker mode: the victim is a bundle in its own worker; this prelude reads it back.
_RAW_PRELUDE = "def read_secret(entry, host_call):\n    return entry.SECRET\n"


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------

#: What each kind of failed check means.
FAILURE_KINDS = {
    "escape": "evidence of a real escape: OK evidence, a canary reached, a file written, a process started",
    "error": "the invocation did not end with the exact expected error",
    "message": "the error message lacks an expected part, names the wrong plugin or is unbounded",
    "plugin": "the attacking plugin does not answer afterwards (its worker was not replaced)",
    "victim": "the victim plugin's data or worker changed",
    "database": "the database changed (including effects after the handler returned)",
    "host": "the host process changed (environment, cwd, core functions, supervisor health)",
    "log": "the host log was injected into, formatted plugin text, or flooded",
    "harness": "the audit itself could not run the payload",
}


# --------------------------------------------------------------------------------------
# Which layer stopped a payload (SECURITY.md, "Layers and what each guarantees")
# --------------------------------------------------------------------------------------

#: The layers a payload can be stopped at, in report order; ``crash`` is a worker that died
#: of a signal or an exit of its own: contained (nothing left the process and the next
#: worker is fresh), but no layer refused anything, so it gets a column of its own.
LAYERS: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5", "L6", "crash")
LAYER_NAMES = {
    "L1": "compile",
    "L2": "runtime guards",
    "L3": "capability surface",
    "L4": "protocol",
    "L5": "OS",
    "L6": "limits",
    "crash": "worker crashed",
}

# Errors the bridge raises in the host and the host rebuilds only from its own instances
# (``ours`` on the wire): the capability surface refused the call.
_BRIDGE_ERRORS = frozenset(
    {
        "CapabilityError",
        "StorageQueryError",
        "InvalidCursorError",
        "HttpAccessError",
        "BridgeError",
        "CronScheduleError",
        "NotFoundError",
        "EmailError",
        "EmailNotConfiguredError",
        "EmailRecursionError",
    }
)
# Exceptions that end a call without being the code's "error": the worker's serve loop
# reports them as the call's error instead of leaving (raw-worker code can raise them).
_LOOP_EXITS = frozenset({"SystemExit", "KeyboardInterrupt", "GeneratorExit"})
# What the host observed of a dead worker (sandbox/_pool.py writes these, from the fork
# server's exit report, never from anything the worker sent). Anchored: a guard message
# that quotes plugin text cannot be taken for one of them.
_SIGSYS_KILL = re.compile(
    r"(?:Plugin \S+ was refused during \S+: )?the sandbox worker for .+ was killed for a "
    r"forbidden system call"
)
_WORKER_DIED = re.compile(r"(?:Plugin \S+ failed during \S+: )?the sandbox worker for .+? (.*)")
# Refusals at the boundary, by the worker's serve loop or the host (sandbox/_worker.py,
# emdash/_shared/_worker_dispatch.py, sandbox/_pool.py): what plugin code may build inside
# the language layer, a set or a ctx kept past its call, but not hand across.
_BOUNDARY_REFUSALS = (
    "is not JSON-serialisable",
    "the result is too large",
    "host calls are only possible while a call is running",
    "belongs to an earlier call that has returned",
    "host calls are not available",
    "has parameters that are not JSON-serialisable",
    "the answer to host call",
)
_HOST_CALL_TOO_LARGE = re.compile(r"host call .* is too large \(")
# Class names of the host's own errors: a plugin-raised exception of one of these names is a
# look-alike (the host rebuilds only instances it can tell are its own).
_HOST_ERROR_NAMES = frozenset(
    name for name in errors.__all__ if isinstance(getattr(errors, name, None), type)
) | {"WorkerCrashed", "RemoteError"}


class Containment(NamedTuple):
    """Which layer stopped a payload, by the host's own evidence.

    ``layer`` is one of :data:`LAYERS`, or None when nothing stopped it (it returned, hung,
    or the failure is the environment's). ``native`` is true when the host itself saw
    native-level behaviour (a worker killed by SIGSYS, a crash, raw bytes that broke the
    protocol): plugin code kept inside the language layer cannot do any of these.
    """

    layer: str | None
    evidence: str
    native: bool = False


def classify_stop(
    mode: str,
    klass: str,
    error: str | None,
    error_type: str | None,
    message: str | None,
    origin: str | None,
) -> Containment:
    """The layer that stopped a payload, from what the host observed.

    ``origin`` is ``"plugin"`` when the payload's own code raised the error (a
    ``PluginError`` the host built from the worker's report, or a ``RemoteError`` of raw
    code) and ``"host"`` for everything the sandbox or the bridge raised. A type name the
    plugin's code raised is the plugin's claim, so it decides nothing but the class of a
    limit the existing verdicts already accept (``RecursionError``), the ``PermissionError``
    of a refused system call and a look-alike of the host's own errors: choosing one can
    only make the report show a stop further down, never hide what the host itself saw
    (a SIGSYS kill, a crash, a protocol kill). A payload that broke the language layer and
    then ended its call quietly looks like one that did not: this says what stopped it, and
    the canaries and checks of :class:`AuditSession` are what catch what it did.
    """
    text = message or ""
    if error is None:
        return Containment(None, "not stopped")
    if origin == "plugin" or error == "PluginRouteError":
        kind = error_type or error
        if kind in INTERPRETER_LIMITS:
            return Containment("L6", f"the interpreter's {kind}")
        if kind == "PermissionError":
            # EPERM from seccomp (EACCES from Landlock): C code asked the kernel and was told no.
            return Containment("L5", f"a system call was refused: {kind}")
        if mode == "raw-worker":
            if kind in _LOOP_EXITS:
                return Containment("L4", f"the serve loop reported {kind} as the error")
            # Full Python in the confined worker, and it found nothing: the confinement.
            return Containment("L5", f"the confined worker held: the code raised {kind}")
        if kind in _HOST_ERROR_NAMES:
            # The host rebuilds only its own instances: a look-alike stays a PluginError.
            return Containment("L4", f"a plugin-raised {kind} look-alike was not rebuilt")
        # The plugin's own code ended the call: a refusal or an empty answer it observed.
        layer = "L3" if klass in ("ctx", "shim") else "L2"
        return Containment(layer, f"the plugin's code raised {kind}: a denial it observed")
    if error == "CompileError":
        return Containment("L1", "CompileError")
    if error == "ManifestError":
        if "reported an invalid definition" in text:
            return Containment("L4", "the worker's plugin definition was refused")
        return Containment("L1", "the source was refused before compiling: ManifestError")
    if is_limit_stop(error, error_type):
        return Containment("L6", error)
    if error in _BRIDGE_ERRORS:
        return Containment("L3", f"{error} from the bridge")
    if error == "SandboxViolation":
        if _SIGSYS_KILL.fullmatch(text):
            return Containment("L5", "worker killed by SIGSYS: a forbidden system call", True)
        if any(s in text for s in _BOUNDARY_REFUSALS) or _HOST_CALL_TOO_LARGE.search(text):
            return Containment("L4", "refused at the boundary: SandboxViolation")
        return Containment("L2", "SandboxViolation from a guard or builtin")
    if error == "SandboxUnavailableError":
        return Containment("crash", "the plugin was refused after repeated worker crashes", True)
    if error == "WorkerCrashed" or (error == "PluginError" and error_type == "WorkerCrashed"):
        died = _WORKER_DIED.fullmatch(text)
        how = died.group(1) if died else text
        if "broke the protocol" in how or "closed its channel" in how or "broken channel" in how:
            return Containment("L4", "worker killed for breaking the protocol", True)
        if "could not be confined" in how:
            return Containment(None, "the worker could not be confined, nothing ran")
        return Containment("crash", f"worker {_short(how, 80)}", True)
    return Containment(None, f"no layer: {error}")


class Failure(NamedTuple):
    """One failed check of one payload."""

    kind: str
    text: str


@dataclass
class PayloadResult:
    """What one payload did, and every check that failed (``failures`` empty = passed)."""

    klass: str
    payload: Payload
    stage: str = "attack"  # where the observed error came from: load / attack / followup
    error_name: str | None = None
    error_type: str | None = None
    message: str | None = None
    value: Any = None
    evidence: list[str] = field(default_factory=list)  # every "OK ..." string seen
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    # Who raised the observed error: "plugin" (the payload's own code, reported by its
    # worker) or "host" (the sandbox, the bridge, the host's checks). See classify_stop.
    origin: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def containment(self) -> Containment:
        """The layer that stopped this payload, by the host's evidence (:func:`classify_stop`)."""
        return classify_stop(
            self.payload.mode,
            self.klass,
            self.error_name,
            self.error_type,
            self.message,
            self.origin,
        )

    @property
    def language_layer(self) -> str | None:
        """Whether the language layer (L1-L3) held: ``held``, ``broken``, ``bypassed``, or
        None when nothing stopped the payload (then it is a failure, as before).

        ``bypassed``: a raw-worker payload, which runs without the language layer by
        construction. ``broken``: a restricted payload that the host saw reach native level
        (a worker killed by SIGSYS, a crash, raw bytes that broke the protocol), or that was
        stopped only by the OS layer or a limit where its expectation says the language
        layer should have stopped it (an EPERM for a payload not expected at L5, a limit
        for a payload not expected to meet one). A boundary refusal (L4: a result that is
        not JSON, a ctx kept past its call, a look-alike error) is not a break: plugin code
        may build those inside the language layer, and L4 is where they are refused.
        """
        c = self.containment
        p = self.payload
        if c.layer is None:
            return None
        if p.mode == "raw-worker":
            return "bypassed"
        if c.native:
            return "broken"
        if c.layer == "L5" and p.expect != "os_denied":
            return "broken"
        if c.layer == "L6" and not p.any_limit_contains:
            return "broken"
        return "held"

    @property
    def layer_note(self) -> str | None:
        """``language layer broken by <payload>; contained by L5 (<evidence>)`` (or
        ``<payload>: language layer bypassed (raw worker); ...``); None when it held."""
        c = self.containment
        where = "contained (worker crashed)" if c.layer == "crash" else f"contained by {c.layer}"
        if self.language_layer == "bypassed":
            return (
                f"{self.payload.name}: language layer bypassed (raw worker); {where} ({c.evidence})"
            )
        if self.language_layer == "broken":
            return f"language layer broken by {self.payload.name}; {where} ({c.evidence})"
        return None

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON (``emdash audit --json``)."""
        c = self.containment
        return {
            "class": self.klass,
            "payload": self.payload.name,
            "mode": self.payload.mode,
            "expect": self.payload.expect,
            "passed": self.passed,
            "stage": self.stage,
            "error": self.error_name,
            "error_type": self.error_type,
            "stopped_by": c.layer,
            "evidence": c.evidence,
            "native": c.native,
            "language_layer": self.language_layer,
            "note": self.layer_note,
            "failures": [{"kind": f.kind, "text": f.text} for f in self.failures],
            "seconds": round(self.seconds, 3),
        }

    @property
    def stopped_by_another_limit(self) -> bool:
        """True when a limit other than the expected outcome stopped the payload (accepted:
        :meth:`Payload.accepts`); the report lists these, since the targeted limit was then
        not the one exercised."""
        p = self.payload
        exact = self.error_name == p.error and (
            p.error_type is None or self.error_type == p.error_type
        )
        return not exact and p.accepts(self.error_name, self.error_type)

    def fail(self, kind: str, text: str) -> None:
        """Record a failed check (``kind`` is one of :data:`FAILURE_KINDS`); duplicates merge."""
        failure = Failure(kind, text)
        if failure not in self.failures:
            self.failures.append(failure)

    def failures_of(self, kind: str) -> list[str]:
        """The texts of the failed checks of one kind (``escape``, ``database``...)."""
        return [f.text for f in self.failures if f.kind == kind]

    def describe(self) -> str:
        """One paragraph for test failures and the report."""
        p = self.payload
        want = _outcome(p.error, p.error_type) + (" or any limit" if p.any_limit_contains else "")
        got = _outcome(self.error_name, self.error_type)
        head = f"[{self.klass}] {p.name}" + (f" (corpus {p.ref})" if p.ref else "")
        lines = [f"{head}: expected {want} ({p.expect}), got {got} at {self.stage}"]
        if self.message:
            lines.append(f"  message: {_short(self.message, 300)}")
        if self.error_name is None:
            lines.append(f"  returned: {_short(repr(self.value), 300)}")
        lines += [f"  - {f.kind}: {f.text}" for f in self.failures]
        lines.append(f"  technique: {p.technique}")
        return "\n".join(lines)


@dataclass
class AuditReport:
    """Every payload's result, plus what the sandbox reported about its confinement."""

    results: list[PayloadResult]
    environment: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when every payload was stopped as expected, 1 otherwise (for the CLI)."""
        return 0 if self.passed else 1

    def failures(self) -> list[PayloadResult]:
        return [r for r in self.results if not r.passed]

    def by_class(self) -> dict[str, list[PayloadResult]]:
        out: dict[str, list[PayloadResult]] = {}
        for r in self.results:
            out.setdefault(r.klass, []).append(r)
        return out

    def layer_counts(self, results: list[PayloadResult] | None = None) -> dict[str, int]:
        """How many payloads each layer stopped (:data:`LAYERS`, and ``none``: not stopped)."""
        counts = dict.fromkeys((*LAYERS, "none"), 0)
        for r in self.results if results is None else results:
            counts[r.containment.layer or "none"] += 1
        return counts

    def language_breaks(self) -> list[PayloadResult]:
        """Every payload that broke or bypassed the language layer and was contained below."""
        return [r for r in self.results if r.language_layer in ("broken", "bypassed")]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON (``emdash audit --json``): per class the verdicts and
        the layers that stopped the payloads, every result, and every language-layer break
        with the layer that contained it."""
        classes: dict[str, Any] = {}
        for klass, results in self.by_class().items():
            ok = sum(r.passed for r in results)
            language = dict.fromkeys(("held", "broken", "bypassed"), 0)
            for r in results:
                if r.language_layer is not None:
                    language[r.language_layer] += 1
            classes[klass] = {
                "payloads": len(results),
                "passed": ok,
                "failed": len(results) - ok,
                "seconds": round(sum(r.seconds for r in results), 3),
                "stopped_by": self.layer_counts(results),
                "language_layer": language,
            }
        breaks = [
            {
                "class": r.klass,
                "payload": r.payload.name,
                "language_layer": r.language_layer,
                "contained_by": r.containment.layer,
                "evidence": r.containment.evidence,
                "passed": r.passed,
                "text": r.layer_note,
            }
            for r in self.language_breaks()
        ]
        return {
            "passed": self.passed,
            "environment": dict(self.environment),
            "seconds": round(self.seconds, 3),
            "layers": dict(LAYER_NAMES),
            "classes": classes,
            "language_layer_breaks": breaks,
            "results": [r.to_json() for r in self.results],
        }

    def render(self) -> str:
        """A per-class table (payloads, passed, failed, seconds), the layers that stopped
        them, every language-layer break with what contained it, and every failure's
        reason."""
        env = ", ".join(f"{k}: {v}" for k, v in self.environment.items())
        lines = [f"emdash audit: escape corpus against the installed package ({env})", ""]
        header = f"{'class':<12} {'payloads':>8} {'passed':>7} {'failed':>7} {'seconds':>8}"
        lines += [header, "-" * len(header)]
        for klass, results in self.by_class().items():
            ok = sum(r.passed for r in results)
            secs = sum(r.seconds for r in results)
            lines.append(
                f"{klass:<12} {len(results):>8} {ok:>7} {len(results) - ok:>7} {secs:>8.1f}"
            )
        total_ok = sum(r.passed for r in self.results)
        lines.append("-" * len(header))
        lines.append(
            f"{'total':<12} {len(self.results):>8} {total_ok:>7} "
            f"{len(self.results) - total_ok:>7} {self.seconds:>8.1f}"
        )
        lines.append("")
        lines += self._render_layers()
        failed = self.failures()
        lines.append("")
        other = [r for r in self.results if r.passed and r.stopped_by_another_limit]
        if other:
            lines.append(
                f"{len(other)} payload(s) were stopped by another limit than the one they target "
                "(contained all the same; on a busy machine another limit can trip first):"
            )
            for r in other:
                got = _outcome(r.error_name, r.error_type)
                want = _outcome(r.payload.error, r.payload.error_type)
                lines.append(f"  [{r.klass}] {r.payload.name}: {got} at {r.stage} (targets {want})")
            lines.append("")
        if failed:
            lines.append(f"{len(failed)} payload(s) were NOT stopped as expected:")
            for r in failed:
                lines += ["", r.describe()]
        elif other:
            lines.append("Every payload was stopped (some by another limit, listed above).")
        else:
            lines.append("Every payload was stopped by the layer it targets.")
        return "\n".join(lines)

    def _render_layers(self) -> list[str]:
        lines = ["stopped by layer:"]
        columns = (*LAYERS, "none")
        header = f"{'class':<12}" + "".join(f" {c:>5}" for c in columns)
        lines += [header, "-" * len(header)]
        for klass, results in self.by_class().items():
            counts = self.layer_counts(results)
            lines.append(f"{klass:<12}" + "".join(f" {counts[c]:>5}" for c in columns))
        names = ", ".join(f"{k} {v}" for k, v in LAYER_NAMES.items() if k != "crash")
        lines += [f"({names};", " crash: the worker died, contained; none: not stopped)"]
        breaks = self.language_breaks()
        lines.append("")
        if not breaks:
            lines.append("The language layer held for every payload that was stopped.")
            return lines
        lines.append(
            f"{len(breaks)} payload(s) broke or bypassed the language layer (raw-worker "
            "payloads bypass it by construction); what contained each:"
        )
        lines += [f"  [{r.klass}] {r.layer_note}" for r in breaks]
        return lines


# --------------------------------------------------------------------------------------
# One class: a fresh runtime, a victim, the canaries
# --------------------------------------------------------------------------------------


class AuditSession:
    """The environment for one escape class; use as a context manager, then :meth:`run`."""

    def __init__(self, klass: str, *, sandbox: bool = True) -> None:
        """``sandbox=False`` runs the plugins in-process: a negative control that proves the
        audit notices escapes (every check must then fail for the payloads that need the
        sandbox). Never use it for anything else."""
        if klass not in CLASSES:
            raise ValueError(f"Unknown escape class {klass!r}; choose one of: {', '.join(CLASSES)}")
        self.klass = klass
        self.sandbox = sandbox
        self.token = "emdash-audit-" + secrets.token_hex(12)
        self.victim_secret = "victim-secret-" + secrets.token_hex(12)
        self.confinement: dict[str, str] = {}
        self._stack = ExitStack()
        self._counter = 0
        self._last_call_s = 0.0
        self._rt: Any = None
        self._raw: Any = None
        self._raw_victim: Any = None

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> AuditSession:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _open(self) -> None:
        import emdash  # the installed package, through its public surface

        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="emdash-audit-")))
        self.tmp = tmp
        self.canary_file = tmp / f"{self.token}.written"
        self.db_path = tmp / "site.db"
        # Planted in the host's environment and memory: no worker may ever see it.
        self._stack.enter_context(_env_var("PLUGIN_AUDIT_CANARY", self.token))
        self.http = CanaryHttpServer()
        self._stack.callback(self.http.close)
        self.abstract = AbstractSocketCanary(self.token)
        self._stack.callback(self.abstract.close)
        self.edge = EdgeTransport(self.http.port)
        self.logs = LogCapture()
        self.logger = emdash_logger = logging.getLogger(f"emdash-audit.{self.token}")
        emdash_logger.propagate = False
        emdash_logger.setLevel(logging.DEBUG)
        emdash_logger.addHandler(self.logs)
        self._stack.callback(emdash_logger.removeHandler, self.logs)
        rt = emdash.Runtime(
            str(self.db_path),
            sandbox=self.sandbox,
            http_transport=self.edge,
            media_dir=str(tmp / "media"),
            worker_pool_size=1,
            logger=emdash_logger,
        )
        self._stack.callback(rt.close)
        self._rt = rt
        rt.add_plugin(
            {"id": VICTIM_ID, "version": "1.0.0", "storage": {"notes": {"indexes": ["n"]}}},
            source={"plugin.py": _VICTIM_PLUGIN.replace("@@VICTIM_SECRET@@", self.victim_secret)},
        )
        rt.invoke_route(VICTIM_ID, "seed", input={})
        self.victim_expected = {
            "kv": {"token": self.victim_secret},
            "note": {"text": self.victim_secret, "n": 1},
        }

    def _raw_supervisor(self) -> Any:
        """The raw-exec supervisor (started on first use) and its victim pool."""
        if self._raw is None:
            import sandbox

            sup = sandbox.Supervisor(
                preludes={"emdash_audit_prelude": _RAW_PRELUDE},
                allow_raw_exec_for_tests=True,
                # Crashes are the point here: no back-off between a crash and the next worker.
                crash_limit=10_000,
                backoff_base_s=0.01,
                backoff_max_s=0.05,
            )
            self._stack.callback(sup.close)
            self._raw = sup
            victim_src = f"SECRET = {self.victim_secret!r}\n"
            self._raw_victim = sup.load(
                "audit-raw-victim",
                {"victim.py": victim_src},
                "victim",
                limits=sandbox.SandboxLimits(cpu_ms=1000, memory_mb=64, wall_ms=5000),
                pool_size=1,
            )
        return self._raw

    # -- running one payload ------------------------------------------------------------

    def run(self, payload: Payload) -> PayloadResult:
        """Run one payload and check everything; never raises for what the payload did."""
        started = time.monotonic()
        result = PayloadResult(self.klass, payload)
        self._counter += 1
        log_mark = len(self.logs)
        http_mark = len(self.http.hits)
        conn_mark = self.abstract.connections
        self.host_state = _host_state()
        try:
            if payload.mode == "raw-worker":
                self._run_raw(payload, result)
            else:
                self._run_restricted(payload, result)
        except Exception as exc:  # the harness itself must survive anything
            result.fail("harness", f"the audit harness failed: {type(exc).__name__}: {exc}")
        self._check_canaries(result, log_mark, http_mark, conn_mark)
        result.seconds = time.monotonic() - started
        return result

    def _substitute(self, code: str, pid: str) -> str:
        values = {
            "@@CANARY_PORT@@": str(self.http.port),
            "@@REDIRECT_URL@@": f"http://{REDIRECT_HOST}{REDIRECT_PATH}",
            "@@HOST_PID@@": str(os.getpid()),
            "@@CANARY_TOKEN@@": self.token,
            "@@CANARY_TOKEN_REVERSED@@": self.token[::-1],
            "@@CANARY_FILE@@": str(self.canary_file),
            "@@ABSTRACT_NAME@@": self.abstract.name,
            "@@VICTIM_ID@@": VICTIM_ID,
            "@@VICTIM_SECRET@@": self.victim_secret,
            "@@VICTIM_SECRET_REVERSED@@": self.victim_secret[::-1],
            "@@ARCH@@": platform.machine(),
        }
        for key, value in values.items():
            code = code.replace(key, value)
        return code

    # -- restricted mode ----------------------------------------------------------------

    def _run_restricted(self, p: Payload, result: PayloadResult) -> None:
        rt = self._rt
        pid = f"atk-{self.klass}-{self._counter:03d}"
        descriptor = {
            "id": pid,
            "version": "1.0.0",
            "capabilities": list(p.capabilities),
            "allowed_hosts": list(p.allowed_hosts),
            "storage": p.storage,
            "limits": p.limits,
        }
        source = self._substitute(p.code, pid) + _footer(p)
        is_route = p.hook.startswith("route:")
        op = p.hook if is_route else f"hook:{p.hook}"
        before = self._snapshot()
        files = self._files()
        try:
            rt.add_plugin(descriptor, source={"plugin.py": source})
        except Exception as exc:
            result.stage = "load"
            self._observe(result, exc, pid, "load")
            self._check_after(result, before, pid, loaded=False)
            self._check_files(result, files)
            return
        try:
            before = self._snapshot()
            value, error = self._invoke(p, pid, "attack" if is_route else p.hook, p.limits)
            self._record(result, "attack", value, error, pid, op)
            if p.has_followup and result.error_name is None:
                for _ in range(2):  # every stage of a deferred effect gets its chance
                    value, error = self._invoke(p, pid, "followup", p.limits, route=True)
                    self._record(result, "followup", value, error, pid, "route:followup")
                    if error is not None:
                        break
            self._check_expected(result)
            self._check_after(result, before, pid, loaded=True)
            self._check_files(result, files)
            self._check_audit_log(result, pid)
        finally:
            try:
                rt.remove_plugin(pid, delete_data=True)
            except Exception as exc:
                result.fail("harness", f"removing the attacker plugin failed: {exc}")

    def _invoke(
        self, p: Payload, pid: str, name: str, limits: dict[str, int], route: bool = False
    ) -> tuple[Any, BaseException | None]:
        rt = self._rt
        if route or p.hook.startswith("route:"):
            value = p.route_input if (name == "attack" and p.route_input is not None) else {}
            call: Callable[[], Any] = lambda: rt.invoke_route(pid, name, input=value)  # noqa: E731
        else:
            call = lambda: _hook_value(rt.run_hook(name, dict(_HOOK_EVENT), plugin_id=pid), pid)  # noqa: E731
        hold = _store_lock(rt, limits["wall_ms"] / 1000 + 0.5) if p.setup == "store-lock" else None
        started = time.process_time()
        try:
            return _with_timeout(call, limits["wall_ms"] / 1000 + _HANG_GRACE_S)
        finally:
            if hold is not None:
                hold()
            self._last_call_s = time.process_time() - started

    def _record(
        self,
        result: PayloadResult,
        stage: str,
        value: Any,
        error: BaseException | None,
        pid: str,
        op: str,
    ) -> None:
        # Whatever the plugin does, the host must not work for it outside its limits: host
        # work a plugin can choose (validating its route schema, decoding what it sends...)
        # is a denial of service. Measured in the host process's CPU time, not elapsed time:
        # on a busy machine the host also waits for a CPU, which no plugin caused, and a
        # verdict must not depend on the machine's load. A host thread *held* without work
        # is bounded otherwise: the supervisor's wall limit covers host calls (corpus 119),
        # and a call that does not come back is reported as hung (_HANG_GRACE_S).
        budget = result.payload.limits["wall_ms"] / 1000 + _HOST_SLACK_S
        if self._last_call_s > budget:
            result.fail(
                "host",
                f"the host spent {self._last_call_s:.1f}s of CPU on one {stage} call "
                f"(wall limit {result.payload.limits['wall_ms']}ms)",
            )
        result.evidence += _ok_strings(value)
        if error is not None and result.error_name is None:
            result.stage = stage
            self._observe(result, error, pid, op)
        elif error is None and result.error_name is None:
            result.value = value
            result.stage = stage

    def _observe(self, result: PayloadResult, exc: BaseException, pid: str, op: str) -> None:
        p = result.payload
        if isinstance(exc, _Hung):
            result.fail("error", str(exc))
            return
        result.error_name = type(exc).__name__
        result.message = str(exc)
        result.error_type = getattr(exc, "error_type", None)
        # The host writes "Plugin <id> raised <type> during" only for what the plugin's own
        # code raised (a RemoteError from its worker); everything else the host raised.
        raised = isinstance(exc, errors.PluginError) and str(exc).startswith(
            f"Plugin {pid} raised "
        )
        result.origin = "plugin" if raised else "host"
        if not isinstance(exc, errors.EmDashError):
            result.fail(
                "error",
                f"the host API raised {type(exc).__name__}, not an emdash error: {_short(str(exc))}",
            )
        elif exc.plugin_id != pid:
            result.fail("message", f"the error is attributed to {exc.plugin_id!r}, not {pid!r}")
        text = str(exc)
        if len(text) > MAX_MESSAGE_CHARS:
            result.fail(
                "message", f"unbounded error report: the message has {len(text)} characters"
            )
        # The expected parts describe the expected error; a payload stopped by another limit
        # must carry *that* limit's message instead (naming the plugin, the limit, the call).
        parts = p.message
        if result.stopped_by_another_limit:
            parts = _limit_message(result.error_name, result.error_type, p.limits)
        for part in parts:
            want = part.replace("{pid}", pid).replace("{op}", op)
            if want not in text:
                result.fail("message", f"the message lacks {want!r}")
        tb = getattr(exc, "traceback_text", None)
        if isinstance(tb, str) and len(tb) > 4 * MAX_MESSAGE_CHARS:
            result.fail("message", f"unbounded traceback text ({len(tb)} characters)")

    def _check_expected(self, result: PayloadResult) -> None:
        p = result.payload
        if result.error_name is None:
            result.fail("error", f"no error: the invocation returned {_short(repr(result.value))}")
        elif p.accepts(result.error_name, result.error_type):
            return  # the expected error, or (where that is as good) a stop by another limit
        elif result.error_name != p.error:
            also = " or a stop by any limit" if p.any_limit_contains else ""
            result.fail(
                "error", f"wrong error class {result.error_name} (expected {p.error}{also})"
            )
        else:
            result.fail(
                "error",
                f"wrong plugin-side error type {result.error_type} (expected {p.error_type})",
            )

    def _check_after(
        self, result: PayloadResult, before: dict[str, Any], pid: str, loaded: bool
    ) -> None:
        """The plugin still works, the victim is intact, the database unchanged."""
        if not loaded:
            self._check_expected(result)
        rt = self._rt
        if loaded:
            value, error = _until_available(lambda: rt.invoke_route(pid, "ping", input={}))
            if error is not None or value != "pong":
                result.fail(
                    "plugin",
                    "the plugin does not answer after the attack (worker not replaced?): "
                    + (f"{type(error).__name__}: {_short(str(error))}" if error else repr(value)),
                )
        for problem in self._victim_problems():
            result.fail("victim", problem)
        after = self._snapshot()
        for table in sorted(set(before) | set(after)):
            if before.get(table) != after.get(table):
                result.fail("database", f"table {table!r} differs after the attack")
        for problem in _host_state_problems(self.host_state):
            result.fail("host", problem)

    def _victim_problems(self) -> list[str]:
        rt = self._rt
        out = []
        value, error = _with_timeout(lambda: rt.invoke_route(VICTIM_ID, "check", input={}), 30.0)
        if error is not None:
            out.append(f"the victim plugin stopped working: {type(error).__name__}: {error}")
        elif value != self.victim_expected:
            out.append(f"the victim plugin's data changed: {_short(repr(value))}")
        if rt.store.kv_entries.get(VICTIM_ID, "secret") != self.victim_expected["kv"]:
            out.append("the victim's KV entry changed")
        if rt.store.plugin_documents.get(VICTIM_ID, "notes", "n1") != self.victim_expected["note"]:
            out.append("the victim's storage document changed")
        return out

    def _snapshot(self) -> dict[str, Any]:
        """Every row of every table (audit records aside), read through a separate connection."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10.0)
        try:
            tables = [
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                if not any(w in r[0].lower() for w in _VOLATILE_TABLE_WORDS)
            ]
            out: dict[str, Any] = {}
            for table in tables:
                rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608
                out[table] = sorted(repr(r) for r in rows)
            out["<schema>"] = sorted(
                repr(r) for r in conn.execute("SELECT type, name, sql FROM sqlite_master")
            )
            return out
        finally:
            conn.close()

    def _check_audit_log(self, result: PayloadResult, pid: str) -> None:
        """Plugin text in the audit log has its control characters escaped (it is printed)."""
        for row in self._rt.audit_log(limit=50, plugin_id=pid):
            for value in row.values():
                if isinstance(value, str) and "AUDIT-FORGED" in value and _CONTROL.search(value):
                    result.fail(
                        "log",
                        f"the audit log keeps raw control characters from plugin text: {value[:120]!r}",
                    )

    def _files(self) -> dict[str, int]:
        """Every file under the session's directory (the database's own files aside)."""
        out = {}
        for path in self.tmp.rglob("*"):
            # The database's own files change by design; the canary file has its own check.
            if (
                path.is_file()
                and not path.name.startswith(self.db_path.name)
                and path != self.canary_file
            ):
                out[str(path.relative_to(self.tmp))] = path.stat().st_size
        return out

    def _check_files(self, result: PayloadResult, before: dict[str, int]) -> None:
        """No file left behind in the site's directories (media of a rolled-back call...)."""
        after = self._files()
        for name in sorted(set(after) - set(before)):
            result.fail("database", f"a file was left behind: {name}")
        for name in sorted(set(before) - set(after)):
            result.fail("database", f"a file disappeared: {name}")

    # -- raw-worker mode ----------------------------------------------------------------

    def _run_raw(self, p: Payload, result: PayloadResult) -> None:
        import sandbox

        sup = self._raw_supervisor()
        limits = sandbox.SandboxLimits(
            cpu_ms=p.limits["cpu_ms"], memory_mb=p.limits["memory_mb"], wall_ms=p.limits["wall_ms"]
        )
        pool = sup.load(
            f"audit-raw-{self._counter:03d}",
            {"attacker.py": "X = 1\n"},
            "attacker",
            limits=limits,
            pool_size=1,
        )
        self.confinement = dict(pool.confinement)
        host_calls: list[tuple[str, Any]] = []

        def spy(method: str, params: dict[str, Any]) -> Any:
            host_calls.append((method, params))
            return None

        code = self._substitute(p.code, "raw")
        value, error = _with_timeout(
            lambda: pool.raw_exec_for_tests(code, on_host_call=spy, limits=limits).value,
            p.limits["wall_ms"] / 1000 + _HANG_GRACE_S,
        )
        result.evidence += _ok_strings(value)
        if isinstance(error, _Hung):
            result.fail("error", str(error))
        elif error is not None:
            result.error_name = _raw_error_name(error)
            result.error_type = getattr(error, "error_type", None)
            result.message = str(error)
            result.origin = "plugin" if type(error).__name__ == "RemoteError" else "host"
        else:
            result.value = value
        self._check_expected(result)
        if host_calls:
            result.fail("host", f"the host answered forged host calls: {host_calls[:3]!r}")
        again, again_error = _until_available(
            lambda: pool.raw_exec_for_tests("result = 6 * 7", limits=limits).value
        )
        if again != 42:
            result.fail(
                "plugin",
                f"the next call in this pool failed (worker not replaced?): {again_error!r}",
            )
        secret, secret_error = _with_timeout(
            lambda: (
                self._raw_victim.call(
                    "emdash_audit_prelude:read_secret", [], on_host_call=spy
                ).value
            ),
            30.0,
        )
        if secret != self.victim_secret:
            result.fail("victim", f"the victim worker stopped working or changed: {secret_error!r}")
        if not sup.is_healthy():
            result.fail("host", "the sandbox supervisor (fork server) is no longer healthy")
        pool.close()
        for problem in _host_state_problems(self.host_state):
            result.fail("host", problem)

    # -- canaries -----------------------------------------------------------------------

    def _check_canaries(
        self, result: PayloadResult, log_mark: int, http_mark: int, conn_mark: int
    ) -> None:
        if result.evidence:
            result.failures.insert(
                0,
                Failure(
                    "escape", "the payload returned evidence: " + _short(result.evidence[0], 300)
                ),
            )
        hits = self.http.hits[http_mark:]
        if hits:
            result.fail("escape", f"the canary HTTP server was reached: {hits[:3]}")
        if self.abstract.connections != conn_mark:
            result.fail("escape", "the abstract-socket canary accepted a connection")
        if self.canary_file.exists():
            result.fail("escape", f"the canary file {self.canary_file} was written")
            self.canary_file.unlink()
        for place in (Path("/"), Path(tempfile.gettempdir()), self.tmp.parent):
            try:
                stray = [p for p in place.iterdir() if self.token in p.name]
            except OSError:
                continue
            for path in stray:
                result.fail("escape", f"a file named after the canary token appeared: {path}")
        procs = processes_mentioning(self.token)
        if procs:
            result.fail("escape", f"processes run with the canary token: {procs}")
        lines = self.logs.since(log_mark)
        for _name, _, message in lines:
            if "AUDIT-LATE" in message:
                result.fail("log", "code ran after its handler returned and reached the host log")
            if "AUDIT-FORGED" in message or "AUDIT-FMT" in message:
                # A record may span lines (a traceback), but plugin text must not start a line
                # that reads like a record of its own, and must not carry terminal controls.
                if _CONTROL.search(message.replace("\n", "")):
                    result.fail(
                        "log", f"log injection: raw control characters in {message[:120]!r}"
                    )
                forged = [line for line in message.split("\n")[1:] if line.startswith("[")]
                if forged:
                    result.fail("log", f"log injection: a forged log line {forged[0][:120]!r}")
            if "AUDIT-FMT" in message and any(
                s in message for s in ("<class", "<function", "<module", " object at 0x")
            ):
                result.fail("log", f"the host formatted plugin text: {message[:160]!r}")
            if "SANDBOX BYPASS" in message:
                result.fail("log", "an untrusted plugin ran in-process (SANDBOX BYPASS)")
        per_plugin: dict[str, int] = {}
        for name, _, _ in lines:
            if ".plugins." in name:
                per_plugin[name] = per_plugin.get(name, 0) + 1
        for name, count in per_plugin.items():
            if count > 4 * 201:  # attack + followups + ping, each capped at 200 (+1 notice)
                result.fail("log", f"log flood: {count} lines from {name.rsplit('.', 1)[-1]}")


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def run_audit(
    *,
    classes: list[str] | tuple[str, ...] | None = None,
    progress: Callable[[PayloadResult], None] | None = None,
) -> AuditReport:
    """Run the escape corpus (all classes, or ``classes``) and return the report.

    Each class gets a fresh :class:`AuditSession` (fresh runtime, database, victim and
    canaries). ``progress`` is called after every payload (the CLI prints a dot).
    """
    chosen = list(classes) if classes else list(CLASSES)
    for klass in chosen:
        if klass not in CLASSES:
            raise ValueError(f"Unknown escape class {klass!r}; choose from: {', '.join(CLASSES)}")
    started = time.monotonic()
    results: list[PayloadResult] = []
    confinement: dict[str, str] = {}
    for klass in chosen:
        with AuditSession(klass) as session:
            for payload in payloads_for(klass):
                r = session.run(payload)
                results.append(r)
                if progress is not None:
                    progress(r)
            confinement.update(session.confinement)
    from .. import __version__

    env = {
        "emdash": __version__,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
    }
    env.update({f"worker {k}": v for k, v in sorted(confinement.items())})
    return AuditReport(results, env, time.monotonic() - started)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _limit_message(
    error: str | None, error_type: str | None, limits: dict[str, int]
) -> tuple[str, ...]:
    """What the message of a stop by a limit must contain (``{pid}``/``{op}`` as in
    ``Payload.message``); emdash's wording, so only for restricted payloads (raw-worker
    payloads expect no message parts)."""
    if error == "CpuLimitExceeded":
        return (f"Plugin {{pid}} exceeded CPU limit of {limits['cpu_ms']}ms during {{op}}",)
    if error == "WallTimeExceeded":
        return (f"Plugin {{pid}} exceeded wall-time limit of {limits['wall_ms']}ms during {{op}}",)
    if error == "MemoryLimitExceeded":
        return (f"Plugin {{pid}} exceeded memory limit of {limits['memory_mb']} MB during {{op}}",)
    if error == "SubrequestLimitExceeded":
        return (f"Plugin {{pid}} exceeded its subrequest limit of {limits['subrequests']} ",)
    if error == "HookTimeoutError":
        return ("(plugin {pid}, {op})",)
    if error == "PluginError" and is_limit_stop(error, error_type):
        return (f"Plugin {{pid}} raised {error_type} during {{op}}",)
    return ()


class _Hung(Exception):
    """The invocation did not come back within its wall limit plus a generous grace."""


def _with_timeout(fn: Callable[[], Any], seconds: float) -> tuple[Any, BaseException | None]:
    """Run ``fn`` in a thread; (value, error). A hang is reported, never waited out."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - everything is an observation here
            box["error"] = exc

    thread = threading.Thread(target=target, name="emdash-audit-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return None, _Hung(f"the invocation hung for more than {seconds:.0f}s")
    return box.get("value"), box.get("error")


def _until_available(
    fn: Callable[[], Any], seconds: float = 10.0
) -> tuple[Any, BaseException | None]:
    """Call ``fn`` until the sandbox is available again (after a crash the supervisor backs
    off before it starts a new worker; a limit kill has no back-off)."""
    deadline = time.monotonic() + seconds
    while True:
        value, error = _with_timeout(fn, 30.0)
        unavailable = type(error).__name__ == "SandboxUnavailableError"
        if not unavailable or time.monotonic() > deadline:
            return value, error
        time.sleep(0.05)


def _hook_value(outcome: Any, pid: str) -> Any:
    """The plugin's own result of a hook run: its value, or its error re-raised."""
    for r in outcome.results:
        if r.plugin_id == pid:
            if not r.success:
                raise r.error
            return r.value
    raise RuntimeError(f"the hook did not run plugin {pid} (outcome: {outcome!r})")


def _store_lock(rt: Any, seconds: float) -> Callable[[], None]:
    """Hold the store's write lock from another thread for ``seconds``; returns a joiner."""
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with rt.store.transaction():
            held.set()
            release.wait(seconds)

    thread = threading.Thread(target=hold, name="emdash-audit-store-lock", daemon=True)
    thread.start()
    held.wait(5.0)

    def done() -> None:
        release.set()
        thread.join(10.0)

    return done


def _footer(p: Payload) -> str:
    """Bind ``plugin``: the attack (route or hook), ``ping`` and the optional ``followup``."""
    routes = ['"ping": audit_ping']
    hooks = []
    head = "\n\nfrom emdash import define_plugin as audit_define_plugin\n"
    if p.hook.startswith("route:") and p.route_schema is not None:
        head += f"from emdash import RouteConfig as audit_RouteConfig\n\nAUDIT_ROUTE_SCHEMA = {p.route_schema!r}\n"
        routes.append(
            f'"{p.hook[len("route:") :]}": audit_RouteConfig(handler=handler, input=AUDIT_ROUTE_SCHEMA)'
        )
    elif p.hook.startswith("route:"):
        routes.append(f'"{p.hook[len("route:") :]}": handler')
    else:
        hooks.append(f'"{p.hook}": handler')
    if "\nEXTRA_HOOKS = " in "\n" + p.code:
        # Payloads that attack lifecycle hooks (install, uninstall...) declare them here.
        hooks.insert(0, "**EXTRA_HOOKS")
    if p.has_followup:
        routes.append('"followup": followup')
    return (
        head + "\n\n"
        'def audit_ping(route_ctx, ctx):\n    return "pong"\n\n\n'
        f"plugin = audit_define_plugin(hooks={{{', '.join(hooks)}}}, routes={{{', '.join(routes)}}})\n"
    )


def _ok_strings(value: Any, depth: int = 0) -> list[str]:
    """Every string in ``value`` that starts with ``OK`` (payload evidence)."""
    if depth > 50:
        return []
    if isinstance(value, str):
        return [value] if value.startswith("OK") else []
    if isinstance(value, dict):
        return [
            s
            for k, v in value.items()
            for s in _ok_strings(k, depth + 1) + _ok_strings(v, depth + 1)
        ]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _ok_strings(v, depth + 1)]
    return []


_SANDBOX_ERROR_NAMES = (
    "CompileError",
    "SandboxViolation",
    "CpuLimitExceeded",
    "MemoryLimitExceeded",
    "WallTimeExceeded",
    "SubrequestLimitExceeded",
    "SandboxUnavailableError",
    "SandboxNotAvailableError",
    "WorkerCrashed",
    "SandboxError",
)


def _raw_error_name(exc: BaseException) -> str:
    """The exception the raw code raised (RemoteError), else the public sandbox class."""
    kind = getattr(exc, "error_type", None)
    if type(exc).__name__ == "RemoteError" and isinstance(kind, str):
        return kind
    for cls in type(exc).__mro__:
        if cls.__name__ in _SANDBOX_ERROR_NAMES:
            return cls.__name__
    return type(exc).__name__


def _host_functions() -> dict[str, Any]:
    """Host functions a poisoning payload would have to replace (json, open, eval, system)."""
    return {
        "json.dumps": json.dumps,
        "json.loads": json.loads,
        "builtins.open": builtins.open,
        "builtins.eval": builtins.eval,
        "os.system": os.system,
    }


def _host_state() -> dict[str, Any]:
    return {"environ": dict(os.environ), "cwd": os.getcwd(), "functions": _host_functions()}


def _host_state_problems(before: dict[str, Any]) -> list[str]:
    problems = []
    if dict(os.environ) != before["environ"]:
        problems.append("the host's environment changed")
    if os.getcwd() != before["cwd"]:
        problems.append("the host's working directory changed")
    for name, fn in _host_functions().items():
        if fn is not before["functions"][name]:
            problems.append(f"the host's {name} was replaced")
    return problems


@contextmanager
def _env_var(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _outcome(error: str | None, error_type: str | None) -> str:
    """``CpuLimitExceeded``, ``PluginError(RecursionError)``, ``no error``."""
    return (error or "no error") + (f"({error_type})" if error_type else "")


def _short(text: str, limit: int = 160) -> str:
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
