"""Escape class ``guardshadow`` (docs/escape-corpus.md 040-044): binding a guard's name in plugin scope.

RestrictedPython emits calls to ``_write_``, ``_getattr_``, ``_getiter_``... resolved *by
name at run time*; a local binding of that name disables the guard in its scope. Every
binding form must be refused at compile time (CVE-2026-55830 was positional-only
parameters). Private keyword names are the runtime sibling (L3).
"""

from __future__ import annotations

from . import P, Payload

PAYLOADS: list[Payload] = [
    P(
        "posonly_param_write",
        "def f(_write_, /): a positional-only parameter shadows the write guard",
        "corpus 040; CVE-2026-55830 / GHSA-ffg3-p8fm-mjx2",
        """
        import json

        def poison(_write_, /):
            json.dumps = lambda *a, **k: "poisoned"

        def handler(event, ctx):
            poison(lambda obj: obj)
            return "OK " + json.dumps({})
        """,
        "compile_error",
        "CompileError",
        ref="040",
    ),
    P(
        "posonly_param_getattr",
        "def f(_getattr_, /): the attribute guard replaced by the real getattr",
        "corpus 041; CVE-2026-55830",
        """
        def peek(_getattr_, /, target=None):
            return target.__class__

        def handler(event, ctx):
            return "OK " + repr(peek(lambda o, n: o, ctx))
        """,
        "compile_error",
        "CompileError",
        ref="041",
    ),
    P(
        "walrus_binding",
        "(_getiter_ := identity) in a comprehension",
        "corpus 042; dimagi PR 4563",
        """
        def handler(event, ctx):
            y = [(_getiter_ := None) for x in [1]]
            return "OK walrus bound a guard"
        """,
        "compile_error",
        "CompileError",
        ref="042",
    ),
    P(
        "loop_and_except_binding",
        "for _getattr_ in ...: / except E as _write_: binding forms",
        "corpus 043",
        """
        def handler(event, ctx):
            for _getattr_ in [1]:
                pass
            try:
                1 / 0
            except ZeroDivisionError as _write_:
                pass
            return "OK loop/except bound guards"
        """,
        "compile_error",
        "CompileError",
        ref="043",
    ),
    P(
        "private_keyword_argument",
        "ctx.storage['events'].query(_raw_sql=...): private keyword names are never checked by RP",
        "corpus 044; docs/escape-corpus.md, guard pitfalls (_apply_: keyword names never checked)",
        """
        def handler(event, ctx):
            r = ctx.storage["events"].query(**{"_raw_sql": "SELECT * FROM _plugin_storage"})
            return "OK private kwarg accepted: " + repr(r)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="044",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "with_as_binding",
        "with x as _write_:",
        "own; every binding form",
        """
        def handler(event, ctx):
            with open_thing() as _write_:
                pass
            return "OK"
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "import_as_binding",
        "import math as _getitem_",
        "own; every binding form",
        """
        def handler(event, ctx):
            import math as _getitem_
            return "OK"
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "kwonly_and_vararg_binding",
        "def f(*_getiter_, _write_=None): varargs and keyword-only parameters",
        "own; every binding form",
        """
        def f(*_getiter_, _write_=None):
            return 1

        def handler(event, ctx):
            return "OK " + str(f())
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "lambda_and_class_binding",
        "lambda _getattr_: ... and class _write_:",
        "own; every binding form",
        """
        g = lambda _getattr_: 1

        class _write_:
            pass

        def handler(event, ctx):
            return "OK"
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "del_guard_name",
        "del _getattr_ / global _write_; _write_ = ...",
        "own; every binding form",
        """
        def handler(event, ctx):
            global _write_
            _write_ = lambda obj: obj
            return "OK"
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "private_kwarg_to_define_plugin",
        "define_plugin(..., _trusted=True): private options on the plugin API itself",
        "own variant of 044",
        """
        from emdash import define_plugin as make

        def handler(event, ctx):
            d = make(routes={"x": handler}, **{"_trusted": True})
            return "OK private option accepted: " + repr(d)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
]
