"""Escape class ``builtins`` (docs/escape-corpus.md 008-016): dangerous builtins, by name or by alias.

Stopped by L1 (``__builtins__``, reserved names, ``eval``/``exec`` calls) and by the
vetted builtins dict (L2): ``open``, ``eval``, ``type``, ``object``, ``id``... are simply
not real: each is a stub that raises ``SandboxViolation`` when called, so every spelling of
them (alias, decorator, callback handed to C code) is refused the same way.
"""

from __future__ import annotations

from . import P, Payload

PAYLOADS: list[Payload] = [
    P(
        "dunder_builtins",
        "read __builtins__ to reach the real builtins dict",
        "corpus 008; Ronacher 2016",
        """
        def handler(event, ctx):
            return "OK " + repr(__builtins__)
        """,
        "compile_error",
        "CompileError",
        ref="008",
    ),
    P(
        "reserved_name_printed",
        "assign the reserved name printed (the print collector's result)",
        "corpus 009; RP transformer tests (reserved names)",
        """
        def handler(event, ctx):
            printed = "OK overwrote the print collector"
            return printed
        """,
        "compile_error",
        "CompileError",
        ref="009",
    ),
    P(
        "eval_call",
        "eval a string",
        "corpus 010; RP transformer tests (eval_exec)",
        """
        def handler(event, ctx):
            return "OK " + str(eval("6 * 7"))
        """,
        "compile_error",
        "CompileError",
        ref="010",
    ),
    P(
        "open_file",
        "open('/etc/passwd') through the builtin",
        "corpus 011; codejail test_read_etc_passwd",
        """
        def handler(event, ctx):
            return "OK " + open("/etc/passwd").read()[:60]
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="011",
    ),
    P(
        "alias_eval",
        "e = eval; e(...) -- aliasing escapes the call-site check for eval",
        "corpus 012; docs/escape-corpus.md, the classes (aliasing eval)",
        """
        def handler(event, ctx):
            e = eval
            return "OK " + str(e("6 * 7"))
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="012",
    ),
    P(
        "decorator_exec",
        "@exec as a decorator runs exec(function) without an exec(...) call expression",
        "corpus 013",
        """
        def handler(event, ctx):
            @exec
            def f():
                pass
            return "OK decorator exec ran"
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="013",
    ),
    P(
        "getattr_dynamic_dunder",
        "getattr(ctx, '__cl' + 'ass__') builds the forbidden name at run time",
        "corpus 014; Odoo safe_eval lesson 2 (names built at run time)",
        """
        def handler(event, ctx):
            k = getattr(ctx, "__cl" + "ass__")
            return "OK " + repr(k)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="014",
    ),
    P(
        "type_three_args",
        "type('X', (), {'__getattr__': ...}) defines a dunder the compiler never saw",
        "corpus 015; docs/restricted-python.md, builtins",
        """
        def handler(event, ctx):
            X = type("X", (), {"__getattr__": lambda self, name: "OK dunder via type()"})
            return X().anything
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="015",
    ),
    P(
        "id_address_leak",
        "id(ctx) leaks a heap address (defeats ASLR for memory-corruption bugs)",
        "corpus 016; docs/escape-corpus.md, guard pitfalls (id, hash)",
        """
        def handler(event, ctx):
            return "OK address " + hex(id(ctx))
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="016",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "exec_call",
        "exec a string",
        "own variant of 010",
        """
        def handler(event, ctx):
            exec("x = 1")
            return "OK exec ran"
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "math_italic_eval",
        "eval spelled in mathematical italic letters (NFKC-normalised to eval by the parser)",
        "own; docs/escape-corpus.md, the classes (NFKC identifiers)",
        "def handler(event, ctx):\n    return 'OK ' + str(\U0001d452\U0001d463\U0001d44e\U0001d459('6*7'))\n",
        "compile_error",
        "CompileError",
    ),
    P(
        "globals_call",
        "globals() to reach the module namespace and its __builtins__",
        "own",
        """
        def handler(event, ctx):
            g = globals()
            return "OK " + repr(g["__builtins__"])
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "vars_of_ctx",
        "vars(ctx) to read the ctx's hidden state",
        "own",
        """
        def handler(event, ctx):
            return "OK " + repr(vars(ctx))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "dir_of_ctx_kv",
        "dir(ctx.kv) to enumerate private slots",
        "own",
        """
        def handler(event, ctx):
            return "OK " + repr(dir(ctx.kv))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "compile_builtin",
        "compile() a code object to run unrestricted bytecode",
        "own",
        """
        def handler(event, ctx):
            c = compile("1", "x", "eval")
            return "OK " + repr(c)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "json_parse_int_eval",
        "json.loads(s, parse_int=eval): hand eval to C code as a callback",
        "own variant of 012 (parse_int=eval)",
        """
        import json

        def handler(event, ctx):
            return "OK " + repr(json.loads("[1]", parse_int=eval))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "object_subclasses_via_getattr",
        "getattr(str, 'mro')()[-1] is object; getattr(object, '__subclasses__') lists every class",
        "own; the classic subclasses walk without a literal dunder",
        """
        def handler(event, ctx):
            base = getattr(str, "mro")()[-1]
            subs = getattr(base, "__subclasses__")()
            return "OK " + str(len(subs)) + " classes"
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "heap_addresses_in_reprs",
        "default reprs carry heap addresses (<function f at 0x7f..>), the first step of a "
        "memory-corruption exploit; id() and hash() are refused for that reason",
        "issue 14 (address-of primitive); own",
        """
        class Thing:
            pass

        def f():
            pass

        def gen():
            yield 1

        def handler(event, ctx):
            texts = [repr(Thing()), str(Thing()), repr(f), str(f), f"{f}", f"{f!r:>40}",
                     "%s" % f, "%r" % (f,), ascii(f), format(f), repr([f, len, gen()]),
                     repr(map(abs, [1])), str([].append)]
            try:
                [].index(f)
            except ValueError as e:
                texts.extend([str(e), e.args[0], f"{e}"])
            leaked = [t for t in texts if "0x" in t]
            if leaked:
                return "OK " + leaked[0]
            raise LookupError("DENIED no address in " + str(len(texts)) + " texts")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
    ),
]
