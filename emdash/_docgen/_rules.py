"""The restricted-Python rules as executable examples: refused code, the sandbox's answer,
and the rewrite that works.

Every :class:`Rule` is checked when the docs are generated, with the real sandbox: the
refused source must be refused (by :func:`sandbox.compile_bundle`, or by the guards when
:func:`sandbox._loader.load_bundle` runs it) and the text shown in the docs is the one the
sandbox gave; the rewrite must compile and run, and leave ``result`` equal to
:attr:`Rule.result` when one is given. An example that stops being true fails ``make docs``
and the docs freshness test instead of misleading a plugin author.

The examples run in this process, with the language layer only (no worker, no seccomp):
they are our own short snippets, and what they show is the language, not the isolation.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from sandbox import CompileError, SandboxViolation, compile_bundle
from sandbox._loader import build_preludes, load_bundle

__all__ = ["RULES", "Rule", "rules"]


@dataclass(frozen=True)
class Rule:
    """One rule: a title, code the sandbox refuses, and code that does the same and works."""

    title: str
    refused: str
    rewrite: str
    why: str
    result: object = None


RULES: tuple[Rule, ...] = (
    Rule(
        "`self.n += 1`: augmented assignment to an attribute or an item",
        """
        class Counter:
            def __init__(self):
                self.n = 0

            def bump(self):
                self.n += 1
        """,
        """
        class Counter:
            def __init__(self):
                self.n = 0

            def bump(self):
                self.n = self.n + 1

        counts = {"a": 0}
        counts["a"] = counts["a"] + 1
        c = Counter()
        c.bump()
        result = (c.n, counts["a"])
        """,
        "RestrictedPython cannot route an in-place update of an attribute or item through the "
        "write guard; a plain assignment goes through it. `n += 1` on a local name is fine.",
        (1, 1),
    ),
    Rule(
        "Special methods (`__eq__`, `__repr__`, `__len__`, `__iter__`, `__enter__`, ...)",
        """
        class Tag:
            def __init__(self, name):
                self.name = name

            def __eq__(self, other):
                return self.name == other.name
        """,
        """
        class Tag:
            def __init__(self, name):
                self.name = name

            def same_as(self, other):
                return self.name == other.name

            def __contains__(self, text):
                return text in self.name

        result = (Tag("a").same_as(Tag("a")), "a" in Tag("abc"))
        """,
        "Only `__init__` and `__contains__` may be defined. Other special methods run inside "
        "host and C code (comparisons inside `list.sort` and `dict` lookups, where CPython "
        "has memory-safety bugs); names starting with `_` are refused in general. Use "
        "explicit methods, `key=` functions for sorting, and `try`/`finally` instead of "
        "your own context managers.",
        (True, True),
    ),
    Rule(
        "`async def` and `await`",
        """
        async def on_save(event, ctx):
            return None
        """,
        """
        def on_save(event, ctx):
            return None

        result = on_save({}, None)
        """,
        "Handlers are plain functions, in both modes: every `ctx` call is synchronous and "
        "returns its answer.",
    ),
    Rule(
        "`str.format` and `format_map`",
        """
        result = "{} words".format(3)
        """,
        """
        count = 3
        result = (f"{count} words", "%d words" % count)
        """,
        "A format string can walk attributes (`{0.__class__.__init__.__globals__}`) in C, "
        "past every guard. f-strings and `%` are compiled into guarded code.",
        ("3 words", "3 words"),
    ),
    Rule(
        "Names starting with `_`",
        """
        _cache = {}
        """,
        """
        cache = {}
        result = cache
        """,
        "`_`-names are how Python code reaches interpreter internals (`__class__`, "
        "`__globals__`); the sandbox refuses every one, in names, attributes and keyword "
        "arguments. Modules have no private names: name helpers plainly.",
        {},
    ),
    Rule(
        "`global` and `nonlocal`",
        """
        total = 0

        def add(n):
            global total
            total = total + n
        """,
        """
        state = {"total": 0}

        def add(n):
            state["total"] = state["total"] + n

        add(2)
        result = state["total"]
        """,
        "Keep shared state in a dict or an object the guards see. Module state lives as long "
        "as the worker, which is recycled at any time: keep what must last in `ctx.kv` or "
        "`ctx.storage`.",
        2,
    ),
    Rule(
        "`super()`",
        """
        class Base:
            def describe(self):
                return "base"

        class Child(Base):
            def describe(self):
                return super().describe() + "+child"

        result = Child().describe()
        """,
        """
        class Base:
            def describe(self):
                return "base"

        class Child(Base):
            def describe(self):
                return Base.describe(self) + "+child"

        result = Child().describe()
        """,
        "`super()` needs the hidden `__class__` cell; call the base class explicitly.",
        "base+child",
    ),
    Rule(
        "`type(x)`, `getattr(x, '__class__')`, `vars`, `dir`",
        """
        result = type(3) == int
        """,
        """
        result = isinstance(3, int)
        """,
        "Types are checked with `isinstance`; classes are made with `class`. Introspection of "
        "the interpreter is not available.",
        True,
    ),
    Rule(
        "`match` statements",
        """
        kind = "post"
        match kind:
            case "post":
                result = 1
        """,
        """
        kind = "post"
        if kind == "post":
            result = 1
        """,
        "Pattern matching reads attributes and calls `__match_args__` outside the guards.",
        1,
    ),
    Rule(
        "`try`/`except*`",
        """
        try:
            pass
        except* ValueError:
            pass
        """,
        """
        try:
            result = int("x")
        except ValueError:
            result = 0
        """,
        "Exception groups are not supported (CVE-2025-22153 was a type confusion there).",
        0,
    ),
    Rule(
        "`import os`, `import requests`, any module outside the list",
        """
        import os
        """,
        """
        import json

        def handler(event, ctx):
            response = ctx.http.fetch("https://api.example.com/")
            return json.loads(response.text())

        result = json.dumps({"ok": True})
        """,
        "Plugins import the shimmed standard-library modules listed below, `emdash`, and "
        "their own modules. Files, the network, processes and the environment are reached "
        "through `ctx` only (`ctx.kv`, `ctx.storage`, `ctx.http`...).",
        '{"ok": true}',
    ),
    Rule(
        "`from module import *`",
        """
        from json import *
        """,
        """
        from json import dumps, loads

        result = loads(dumps([1]))
        """,
        "Name what you import.",
        [1],
    ),
    Rule(
        "`eval`, `exec`, `compile`",
        """
        result = eval("1 + 1")
        """,
        """
        result = 1 + 1
        """,
        "Code is never made from strings: everything that runs was checked before it ran.",
        2,
    ),
    Rule(
        "`open()` and the file system",
        """
        def handler(event, ctx):
            return open("/tmp/state.json").read()

        handler(None, None)
        """,
        """
        def handler(event, ctx):
            return ctx.kv.get("state")
        """,
        "A sandboxed plugin has no file system; keep data in `ctx.kv` (small values) or "
        "`ctx.storage` (documents you query).",
    ),
    Rule(
        "Changing a module or an object the plugin did not make",
        """
        import json

        json.dumps = None
        """,
        """
        import json

        def dumps_sorted(value):
            return json.dumps(value, sort_keys=True)

        result = dumps_sorted({"b": 1, "a": 2})
        """,
        "Plugins may change dicts, lists and instances of their own classes. Shared modules "
        "and host objects are read-only.",
        '{"a": 2, "b": 1}',
    ),
    Rule(
        "`dataclasses` and other absent modules",
        """
        from dataclasses import dataclass
        """,
        """
        class Point:
            def __init__(self, x, y):
                self.x = x
                self.y = y

        result = Point(1, 2).y
        """,
        "`dataclasses` generates code with `exec`; write the `__init__` yourself (or use "
        "`collections.namedtuple`).",
        2,
    ),
)


def _outcome(source: str) -> tuple[str, str, object]:
    """(``"compile"``/``"run"``/``"ok"``, the sandbox's message, ``result``) for a snippet."""
    preludes = build_preludes({}, {})
    try:
        code = compile_bundle({"plugin.py": source})
    except CompileError as exc:
        return "compile", "\n".join(exc.errors), None
    try:
        module = load_bundle(code, "plugin", preludes=preludes, rng_seed=0)
    except SandboxViolation as exc:
        return "run", str(exc), None
    return "ok", "", getattr(module, "result", None)


def rules() -> str:
    parts = []
    for rule in RULES:
        refused = textwrap.dedent(rule.refused).strip() + "\n"
        rewrite = textwrap.dedent(rule.rewrite).strip() + "\n"
        stage, message, _ = _outcome(refused)
        if stage == "ok":
            raise RuntimeError(f"docs example for {rule.title!r}: the refused code was accepted")
        stage_ok, problem, result = _outcome(rewrite)
        if stage_ok != "ok":
            raise RuntimeError(f"docs example for {rule.title!r}: the rewrite fails: {problem}")
        if rule.result is not None and result != rule.result:
            raise RuntimeError(
                f"docs example for {rule.title!r}: the rewrite gives {result!r}, "
                f"not {rule.result!r}"
            )
        when = (
            "refused when the plugin is compiled (`emdash check`, `plugins add`)"
            if stage == "compile"
            else "refused when the line runs"
        )
        parts.append(
            f"### {rule.title}\n\n{rule.why}\n\n```python\n{refused}```\n\n"
            f"{when}:\n\n```text\n{message}\n```\n\nInstead:\n\n```python\n{rewrite}```"
        )
    return "\n\n".join(parts)
