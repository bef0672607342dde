"""Every shim works when called from restricted plugin code, and offers exactly its members.

The member lists are pinned: adding a name to a shim is a security decision (see the
reachability walk) and must show up as a deliberate change here.
"""

from __future__ import annotations

import json as real_json
import sys
from typing import Any

import pytest

import stdlib_shims
from sandbox import SandboxViolation
from sandbox._compiler import compile_bundle
from sandbox._loader import build_preludes, load_bundle
from stdlib_shims import SHIMS, Facade, facade_members, make_facade, make_random

PRELUDES = build_preludes({}, {})


def run(source: str) -> Any:
    """Run ``source`` as a sandboxed plugin and return its ``r`` global."""
    module = load_bundle(
        compile_bundle({"plugin.py": source}), "plugin", preludes=PRELUDES, rng_seed=11
    )
    return module.r


MEMBERS = {
    "base64": {
        "a85decode",
        "a85encode",
        "b16decode",
        "b16encode",
        "b32decode",
        "b32encode",
        "b32hexdecode",
        "b32hexencode",
        "b64decode",
        "b64encode",
        "b85decode",
        "b85encode",
        "decodebytes",
        "encodebytes",
        "standard_b64decode",
        "standard_b64encode",
        "urlsafe_b64decode",
        "urlsafe_b64encode",
    },
    "bisect": {"bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"},
    "collections": {"ChainMap", "Counter", "OrderedDict", "defaultdict", "deque", "namedtuple"},
    "datetime": {
        "MAXYEAR",
        "MINYEAR",
        "UTC",
        "date",
        "datetime",
        "time",
        "timedelta",
        "timezone",
        "tzinfo",
    },
    "decimal": {
        "Clamped",
        "Context",
        "Decimal",
        "DecimalException",
        "DivisionByZero",
        "FloatOperation",
        "Inexact",
        "InvalidOperation",
        "MAX_EMAX",
        "MAX_PREC",
        "MIN_EMIN",
        "Overflow",
        "ROUND_05UP",
        "ROUND_CEILING",
        "ROUND_DOWN",
        "ROUND_FLOOR",
        "ROUND_HALF_DOWN",
        "ROUND_HALF_EVEN",
        "ROUND_HALF_UP",
        "ROUND_UP",
        "Rounded",
        "Subnormal",
        "Underflow",
        "localcontext",
    },
    "functools": {"cache", "cmp_to_key", "lru_cache", "partial", "reduce", "wraps"},
    "hashlib": {
        "algorithms_guaranteed",
        "blake2b",
        "blake2s",
        "md5",
        "pbkdf2_hmac",
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha3_224",
        "sha3_256",
        "sha3_384",
        "sha3_512",
        "sha512",
        "shake_128",
        "shake_256",
    },
    "heapq": {
        "heapify",
        "heappop",
        "heappush",
        "heappushpop",
        "heapreplace",
        "merge",
        "nlargest",
        "nsmallest",
    },
    "hmac": {"compare_digest", "digest", "new"},
    "html": {"escape", "unescape"},
    "itertools": {
        "accumulate",
        "chain",
        "combinations",
        "combinations_with_replacement",
        "compress",
        "count",
        "cycle",
        "dropwhile",
        "filterfalse",
        "groupby",
        "islice",
        "pairwise",
        "permutations",
        "product",
        "repeat",
        "starmap",
        "takewhile",
        "tee",
        "zip_longest",
    },
    "json": {"JSONDecodeError", "dumps", "loads"},
    "math": {
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atan2",
        "atanh",
        "cbrt",
        "ceil",
        "comb",
        "copysign",
        "cos",
        "cosh",
        "degrees",
        "dist",
        "e",
        "erf",
        "erfc",
        "exp",
        "exp2",
        "expm1",
        "fabs",
        "factorial",
        "floor",
        "fmod",
        "frexp",
        "fsum",
        "gamma",
        "gcd",
        "hypot",
        "inf",
        "isclose",
        "isfinite",
        "isinf",
        "isnan",
        "isqrt",
        "lcm",
        "ldexp",
        "lgamma",
        "log",
        "log10",
        "log1p",
        "log2",
        "modf",
        "nan",
        "nextafter",
        "perm",
        "pi",
        "pow",
        "prod",
        "radians",
        "remainder",
        "sin",
        "sinh",
        "sqrt",
        "tan",
        "tanh",
        "tau",
        "trunc",
        "ulp",
    },
    "re": {
        "A",
        "ASCII",
        "DOTALL",
        "I",
        "IGNORECASE",
        "M",
        "MULTILINE",
        "Match",
        "Pattern",
        "S",
        "U",
        "UNICODE",
        "VERBOSE",
        "X",
        "compile",
        "error",
        "escape",
        "findall",
        "finditer",
        "fullmatch",
        "match",
        "search",
        "split",
        "sub",
        "subn",
    },
    "secrets": {
        "choice",
        "compare_digest",
        "randbelow",
        "randbits",
        "token_bytes",
        "token_hex",
        "token_urlsafe",
    },
    "statistics": {
        "StatisticsError",
        "correlation",
        "covariance",
        "fmean",
        "geometric_mean",
        "harmonic_mean",
        "linear_regression",
        "mean",
        "median",
        "median_grouped",
        "median_high",
        "median_low",
        "mode",
        "multimode",
        "pstdev",
        "pvariance",
        "quantiles",
        "stdev",
        "variance",
    },
    "string": {
        "ascii_letters",
        "ascii_lowercase",
        "ascii_uppercase",
        "digits",
        "hexdigits",
        "octdigits",
        "printable",
        "punctuation",
        "whitespace",
    },
    "textwrap": {"dedent", "fill", "indent", "shorten", "wrap"},
    "time": {
        "altzone",
        "asctime",
        "ctime",
        "daylight",
        "gmtime",
        "localtime",
        "mktime",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "process_time",
        "process_time_ns",
        "strftime",
        "strptime",
        "struct_time",
        "time",
        "time_ns",
        "timezone",
        "tzname",
    },
    "typing": {
        "Any",
        "Callable",
        "ClassVar",
        "Dict",
        "Final",
        "FrozenSet",
        "Generator",
        "Iterable",
        "Iterator",
        "List",
        "Literal",
        "Mapping",
        "MutableMapping",
        "MutableSequence",
        "MutableSet",
        "NoReturn",
        "Optional",
        "Sequence",
        "Set",
        "TYPE_CHECKING",
        "Tuple",
        "TypeVar",
        "Union",
        "cast",
    },
    "urllib": {"parse"},
    "urllib.parse": {
        "parse_qs",
        "parse_qsl",
        "quote",
        "quote_from_bytes",
        "quote_plus",
        "unquote",
        "unquote_plus",
        "unquote_to_bytes",
        "urldefrag",
        "urlencode",
        "urljoin",
        "urlparse",
        "urlsplit",
        "urlunparse",
        "urlunsplit",
    },
    "uuid": {
        "NAMESPACE_DNS",
        "NAMESPACE_OID",
        "NAMESPACE_URL",
        "NAMESPACE_X500",
        "UUID",
        "uuid3",
        "uuid4",
        "uuid5",
    },
}

RANDOM_MEMBERS = {
    "Random",
    "betavariate",
    "choice",
    "choices",
    "expovariate",
    "gammavariate",
    "gauss",
    "getrandbits",
    "lognormvariate",
    "normalvariate",
    "paretovariate",
    "randbytes",
    "randint",
    "random",
    "randrange",
    "sample",
    "shuffle",
    "triangular",
    "uniform",
    "vonmisesvariate",
    "weibullvariate",
}


def test_shim_names() -> None:
    assert sorted(SHIMS) == sorted(MEMBERS)
    assert stdlib_shims.SHIM_NAMES == frozenset(MEMBERS) | {"random"}


# Members that newer interpreters add to modules whose every public name is offered
# (reviewed: C functions, or, for statistics.kde_random, a private random.Random per call).
NEWER_MEMBERS: dict[tuple[int, int], dict[str, set[str]]] = {
    (3, 12): {"itertools": {"batched"}, "math": {"sumprod"}},
    (3, 13): {"math": {"fma"}, "statistics": {"kde", "kde_random"}},
}


def pinned_members(name: str) -> set[str]:
    members = set(MEMBERS[name])
    for version, added in NEWER_MEMBERS.items():
        if sys.version_info[:2] >= version:
            members |= added.get(name, set())
    return members


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_members_are_pinned(name: str) -> None:
    assert facade_members(SHIMS[name]) == pinned_members(name)


def test_random_members_are_pinned() -> None:
    assert facade_members(make_random(1)) == RANDOM_MEMBERS


def test_facades_are_frozen_opaque_and_not_iterable() -> None:
    facade = SHIMS["json"]
    with pytest.raises(AttributeError) as info:
        facade.dumps = len
    assert str(info.value) == 'The sandboxed module "json" is read-only'
    with pytest.raises(AttributeError):
        del facade.loads  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        iter(facade)  # type: ignore[call-overload]
    with pytest.raises(TypeError) as pickled:
        facade.__reduce_ex__(2)
    assert str(pickled.value) == 'The sandboxed module "json" cannot be pickled or copied'
    assert repr(facade) == "<sandboxed module 'json'>"
    assert not hasattr(facade, "__dict__")
    assert not hasattr(facade, "__name__")  # IMPORT_FROM's sys.modules fallback needs it


def test_make_facade_refuses_private_or_invalid_member_names() -> None:
    for bad in ("_x", "not valid", "class"):
        with pytest.raises(ValueError):
            make_facade("m", {bad: 1})
    assert isinstance(make_facade("m", {"ok": 1}), Facade)


def test_preload_is_idempotent_and_loads_lazy_modules() -> None:
    import sys

    stdlib_shims.preload()
    stdlib_shims.preload()
    for name in (
        "_strptime",
        "unicodedata",
        "stringprep",
        "encodings.idna",
        "encodings.punycode",
        "encodings.cp1252",
    ):
        assert name in sys.modules


# -- each shim from restricted code -----------------------------------------------------


def test_json() -> None:
    assert run(
        "import json\n"
        "r = [json.dumps({'b': 1, 'a': [1, None]}, sort_keys=True), json.dumps({'x': 'é'}, ensure_ascii=False, indent=1),\n"
        "     json.loads('{\"a\": [1, 2.5]}'), json.loads('1.5', parse_float=str), json.dumps(3, default=str)]\n"
        "try:\n    json.loads('{')\nexcept json.JSONDecodeError as e:\n    r.append([e.msg, e.pos])\n"
        "try:\n    json.dumps({}, cls=1)\nexcept TypeError as e:\n    r.append('no cls')\n"
    ) == [
        '{"a": [1, null], "b": 1}',
        '{\n "x": "é"\n}',
        {"a": [1, 2.5]},
        "1.5",
        "3",
        ["Expecting property name enclosed in double quotes", 1],
        "no cls",
    ]


def test_math() -> None:
    assert run(
        "import math\nr = [math.sqrt(16), math.floor(2.7), math.isclose(0.1 + 0.2, 0.3), math.prod([2, 3]), round(math.pi, 2), math.inf > 1]\n"
    ) == [4.0, 2, True, 6, 3.14, True]


def test_re() -> None:
    assert run(
        "import re\n"
        "p = re.compile(r'(?P<k>\\w+)=(?P<v>\\d+)', re.I)\n"
        "m = p.search('a=1 b=2')\n"
        "r = [m.group('k'), m.groupdict(), p.findall('x=3 y=4'), re.sub(r'(\\d)', r'<\\1>', 'a1b2'),\n"
        "     re.split(r',\\s*', 'a, b,c'), bool(re.fullmatch('[a-z]+', 'abc', re.IGNORECASE)), re.escape('a.b'),\n"
        "     [x.group(0) for x in re.finditer('o', 'foo')], re.subn('o', '0', 'foo'), m.re is p, isinstance(p, re.Pattern)]\n"
        "try:\n    re.compile('(')\nexcept re.error as e:\n    r.append(e.msg)\n"
    ) == [
        "a",
        {"k": "a", "v": "1"},
        [("x", "3"), ("y", "4")],
        "a<1>b<2>",
        ["a", "b", "c"],
        True,
        "a\\.b",
        ["o", "o"],
        ("f00", 2),
        True,
        True,
        "missing ), unterminated subpattern",
    ]


def test_re_debug_flag_is_refused() -> None:
    # re.DEBUG prints the parsed pattern to stdout.
    with pytest.raises(ValueError) as info:
        run("import re\nr = re.compile('a', 128)\n")
    assert str(info.value) == "re.DEBUG is not available in sandboxed plugins"
    with pytest.raises(ValueError):
        run("import re\nr = re.sub('a', 'b', 'a', flags=128 | re.I)\n")


def test_datetime() -> None:
    assert run(
        "from datetime import datetime, date, timedelta, timezone, UTC\n"
        "d = datetime(2024, 2, 29, 12, 30, tzinfo=UTC)\n"
        "r = [d.isoformat(), (d + timedelta(days=1)).date().isoformat(), d.strftime('%Y/%m/%d %H:%M'),\n"
        "     datetime.strptime('03/04/2024 05:06', '%d/%m/%Y %H:%M').isoformat(),\n"
        "     datetime.fromisoformat('2024-01-01T00:00:00+02:00').utcoffset().total_seconds(),\n"
        "     date(2024, 1, 1).weekday(), d.astimezone(timezone(timedelta(hours=1))).hour,\n"
        "     datetime.now(UTC).year >= 2024, d.timestamp()]\n"
    ) == [
        "2024-02-29T12:30:00+00:00",
        "2024-03-01",
        "2024/02/29 12:30",
        "2024-04-03T05:06:00",
        7200.0,
        0,
        13,
        True,
        1709209800.0,
    ]


def test_time_has_clocks_but_no_sleep() -> None:
    assert run(
        "import time\n"
        "a = time.monotonic()\nb = time.monotonic()\n"
        "r = [b >= a, time.time() > 1.7e9, time.perf_counter_ns() > 0, time.gmtime(0).tm_year,\n"
        "     time.strftime('%Y-%m-%d', time.gmtime(86400)), time.strptime('2024-05', '%Y-%m').tm_mon]\n"
    ) == [True, True, True, 1970, "1970-01-02", 5]
    with pytest.raises(AttributeError) as info:
        run("import time\nr = time.sleep\n")
    assert str(info.value) == 'the sandboxed module "time" has no attribute "sleep"'


def test_random_is_per_bundle_and_seedable_for_tests() -> None:
    source = "import random\nr = [random.randint(1, 100) for i in range(5)] + [random.choice('abc'), random.sample(range(10), 3)]\nl = [1, 2, 3]\nrandom.shuffle(l)\nr.append(sorted(l))\n"
    first, second = run(source), run(source)
    assert first == second  # same seed (11) in both bundles
    assert all(1 <= x <= 100 for x in first[:5])
    assert first[7] == [1, 2, 3]
    assert make_random(1).random() != make_random(2).random()  # type: ignore[attr-defined]


def test_string_constants() -> None:
    assert run(
        "import string\nr = [string.digits, string.ascii_uppercase[:3], len(string.printable)]\n"
    ) == ["0123456789", "ABC", 100]
    with pytest.raises(AttributeError):
        run("import string\nr = string.Template\n")


def test_itertools() -> None:
    assert run(
        "import itertools as it\n"
        "r = [list(it.chain([1], [2])), list(it.islice(it.count(5), 3)), [k for k, g in it.groupby('aab')],\n"
        "     list(it.product('ab', repeat=1)), list(it.accumulate([1, 2, 3])), list(it.pairwise('abc')),\n"
        "     list(it.chain.from_iterable([[1], [2]])), list(it.zip_longest('a', 'bc', fillvalue='-'))]\n"
    ) == [
        [1, 2],
        [5, 6, 7],
        ["a", "b"],
        [("a",), ("b",)],
        [1, 3, 6],
        [("a", "b"), ("b", "c")],
        [1, 2],
        [("a", "b"), ("-", "c")],
    ]


def test_functools() -> None:
    assert run(
        "import functools\n"
        "calls = []\n"
        "@functools.lru_cache(maxsize=8)\n"
        "def sq(x):\n    calls.append(x)\n    return x * x\n"
        "@functools.cache\n"
        "def cube(x):\n    return x ** 3\n"
        "@functools.lru_cache\n"
        "def one(x):\n    return 1\n"
        "class K:\n"
        "    @functools.lru_cache(maxsize=None)\n"
        "    def m(self, x):\n        return x + 1\n"
        "def deco(f):\n"
        "    @functools.wraps(f)\n"
        "    def inner(*a):\n        return f(*a) * 10\n"
        "    return inner\n"
        "@deco\n"
        "def two():\n    return 2\n"
        "add3 = functools.partial(lambda a, b, c=0: a + b + c, 1, c=1)\n"
        "r = [sq(3), sq(3), calls, sq.cache_info().hits, cube(2), one(5), K().m(1), two(), add3(1),\n"
        "     functools.reduce(lambda a, b: a * b, [1, 2, 3, 4]), sorted([3, 1, 2], key=functools.cmp_to_key(lambda a, b: b - a))]\n"
        "sq.cache_clear()\nr.append(sq.cache_info().currsize)\nr.append(repr(sq))\n"
    ) == [9, 9, [3], 1, 8, 1, 2, 20, 3, 24, [3, 2, 1], 0, "<cached function>"]


def test_collections() -> None:
    assert run(
        "from collections import deque, Counter, OrderedDict, defaultdict, ChainMap, namedtuple\n"
        "q = deque([1, 2], maxlen=2)\nq.append(3)\n"
        "c = Counter('abracadabra')\n"
        "o = OrderedDict(a=1, b=2)\no.move_to_end('a')\n"
        "d = defaultdict(int)\nd['y'] = d['y'] + 2\nd['x']\n"
        "m = ChainMap({'a': 1}, {'a': 2, 'b': 3})\n"
        "P = namedtuple('P', 'x y', defaults=[0])\np = P(1)\n"
        "r = [list(q), c.most_common(2), list(o), dict(d), m['a'], m['b'], p.x + p.y, p]\n"
    ) == [[2, 3], [("a", 5), ("b", 2)], ["b", "a"], {"y": 2, "x": 0}, 1, 3, 1, (1, 0)]


def test_namedtuple_refuses_private_fields_and_cannot_be_subclassed() -> None:
    with pytest.raises(ValueError):
        run("from collections import namedtuple\nr = namedtuple('P', ['_secret'])\n")
    with pytest.raises(SandboxViolation) as info:
        run("from collections import namedtuple\nclass P(namedtuple('P', 'x')):\n    pass\n")
    assert str(info.value) == (
        'Class "P" cannot inherit from the class "P": sandboxed classes may only inherit from '
        "Exception classes and other classes of the plugin"
    )
    # The generated class is not attributed to any real package.
    module = load_bundle(
        compile_bundle(
            {"plugin.py": "from collections import namedtuple\nP = namedtuple('P', 'x')\n"}
        ),
        "plugin",
        preludes=PRELUDES,
    )
    assert module.P.__module__ == "<sandboxed>"


def test_hashlib_and_hmac() -> None:
    # Expected values come from the real modules, called directly by the host.
    import hashlib
    import hmac

    assert run(
        "import hashlib, hmac\n"
        "h = hashlib.sha256(b'abc')\n"
        "r = [h.hexdigest(), hashlib.md5(b'').hexdigest(), hashlib.blake2b(b'x', digest_size=4).hexdigest(),\n"
        "     hashlib.shake_128(b'x').hexdigest(4), hashlib.pbkdf2_hmac('sha256', b'pw', b'salt', 2).hex(),\n"
        "     hmac.new(b'key', b'msg', 'sha256').hexdigest(), hmac.compare_digest('a', 'a'),\n"
        "     hmac.digest(b'key', b'msg', 'sha256') == hmac.new(b'key', b'msg', hashlib.sha256).digest(),\n"
        "     'sha256' in hashlib.algorithms_guaranteed]\n"
    ) == [
        hashlib.sha256(b"abc").hexdigest(),
        "d41d8cd98f00b204e9800998ecf8427e",
        hashlib.blake2b(b"x", digest_size=4).hexdigest(),
        hashlib.shake_128(b"x").hexdigest(4),
        hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 2).hex(),
        hmac.new(b"key", b"msg", "sha256").hexdigest(),
        True,
        True,
        True,
    ]


def test_base64() -> None:
    assert run(
        "import base64\n"
        "r = [base64.b64encode(b'hi?').decode(), base64.b64decode('aGk/'), base64.urlsafe_b64encode(b'\\xfb\\xff'),\n"
        "     base64.b16encode(b'A'), base64.b32decode('IE======')]\n"
        "try:\n    base64.b64decode('!!', validate=True)\nexcept ValueError:\n    r.append('invalid')\n"
    ) == ["aGk/", b"hi?", b"-_8=", b"41", b"A", "invalid"]


def test_urllib_parse() -> None:
    assert run(
        "from urllib.parse import urlparse, urlencode, parse_qs, quote, unquote, urljoin, urlsplit, urlunsplit\n"
        "u = urlparse('https://user:pw@example.com:8080/a/b?x=1&x=2#frag')\n"
        "r = [u.hostname, u.port, u.username, u.path, parse_qs(u.query), urlencode({'q': 'a b', 'n': 1}),\n"
        "     quote('ä/b'), unquote('%C3%A4'), urljoin('https://h/a/b', '../c'),\n"
        "     urlunsplit(urlsplit('http://h/p?q')), urlsplit('https://bücher.example/').hostname]\n"
    ) == [
        "example.com",
        8080,
        "user",
        "/a/b",
        {"x": ["1", "2"]},
        "q=a+b&n=1",
        "%C3%A4/b",
        "ä",
        "https://h/c",
        "http://h/p?q",
        "bücher.example",
    ]


def test_uuid() -> None:
    import uuid

    assert run(
        "import uuid\n"
        "u = uuid.uuid4()\n"
        "r = [u.version, len(u.hex), str(uuid.uuid5(uuid.NAMESPACE_DNS, 'example.org')),\n"
        "     uuid.UUID('12345678123456781234567812345678').hex, uuid.uuid3(uuid.NAMESPACE_URL, 'x').version]\n"
    ) == [
        4,
        32,
        str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.org")),
        "12345678123456781234567812345678",
        3,
    ]


def test_decimal() -> None:
    assert run(
        "from decimal import Decimal, ROUND_HALF_UP, localcontext, InvalidOperation\n"
        "with localcontext(prec=3):\n    third = Decimal(1) / Decimal(3)\n"
        "r = [str(Decimal('1.005').quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)), str(third),\n"
        "     str(Decimal('0.1') + Decimal('0.2'))]\n"
        "try:\n    Decimal('abc')\nexcept InvalidOperation:\n    r.append('invalid')\n"
    ) == ["1.01", "0.333", "0.3", "invalid"]


def test_statistics() -> None:
    assert run(
        "import statistics as st\n"
        "r = [st.mean([1, 2, 3, 4]), st.median([3, 1, 2]), round(st.stdev([1, 2, 3, 4]), 3), st.mode('aab'),\n"
        "     st.quantiles([1, 2, 3, 4, 5], n=4)]\n"
        "try:\n    st.mean([])\nexcept st.StatisticsError as e:\n    r.append(str(e))\n"
    ) == [2.5, 2, 1.291, "a", [1.5, 3.0, 4.5], "mean requires at least one data point"]


def test_textwrap_and_html() -> None:
    assert run(
        "import textwrap, html\n"
        "r = [textwrap.wrap('aaa bbb ccc', 7), textwrap.shorten('Hello big world', 12), textwrap.dedent('  a\\n  b'),\n"
        "     textwrap.indent('a\\nb', '> '), textwrap.fill('x y', 1), html.escape('<a href=\"x\">&'), html.unescape('&lt;&eacute;&#39;')]\n"
    ) == [
        ["aaa bbb", "ccc"],
        "Hello [...]",
        "a\nb",
        "> a\n> b",
        "x\ny",
        "&lt;a href=&quot;x&quot;&gt;&amp;",
        "<é'",
    ]


def test_typing_in_annotations() -> None:
    assert run(
        "from typing import Any, Optional, Dict, List, Callable, TypeVar, cast, TYPE_CHECKING, Literal, Union\n"
        "T = TypeVar('T')\n"
        "def f(x: Optional[int], y: Dict[str, List[Any]], z: Callable[[int], str], w: Literal['a'], v: Union[int, str] = 1) -> List[T]:\n"
        "    return [x]\n"
        "class C:\n    n: Optional[int] = None\n"
        "r = [f(1, {}, str, 'a'), cast(int, 'x'), TYPE_CHECKING, C.n, repr(Optional[int])]\n"
    ) == [[1], "x", False, None, "typing.Optional[int]"]


def test_bisect_heapq_secrets() -> None:
    assert run(
        "import bisect, heapq, secrets\n"
        "l = [1, 3, 5]\nbisect.insort(l, 4)\n"
        "h = []\nheapq.heappush(h, 3)\nheapq.heappush(h, 1)\n"
        "r = [l, bisect.bisect_left(l, 3), heapq.heappop(h), heapq.nlargest(2, [1, 5, 3]), len(secrets.token_hex(8)),\n"
        "     secrets.choice('ab') in 'ab', 0 <= secrets.randbelow(3) < 3, secrets.compare_digest('x', 'x')]\n"
    ) == [[1, 3, 4, 5], 1, 1, [5, 3], 16, True, True, True]


def test_secrets_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError) as info:
        run("import secrets\nr = secrets.randbelow(0)\n")
    assert str(info.value) == "Upper bound must be a positive int."


def test_real_modules_are_untouched_by_plugins() -> None:
    # Shared-module poisoning (070): neither the facade nor the real module changes.
    with pytest.raises(SandboxViolation):
        run("import json\njson.loads = None\nr = 1\n")
    assert SHIMS["json"].loads('"x"') == "x"  # type: ignore[attr-defined]
    assert real_json.loads('"x"') == "x"


# -- typing: inert stand-ins (red-team finding 3) -----------------------------------------


def test_typing_aliases_are_inert_stand_ins() -> None:
    assert run(
        "import typing\n"
        "def f(a: typing.Mapping[str, int], b: typing.Generator[int, None, None] | None = None,\n"
        "      c: typing.Optional[typing.MutableMapping] = None) -> typing.Callable[[int], str]:\n"
        "    return str\n"
        "r = [f({}) is str, repr(typing.Callable[[int], str]), repr(typing.Dict[str, typing.List[int]]),\n"
        "     repr(typing.Tuple[int, ...]), repr(typing.Optional[typing.Mapping]), repr(typing.Mapping | None),\n"
        "     isinstance({}, typing.MutableMapping), isinstance([], typing.Mapping), isinstance((), typing.Sequence),\n"
        "     issubclass(dict, typing.Mapping), isinstance(iter([]), typing.Iterator), isinstance(len, typing.Callable)]\n"
    ) == [
        True,
        "typing.Callable[[int], str]",
        "typing.Dict[str, typing.List[int]]",
        "typing.Tuple[int, ...]",
        "typing.Optional[typing.Mapping]",
        "typing.Optional[typing.Mapping]",
        True,
        False,
        True,
        True,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("Generator", "close"),  # gave plugins GeneratorExit (obj.throw(GeneratorExit))
        ("Generator", "throw"),
        ("MutableMapping", "update"),  # x[k] = v on any x
        ("MutableSequence", "append"),
        ("MutableSet", "add"),
        ("Mapping", "get"),
        ("Dict", "update"),  # dict.update, unbound
        ("List", "append"),
        ("Mapping", "register"),  # ABCMeta.register: process-wide isinstance()
    ],
)
def test_typing_aliases_lead_nowhere(alias: str, name: str) -> None:
    with pytest.raises(AttributeError) as info:
        run(f"import typing\nr = typing.{alias}.{name}\n")
    assert str(info.value) == f'a "AnnotationOnly" object has no attribute "{name}"'
    with pytest.raises(AttributeError) as subscripted:
        run(f"import typing\nr = typing.{alias}[int].{name}\n")
    assert str(subscripted.value) == f'a "AnnotationOnly" object has no attribute "{name}"'


def test_typing_aliases_cannot_be_bases_changed_or_checked_when_subscripted() -> None:
    with pytest.raises(TypeError) as base:
        run("import typing\nclass M(typing.Mapping):\n    pass\n")
    assert (
        str(base.value)
        == "typing.Mapping is for annotations only; sandboxed classes cannot inherit from it"
    )
    with pytest.raises(TypeError) as check:
        run("import typing\nr = isinstance({}, typing.Dict[str, int])\n")
    assert str(check.value) == "Subscripted generics cannot be used with class and instance checks"
    with pytest.raises(TypeError) as twice:
        run("import typing\nr = typing.List[int][str]\n")
    assert str(twice.value) == "typing.List[int] is already subscripted"
    alias = SHIMS["typing"].Mapping  # type: ignore[attr-defined]
    with pytest.raises(AttributeError) as frozen:
        alias.extra = 1
    assert str(frozen.value) == "typing.Mapping is read-only"
