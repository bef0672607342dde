"""Escape class ``attr`` (docs/escape-corpus.md 017-022): attribute chains from a harmless object to a dangerous one.

Stopped by L1 (underscore attributes), by ``_getattr_``/``getattr`` (names built at run
time, ``str`` subclasses as names) and by L3: ctx objects have no public attribute that
leads anywhere (no ``functools.partial``, no ``__getattr__`` forwarding).
"""

from __future__ import annotations

from . import P, Payload

PAYLOADS: list[Payload] = [
    P(
        "subclasses_walk",
        "().__class__.__bases__[0].__subclasses__() to find a class with os in its globals",
        "corpus 017; Ronacher 2016",
        """
        def handler(event, ctx):
            subs = ().__class__.__bases__[0].__subclasses__()
            return "OK " + str(len(subs))
        """,
        "compile_error",
        "CompileError",
        ref="017",
    ),
    P(
        "mro_to_object",
        "str.mro() reaches object; its subclasses are then one dynamic getattr away",
        "corpus 018; safer_getattr allows mro",
        """
        def handler(event, ctx):
            top = str.mro()[-1]
            walk = getattr(top, "__subclasses__")
            return "OK " + str(len(walk()))
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="018",
    ),
    P(
        "str_subclass_attribute_name",
        "getattr with a str subclass whose startswith lies, so a '_' check passes",
        "corpus 019; RP 7.2 safer_getattr breakout",
        """
        class Name(str):
            def startswith(self, prefix, *args):
                return False

        def handler(event, ctx):
            k = getattr(ctx, Name("__class__"))
            return "OK " + repr(k)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="019",
    ),
    P(
        "function_globals",
        "handler.__globals__ reaches the module namespace and its builtins",
        "corpus 020; Ronacher 2016",
        """
        def handler(event, ctx):
            return "OK " + repr(handler.__globals__)
        """,
        "compile_error",
        "CompileError",
        ref="020",
    ),
    P(
        "bound_method_self",
        "ctx.kv.get.__self__ unwraps the bound method to the member object and its _call",
        "corpus 021",
        """
        def handler(event, ctx):
            return "OK " + repr(ctx.kv.get.__self__._call)
        """,
        "compile_error",
        "CompileError",
        ref="021",
    ),
    P(
        "partial_func_unwrap",
        "ctx.kv.get.func / .args: a functools.partial would hand out the host-call function",
        "corpus 022; docs/design.md, _shared (no functools.partial in the ctx)",
        """
        def handler(event, ctx):
            inner = ctx.kv.get.func
            return "OK " + repr(inner) + repr(ctx.kv.get.args)
        """,
        "runtime_denied",
        "PluginError",
        error_type="AttributeError",
        ref="022",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "getattr_private_slot",
        "getattr(ctx.kv, '_call') names the private slot holding the host-call primitive",
        "own variant of 021",
        """
        def handler(event, ctx):
            call = getattr(ctx.kv, "_call")
            return "OK " + repr(call("kv/get", {"key": "x"}))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "getattr_self_of_bound_method",
        "getattr(ctx.kv.get, '__self__') via a name built at run time",
        "own variant of 021",
        """
        def handler(event, ctx):
            owner = getattr(ctx.kv.get, "__" + "self" + "__")
            return "OK " + repr(owner)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "getattr_default_masks_denial",
        "getattr(x, '__globals__', None): a default must not turn a denial into None and carry on",
        "own; RP 7.4 safer_getattr_raise (default=None masks errors)",
        """
        def handler(event, ctx):
            g = getattr(handler, "__globals__", None)
            if g is None:
                raise LookupError("DENIED __globals__ read as None")
            return "OK " + repr(g)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "log_manager_logger_dict",
        "ctx.log.manager.loggerDict: a real logging.Logger lists every host logger",
        "own; docs/escape-corpus.md, guard pitfalls (logging.Logger as ctx.log)",
        """
        def handler(event, ctx):
            return "OK " + repr(ctx.log.manager.loggerDict)
        """,
        "runtime_denied",
        "PluginError",
        error_type="AttributeError",
    ),
    P(
        "setattr_ctx_member",
        "setattr(ctx, 'kv', fake): replace a ctx member with a plugin object",
        "own; guarded setattr must use the write guard",
        """
        class Fake:
            def get(self, key):
                return "OK forged"

        def handler(event, ctx):
            setattr(ctx, "kv", Fake())
            return "OK setattr on ctx accepted: " + repr(ctx.kv.get("secret"))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "storage_private_getattr",
        "ctx.storage collection accessor built for a private name via getattr",
        "own; Storage.__getattr__ must refuse '_' names and raise a fresh error",
        """
        def handler(event, ctx):
            names = getattr(ctx.storage, "_names")
            return "OK " + repr(names)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
]
