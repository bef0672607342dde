"""Escape class ``syntax`` (docs/escape-corpus.md 059-066): source text the compiler must refuse cleanly.

NFKC-normalised identifiers, syntax RestrictedPython does not allow (match, AnnAssign),
coding cookies, ASTs deep enough to make the transformer raise ``RecursionError``, and
syntax newer than the audited CPython. Every one is a ``CompileError`` for the plugin and
nothing else: the compiler (and the process running it) must survive. The one exception is
062: our compiler deliberately allows annotated assignments (their parts are rewritten like
any other expression), so its payload checks that an annotation cannot bypass the guards.
"""

from __future__ import annotations

from . import P, Payload

_DEEP_SUM = "def handler(event, ctx):\n    return 'OK ' + str(" + " + ".join(["1"] * 1500) + ")\n"
_DEEP_LIST = "def handler(event, ctx):\n    return 'OK ' + str(" + "[" * 1500 + "]" * 1500 + ")\n"
_DEEP_UNARY = "def handler(event, ctx):\n    return 'OK ' + str(" + "-" * 1500 + "1)\n"

PAYLOADS: list[Payload] = [
    P(
        "nfkc_fullwidth_underscores",
        "_＿class＿＿ (fullwidth low lines) to sneak a dunder past a textual check",
        "corpus 059; docs/escape-corpus.md, the classes (NFKC identifiers)",
        "def handler(event, ctx):\n    return 'OK ' + repr(ctx._\uff3fclass\uff3f\uff3f)\n",
        "compile_error",
        "CompileError",
        ref="059",
    ),
    P(
        "nfkc_math_italic_import",
        "𝑒𝑥𝑒𝑐 in mathematical italic letters (the parser normalises it to exec)",
        "corpus 060",
        "def handler(event, ctx):\n    \U0001d452\U0001d465\U0001d452\U0001d450('x = 1')\n"
        "    return 'OK exec ran'\n",
        "compile_error",
        "CompileError",
        ref="060",
    ),
    P(
        "match_statement",
        "match/case (class patterns read attributes without _getattr_)",
        "corpus 061; RP 9.0 denies Match",
        """
        def handler(event, ctx):
            match ctx:
                case object(kv=k):
                    return "OK " + repr(k)
            return "no match"
        """,
        "compile_error",
        "CompileError",
        ref="061",
    ),
    P(
        "annotation_evaluated_through_guards",
        "a module-level annotated assignment whose annotation calls into a dunder walk and "
        "records what it got: evaluated unguarded it leaks object's subclasses",
        "corpus 062 (RP refuses AnnAssign outright; our compiler allows it and compiles with "
        "PEP 563 semantics, so annotations stay strings and are never evaluated)",
        """
        SEEN = []
        LEAK: SEEN.append(getattr(getattr(str, "mro")()[-1], "__subclasses__")()) = 1

        def handler(event, ctx):
            if SEEN:
                return "OK annotation evaluated unguarded: " + str(len(SEEN[0]))
            raise LookupError("DENIED the annotation was never evaluated")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
        ref="062",
    ),
    P(
        "utf7_coding_cookie",
        "a PEP 263 utf-7 cookie: +AF8AXw- decodes to __ only if the host honours the cookie",
        "corpus 063; docs/escape-corpus.md, guard pitfalls (bytes honour coding cookies)",
        "# -*- coding: utf-7 -*-\ndef handler(event, ctx):\n"
        "    return +AF8AXw-import+AF8AXw-('os').getcwd()\n",
        "compile_error",
        "CompileError",
        ref="063",
    ),
    P(
        "deep_expression_1500",
        "1 + 1 + ... 1500 terms: a 1500-deep AST makes the transformer raise RecursionError",
        "corpus 064; docs/escape-corpus.md, guard pitfalls (compile_restricted raises RecursionError)",
        _DEEP_SUM,
        "compile_error",
        "CompileError",
        ref="064",
    ),
    P(
        "pep695_type_alias",
        "PEP 695 type statement and generic function syntax (3.12)",
        "corpus 065",
        """
        type Alias = int

        def handler[T](event: T, ctx):
            return "OK"
        """,
        "compile_error",
        "CompileError",
        ref="065",
    ),
    P(
        "pep798_comprehension_unpacking",
        "PEP 798 [*x for x in y] (3.15)",
        "corpus 066; RP 8.5",
        """
        def handler(event, ctx):
            return "OK " + repr([*x for x in [[1], [2]]])
        """,
        "compile_error",
        "CompileError",
        ref="066",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "deep_nested_brackets",
        "1500 nested list brackets (the parser's nesting limit)",
        "own variant of 064",
        _DEEP_LIST,
        "compile_error",
        "CompileError",
    ),
    P(
        "deep_unary_minus",
        "1500 unary minus signs (right-recursive AST)",
        "own variant of 064",
        _DEEP_UNARY,
        "compile_error",
        "CompileError",
    ),
    P(
        "null_byte_in_source",
        "a NUL byte in the source text",
        "own; host source handling",
        "def handler(event, ctx):\n    return 'OK'\x00\n",
        "compile_error",
        "CompileError",
    ),
    P(
        "lone_surrogate_in_source",
        "a lone surrogate in the source (not encodable as UTF-8; crashes naive encoders)",
        "own; host source handling",
        "def handler(event, ctx):\n    return 'OK \ud800'\n",
        "compile_error",
        "CompileError",
    ),
    P(
        "nonlocal_statement",
        "nonlocal (rebinding closure cells)",
        "own; RP denies Nonlocal",
        """
        def handler(event, ctx):
            x = 1
            def inner():
                nonlocal x
                x = 2
            inner()
            return "OK " + str(x)
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "oversized_source",
        "a 2 MB plugin source (the sandbox's 1 MB source limit: the host's loader refuses it "
        "before it is shipped to a worker, the compiler would refuse it after)",
        "own; docs/resource-model.md (source size limit)",
        "def handler(event, ctx):\n    return 'OK'\n" + "# " + "x" * (2 * 1024 * 1024) + "\n",
        "compile_error",
        "ManifestError",
    ),
]
