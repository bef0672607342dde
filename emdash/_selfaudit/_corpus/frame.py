"""Escape class ``frame`` (docs/escape-corpus.md 023-029): frames, code objects and code that runs too late.

Every object carrying a frame (generator, coroutine, traceback) is a path to ``f_globals`` /
``f_builtins``; INSPECT_ATTRIBUTES are refused at compile time and by every getattr.
Generators parked with a ``finally`` run plugin code after the handler returned: the worker
closes the invocation (host calls refused) before such code can run.
"""

from __future__ import annotations

from . import P, Payload

PAYLOADS: list[Payload] = [
    P(
        "gi_frame_f_back",
        "gen.gi_frame.f_back.f_back.f_builtins['__import__'] (literal attributes)",
        "corpus 023; CVE-2023-37271 / GHSA-wqc8-x2pr-7jqh",
        """
        def handler(event, ctx):
            g = (x for x in [1])
            b = g.gi_frame.f_back.f_back.f_builtins
            return "OK " + repr(b)
        """,
        "compile_error",
        "CompileError",
        ref="023",
    ),
    P(
        "gi_frame_via_getattr",
        "getattr(gen, 'gi_frame') then f_back through getattr",
        "corpus 024; RP test_Guards breakout 5 (gi_frame through getattr)",
        """
        def handler(event, ctx):
            g = (x for x in [1])
            f = getattr(g, "gi_frame")
            up = getattr(f, "f_back")
            return "OK " + repr(getattr(up, "f_globals"))
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="024",
    ),
    P(
        "gi_code_co_code",
        "gen.gi_code.co_code / f_trace: code objects and tracing",
        "corpus 025; INSPECT_ATTRIBUTES",
        """
        def handler(event, ctx):
            def gen():
                yield 1
            g = gen()
            return "OK " + repr(g.gi_code.co_code)
        """,
        "compile_error",
        "CompileError",
        ref="025",
    ),
    P(
        "traceback_frames",
        "exception.__traceback__.tb_frame.f_globals",
        "corpus 026",
        """
        def handler(event, ctx):
            try:
                1 / 0
            except ZeroDivisionError as e:
                return "OK " + repr(e.__traceback__.tb_frame.f_globals)
        """,
        "compile_error",
        "CompileError",
        ref="026",
    ),
    P(
        "async_frames",
        "async def: coroutine cr_frame / async generator ag_frame",
        "corpus 027; RP 8.5 (ag_await/ag_frame/ag_code)",
        """
        async def co():
            return 1

        def handler(event, ctx):
            c = co()
            return "OK " + repr(c.cr_frame)
        """,
        "compile_error",
        "CompileError",
        ref="027",
    ),
    P(
        "generator_result_object",
        "the handler is a generator function: a live generator object is the 'result'",
        "corpus 028 (host coroutine objects); results are JSON only",
        """
        def handler(event, ctx):
            yield "OK generator body ran in the host"
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="028",
    ),
    P(
        "generator_finally_after_return",
        "a generator with a finally parked in a reference cycle runs after the handler returned "
        "and writes KV with the stale ctx",
        "corpus 029; docs/design.md, _shared (code can run after a handler returns)",
        """
        PARKED = []

        def handler(event, ctx):
            def late():
                try:
                    yield 1
                finally:
                    ctx.kv.set("deferred", "OK written after return")
            g = late()
            next(g)
            cycle = [g]
            cycle.append(cycle)
            return "parked"

        def followup(event, ctx):
            junk = []
            for i in range(3000):
                junk.append([i])
            if ctx.kv.get("deferred") is not None:
                return str(ctx.kv.get("deferred"))
            raise LookupError("DENIED nothing was written after the handler returned")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
        ref="029",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "traceback_via_getattr",
        "getattr(e, '__traceback__') built at run time",
        "own variant of 026",
        """
        def handler(event, ctx):
            try:
                1 / 0
            except ZeroDivisionError as e:
                tb = getattr(e, "__trace" + "back__")
                return "OK " + repr(tb)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "f_locals_via_getattr",
        "getattr(frame-bearing generator, 'gi_yieldfrom') and 'f_locals'",
        "own; INSPECT_ATTRIBUTES in getattr",
        """
        def handler(event, ctx):
            def inner():
                yield 1
            def outer():
                yield from inner()
            g = outer()
            next(g)
            sub = getattr(g, "gi_yieldfrom")
            return "OK " + repr(sub)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "generator_cycle_late_log",
        "a parked generator cycle whose finally writes a host log line after the handler "
        "returned (log calls are not subrequests: they must be fenced the same way)",
        "own variant of 029 (late effect through ctx.log)",
        """
        def handler(event, ctx):
            def late():
                try:
                    yield 1
                finally:
                    ctx.log.info("AUDIT-LATE finally reached the host log")
            g = late()
            next(g)
            cycle = [g]
            cycle.append(cycle)
            raise LookupError("DENIED parked; the harness watches the host log")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
    ),
    P(
        "generator_stashed_across_calls",
        "a suspended generator holding the first call's ctx is resumed in a later call",
        "own variant of 029/086 (stale ctx resumed explicitly)",
        """
        STASH = []

        def handler(event, ctx):
            def later():
                yield 1
                ctx.kv.set("deferred", "OK stale ctx used from a resumed generator")
                yield 2
            g = later()
            next(g)
            STASH.append(g)
            return "stashed"

        def followup(event, ctx):
            if not STASH:
                raise LookupError("DENIED no stash in this worker")
            try:
                next(STASH[0])
            except Exception:
                pass
            if ctx.kv.get("deferred") is not None:
                return str(ctx.kv.get("deferred"))
            raise LookupError("DENIED the stale ctx was refused")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
    ),
    P(
        "fullwidth_gi_frame",
        "gi_frame spelled in fullwidth letters (NFKC makes it gi_frame again)",
        "own; NFKC identifiers against the INSPECT_ATTRIBUTES check",
        "def handler(event, ctx):\n    g = (x for x in [1])\n"
        "    return 'OK ' + repr(g.\uff47\uff49_\uff46\uff52\uff41\uff4d\uff45)\n",
        "compile_error",
        "CompileError",
    ),
    P(
        "gi_frame_via_getattr_in_hook",
        "getattr(gen, 'gi_frame') in a content:afterSave handler",
        "own variant of 024 (hooks, not routes)",
        """
        def handler(event, ctx):
            g = (x for x in [1])
            return "OK " + repr(getattr(g, "gi_frame"))
        """,
        "runtime_denied",
        "SandboxViolation",
        hook="content:afterSave",
        capabilities=("content:read",),
    ),
]
