"""Escape class ``dos`` (docs/escape-corpus.md 107-120): exhausting CPU, memory, wall time, output and host calls.

Every bomb runs under the small default limits (50 ms CPU, 64 MB, 2 s wall, 10 subrequests)
and must end with the matching limit error while the host, the database and the other
plugins stay untouched; the next call of the same plugin must work again (the worker was
replaced).
"""

from __future__ import annotations

from typing import Any

from . import P, Payload

_CPU: dict[str, Any] = {"message": ("Plugin {pid} exceeded CPU limit of 50ms during {op}",)}
_MEM: dict[str, Any] = {"message": ("Plugin {pid} exceeded memory limit of 64 MB during {op}",)}
_SUB: dict[str, Any] = {"message": ("exceeded its subrequest limit of 10",)}
# Memory and output bombs get a generous CPU budget: filling 64 MB (page faults, copies)
# takes longer than 50 ms, and these payloads must be stopped by the limit they target.
_ROOMY: dict[str, int] = {"cpu_ms": 1000, "memory_mb": 64, "wall_ms": 2000, "subrequests": 10}

PAYLOADS: list[Payload] = [
    P(
        "busy_loop",
        "while True: pass",
        "corpus 107; codejail test_cant_use_too_much_cpu",
        """
        def handler(event, ctx):
            while True:
                pass
        """,
        "contained",
        "CpuLimitExceeded",
        ref="107",
        **_CPU,
    ),
    P(
        "bigint_one_c_call",
        "10**10**8: one C call that runs for minutes (no Python-level check can interrupt it)",
        "corpus 108",
        """
        def handler(event, ctx):
            return "OK " + str(len(str(10 ** 10 ** 8)))
        """,
        "contained",
        "CpuLimitExceeded",
        ref="108",
        **_CPU,
    ),
    P(
        "redos",
        "re.match('(a+)+$', 'a' * 40 + 'b'): catastrophic backtracking inside the C regex engine",
        "corpus 109",
        """
        import re

        def handler(event, ctx):
            return "OK " + repr(re.match("(a+)+$", "a" * 40 + "b"))
        """,
        "contained",
        "CpuLimitExceeded",
        ref="109",
        **_CPU,
    ),
    P(
        "alloc_8_gib",
        "'x' * 8 GiB in one allocation",
        "corpus 110; codejail test_cant_use_too_much_memory",
        """
        def handler(event, ctx):
            s = "x" * (8 * 1024 * 1024 * 1024)
            return "OK " + str(len(s))
        """,
        "contained",
        "MemoryLimitExceeded",
        ref="110",
        limits=_ROOMY,
        **_MEM,
    ),
    P(
        "gradual_rss",
        "append 1 MiB strings until something gives",
        "corpus 111",
        """
        def handler(event, ctx):
            keep = []
            while True:
                keep.append("x" * (4 * 1024 * 1024))
        """,
        "contained",
        "MemoryLimitExceeded",
        ref="111",
        limits=_ROOMY,
        **_MEM,
    ),
    P(
        "string_amplification",
        "s = s + s in a loop (exponential growth)",
        "corpus 112",
        """
        def handler(event, ctx):
            s = "ab"
            while True:
                s = s + s
        """,
        "contained",
        "MemoryLimitExceeded",
        ref="112",
        limits=_ROOMY,
        **_MEM,
    ),
    P(
        "hash_collisions",
        "dict keys that all hash to 0 (multiples of 2**61 - 1): quadratic insertion",
        "corpus 113",
        """
        def handler(event, ctx):
            m = 2 ** 61 - 1
            d = {}
            for i in range(200000):
                d[i * m] = i
            return "OK " + str(len(d))
        """,
        "contained",
        "CpuLimitExceeded",
        ref="113",
        **_CPU,
    ),
    P(
        "int_str_digit_limit",
        "str(10**100000): CPython's int_max_str_digits refuses the quadratic conversion",
        "corpus 114; CVE-2020-10735",
        """
        def handler(event, ctx):
            return "OK " + str(10 ** 100000)[:10]
        """,
        "runtime_denied",
        "PluginError",
        error_type="ValueError",
        ref="114",
    ),
    P(
        "recursion_python_and_c",
        "unbounded Python recursion, then json.dumps of a 100 000-deep list (C recursion)",
        "corpus 115; the interpreter's recursion limit must hold in Python and in C",
        """
        import json

        def handler(event, ctx):
            def down(n):
                return down(n + 1)
            try:
                down(0)
            except RecursionError:
                pass
            x = []
            for i in range(100000):
                x = [x]
            return "OK " + str(len(json.dumps(x)))
        """,
        "contained",
        "PluginError",
        error_type="RecursionError",
        ref="115",
        limits=_ROOMY,
    ),
    P(
        "print_flood",
        "print 20 MB: the print collector must cap what it keeps",
        "corpus 116; docs/escape-corpus.md, guard pitfalls (_print_ unbounded)",
        """
        def handler(event, ctx):
            line = "x" * 4000
            for i in range(5000):
                print(line)
            if len(printed) > 1000000:
                return "OK the print collector kept " + str(len(printed)) + " chars"
            raise LookupError("DENIED print output capped at " + str(len(printed)))
        """,
        "contained",
        "PluginError",
        error_type="LookupError",
        ref="116",
        limits=_ROOMY,
    ),
    P(
        "host_call_flood",
        "ctx.kv.get in a loop: more bridge calls than limits.subrequests",
        "corpus 117",
        """
        def handler(event, ctx):
            for i in range(1000):
                ctx.kv.get("k" + str(i))
            return "OK 1000 host calls"
        """,
        "contained",
        "SubrequestLimitExceeded",
        ref="117",
        **_SUB,
    ),
    P(
        "result_bomb",
        "return a 9 MB string (just over the 8 MB frame cap; small enough that building and "
        "serialising it stays within the CPU budget, so the size cap is what stops it)",
        "corpus 118; codejail json_safe results",
        """
        def handler(event, ctx):
            return "OK" + "x" * (9 * 1024 * 1024)
        """,
        "contained",
        "SandboxViolation",
        message=("the result is too large",),
        ref="118",
        limits=_ROOMY,
    ),
    P(
        "wall_clock_in_host_calls",
        "a host call that blocks (another thread holds the store's write lock): the wall "
        "clock counts time spent in the host too",
        "corpus 119; codejail test_cant_use_too_much_time",
        """
        def handler(event, ctx):
            ctx.kv.set("blocked", "AUDIT")
            return "OK the host call returned"
        """,
        "contained",
        "WallTimeExceeded",
        message=("Plugin {pid} exceeded wall-time limit of 500ms during {op}",),
        ref="119",
        limits={"cpu_ms": 50, "memory_mb": 64, "wall_ms": 500, "subrequests": 10},
        setup="store-lock",
    ),
    P(
        "memoryerror_ratchet",
        "catch MemoryError and keep the memory in a module global: the bloated worker must "
        "not serve the next call (supervisor: peak RSS past half the budget -> replaced)",
        "corpus 120; codejail vmem tests",
        """
        KEEP = []

        def handler(event, ctx):
            try:
                while True:
                    KEEP.append("x" * (1024 * 1024) + str(len(KEEP)))
            except Exception:
                # MemoryError is not a builtin name in sandboxed code, but it is an
                # Exception: a plugin can still catch it this way.
                pass
            return "ratchet set"

        def followup(event, ctx):
            if len(KEEP) > 8:
                return "OK the bloated worker kept " + str(len(KEEP)) + " MiB for the next call"
            raise LookupError("DENIED the next call ran in a fresh worker")
        """,
        "contained",
        "PluginError",
        error_type="LookupError",
        ref="120",
        limits=_ROOMY,
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "host_call_flood_caught",
        "flood the bridge and swallow every SubrequestLimitExceeded: the invocation still fails",
        "own variant of 117",
        """
        def handler(event, ctx):
            # 100 calls: few enough that the CPU budget never ends the loop first, so the
            # only thing that can fail this invocation is the (swallowed) subrequest limit.
            for i in range(100):
                try:
                    ctx.kv.get("k" + str(i))
                except Exception:
                    pass
            return "OK swallowed the subrequest limit"
        """,
        "contained",
        "SubrequestLimitExceeded",
        **_SUB,
    ),
    P(
        "pow_builtin_bigint",
        "pow(10, 10**8) through the builtin",
        "own variant of 108 (the pow builtin refuses up front)",
        """
        def handler(event, ctx):
            return "OK " + str(pow(10, 10 ** 8))[:5]
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "list_repeat_alloc",
        "[0] * 10**9 (8 GB of pointers)",
        "own variant of 110",
        """
        def handler(event, ctx):
            return "OK " + str(len([0] * (10 ** 9)))
        """,
        "contained",
        "MemoryLimitExceeded",
        limits=_ROOMY,
        **_MEM,
    ),
    P(
        "replace_amplification",
        "('x' * 1000).replace('x', 'y' * 100000): 100 MB from a 1 kB string in one C call",
        "own variant of 112",
        """
        def handler(event, ctx):
            return "OK " + str(len(("x" * 1000).replace("x", "y" * 100000)))
        """,
        "contained",
        "MemoryLimitExceeded",
        limits=_ROOMY,
        **_MEM,
    ),
    P(
        "recursion_with_retry",
        "recursion that catches RecursionError and recurses again: exponential time",
        "own variant of 115",
        """
        def handler(event, ctx):
            def again(n):
                try:
                    again(n + 1)
                except RecursionError:
                    again(n + 1)
            again(0)
            return "OK"
        """,
        "contained",
        "CpuLimitExceeded",
        **_CPU,
    ),
    P(
        "log_flood",
        "100 000 ctx.log lines: lines past the per-invocation cap of 200 are dropped and each "
        "costs a subrequest, so the subrequest budget ends the loop (the CPU limit, on a "
        "machine slow enough that it trips first)",
        "own; docs/resource-model.md (log lines per invocation)",
        """
        def handler(event, ctx):
            for i in range(100000):
                ctx.log.info("AUDIT-FLOOD " + str(i))
            return "OK logged 100000 lines"
        """,
        "contained",
        "SubrequestLimitExceeded",
        **_SUB,
    ),
    P(
        "result_fanout",
        "return [big] * 90: 100 kB held once, 9 MB once serialised",
        "own variant of 118",
        """
        def handler(event, ctx):
            big = "x" * 100000
            return [big] * 90
        """,
        "contained",
        "SandboxViolation",
        message=("the result is too large",),
        limits=_ROOMY,
    ),
    P(
        "busy_loop_in_hook",
        "while True: pass in a content:afterSave handler",
        "own variant of 107 (hooks, not routes)",
        """
        def handler(event, ctx):
            while True:
                pass
        """,
        "contained",
        "CpuLimitExceeded",
        message=("Plugin {pid} exceeded CPU limit of 50ms during hook:content:afterSave",),
        hook="content:afterSave",
        capabilities=("content:read",),
    ),
    P(
        "route_schema_unique_items",
        "a route input schema with uniqueItems, and 2500 objects as input: uniqueItems over "
        "unorderable items is quadratic; the validation must run where the plugin's CPU limit "
        "applies (its worker), never in the host",
        "own; host-side work chosen by the plugin (the same class as a ReDoS 'pattern')",
        """
        def handler(route_ctx, ctx):
            return "validated"
        """,
        "contained",
        "CpuLimitExceeded",
        message=("Plugin {pid} exceeded CPU limit of 50ms during {op}",),
        route_schema={"type": "array", "uniqueItems": True},
        route_input=[{"n": i} for i in range(2500)],
    ),
    P(
        "route_schema_anyof_fanout",
        "a route input schema whose items must match one of 500 anyOf branches, and 400 items: "
        "validation cost is schema size times input size",
        "own; host-side work chosen by the plugin",
        """
        def handler(route_ctx, ctx):
            return "validated"
        """,
        "contained",
        "CpuLimitExceeded",
        message=("Plugin {pid} exceeded CPU limit of 50ms during {op}",),
        route_schema={
            "type": "array",
            "items": {"anyOf": [{"type": "object", "required": [f"k{i}"]} for i in range(500)]},
        },
        route_input=[{"x": 1}] * 400,
    ),
    P(
        "route_schema_ref_loop",
        "a route input schema that references itself without consuming input: validation "
        "recurses until RecursionError, which must surface as the plugin's error",
        "own; host-side work chosen by the plugin",
        """
        def handler(route_ctx, ctx):
            return "validated"
        """,
        "runtime_denied",
        "PluginError",
        error_type="RecursionError",
        route_schema={"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        route_input={},
    ),
    P(
        "lifecycle_hooks_hold_the_host",
        "plugin:install and plugin:activate spin forever, plugin:deactivate and plugin:uninstall "
        "raise: adding must still finish within the limits and removing must still remove",
        "own; lifecycle hooks run inside add_plugin / remove_plugin (host operations)",
        """
        def spin(event, ctx):
            while True:
                pass

        def refuse(event, ctx):
            raise ValueError("this plugin refuses to be removed")

        EXTRA_HOOKS = {
            "plugin:install": spin,
            "plugin:activate": spin,
            "plugin:deactivate": refuse,
            "plugin:uninstall": refuse,
        }

        def handler(route_ctx, ctx):
            raise LookupError("DENIED the lifecycle hooks were bounded")
        """,
        "contained",
        "PluginError",
        error_type="LookupError",
    ),
    P(
        "nested_map_c_stack",
        "100 000 nested map() objects: each __next__ calls the next in C with no recursion "
        "check, so iterating them overflows the C stack (SIGSEGV)",
        "issue 14 (deep nesting of lazy iterator wrappers)",
        """
        def handler(event, ctx):
            it = [1]
            for i in range(100000):
                it = map(abs, it)
            return "OK " + str(list(it))
        """,
        "contained",
        "PluginError",
        error_type="RecursionError",
        message=("lazy iterators nested more than 32 levels deep",),
        # Room to build the whole chain: without the bound the worker dies of SIGSEGV, not
        # of the CPU limit.
        limits=dict(_ROOMY),
    ),
    P(
        "nested_mixed_wrappers_c_stack",
        "the same chain built from enumerate, zip, filter and itertools objects in turn",
        "issue 14; own variant",
        """
        import itertools

        def handler(event, ctx):
            it = [1]
            for i in range(100000):
                kind = i % 5
                if kind == 0:
                    it = enumerate(it)
                elif kind == 1:
                    it = zip(it)
                elif kind == 2:
                    it = filter(None, it)
                elif kind == 3:
                    it = itertools.islice(it, 10)
                else:
                    it = itertools.chain.from_iterable([it])
            return "OK " + str(next(it))
        """,
        "contained",
        "PluginError",
        error_type="RecursionError",
        message=("lazy iterators nested more than 32 levels deep",),
        # Room to build the whole chain: without the bound the worker dies of SIGSEGV, not
        # of the CPU limit.
        limits=dict(_ROOMY),
    ),
]
