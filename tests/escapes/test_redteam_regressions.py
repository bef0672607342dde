"""Regressions for the red-team findings, each payload run as plugin code through the real stack.

Every test adds a sandboxed plugin to a real ``Runtime`` (SQLite file, fork server, confined
workers) and invokes it as a route, the way a hostile plugin would run. The unit tests at
the layer that stops each payload live next to that layer (``tests/sandbox``,
``tests/shims``).

1. (high) ``str()`` of a ``UnicodeDecodeError``/``UnicodeEncodeError``/
   ``UnicodeTranslateError`` with out-of-range ``start``/``end`` reads the worker's heap
   (CPython gh-123378, unfixed in 3.11.7): the constructors are gone from the builtins and
   ``UnicodeError`` cannot be subclassed, so plugins never choose those offsets.
2. (medium) Code after the call, outside the CPU timer: attribute writes on ``Counter`` &
   co. let a plugin plant a lying ``items`` that the worker's JSON encoder called after the
   timer was disarmed. Attribute writes on containers are refused, the worker only encodes
   exact JSON types, and finalizers run under the call's timer.
3. (low) The typing facade handed out ABC mixin helpers: ``typing.Generator.close`` gave
   plugins ``GeneratorExit``, ``MutableMapping.update`` wrote items of any object.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emdash import CompileError, CpuLimitExceeded, PluginError, SandboxViolation
from emdash._runtime._runtime import Runtime

# A generous wall limit: a payload stopped by the CPU timer must not be mistaken for one
# that ran until the wall clock killed it.
LIMITS = {"cpu_ms": 300, "wall_ms": 20_000}

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    path: Path = tmp_path_factory.mktemp("redteam") / "site.db"
    with Runtime(path) as runtime:
        yield runtime


def plugin(rt: Runtime, body: str, prelude: str = "") -> str:
    """Add a sandboxed plugin whose route ``run`` executes ``body``; return its id."""
    pid = f"redteam{next(_ids)}"
    indented = "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    source = (
        "import emdash\n"
        f"{prelude}\n"
        "def run(route_ctx, ctx):\n"
        f"{indented}"
        "plugin = emdash.define_plugin(routes={'run': run})\n"
    )
    rt.add_plugin({"id": pid, "limits": LIMITS}, source={"plugin.py": source})
    return pid


def refused(rt: Runtime, body: str, prelude: str = "") -> str:
    """Run ``body`` as a route that must be refused; return the message after the prefix."""
    pid = plugin(rt, body, prelude)
    with pytest.raises(SandboxViolation) as info:
        rt.invoke_route(pid, "run")
    prefix = f"Plugin {pid} was refused during route:run: "
    message = str(info.value)
    assert message.startswith(prefix), message
    return message[len(prefix) :]


# -- 1. gh-123378: out-of-bounds read in str(UnicodeDecodeError) -------------------------

NO_UNICODE = '"{}" is not available in sandboxed plugins; catch UnicodeError instead (plugins cannot create Unicode errors)'


@pytest.mark.parametrize(
    ("name", "body"),
    [
        # The red team's probe: 48 bytes of the heap in front of the object, one by one.
        ("UnicodeDecodeError", 'return str(UnicodeDecodeError("utf-8", b"x", -24, -23, "r"))'),
        ("UnicodeEncodeError", 'return str(UnicodeEncodeError("ascii", "x", -24, -23, "r"))'),
        ("UnicodeTranslateError", 'return str(UnicodeTranslateError("x", -24, -23, "r"))'),
    ],
)
def test_unicode_error_constructors_are_refused(rt: Runtime, name: str, body: str) -> None:
    assert refused(rt, body) == NO_UNICODE.format(name)


@pytest.mark.parametrize(
    "base", ["UnicodeDecodeError", "UnicodeEncodeError", "UnicodeTranslateError"]
)
def test_subclasses_of_the_unicode_errors_are_refused(rt: Runtime, base: str) -> None:
    # The subclass route: a plugin class is writable, so .start/.end could be set freely.
    body = f"class U({base}):\n    pass\nu = U('utf-8', b'a', 0, 1, 'r')\nu.start = 100000000\nreturn str(u)"
    assert refused(rt, body) == NO_UNICODE.format(base)


def test_unicode_error_itself_cannot_be_a_base_class(rt: Runtime) -> None:
    body = "class T(UnicodeError):\n    pass\nreturn 'defined'"
    assert refused(rt, body) == (
        'Class "T" cannot inherit from the class "UnicodeError": Unicode error classes cannot '
        "be subclassed in sandboxed plugins"
    )


@pytest.mark.parametrize(
    "write",
    ["e.start = -24", "setattr(e, 'start', -24)", "e.end = 10**8", "delattr(e, 'reason')"],
)
def test_a_real_unicode_error_can_be_caught_but_not_changed(rt: Runtime, write: str) -> None:
    body = f"try:\n    b'\\xff'.decode('utf-8')\nexcept UnicodeError as e:\n    {write}\nreturn 'changed'"
    assert refused(rt, body) == (
        'Modifying a "UnicodeDecodeError" object is not allowed in sandboxed plugins '
        "(only dicts, lists and instances of the plugin's own classes can be changed)"
    )


def test_catching_unicode_errors_still_works(rt: Runtime) -> None:
    pid = plugin(
        rt,
        "try:\n    b'\\xff'.decode('utf-8')\nexcept UnicodeError as e:\n"
        "    return [str(e), e.start, e.end, e.reason, isinstance(e, ValueError)]",
    )
    assert rt.invoke_route(pid, "run") == [
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        0,
        1,
        "invalid start byte",
        True,
    ]


# -- 2. code after the call, outside the CPU timer ---------------------------------------

SPIN = "def spin():\n    while True:\n        pass\n    return []\n"

CONTAINER_ATTRS = 'Modifying attributes of a "{}" object is not allowed in sandboxed plugins (only its items can be changed)'


@pytest.mark.parametrize(
    ("make", "write", "kind"),
    [
        # full1.py: the lying items() ran while the worker encoded the error frame.
        ("collections.Counter('a')", "c.items = spin", "Counter"),
        ("collections.Counter('a')", "setattr(c, 'items', spin)", "Counter"),
        ("collections.Counter('a')", "c.most_common = spin", "Counter"),
        ("collections.OrderedDict(a=1)", "c.items = spin", "OrderedDict"),
        ("collections.OrderedDict(a=1)", "c.keys = spin", "OrderedDict"),
        ("collections.ChainMap({'a': 1})", "c.maps = [spin]", "ChainMap"),
        ("collections.ChainMap({'a': 1})", "c.items = spin", "ChainMap"),
        ("collections.defaultdict(list)", "c.default_factory = spin", "defaultdict"),
        ("collections.defaultdict(list)", "del c.default_factory", "defaultdict"),
        ("collections.deque([1])", "setattr(c, 'append', spin)", "deque"),
        ("{'a': 1}", "setattr(c, 'items', spin)", "dict"),
        ("[1]", "delattr(c, 'append')", "list"),
    ],
)
def test_attributes_of_containers_cannot_be_replaced(
    rt: Runtime, make: str, write: str, kind: str
) -> None:
    body = f"c = {make}\n{write}\nraise emdash.PluginRouteError('X', 'm', 400, c)"
    assert refused(rt, body, prelude="import collections\n" + SPIN) == CONTAINER_ATTRS.format(kind)


@pytest.mark.parametrize(
    ("make", "write", "message"),
    [
        ("{}", "c.items = 1", "'dict' object attribute 'items' is read-only"),
        ("[]", "c.append = 1", "'list' object attribute 'append' is read-only"),
        ("{}", "c.extra = 1", "'dict' object has no attribute 'extra'"),
    ],
)
def test_plain_dicts_and_lists_have_no_writable_attributes_at_all(
    rt: Runtime, make: str, write: str, message: str
) -> None:
    # _write_ hands exact dicts and lists back unwrapped (item writes are the hot path); the
    # interpreter itself refuses every attribute write on them.
    pid = plugin(
        rt, f"c = {make}\ntry:\n    {write}\nexcept AttributeError as exc:\n    return str(exc)"
    )
    # 3.13 appends " and no __dict__ for setting new attributes" to the last one.
    assert rt.invoke_route(pid, "run").startswith(message)


def test_items_of_every_container_can_still_be_changed(rt: Runtime) -> None:
    pid = plugin(
        rt,
        "c = collections.Counter('aab')\nc['a'] = 5\ndel c['b']\n"
        "od = collections.OrderedDict(x=1)\nod['y'] = 2\ndel od['x']\n"
        "cm = collections.ChainMap({}, {'z': 1})\ncm['k'] = 3\n"
        "dd = collections.defaultdict(list)\ndd['k'].append(1)\ndd['j'] = [2]\n"
        "dq = collections.deque([1, 2])\ndq[0] = 9\ndel dq[1]\n"
        "d = {}\nd['a'] = 1\nl = [0, 1, 2]\nl[1:] = [7]\n"
        "return [dict(c), dict(od), dict(cm), dict(dd), list(dq), d, l]",
        prelude="import collections\n",
    )
    assert rt.invoke_route(pid, "run") == [
        {"a": 5},
        {"y": 2},
        {"k": 3, "z": 1},
        {"k": [1], "j": [2]},
        [9],
        {"a": 1},
        [0, 7],
    ]


GENERATOR_IN_A_CYCLE = (
    "def gen():\n"
    "    try:\n"
    "        yield 1\n"
    "    finally:\n"
    "        while True:\n"
    "            pass\n"
    "g = gen()\n"
    "next(g)\n"
    "cycle = [g]\n"
    "cycle.append(cycle)\n"
    "return 'returned'"
)


def test_a_generator_finally_parked_in_a_cycle_is_killed_by_the_cpu_limit(rt: Runtime) -> None:
    # The route returns at once; its garbage is collected before the CPU timer is disarmed,
    # so the endless finally block runs under the call's budget and the worker is killed.
    pid = plugin(
        rt,
        "if route_ctx['input'].get('park'):\n"
        + "".join(f"    {line}\n" for line in GENERATOR_IN_A_CYCLE.splitlines())
        + "return 'fine'",
    )
    with pytest.raises(CpuLimitExceeded) as info:
        rt.invoke_route(pid, "run", input={"park": True})
    assert str(info.value) == (
        f"Plugin {pid} exceeded CPU limit of 300ms during route:run. Do less work per invocation "
        "or raise limits.cpu_ms in the plugin descriptor."
    )
    # A fresh worker answers; nothing of the killed one runs on.
    assert rt.invoke_route(pid, "run", input={}) == "fine"


def test_an_exception_holding_such_a_generator_is_freed_under_the_timer_too(rt: Runtime) -> None:
    pid = plugin(
        rt,
        "def gen():\n    try:\n        yield 1\n    finally:\n        while True:\n            pass\n"
        "g = gen()\nnext(g)\nraise ValueError(g)",
    )
    with pytest.raises(CpuLimitExceeded):
        rt.invoke_route(pid, "run")


def test_plugin_classes_cannot_define_finalizers(rt: Runtime) -> None:
    # __del__ would run whenever the object dies; only generators' finally blocks remain,
    # and those run under the timer (above).
    pid = f"redteam{next(_ids)}"
    source = "import emdash\nclass A:\n    def __del__(self):\n        pass\nplugin = emdash.define_plugin()\n"
    with pytest.raises(CompileError) as info:
        rt.add_plugin({"id": pid, "limits": LIMITS}, source={"plugin.py": source})
    assert str(info.value) == (
        f'Plugin {pid} failed to compile: plugin.py:3: "__del__" is an invalid variable name because it starts with "_"'
    )


# -- 3. typing facade: ABC mixin helpers --------------------------------------------------


def test_typing_generator_close_does_not_hand_out_generator_exit(rt: Runtime) -> None:
    # gx.py: Generator.close(obj) called obj.throw(GeneratorExit).
    body = (
        "class G:\n    def __init__(self):\n        self.got = []\n"
        "    def throw(self, t):\n        self.got.append(t)\n        raise StopIteration\n"
        "g = G()\ntyping.Generator.close(g)\nreturn repr(g.got)"
    )
    pid = plugin(rt, body, prelude="import typing\n")
    with pytest.raises(PluginError) as info:
        rt.invoke_route(pid, "run")
    assert str(info.value) == (
        f'Plugin {pid} raised AttributeError during route:run: a "AnnotationOnly" object has no attribute "close"'
    )


@pytest.mark.parametrize(
    ("expression", "name"),
    [
        ("typing.MutableMapping.update", "update"),
        ("typing.MutableSequence.append", "append"),
        ("typing.Mapping.get", "get"),
        ("typing.Dict.update", "update"),
        ("typing.List.append", "append"),
    ],
)
def test_typing_aliases_have_no_mixin_helpers(rt: Runtime, expression: str, name: str) -> None:
    pid = plugin(rt, f"return {expression}", prelude="import typing\n")
    with pytest.raises(PluginError) as info:
        rt.invoke_route(pid, "run")
    assert str(info.value) == (
        f'Plugin {pid} raised AttributeError during route:run: a "AnnotationOnly" object has no attribute "{name}"'
    )


UNBOUND = (
    'Access to attribute "{}" is not allowed (unbound methods of host classes are not '
    "available; call the method on an instance instead)"
)


@pytest.mark.parametrize(
    ("expression", "name"),
    [
        ("collections.Counter.update", "update"),  # self[k] = v on any object
        ("collections.Counter.subtract", "subtract"),
        ("collections.ChainMap.clear", "clear"),
        ("collections.OrderedDict.update", "update"),
        ("collections.defaultdict.update", "update"),  # dict.update: skips a subclass's own
        ("collections.deque.append", "append"),
        ("list[int].append", "append"),
        ("emdash.PluginDefinition.add_hook", "add_hook"),
    ],
)
def test_unbound_methods_of_host_classes_are_refused(
    rt: Runtime, expression: str, name: str
) -> None:
    assert refused(rt, f"return {expression}", prelude="import collections\n") == UNBOUND.format(
        name
    )


def test_bound_methods_and_annotations_still_work(rt: Runtime) -> None:
    pid = plugin(
        rt,
        "c = collections.Counter('ab')\nc.update('a')\nm = collections.ChainMap({'a': 1})\nm.clear()\n"
        "def f(x: typing.Mapping[str, int], y: typing.Generator[int, None, None] | None = None) -> typing.List[int]:\n"
        "    return [1]\n"
        "return [dict(c), dict(m), f({}), sorted(['b', 'A'], key=str.lower), repr(typing.Mapping[str, int]),\n"
        "        isinstance({}, typing.Mapping), isinstance([], typing.MutableSequence)]",
        prelude="import collections, typing\n",
    )
    assert rt.invoke_route(pid, "run") == [
        {"a": 2, "b": 1},
        {},
        [1],
        ["A", "b"],
        "typing.Mapping[str, int]",
        True,
        True,
    ]


def test_the_payload_results_are_json(rt: Runtime) -> None:
    # Sanity for the helpers above: a route that returns plain data.
    pid = plugin(rt, "return {'ok': [1, 2.5, None, True, 'x']}")
    result: Any = rt.invoke_route(pid, "run")
    assert result == {"ok": [1, 2.5, None, True, "x"]}
