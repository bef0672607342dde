"""Every shim works *inside a confined worker* (after seccomp: no files, no lazy imports).

One sandboxed plugin exercises each shim from a route; the host computes the same values
with the real standard library and compares. A shim whose implementation lazily imported
a module or touched the filesystem after confinement would fail here with a
SandboxViolation or a PermissionError, not silently.
"""

from __future__ import annotations

import bisect
import datetime
import decimal
import hashlib
import heapq
import hmac
import html
import itertools
import json
import math
import re
import statistics
import string
import textwrap
import time
import urllib.parse
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Iterator
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

import emdash

PLUGIN = """
import base64, bisect, datetime, decimal, hashlib, heapq, hmac, html, itertools, json, math
import random, re, secrets, statistics, string, textwrap, time, uuid
import urllib.parse
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
from functools import reduce, lru_cache, partial, cmp_to_key
from typing import Any, Optional
from emdash import define_plugin

def r_json(r, ctx):
    return [json.dumps({"b": 1, "a": [1, 2]}, sort_keys=True), json.loads('{"x": [true, null]}')]

def r_math(r, ctx):
    return [math.sqrt(2), math.floor(2.7), math.gcd(12, 18), math.isclose(0.1 + 0.2, 0.3), math.pi]

def r_re(r, ctx):
    pat = re.compile(r"(\\w+)@(\\w+)\\.com")
    m = pat.search("mail bob@example.com now")
    return [m.group(1), m.groups(), re.sub(r"\\s+", "-", "a  b   c"), re.findall(r"\\d+", "a1b22c333"),
            re.split(",", "x,y"), bool(re.fullmatch("[a-z]+", "abc", re.IGNORECASE))]

def r_datetime(r, ctx):
    d = datetime.datetime.strptime("2026-11-22 05:33:24", "%Y-%m-%d %H:%M:%S")
    u = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    return [d.isoformat(), (d + datetime.timedelta(days=3)).strftime("%A %d %B"),
            u.isoformat(), datetime.date(2024, 2, 29).weekday(),
            datetime.datetime.fromisoformat("2026-11-22T05:33:24+00:00").timestamp()]

def r_time(r, ctx):
    t1 = time.monotonic()
    t2 = time.monotonic()
    return [t2 >= t1, time.time() > 1.7e9, time.strftime("%Y", time.gmtime(0)),
            list(time.strptime("2026-11-22", "%Y-%m-%d"))[:3]]

def r_random(r, ctx):
    rng_values = [random.random() for i in range(3)]
    return [all(0 <= v < 1 for v in rng_values), random.randint(1, 1) , len(secrets.token_hex(8)),
            sorted(random.sample(range(10), 10)) == list(range(10))]

def r_string(r, ctx):
    return [string.ascii_lowercase, string.digits, string.punctuation]

def r_itertools(r, ctx):
    return [list(itertools.chain([1], [2, 3])), list(itertools.islice(itertools.count(5), 3)),
            [list(g) for k, g in itertools.groupby("aabbbc")], list(itertools.permutations([1, 2])),
            list(itertools.accumulate([1, 2, 3]))]

def r_functools(r, ctx):
    @lru_cache(maxsize=None)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)
    add3 = partial(lambda a, b: a + b, 3)
    return [reduce(lambda a, b: a * b, [1, 2, 3, 4]), fib(30), add3(4),
            sorted([3, 1, 2], key=cmp_to_key(lambda a, b: b - a))]

def r_collections(r, ctx):
    c = Counter("abracadabra")
    d = defaultdict(list)
    d["k"].append(1)
    q = deque([1, 2, 3], maxlen=3)
    q.append(4)
    P = namedtuple("P", "x y")
    o = OrderedDict([("b", 1), ("a", 2)])
    o.move_to_end("b")
    return [c.most_common(2), dict(d), list(q), list(P(1, 2)), list(o)]

def r_hashlib(r, ctx):
    return [hashlib.sha256(b"abc").hexdigest(), hashlib.md5(b"abc").hexdigest(),
            hashlib.blake2b(b"abc", digest_size=8).hexdigest(),
            hmac.new(b"key", b"msg", "sha256").hexdigest(),
            hmac.compare_digest("a", "a")]

def r_base64(r, ctx):
    return [base64.b64encode(b"hello").decode(), base64.urlsafe_b64decode("aGk=").decode(),
            base64.b16encode(b"\\x01\\xff").decode()]

def r_urllib(r, ctx):
    u = urllib.parse.urlparse("https://ex.com:8080/p/a?q=1&q=2#frag")
    return [u.hostname, u.port, u.path, urllib.parse.parse_qs(u.query),
            urllib.parse.urlencode({"a": "b c"}), urllib.parse.quote("a b/c"),
            urllib.parse.urljoin("https://ex.com/a/b", "../c")]

def r_uuid(r, ctx):
    return [str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")), len(str(uuid.uuid4())),
            uuid.UUID("12345678123456781234567812345678").hex]

def r_decimal(r, ctx):
    return [str(decimal.Decimal("1.10") + decimal.Decimal("2.205")),
            str(decimal.Decimal("10") / decimal.Decimal("4")),
            str(decimal.Decimal("2.675").quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP))]

def r_statistics(r, ctx):
    data = [1, 2, 2, 3, 4, 7]
    return [statistics.mean(data), statistics.median(data), statistics.mode(data),
            statistics.pstdev(data)]

def r_textwrap(r, ctx):
    return [textwrap.wrap("the quick brown fox jumps", 10), textwrap.dedent("  a\\n  b"),
            textwrap.shorten("Hello world of plugins", width=15)]

def r_html(r, ctx):
    return [html.escape("<a href='x'>&</a>"), html.unescape("&lt;&amp;&#39;")]

def r_heapq_bisect(r, ctx):
    h = [5, 1, 4]
    heapq.heapify(h)
    first = heapq.heappop(h)
    xs = [1, 3, 5]
    bisect.insort(xs, 4)
    return [first, heapq.nlargest(2, [3, 9, 1, 7]), bisect.bisect_left(xs, 4), xs]

plugin = define_plugin(routes={
    "json": r_json, "math": r_math, "re": r_re, "datetime": r_datetime, "time": r_time,
    "random": r_random, "string": r_string, "itertools": r_itertools, "functools": r_functools,
    "collections": r_collections, "hashlib": r_hashlib, "base64": r_base64, "urllib": r_urllib,
    "uuid": r_uuid, "decimal": r_decimal, "statistics": r_statistics, "textwrap": r_textwrap,
    "html": r_html, "heapq_bisect": r_heapq_bisect,
})
"""


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _expected() -> dict[str, Any]:
    d = datetime.datetime.strptime("2026-11-22 05:33:24", "%Y-%m-%d %H:%M:%S")
    pat = re.compile(r"(\w+)@(\w+)\.com")
    m = pat.search("mail bob@example.com now")
    assert m is not None
    counter = Counter("abracadabra")
    q = deque([1, 2, 3], maxlen=3)
    q.append(4)
    o = OrderedDict([("b", 1), ("a", 2)])
    o.move_to_end("b")
    dd: defaultdict[str, list[int]] = defaultdict(list)
    dd["k"].append(1)
    u = urllib.parse.urlparse("https://ex.com:8080/p/a?q=1&q=2#frag")
    data = [1, 2, 2, 3, 4, 7]
    h = [5, 1, 4]
    heapq.heapify(h)
    xs = [1, 3, 5]
    bisect.insort(xs, 4)
    return {
        "json": [json.dumps({"b": 1, "a": [1, 2]}, sort_keys=True), {"x": [True, None]}],
        "math": [math.sqrt(2), 2, 6, math.isclose(0.1 + 0.2, 0.3), math.pi],
        "re": [m.group(1), list(m.groups()), "a-b-c", ["1", "22", "333"], ["x", "y"], True],
        "datetime": [
            d.isoformat(),
            (d + datetime.timedelta(days=3)).strftime("%A %d %B"),
            "2026-01-02T03:04:05+00:00",
            datetime.date(2024, 2, 29).weekday(),
            datetime.datetime.fromisoformat("2026-11-22T05:33:24+00:00").timestamp(),
        ],
        "time": [True, True, time.strftime("%Y", time.gmtime(0)), [2026, 11, 22]],
        "random": [True, 1, 16, True],
        "string": [string.ascii_lowercase, string.digits, string.punctuation],
        "itertools": [
            [1, 2, 3],
            [5, 6, 7],
            [list(g) for _, g in itertools.groupby("aabbbc")],
            [list(p) for p in itertools.permutations([1, 2])],
            [1, 3, 6],
        ],
        "functools": [reduce(lambda a, b: a * b, [1, 2, 3, 4]), _fib(30), 7, [3, 2, 1]],
        "collections": [
            [list(x) for x in counter.most_common(2)],
            dict(dd),
            list(q),
            [1, 2],
            list(o),
        ],
        "hashlib": [
            hashlib.sha256(b"abc").hexdigest(),
            hashlib.md5(b"abc").hexdigest(),
            hashlib.blake2b(b"abc", digest_size=8).hexdigest(),
            hmac.new(b"key", b"msg", "sha256").hexdigest(),
            True,
        ],
        "base64": ["aGVsbG8=", "hi", "01FF"],
        "urllib": [
            u.hostname,
            u.port,
            u.path,
            urllib.parse.parse_qs(u.query),
            urllib.parse.urlencode({"a": "b c"}),
            urllib.parse.quote("a b/c"),
            urllib.parse.urljoin("https://ex.com/a/b", "../c"),
        ],
        "uuid": [
            str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")),
            36,
            uuid.UUID("12345678123456781234567812345678").hex,
        ],
        "decimal": [
            str(decimal.Decimal("1.10") + decimal.Decimal("2.205")),
            str(decimal.Decimal("10") / decimal.Decimal("4")),
            str(
                decimal.Decimal("2.675").quantize(
                    decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP
                )
            ),
        ],
        "statistics": [
            statistics.mean(data),
            statistics.median(data),
            statistics.mode(data),
            statistics.pstdev(data),
        ],
        "textwrap": [
            textwrap.wrap("the quick brown fox jumps", 10),
            textwrap.dedent("  a\n  b"),
            textwrap.shorten("Hello world of plugins", width=15),
        ],
        "html": [html.escape("<a href='x'>&</a>"), html.unescape("&lt;&amp;&#39;")],
        "heapq_bisect": [1, heapq.nlargest(2, [3, 9, 1, 7]), bisect.bisect_left(xs, 4), xs],
    }


EXPECTED = _expected()


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emdash.Runtime]:
    path: Path = tmp_path_factory.mktemp("shims") / "site.db"
    with emdash.Runtime(path) as runtime:
        runtime.add_plugin(
            {"id": "shims", "limits": {"cpu_ms": 2000}},
            source={"plugin.py": PLUGIN},
            trusted=False,
        )
        assert runtime.get_plugin("shims").sandboxed
        yield runtime


@pytest.mark.parametrize("route", sorted(EXPECTED))
def test_shim_works_in_a_confined_worker(rt: emdash.Runtime, route: str) -> None:
    assert rt.invoke_route("shims", route) == EXPECTED[route]
