"""Import and warm up everything the shims may otherwise load lazily.

A sandboxed worker runs under a seccomp allowlist without file-system access. Anything the
standard library imports or reads on first use must therefore already be in memory when the
worker is forked (escape corpus 073/074): codec modules (``str.encode(name)`` imports
``encodings.<name>``), ``unicodedata``/``stringprep`` (IDNA, ``urllib.parse``'s netloc
check), ``_strptime`` with its locale tables, the local time zone (``time.localtime`` reads
``/etc/localtime`` once), and OpenSSL's digest implementations (fetched on first use).
"""

from __future__ import annotations

import codecs
import datetime
import decimal
import hashlib
import hmac
import html
import importlib
import json
import pkgutil
import re
import statistics
import textwrap
import time
import urllib.parse
import uuid

from ._crypto import hashlib_constructors

_done = False


def _preload_codecs() -> None:
    import encodings

    for info in pkgutil.iter_modules(encodings.__path__):
        try:
            importlib.import_module(f"encodings.{info.name}")
        except Exception:  # noqa: S112 - mbcs/oem/cp65001 exist only on Windows
            continue
    # The first lookup of a name fills the codec registry's cache.
    for name in ("utf-8", "ascii", "latin-1", "utf-16", "utf-32", "idna", "punycode", "cp1252"):
        codecs.lookup(name)
    "bücher.example".encode("idna")
    import stringprep  # noqa: F401 - used by the idna codec
    import unicodedata  # noqa: F401 - used by idna and urllib.parse._checknetloc


def _preload_time() -> None:
    importlib.import_module("_strptime")  # imported from C by datetime/time.strptime
    import calendar  # noqa: F401 - used by _strptime
    import locale  # noqa: F401 - used by _strptime

    datetime.datetime.strptime("2024-02-03 04:05:06", "%Y-%m-%d %H:%M:%S")
    time.strptime("2024-02-03", "%Y-%m-%d")
    time.localtime()
    time.strftime("%a %b %c %Z")
    datetime.datetime.now().astimezone()


def _preload_misc() -> None:
    for name in hashlib_constructors():
        digest = getattr(hashlib, name)(b"warm-up")
        if name.startswith("shake"):
            digest.hexdigest(8)
        else:
            digest.hexdigest()
    hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1)
    hmac.new(b"key", b"msg", "sha256").hexdigest()
    hmac.digest(b"key", b"msg", "sha256")
    uuid.uuid4()
    uuid.uuid5(uuid.NAMESPACE_DNS, "example.org")
    uuid.uuid3(uuid.NAMESPACE_DNS, "example.org")
    decimal.Decimal(1) / decimal.Decimal(3)
    statistics.mean([1, 2, 3])
    statistics.median([1.5, 2.5])
    json.loads(json.dumps({"a": [1, 2.5, None]}))
    re.compile(r"(?P<x>\w+)\s*", re.I | re.M).sub(r"\g<x>", "warm up")
    urllib.parse.urlsplit("https://bücher.example/p?q=1")
    urllib.parse.quote("ä b")
    urllib.parse.urlencode({"a": "b c"})
    textwrap.fill("warm up " * 20, width=30)
    html.unescape("&amp;&eacute;")


def preload() -> None:
    """Load everything the shims may need later; idempotent, call once before forking."""
    global _done
    if _done:
        return
    _preload_codecs()
    _preload_time()
    _preload_misc()
    _done = True
