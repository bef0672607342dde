"""Escape class ``iter`` (docs/escape-corpus.md 075-078): iteration that never calls ``_getiter_``.

``[*x]``, ``str.join``, ``set()``, ``f(*x)``, ``x in y``... iterate in C. ``_getiter_`` is
therefore no confidentiality boundary; the defence is that host objects are not iterable
at all (``ctx`` and its members define no ``__iter__``), so every consumer fails the same
way: a ``TypeError`` in the plugin.
"""

from __future__ import annotations

from . import P, Payload

_TYPE = {"error_type": "TypeError"}

PAYLOADS: list[Payload] = [
    P(
        "star_unpack_ctx",
        "[*ctx]: list display unpacking iterates in C",
        "corpus 075; RP 9.0 #335",
        """
        def handler(event, ctx):
            return "OK " + repr([*ctx])
        """,
        "runtime_denied",
        "PluginError",
        ref="075",
        **_TYPE,
    ),
    P(
        "set_display_unpack_kv",
        "{*ctx.kv}: set display unpacking",
        "corpus 076",
        """
        def handler(event, ctx):
            return "OK " + repr({*ctx.kv})
        """,
        "runtime_denied",
        "PluginError",
        ref="076",
        **_TYPE,
    ),
    P(
        "str_join_log",
        "''.join(ctx.log): str.join consumes any iterable in C",
        "corpus 077",
        """
        def handler(event, ctx):
            return "OK " + "".join(ctx.log)
        """,
        "runtime_denied",
        "PluginError",
        ref="077",
        **_TYPE,
    ),
    P(
        "star_call_http",
        "f(*ctx.http): the starred iterable is consumed before _apply_ runs",
        "corpus 078",
        """
        def collect(*items):
            return items

        def handler(event, ctx):
            return "OK " + repr(collect(*ctx.http))
        """,
        "runtime_denied",
        "PluginError",
        ref="078",
        **_TYPE,
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "tuple_display_unpack",
        "(*ctx.content,): tuple display unpacking",
        "own variant of 075",
        """
        def handler(event, ctx):
            return "OK " + repr((*ctx.content,))
        """,
        "runtime_denied",
        "PluginError",
        **_TYPE,
    ),
    P(
        "list_extend_ctx",
        "[].extend(ctx): list.extend iterates in C",
        "own variant of 077",
        """
        def handler(event, ctx):
            out = []
            out.extend(ctx)
            return "OK " + repr(out)
        """,
        "runtime_denied",
        "PluginError",
        **_TYPE,
    ),
    P(
        "dict_fromkeys_kv",
        "{}.fromkeys(ctx.kv): dict.fromkeys iterates in C",
        "own variant of 077",
        """
        def handler(event, ctx):
            return "OK " + repr({}.fromkeys(ctx.kv))
        """,
        "runtime_denied",
        "PluginError",
        **_TYPE,
    ),
    P(
        "set_union_cron",
        "{0}.union(ctx.cron): set.union iterates in C",
        "own variant of 077",
        """
        def handler(event, ctx):
            return "OK " + repr({0}.union(ctx.cron))
        """,
        "runtime_denied",
        "PluginError",
        **_TYPE,
    ),
    P(
        "membership_fallback_iteration",
        "'x' in ctx: the in operator falls back to iteration (or __getitem__ probing)",
        "own",
        """
        def handler(event, ctx):
            return "OK " + repr("kv" in ctx)
        """,
        "runtime_denied",
        "PluginError",
        **_TYPE,
    ),
    P(
        "storage_getitem_probing",
        "[*ctx.storage]: a __getitem__ without __iter__ lets iter() probe with 0, 1, 2...",
        "own; Storage declares __iter__ = None for exactly this",
        """
        def handler(event, ctx):
            return "OK " + repr([*ctx.storage])
        """,
        "runtime_denied",
        "PluginError",
        **_TYPE,
    ),
    # -- C code that consumes a plugin generator while it mutates a container ----------
    P(
        "shrinking_generator_slice_assignment",
        "gh-120384: x[::2] = gen(); the list computes the slice length, then consumes the "
        "generator, which empties the list: the C code writes past the list's memory",
        "CPython gh-120384 (out-of-bounds write in list_ass_subscript); issue 14",
        """
        def handler(event, ctx):
            items = list(range(1000))

            def shrink():
                items.clear()
                for i in range(500):
                    yield [i] * 10

            items[::2] = shrink()
            return "OK the list took the values: " + str(len(items))
        """,
        "runtime_denied",
        "PluginError",
        error_type="ValueError",
        message=("attempt to assign sequence of size 500 to extended slice of size 0",),
    ),
    P(
        "shrinking_generator_slice_object",
        "gh-120384 with the slice given as a slice object, so the compiler cannot see it",
        "CPython gh-120384; own variant",
        """
        def handler(event, ctx):
            items = list(range(1000))

            def shrink():
                items.clear()
                for i in range(500):
                    yield i

            where = slice(None, None, 2)
            items[where] = shrink()
            return "OK the list took the values: " + str(len(items))
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("Assigning to an extended slice through a slice object is not allowed",),
    ),
]
