"""Escape class ``exc`` (docs/escape-corpus.md 053-058): exceptions as carriers, weapons and hiding places.

``except*`` reaches an interpreter type confusion (compile error). Exceptions carry object
references (``AttributeError.obj``, refused by the guard); ``SystemExit`` and friends are not
builtins of restricted code at all, and raised after a breakout they must not stop the worker
or the host; in-process timeouts cannot be swallowed because the CPU limit is a kernel
signal with its default action; error reports are bounded.
"""

from __future__ import annotations

from . import P, Payload

# Report-size payloads get CPU room: what they test is the bounded report, not the CPU limit.
_ROOMY = {"cpu_ms": 1000, "memory_mb": 64, "wall_ms": 2000, "subrequests": 10}

PAYLOADS: list[Payload] = [
    P(
        "try_except_star",
        "try/except* with a BaseExceptionGroup subclass whose split() lies -> type confusion",
        "corpus 053; CVE-2025-22153 / GHSA-gmj9-h825-chq2; CPython gh-128049",
        """
        def handler(event, ctx):
            try:
                raise ValueError("x")
            except* ValueError:
                pass
            return "OK except* ran"
        """,
        "compile_error",
        "CompileError",
        ref="053",
    ),
    P(
        "attributeerror_obj_unwrap_proxy",
        "AttributeError.obj from a ctx member, then the hidden host-call primitive",
        "corpus 054; CVE-2024-47532 lesson applied to our own proxies",
        """
        def handler(event, ctx):
            try:
                ctx.storage.no_such_collection_attr.get("x")
            except Exception as e:
                inner = getattr(e, "obj", None)
                if inner is None:
                    raise LookupError("DENIED the error carries no object")
                return "OK " + repr(getattr(inner, "_call"))
            raise LookupError("DENIED no error at all")
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="054",
    ),
    P(
        "error_message_oracle",
        "provoke host errors about the victim's data and read secrets from their messages",
        "corpus 055",
        """
        def handler(event, ctx):
            texts = []
            for attempt in ["notes", "__kv", "plugin:@@VICTIM_ID@@"]:
                try:
                    ctx.storage[attempt].get("n1")
                except Exception as e:
                    texts.append(str(e))
            try:
                ctx.storage["events"].query(cursor="eyJwbHVnaW4iOiJ2aWN0aW0ifQ==")
            except Exception as e:
                texts.append(str(e))
            joined = " | ".join(texts)
            if "@@VICTIM_SECRET@@" in joined:
                return "OK secret in an error message: " + joined
            raise LookupError("DENIED no secret in " + str(len(texts)) + " messages")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
        ref="055",
    ),
    P(
        "systemexit_zero",
        "raise SystemExit(0): a runner that catches only Exception exits, or reports success",
        "corpus 056; codejail TestProxyProcess",
        """
        def handler(event, ctx):
            raise SystemExit(0)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="056",
    ),
    P(
        "swallow_cpu_timeout",
        "catch BaseException around a busy loop, forever: an in-process timeout is swallowed",
        "corpus 057",
        """
        def handler(event, ctx):
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass
        """,
        "contained",
        "CpuLimitExceeded",
        ref="057",
        message=("Plugin {pid} exceeded CPU limit of 50ms during {op}",),
    ),
    P(
        "error_report_poisoning",
        "an exception with a 4 MB message: the report must be bounded, the host unharmed",
        "corpus 058",
        """
        def handler(event, ctx):
            raise ValueError("AUDIT" + "x" * (4 * 1024 * 1024))
        """,
        "contained",
        "PluginError",
        error_type="ValueError",
        ref="058",
        limits=_ROOMY,
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "keyboardinterrupt",
        "raise KeyboardInterrupt: must be a plugin error, not an interrupt of the host",
        "own variant of 056",
        """
        def handler(event, ctx):
            raise KeyboardInterrupt()
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "generatorexit_raised",
        "raise GeneratorExit from the handler",
        "own variant of 056",
        """
        def handler(event, ctx):
            raise GeneratorExit()
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "deeply_nested_error_args",
        "an exception whose argument is a 100 000-deep nested list (repr recursion while reporting)",
        "own variant of 058",
        """
        def handler(event, ctx):
            x = []
            for i in range(100000):
                x = [x]
            raise ValueError(x)
        """,
        "contained",
        "PluginError",
        error_type="ValueError",
        limits=_ROOMY,
    ),
    P(
        "forged_error_type",
        "raise an exception class named like a host error to make the host rebuild it",
        "own; error_from_wire allowlist",
        """
        class CapabilityError(Exception):
            pass

        def handler(event, ctx):
            raise CapabilityError("Missing capability: everything (forged by the plugin)")
        """,
        "runtime_denied",
        "PluginError",
        error_type="CapabilityError",
    ),
    P(
        "catch_denial_and_retry",
        "catch every SandboxViolation and retry the forbidden import 200 times, then succeed",
        "own; a denial must stay a denial however often it is retried",
        """
        def handler(event, ctx):
            got = None
            for i in range(200):
                try:
                    import os
                    got = os
                    break
                except Exception:
                    pass
            if got is not None:
                return "OK import succeeded on retry"
            raise LookupError("DENIED every retry was refused")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
    ),
    P(
        "systemexit_in_finally_of_load",
        "raise SystemExit at module level: the load fails cleanly, the fork server survives",
        "own variant of 056 (load phase)",
        """
        raise SystemExit(3)

        def handler(event, ctx):
            return "OK"
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "systemexit_raw_worker",
        "raise SystemExit(0) with the language layer bypassed: the serve loop reports it as the "
        "call's error and keeps serving",
        "own variant of 056 (post-breakout: SystemExit is not a builtin in restricted code)",
        """
        raise SystemExit(0)
        """,
        "runtime_denied",
        "SystemExit",
        mode="raw-worker",
    ),
    P(
        "keyboardinterrupt_raw_worker",
        "raise KeyboardInterrupt with the language layer bypassed",
        "own variant of 056 (post-breakout)",
        """
        raise KeyboardInterrupt()
        """,
        "runtime_denied",
        "KeyboardInterrupt",
        mode="raw-worker",
    ),
    P(
        "forged_limit_error",
        "raise a plugin-defined SubrequestLimitExceeded: the host would record a limit that was "
        "never hit (audit and crash bookkeeping trust the error class)",
        "own variant of forged_error_type",
        """
        class SubrequestLimitExceeded(Exception):
            pass

        def handler(event, ctx):
            raise SubrequestLimitExceeded("Plugin victim exceeded its subrequest limit (forged)")
        """,
        "runtime_denied",
        "PluginError",
        error_type="SubrequestLimitExceeded",
    ),
    P(
        "error_message_log_injection",
        "an exception message with CR/LF and terminal escapes (OSC title, clear screen): the "
        "host logs the failed hook and stores the message in the audit log",
        "own; corpus 058 (error-report poisoning) meets ctx class log injection",
        """
        def handler(event, ctx):
            raise ValueError("AUDIT-FORGED\\x1b]0;owned\\x07\\x1b[2J\\n[plugin:@@VICTIM_ID@@] fake line\\r")
        """,
        "runtime_denied",
        "PluginError",
        error_type="ValueError",
        hook="content:afterSave",
        capabilities=("content:read",),
    ),
]
