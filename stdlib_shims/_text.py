"""Members of the text-processing shims: json, re, string, textwrap, html, base64, urllib.parse.

Each ``*_members()`` function returns the exact set of names a plugin sees. Rules applied:

* Functions that take a ``cls=`` hook (json) are wrapped so plugins cannot substitute the
  encoder/decoder class: a class hook runs host-chosen machinery on plugin terms and is never
  needed for plain data.
* Flag constants become plain ints: ``re.IGNORECASE`` is an ``enum`` member, and enum members
  reach their class and its machinery through public attributes.
* No module-level containers are exposed (``html.entities.html5``, ``string.Formatter``,
  ``re._cache``...): a reachable host dict or list is writable and shared.
* ``string.Formatter``/``Template`` are left out on purpose: ``Formatter.get_field`` resolves
  ``{0.__class__}`` in stdlib Python, outside every guard (CVE-2026-76825).
"""

from __future__ import annotations

import base64
import html
import json
import re
import string
import textwrap
import urllib.parse
from collections.abc import Callable
from typing import Any


def _json_dumps(
    obj: object,
    *,
    skipkeys: bool = False,
    ensure_ascii: bool = True,
    check_circular: bool = True,
    allow_nan: bool = True,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    default: Callable[[Any], Any] | None = None,
    sort_keys: bool = False,
) -> str:
    """``json.dumps`` without the ``cls`` hook."""
    return json.dumps(
        obj,
        skipkeys=skipkeys,
        ensure_ascii=ensure_ascii,
        check_circular=check_circular,
        allow_nan=allow_nan,
        indent=indent,
        separators=separators,
        default=default,
        sort_keys=sort_keys,
    )


def _json_loads(
    s: str | bytes,
    *,
    object_hook: Callable[[dict[str, Any]], Any] | None = None,
    parse_float: Callable[[str], Any] | None = None,
    parse_int: Callable[[str], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """``json.loads`` without the ``cls`` hook."""
    return json.loads(
        s,
        object_hook=object_hook,
        parse_float=parse_float,
        parse_int=parse_int,
        parse_constant=parse_constant,
        object_pairs_hook=object_pairs_hook,
    )


_json_dumps.__name__ = _json_dumps.__qualname__ = "dumps"
_json_loads.__name__ = _json_loads.__qualname__ = "loads"


def json_members() -> dict[str, object]:
    # No load/dump: they call .read()/.write() on whatever object they are given.
    return {"dumps": _json_dumps, "loads": _json_loads, "JSONDecodeError": json.JSONDecodeError}


def _flags(flags: int) -> int:
    # re.DEBUG makes the compiler print the parsed pattern to sys.stdout: output a plugin
    # must not produce (in a worker, stdout is closed; in-process, it is the host's).
    if flags & re.DEBUG:
        raise ValueError("re.DEBUG is not available in sandboxed plugins")
    return flags


def _re_compile(pattern: Any, flags: int = 0) -> re.Pattern[Any]:
    return re.compile(pattern, _flags(flags))


def _re_search(pattern: Any, string: Any, flags: int = 0) -> re.Match[Any] | None:
    return re.search(pattern, string, _flags(flags))


def _re_match(pattern: Any, string: Any, flags: int = 0) -> re.Match[Any] | None:
    return re.match(pattern, string, _flags(flags))


def _re_fullmatch(pattern: Any, string: Any, flags: int = 0) -> re.Match[Any] | None:
    return re.fullmatch(pattern, string, _flags(flags))


def _re_split(pattern: Any, string: Any, maxsplit: int = 0, flags: int = 0) -> list[Any]:
    return re.split(pattern, string, maxsplit=maxsplit, flags=_flags(flags))


def _re_findall(pattern: Any, string: Any, flags: int = 0) -> list[Any]:
    return re.findall(pattern, string, _flags(flags))


def _re_finditer(pattern: Any, string: Any, flags: int = 0) -> Any:
    return re.finditer(pattern, string, _flags(flags))


def _re_sub(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
    return re.sub(pattern, repl, string, count=count, flags=_flags(flags))


def _re_subn(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
    return re.subn(pattern, repl, string, count=count, flags=_flags(flags))


_RE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "compile": _re_compile,
    "search": _re_search,
    "match": _re_match,
    "fullmatch": _re_fullmatch,
    "split": _re_split,
    "findall": _re_findall,
    "finditer": _re_finditer,
    "sub": _re_sub,
    "subn": _re_subn,
}
for _name, _function in _RE_FUNCTIONS.items():
    _function.__name__ = _function.__qualname__ = _name


def re_members() -> dict[str, object]:
    members: dict[str, object] = dict(_RE_FUNCTIONS)
    members.update({name: getattr(re, name) for name in ("escape", "error", "Pattern", "Match")})
    # int(), not the RegexFlag enum member itself (see the module docstring).
    for flag in ("ASCII", "IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE", "UNICODE"):
        members[flag] = int(getattr(re, flag))
    for short, long in (("A", "ASCII"), ("I", "IGNORECASE"), ("M", "MULTILINE")):
        members[short] = members[long]
    for short, long in (("S", "DOTALL"), ("X", "VERBOSE"), ("U", "UNICODE")):
        members[short] = members[long]
    return members


def string_members() -> dict[str, object]:
    # Constants only: the functions and classes of string (Formatter, Template) resolve
    # fields and names in Python, outside every guard.
    names = (
        "ascii_letters",
        "ascii_lowercase",
        "ascii_uppercase",
        "digits",
        "hexdigits",
        "octdigits",
        "punctuation",
        "printable",
        "whitespace",
    )
    return {name: getattr(string, name) for name in names}


def textwrap_members() -> dict[str, object]:
    return {
        name: getattr(textwrap, name) for name in ("wrap", "fill", "shorten", "dedent", "indent")
    }


def html_members() -> dict[str, object]:
    return {"escape": html.escape, "unescape": html.unescape}


def base64_members() -> dict[str, object]:
    names = (
        "b64encode",
        "b64decode",
        "standard_b64encode",
        "standard_b64decode",
        "urlsafe_b64encode",
        "urlsafe_b64decode",
        "b32encode",
        "b32decode",
        "b32hexencode",
        "b32hexdecode",
        "b16encode",
        "b16decode",
        "b85encode",
        "b85decode",
        "a85encode",
        "a85decode",
        "encodebytes",
        "decodebytes",
    )
    return {name: getattr(base64, name) for name in names}


def urllib_parse_members() -> dict[str, object]:
    # Pure string functions. Results are named tuples (ParseResult...) with plain fields.
    names = (
        "urlparse",
        "urlsplit",
        "urlunparse",
        "urlunsplit",
        "urljoin",
        "urldefrag",
        "urlencode",
        "quote",
        "quote_plus",
        "quote_from_bytes",
        "unquote",
        "unquote_plus",
        "unquote_to_bytes",
        "parse_qs",
        "parse_qsl",
    )
    return {name: getattr(urllib.parse, name) for name in names}
