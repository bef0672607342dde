"""Generic reachability walk: what can restricted code reach from the shims and builtins?

Starting from every shim facade, the bundle's public builtins and a plugin module full of
objects made by calling the shims from restricted code, the walker follows every attribute
the sandbox's own ``_getattr_`` lets through (the names ``dir()`` lists plus a probe list of
names that forward through ``__getattr__`` or are known escape hops), every mapping value and
every element of a tuple/list/set. Nothing it reaches may be a module, a frame, code, a
traceback, ``open``/``eval``/``exec``/``compile``/``__import__``/``type``/``object``, anything
of ``os``/``sys``/``builtins``/``io``/``codecs``/``importlib``/``pickle``/``gc``...,
``GeneratorExit``, the ``Unicode*Error`` classes with the gh-123378 heap read, a mixin method
of ``collections.abc``, or (from the shared shims) a mutable container that two plugins could
both write to.
"""

from __future__ import annotations

import abc
import builtins
import codecs
import collections
import collections.abc
import copyreg
import functools
import gc
import importlib
import io
import marshal
import operator
import os
import pickle
import string
import subprocess
import sys
import types
import typing
from collections.abc import Iterable

import pytest

from sandbox import SandboxViolation
from sandbox._compiler import compile_bundle
from sandbox._guards import PluginModule, guarded_getattr, guarded_getitem
from sandbox._loader import build_preludes, load_bundle
from stdlib_shims import SHIMS, make_random

# Names that dir() does not list but objects may still answer (typing aliases forward to
# their origin class; proxies forward to targets) and the hops known from past escapes.
PROBE_NAMES = (
    "register",
    "mro",
    "func",
    "args",
    "keywords",
    "obj",
    "fget",
    "fset",
    "fdel",
    "gi_frame",
    "gi_code",
    "f_globals",
    "f_back",
    "f_builtins",
    "tb_frame",
    "cr_frame",
    "ag_frame",
    "format",
    "format_map",
    "get_field",
    "vformat",
    "modules",
    "system",
    "popen",
    "open",
    "builtins",
    "bltns",
    "sys",
    "os",
    "codecs",
    "copyreg",
    "dispatch_table",
    "enum",
    "decoder",
    "encoder",
    "scanner",
    "scan_once",
    "object_hook",
    "memo",
    "cache",
    "manager",
    "handlers",
    "stream",
    "parent",
    "root",
    "loader",
    "spec",
    "path",
    "origin",
    "module",
    "maps",
    "default_factory",
    "digest_cons",
    "inner",
    "outer",
    "fromkeys",
    "copy_with",
    "re",
    "string",
)

_LEAVES = (str, bytes, int, float, complex, bool, type(None))

_FORBIDDEN_BUILTINS = (
    "open",
    "eval",
    "exec",
    "compile",
    "__import__",
    "globals",
    "locals",
    "vars",
    "dir",
    "getattr",
    "setattr",
    "delattr",
    "input",
    "breakpoint",
    "type",
    "object",
    "id",
    "hash",
    "memoryview",
    "super",
    "help",
    "exit",
    "quit",
    "__build_class__",
)


_DANGEROUS_MEMBERS = {
    os: (
        "system",
        "popen",
        "open",
        "fdopen",
        "fork",
        "execv",
        "execve",
        "kill",
        "remove",
        "unlink",
        "listdir",
        "scandir",
        "environ",
        "getenv",
        "putenv",
        "chdir",
        "walk",
        "read",
        "write",
    ),
    sys: (
        "modules",
        "exit",
        "_getframe",
        "settrace",
        "setprofile",
        "stdin",
        "stdout",
        "stderr",
        "path",
        "meta_path",
        "path_hooks",
        "breakpointhook",
        "displayhook",
        "excepthook",
        "addaudithook",
    ),
    io: ("open", "open_code", "FileIO", "BufferedReader", "BufferedWriter", "TextIOWrapper"),
    codecs: ("open", "EncodedFile", "register", "lookup", "StreamReaderWriter"),
    importlib: ("import_module", "reload", "__import__"),
    subprocess: ("Popen", "run", "call", "check_call", "check_output", "getoutput"),
    pickle: ("loads", "load", "dumps", "Unpickler", "Pickler"),
    marshal: ("loads", "load", "dumps"),
    gc: ("get_objects", "get_referrers", "get_referents", "freeze"),
    copyreg: ("dispatch_table", "pickle", "constructor", "_reconstructor"),
}


def _forbidden_objects() -> dict[int, str]:
    table: dict[int, str] = {id(getattr(builtins, n)): f"builtins.{n}" for n in _FORBIDDEN_BUILTINS}
    for module, names in _DANGEROUS_MEMBERS.items():
        table.update({id(getattr(module, n)): f"{module.__name__}.{n}" for n in names})
    extra = {
        "functools.partial": functools.partial,
        "operator.attrgetter": operator.attrgetter,
        "operator.methodcaller": operator.methodcaller,
        "string.Formatter": string.Formatter,
        "string.Template": string.Template,
        "types.FunctionType": types.FunctionType,
        "types.CodeType": types.CodeType,
        "types.ModuleType": types.ModuleType,
        "abc.ABCMeta.register": abc.ABCMeta.register,
        # A plugin must not pose as a shutdown (056); typing.Generator.close handed it out.
        "GeneratorExit": GeneratorExit,
        # CPython gh-123378: str() of these reads out of bounds for a chosen start/end.
        "UnicodeDecodeError": UnicodeDecodeError,
        "UnicodeEncodeError": UnicodeEncodeError,
        "UnicodeTranslateError": UnicodeTranslateError,
    }
    table.update({id(value): name for name, value in extra.items()})
    # The mixin methods of the collections.abc classes work on any self: MutableMapping.update
    # writes items of whatever it is given, Generator.close throws GeneratorExit into it.
    for abc_name in collections.abc.__all__:
        abc_class = getattr(collections.abc, abc_name)
        for name, member in vars(abc_class).items():
            if not name.startswith("_") and isinstance(member, types.FunctionType):
                table[id(member)] = f"collections.abc.{abc_name}.{name}"
    return table


FORBIDDEN = _forbidden_objects()

_MUTABLE = (
    dict,
    list,
    set,
    bytearray,
    collections.deque,
    collections.OrderedDict,
    collections.Counter,
    collections.defaultdict,
    collections.ChainMap,
)


def walk(roots: Iterable[tuple[str, object]], depth: int = 6) -> list[tuple[object, str]]:
    """Breadth-first walk through everything restricted code can read, with paths."""
    seen: set[int] = set()
    keep_alive: list[object] = []  # fresh objects (bound methods...) must not reuse ids
    reached: list[tuple[object, str]] = []
    frontier = [(obj, name) for name, obj in roots]
    for _ in range(depth):
        following: list[tuple[object, str]] = []
        for obj, path in frontier:
            keep_alive.append(obj)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            reached.append((obj, path))
            if isinstance(obj, _LEAVES):
                continue
            try:
                names = set(dir(obj)) | set(PROBE_NAMES)
            except Exception:
                names = set(PROBE_NAMES)
            for name in sorted(names):
                try:
                    child = guarded_getattr(obj, name)
                except (SandboxViolation, AttributeError):
                    continue
                except Exception:  # noqa: S112 - properties may raise anything; not reachable then
                    continue
                following.append((child, f"{path}.{name}"))
            if isinstance(obj, (dict, types.MappingProxyType)):
                for key in list(obj.keys()):
                    following.append((guarded_getitem(obj, key), f"{path}[{key!r}]"))
            elif isinstance(obj, (tuple, list, set, frozenset)):
                following.extend((item, f"{path}[{i}]") for i, item in enumerate(obj))
        frontier = following
    return reached


def problems(reached: list[tuple[object, str]], shared: bool) -> list[str]:
    found = []
    for obj, path in reached:
        kind = type(obj)
        if isinstance(obj, types.ModuleType) and kind is not PluginModule:
            found.append(f"{path}: module {obj!r}")
        elif isinstance(
            obj, (types.FrameType, types.CodeType, types.TracebackType, types.CellType)
        ):
            found.append(f"{path}: {kind.__name__}")
        elif id(obj) in FORBIDDEN:
            found.append(f"{path}: {FORBIDDEN[id(obj)]}")
        elif shared and isinstance(obj, _MUTABLE):
            found.append(f"{path}: shared mutable {kind.__name__}")
    return found


def test_nothing_dangerous_is_reachable_from_any_shim() -> None:
    roots = [(name, facade) for name, facade in SHIMS.items()] + [("random", make_random(1))]
    reached = walk(roots)
    # The walk really explores (every member, class and method; fewer since the typing
    # aliases became inert and unbound methods of host classes are refused).
    assert len(reached) > 800
    assert problems(reached, shared=True) == []


SAMPLES = """
import base64, bisect, collections, datetime, decimal, functools, hashlib, heapq, hmac, html
import itertools, json, math, random, re, secrets, statistics, string, textwrap, time, typing
import urllib.parse, uuid

pattern = re.compile(r"(?P<word>\\w+)")
match = pattern.match("hello world")
scanner_result = list(pattern.finditer("a b"))
now = datetime.datetime.now(datetime.timezone.utc)
stamp = datetime.datetime.strptime("2024-01-02", "%Y-%m-%d").replace(tzinfo=datetime.UTC)
delta = now - stamp
tz = datetime.timezone(datetime.timedelta(hours=2), "X")
struct = time.gmtime(0)
dec = decimal.Decimal("1.25")
context = decimal.Context(prec=5)
with decimal.localcontext(prec=3) as local:
    third = decimal.Decimal(1) / decimal.Decimal(3)
dq = collections.deque([1, 2], maxlen=5)
counter = collections.Counter("abca")
ordered = collections.OrderedDict(a=1)
dd = collections.defaultdict(list)
chain = collections.ChainMap({"a": 1}, {"b": 2})
Point = collections.namedtuple("Point", "x y")
point = Point(1, 2)
sha = hashlib.sha256(b"x")
blake = hashlib.blake2b(b"x")
shake = hashlib.shake_128(b"x")
mac = hmac.new(b"k", b"m", "sha256")
mac2 = hmac.new(b"k", b"m", hashlib.sha256)
uid = uuid.uuid4()
parsed = urllib.parse.urlparse("https://u:p@host:8080/p?q=1#f")
split = urllib.parse.urlsplit("https://host/p")
chained = itertools.chain([1], [2])
grouped = itertools.groupby("aab")
counted = itertools.count()
teed = itertools.tee([1, 2])
part = functools.partial(max, 1)
cached = functools.lru_cache(maxsize=4)(abs)
keyed = functools.cmp_to_key(lambda a, b: a - b)(3)
rng = random.Random(4)
typevar = typing.TypeVar("T")
optional = typing.Optional[int]
listed = typing.List[int]
generic = list[int]
try:
    json.loads("{")
except json.JSONDecodeError as exc:
    decode_error = exc
try:
    re.compile("(")
except re.error as exc:
    regex_error = exc
try:
    statistics.mean([])
except statistics.StatisticsError as exc:
    stats_error = exc
try:
    json.missing
except AttributeError as exc:
    attribute_error = exc


def gen():
    yield 1


generator = gen()


class Mine(Exception):
    def __init__(self, v):
        self.v = v

    @property
    def p(self):
        return self.v


mine = Mine(1)
"""


def test_nothing_dangerous_is_reachable_from_objects_plugins_create() -> None:
    module = load_bundle(
        compile_bundle({"plugin.py": SAMPLES}),
        "plugin",
        preludes=build_preludes({}, {}),
        rng_seed=1,
    )
    builtin_names = module.__dict__["__builtins__"]
    roots = [("plugin", module)] + [
        (f"builtins.{n}", v) for n, v in builtin_names.items() if not n.startswith("_")
    ]
    reached = walk(roots)
    assert len(reached) > 2000
    assert problems(reached, shared=False) == []


def test_probe_names_catch_forwarded_attributes() -> None:
    # The real typing.Mapping forwards "register" to collections.abc.Mapping. The facade
    # hands out an inert stand-in instead; should a real alias ever be reachable again, the
    # guard's result check still refuses ABCMeta.register.
    typing_facade = SHIMS["typing"]
    with_register = walk([("typing", typing_facade)], depth=3)
    assert all(not path.endswith(".register") for _, path in with_register)
    with pytest.raises(AttributeError) as missing:
        guarded_getattr(guarded_getattr(typing_facade, "Mapping"), "register")
    assert str(missing.value) == 'a "AnnotationOnly" object has no attribute "register"'
    with pytest.raises(SandboxViolation) as info:
        guarded_getattr(typing.Mapping, "register")
    assert str(info.value) == (
        'Access to attribute "register" is not allowed '
        "(registering virtual subclasses changes isinstance() process-wide)"
    )
