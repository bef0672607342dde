"""The language-layer closures of CPython memory bugs (issue 14), at the layer that stops them.

Plugin source is compiled with the real compiler and run in-process with the real builtins
and guards, as in ``test_guards.py``. The same attacks run end to end, in confined workers,
as payloads of the escape corpus (``class``: comparison callbacks, ``iter``: slice
assignment, ``dos``: nested iterators, ``builtins``: heap addresses); before these checks
existed those payloads killed the worker with SIGSEGV. Nothing here depends on the
interpreter having the bug: each test pins down the rule, so it holds on 3.11, 3.12 and 3.13.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sandbox import CompileError, SandboxViolation
from sandbox._compiler import compile_bundle
from sandbox._guards import PLUGIN_DUNDERS, PluginModule, plugin_metaclass
from sandbox._interpreters import INTERPRETER_BUGS, affected
from sandbox._loader import build_preludes, load_bundle
from stdlib_shims._functional import MAX_ITERATOR_NESTING

PRELUDES = build_preludes({}, {})
ROOT = Path(__file__).resolve().parents[2]


def run(source: str) -> PluginModule:
    return load_bundle(
        compile_bundle({"plugin.py": source}), "plugin", preludes=PRELUDES, rng_seed=7
    )


def refused(source: str) -> str:
    with pytest.raises(SandboxViolation) as info:
        run(source)
    return str(info.value)


def compile_errors(source: str) -> list[str]:
    with pytest.raises(CompileError) as info:
        compile_bundle({"plugin.py": source})
    return list(info.value.errors)


# -- gh-120298: comparison callbacks ------------------------------------------------------

COMPARISON = (
    'plugin.py:{line}: "{name}" cannot be defined in sandboxed plugins: comparison methods run '
    "inside list and dict operations, where they can corrupt memory; use key= functions and "
    "explicit methods instead."
)


@pytest.mark.parametrize("name", ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"])
def test_comparison_methods_are_compile_errors(name: str) -> None:
    source = f"class A:\n    def {name}(self, other):\n        return NotImplemented\n"
    assert compile_errors(source) == [COMPARISON.format(line=2, name=name)]


def test_the_gh_120298_trigger_does_not_compile() -> None:
    source = (
        "holder = []\n"
        "class Freer:\n"
        "    def __lt__(self, other):\n"
        "        holder.clear()\n"
        "        return NotImplemented\n"
        "class Receiver:\n"
        "    def __gt__(self, other):\n"
        "        return other\n"
        "holder.append(Freer())\n"
        "r = holder < [Receiver()]\n"
    )
    assert compile_errors(source) == [
        COMPARISON.format(line=3, name="__lt__"),
        COMPARISON.format(line=7, name="__gt__"),
    ]


def test_only_init_and_contains_are_definable() -> None:
    assert PLUGIN_DUNDERS == {"__init__", "__contains__"}
    module = run(
        "class Bag:\n"
        "    def __init__(self, *items):\n"
        "        self.items = list(items)\n"
        "    def __contains__(self, item):\n"
        "        return item in self.items\n"
        "    def same(self, other):\n"
        "        return self.items == other.items\n"
        "r = [2 in Bag(1, 2), 3 in Bag(1, 2), Bag(1).same(Bag(1)), Bag(1) == Bag(1),\n"
        "     sorted([Bag(2), Bag(1)], key=lambda b: b.items[0])[0].items]\n"
    )
    # == falls back to identity; ordering needs key=.
    assert module.r == [True, False, True, False, [1]]


@pytest.mark.parametrize(
    "name", ["__lt__", "__eq__", "__hash__", "__index__", "__len__", "__iter__"]
)
def test_class_creation_refuses_special_methods_built_by_other_means(name: str) -> None:
    # Second lock: a namespace that did not come from a compiled class body.
    with pytest.raises(SandboxViolation) as info:
        plugin_metaclass("X", (), {name: len})
    assert str(info.value).startswith(f'Class "X" may not define "{name}"')


def test_class_creation_says_why_comparisons_are_refused() -> None:
    with pytest.raises(SandboxViolation) as info:
        plugin_metaclass("X", (), {"__lt__": len})
    assert str(info.value) == (
        'Class "X" may not define "__lt__": sandboxed classes cannot define comparison methods '
        "(CPython calls them from the middle of list and dict operations); sort with key= and "
        "compare with an explicit method instead"
    )


def test_class_namespaces_of_python_3_13_are_accepted() -> None:
    # 3.13 writes __firstlineno__ and __static_attributes__ into every class body.
    cls = plugin_metaclass(
        "X", (), {"__module__": "m", "__firstlineno__": 3, "__static_attributes__": ("v",)}
    )
    assert cls.__name__ == "X"
    module = run("class A:\n    def __init__(self):\n        self.v = 1\nr = A().v\n")
    assert module.r == 1


# -- gh-120384: extended-slice assignment from a shrinking generator ----------------------


def test_slice_assignment_consumes_the_value_before_the_list_sees_it() -> None:
    module = run(
        "items = list(range(10))\n"
        "def shrink():\n"
        "    items.clear()\n"
        "    for i in range(5):\n"
        "        yield i\n"
        "try:\n"
        "    items[::2] = shrink()\n"
        "except ValueError as e:\n"
        "    r = str(e)\n"
    )
    # The generator ran to the end first (the list is empty), then the list refused it.
    assert module.r == "attempt to assign sequence of size 5 to extended slice of size 0"
    assert module.items == []


def test_slice_assignment_keeps_its_meaning() -> None:
    module = run(
        "a = list(range(6))\n"
        "a[::2] = (c for c in 'xyz')\n"
        "b = [1, 2, 3]\n"
        "b[0:1] = iter('pq')\n"
        "c = [1, 2, 3]\n"
        "c[::-1] = c\n"
        "d = [1, 2, 3, 4]\n"
        "d[1:3] = []\n"
        "e = [0, 0, 0]\n"
        "i = 1\n"
        "e[i] = 5\n"
        "e[-1] = 7\n"
        "s = slice(0, 1)\n"
        "e[s] = [9]\n"
        "del e[::2]\n"
        "f = {}\n"
        "f['k'] = 1\n"
        "k = 'j'\n"
        "f[k] = 2\n"
    )
    assert module.a == ["x", 1, "y", 3, "z", 5]
    assert module.b == ["p", "q", 2, 3]
    assert module.c == [3, 2, 1]
    assert module.d == [1, 4]
    assert module.e == [5]
    assert module.f == {"k": 1, "j": 2}


def test_a_slice_object_with_a_step_cannot_be_assigned_through() -> None:
    assert refused(
        "items = [1, 2, 3, 4]\nwhere = slice(None, None, 2)\nitems[where] = (0, 0)\n"
    ) == (
        "Assigning to an extended slice through a slice object is not allowed in sandboxed "
        "plugins; write the slice in the brackets instead (items[a:b:c] = values)"
    )


def test_slice_writes_keep_the_write_rules() -> None:
    assert refused("import json\njson[::2] = [1]\n").startswith(
        'Modifying the sandboxed module "json" is not allowed'
    )
    module = run("items = [[1], [2]]\nitems[::2][0][0] = 5\n")
    assert module.items == [[5], [2]]


# -- nested lazy iterators ----------------------------------------------------------------

WRAPPERS = {
    "map": "map(abs, it)",
    "filter": "filter(None, it)",
    "zip": "zip(it)",
    "enumerate": "enumerate(it)",
    "islice": "itertools.islice(it, 100)",
    "chain": "itertools.chain(it)",
    "chain.from_iterable": "itertools.chain.from_iterable([it])",
    "tee": "itertools.tee(it)[0]",
    "starmap": "itertools.starmap(abs, it)",
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_lazy_iterator_chains_are_bounded(name: str) -> None:
    module = run(
        "import itertools\n"
        "it = [1]\n"
        "depth = 0\n"
        "try:\n"
        "    for i in range(100000):\n"
        f"        it = {WRAPPERS[name]}\n"
        "        depth += 1\n"
        "except RecursionError as e:\n"
        "    error = str(e)\n"
    )
    assert module.depth == MAX_ITERATOR_NESTING
    assert module.error == (
        f"{name}(): lazy iterators nested more than {MAX_ITERATOR_NESTING} levels deep (map, filter, "
        "zip, enumerate and itertools objects wrapping each other); materialise intermediate "
        "results with list() instead"
    )


def test_groups_count_as_levels_of_their_groupby() -> None:
    module = run(
        "import itertools\n"
        "it = [1]\n"
        "depth = 0\n"
        "try:\n"
        "    for i in range(100000):\n"
        "        key, it = next(itertools.groupby(it))\n"
        "        depth += 1\n"
        "except RecursionError as e:\n"
        "    error = str(e)\n"
    )
    assert module.depth == MAX_ITERATOR_NESTING // 2  # a groupby and its group: two levels each
    assert module.error.startswith("groupby(): lazy iterators nested more than")


def test_bounded_iterators_behave_like_the_real_ones() -> None:
    module = run(
        "import itertools\n"
        "r = [list(enumerate(zip('ab', map(abs, [-1, -2])), 1)), list(filter(None, [0, 1])),\n"
        "     list(itertools.chain.from_iterable(x for x in ['ab', 'c'])), list(itertools.islice(itertools.count(), 3)),\n"
        "     [(k, list(g)) for k, g in itertools.groupby('aab')], [list(t) for t in itertools.tee([1, 2])],\n"
        "     isinstance(itertools.chain(), itertools.chain), isinstance([], itertools.chain),\n"
        "     list(zip([1], [2], strict=True)), repr(map(abs, []))]\n"
    )
    assert module.r == [
        [(1, ("a", 1)), (2, ("b", 2))],
        [1],
        ["a", "b", "c"],
        [0, 1, 2],
        [("a", ["a", "a"]), ("b", ["b"])],
        [[1, 2], [1, 2]],
        True,
        False,
        [(1, 2)],
        "<map object>",
    ]


# -- heap addresses -------------------------------------------------------------------------

ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def test_no_conversion_to_text_shows_a_heap_address() -> None:
    module = run(
        "import json\n"
        "class Thing:\n"
        "    pass\n"
        "class Child(Thing):\n"
        "    pass\n"
        "def f():\n"
        "    pass\n"
        "def gen():\n"
        "    yield 1\n"
        "texts = [repr(Thing()), str(Child()), repr(f), str(f), f'{f}', f'{f!r:>40}', f'{f!s}', f'{f!a}',\n"
        "         '%s' % f, '%r and %s' % (f, len), ascii(f), format(f), format(f, ''), repr([f, gen()]),\n"
        "         str({'k': [].append}), repr(map(abs, [])), repr(lambda: 1), b'%a' % (f,),\n"
        "         repr(json.dumps), str(json.loads), repr(Thing)]\n"
        "print(f, Thing())\n"
        "printed_text = printed\n"
        "def catch():\n"
        "    try:\n"
        "        [].index(f)\n"
        "    except ValueError as e:\n"
        "        return [str(e), repr(e), e.args[0], f'{e}', '%s' % e]\n"
        "texts.extend(catch())\n"
    )
    leaked = [text for text in [*module.texts, module.printed_text] if ADDRESS.search(str(text))]
    assert leaked == []
    assert module.texts[:4] == ["<Thing object>", "<Child object>", "<function f>", "<function f>"]
    assert module.printed_text == "<function f> <Thing object>\n"


def test_text_that_only_looks_like_an_address_is_kept() -> None:
    module = run(
        "s = 'mapped at 0x7f00aa00'\n"
        "r = [str(s), repr(s), f'{s}', '%s' % s, format(s), '%x' % 255, '%d%%' % 5, 7 % 3, str(b'at 0x1f', 'ascii')]\n"
        "n = 10\n"
        "n %= 4\n"
    )
    assert module.r == [
        "mapped at 0x7f00aa00",
        "'mapped at 0x7f00aa00'",
        "mapped at 0x7f00aa00",
        "mapped at 0x7f00aa00",
        "mapped at 0x7f00aa00",
        "ff",
        "5%",
        1,
        "at 0x1f",
    ]
    assert module.n == 2


def test_f_string_format_specs_still_work() -> None:
    module = run(
        "import datetime\n"
        "w = 7\n"
        "d = datetime.date(2024, 5, 6)\n"
        "r = [f'{3.14159:.2f}', f'{42:>{w}}', f'{\"x\"!r:^5}', f'{d:%Y/%m}', f'{d}', f'{d=}', f'{None}']\n"
    )
    assert module.r == [
        "3.14",
        "     42",
        " 'x' ",
        "2024/05",
        "2024-05-06",
        "d=datetime.date(2024, 5, 6)",
        "None",
    ]


def test_the_str_builtin_still_works_as_a_type() -> None:
    module = run(
        "def f(x: str | None = None) -> dict[str, int]:\n"
        "    return {}\n"
        "r = [isinstance('a', str), isinstance(1, str), issubclass(bool, (str, int)), str(), str(5), str(b'ab', 'ascii'),\n"
        "     str.lower('AB'), sorted(['b', 'A'], key=str.lower), ''.join(map(str, [1, 2])), f() == {}]\n"
    )
    assert module.r == [True, False, True, "", "5", "ab", "ab", ["A", "b"], "12", True]


# -- the table of interpreter bugs ----------------------------------------------------------


def test_every_interpreter_bug_is_described() -> None:
    idents = [bug.ident for bug in INTERPRETER_BUGS]
    assert len(idents) == len(set(idents))
    for bug in INTERPRETER_BUGS:
        assert bug.kind and bug.reach and bug.handling
    security = (ROOT / "SECURITY.md").read_text()
    # SECURITY.md shows the same table.
    assert [ident for ident in idents if f"| {ident} |" not in security] == []


def test_affected_follows_the_fixed_releases() -> None:
    (bug,) = [b for b in INTERPRETER_BUGS if b.ident == "gh-120298"]
    assert affected(bug, (3, 11, 7)) is True
    assert affected(bug, (3, 12, 1)) is True
    assert affected(bug, (3, 12, 5)) is False
    assert affected(bug, (3, 13, 0)) is False
    assert affected(bug) is affected(bug, sys.version_info[:3])
