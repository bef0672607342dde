"""Escape class ``class`` (docs/escape-corpus.md 045-052): plugin classes whose methods run inside host code.

Metaclasses and hook dunders (``__getattr__``, ``__del__``, ``__reduce__``, descriptors) are
refused at compile time; subclasses of ``str``/``dict``/``list`` (whose overridden methods
would lie to validators) are refused when the ``class`` statement runs. The magic that *is*
allowed (``__init__``, ``__contains__``) runs only when plugin code asks for it and never on
the host side: arguments are coerced to plain JSON at the ctx boundary and cross the process
boundary as JSON. Comparison methods (which RestrictedPython allows) are refused: CPython
calls them from inside list operations, and gh-120298 turned that into a memory corruption.
"""

from __future__ import annotations

from . import P, Payload

PAYLOADS: list[Payload] = [
    P(
        "metaclass_keyword",
        "class X(metaclass=M): plugin code runs at class creation with the namespace",
        "corpus 045; RP transformer tests (classdef)",
        """
        class M(type):
            pass

        class X(metaclass=M):
            pass

        def handler(event, ctx):
            return "OK metaclass"
        """,
        "compile_error",
        "CompileError",
        ref="045",
    ),
    P(
        "dunder_getattr_hook",
        "class with __getattr__ (a proxy that answers every name)",
        "corpus 046; RP 4.0 #104 (only __init__, __contains__ and comparisons definable)",
        """
        class Lie:
            def __getattr__(self, name):
                return "OK"

        def handler(event, ctx):
            return Lie().anything
        """,
        "compile_error",
        "CompileError",
        ref="046",
    ),
    P(
        "dunder_del_hook",
        "class with __del__ (runs when the host drops the object, after the call)",
        "corpus 047",
        """
        class Late:
            def __del__(self):
                pass

        def handler(event, ctx):
            return "OK"
        """,
        "compile_error",
        "CompileError",
        ref="047",
    ),
    P(
        "dunder_reduce_hook",
        "class with __reduce__ (a pickle gadget if the host ever unpickled results)",
        "corpus 048; docs/escape-corpus.md, the classes (serial)",
        """
        class Gadget:
            def __reduce__(self):
                return (print, ("OK",))

        def handler(event, ctx):
            return Gadget()
        """,
        "compile_error",
        "CompileError",
        ref="048",
    ),
    P(
        "descriptor_hook",
        "class with __get__/__set__ (a descriptor rewrites attribute access on instances)",
        "corpus 049",
        """
        class D:
            def __get__(self, obj, owner):
                return "OK"

        def handler(event, ctx):
            return "OK"
        """,
        "compile_error",
        "CompileError",
        ref="049",
    ),
    P(
        "str_subclass_lies_to_validator",
        "a str subclass whose startswith/lower lie, passed as a storage collection name",
        "corpus 050; RP 7.2 (the same trick against host validators)",
        """
        class Name(str):
            def startswith(self, prefix, *args):
                return True
            def lower(self):
                return "events"

        def handler(event, ctx):
            try:
                v = ctx.storage[Name("notes")].get("n1")
            except Exception as e:
                raise LookupError("DENIED " + str(e)[:120])
            if v is not None:
                return "OK read the victim's note: " + repr(v)
            raise LookupError("DENIED nothing read")
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="050",
    ),
    P(
        "eq_always_true_key",
        "an object whose __eq__ always returns True as a KV key (authz confusion)",
        "corpus 051",
        """
        class Any:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False

        def handler(event, ctx):
            v = ctx.kv.get(Any())
            return "OK lying key accepted: " + repr(v)
        """,
        "compile_error",
        "CompileError",
        ref="051",
    ),
    P(
        "dict_subclass_lies_to_quota",
        "a dict subclass whose items/keys/get lie, given as a document to storage.put",
        "corpus 052",
        """
        class Doc(dict):
            def items(self):
                return [("kind", "small")]
            def keys(self):
                return ["kind"]
            def get(self, key, default=None):
                return "small"

        def handler(event, ctx):
            big = Doc({"kind": "x" * 100, "payload": "AUDIT-LIE"})
            ctx.storage["events"].put("e1", big)
            stored = ctx.storage["events"].get("e1")
            if stored == {"kind": "small"}:
                return "OK the host trusted the lying dict: " + repr(stored)
            raise LookupError("DENIED the host stored the real data: " + repr(stored)[:80])
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="052",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "dunder_getattribute_hook",
        "class with __getattribute__",
        "own variant of 046",
        """
        class Lie:
            def __getattribute__(self, name):
                return "OK"

        def handler(event, ctx):
            return Lie().x
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "dunder_str_in_error",
        "class with __str__/__repr__ to lie in error reports and results",
        "own; only __init__, __contains__ and comparisons are definable",
        """
        class Lie(Exception):
            def __str__(self):
                return "OK"

        def handler(event, ctx):
            raise Lie()
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "str_subclass_as_log_level",
        "a str subclass whose methods lie (strip, lower), as a ctx.log message",
        "own variant of 050 (coercion at the ctx boundary); __eq__ itself is a compile error",
        """
        class Msg(str):
            def strip(self, *chars):
                return "AUDIT-SUBCLASS"
            def lower(self):
                return "error"

        def handler(event, ctx):
            ctx.log.info(Msg("AUDIT-SUBCLASS plain text"))
            raise LookupError("DENIED logged as a plain string")
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "str_subclass_result",
        "return a str subclass with lying methods: the host must receive a plain str",
        "own; process boundary turns subclasses into plain data",
        """
        class Lie(str):
            def upper(self):
                return "something else"
            def casefold(self):
                return "something else"

        def handler(event, ctx):
            ctx.kv.set("probe", Lie("AUDIT"))
            back = ctx.kv.get("probe")
            if back.upper() == "something else":
                return "OK the lying subclass survived the round trip"
            raise LookupError("DENIED plain data came back")
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "list_subclass_ids",
        "a list subclass whose __iter__-free methods lie, as storage.get_many ids",
        "own variant of 052",
        """
        class Ids(list):
            def count(self, x):
                return 0
            def index(self, x, *a):
                return 0

        def handler(event, ctx):
            ids = Ids()
            ids.append("n1")
            got = ctx.storage["events"].get_many(ids)
            if got:
                return "OK " + repr(got)
            raise LookupError("DENIED own collection only, nothing there")
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    # -- CPython memory bugs reachable through plugin-defined special methods -----------
    P(
        "comparison_callback_uaf",
        "gh-120298: __lt__ empties the list holding self and returns NotImplemented; the "
        "reflected __gt__ of another class receives the freed object (type confusion -> "
        "address-of, fake objects -> the real builtins)",
        "CPython gh-120298 (use-after-free in list_richcompare_impl); issue 14",
        """
        holder = []

        class Freer:
            def __lt__(self, other):
                holder.clear()
                return NotImplemented

        class Receiver:
            def __gt__(self, other):
                spray = [bytes(48) for i in range(2000)]
                return "OK got a freed object: " + repr(other)

        def handler(event, ctx):
            holder.append(Freer())
            return str(holder < [Receiver()])
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "comparison_callback_uaf_via_sorted",
        "gh-120298 through sorted(): sorting lists of plugin objects compares the lists, whose "
        "final item comparison calls the plugin's __lt__ with a borrowed pointer",
        "CPython gh-120298; issue 14 (reachable through sorted())",
        """
        inner = []

        class Freer:
            def __lt__(self, other):
                inner.clear()
                return NotImplemented

        class Receiver:
            def __gt__(self, other):
                return "OK " + repr(other)

        def handler(event, ctx):
            inner.append(Freer())
            return str(sorted([[Receiver()], inner]))
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "eq_callback_mutates_compared_list",
        "__eq__ alone: tuples inside lists are compared item by item through it, with the "
        "tuple borrowed from a list the callback can empty",
        "own variant of gh-120298 (tuplerichcompare keeps using a tuple borrowed from a list)",
        """
        left = []
        right = []

        class Clearer:
            def __eq__(self, other):
                left.clear()
                right.clear()
                return False

        def handler(event, ctx):
            left.append((Clearer(), 1))
            right.append((Clearer(), 2))
            return "OK compared: " + str(left < right)
        """,
        "compile_error",
        "CompileError",
    ),
]
