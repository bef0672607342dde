"""ctx members are built on first use and kept; flat call parameters take a copying fast path.

Both are performance changes that must not change what a handler sees or what reaches the
bridge: the assertions here are about identity, exact types and equality with the general
(JSON round trip) path.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from emdash._shared._context import _plain, make_context

INFO = {
    "plugin": {"id": "hello", "version": "1.2.3"},
    "capabilities": [],
    "storage": ["events"],
    "site": {
        "name": "Site",
        "url": "https://example.com/",
        "locale": "en",
        "trailingSlash": "ignore",
    },
}
MEMBERS = (
    "plugin",
    "site",
    "storage",
    "kv",
    "content",
    "media",
    "http",
    "users",
    "taxonomies",
    "cron",
    "email",
    "log",
)


def no_calls(method: str, params: dict[str, Any]) -> Any:
    raise AssertionError(f"unexpected call {method}")


@pytest.mark.parametrize("name", MEMBERS)
def test_each_member_is_one_object_for_the_whole_invocation(name: str) -> None:
    ctx = make_context(no_calls, INFO)
    assert getattr(ctx, name) is getattr(ctx, name)


@pytest.mark.parametrize("name", MEMBERS)
def test_members_cannot_be_replaced_or_deleted(name: str) -> None:
    ctx = make_context(no_calls, INFO)
    with pytest.raises(AttributeError):
        setattr(ctx, name, object())
    with pytest.raises(AttributeError):
        delattr(ctx, name)


def test_each_invocation_gets_fresh_members() -> None:
    first, second = make_context(no_calls, INFO), make_context(no_calls, INFO)
    for name in MEMBERS:
        assert getattr(first, name) is not getattr(second, name)


def test_members_built_late_still_read_the_info_given_at_creation() -> None:
    info = json.loads(json.dumps(INFO))
    ctx = make_context(no_calls, info)
    assert (ctx.plugin.id, ctx.plugin.version) == ("hello", "1.2.3")
    assert ctx.site.url == "https://example.com"
    assert repr(ctx.storage.events) == "<ctx.storage['events']>"


class Text(str):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize(
    "params",
    [
        {"key": "k"},
        {"collection": "events", "id": "e1"},
        {"n": 3, "flag": True, "none": None, "text": "é\udcff"},
        {"key": Text("k")},  # a str subclass: not flat, takes the round trip
        {"value": {"a": [1, 2.5]}, "key": "k"},
        {"big": 10**30},
    ],
)
def test_fast_path_gives_what_the_json_round_trip_gives(params: dict[str, Any]) -> None:
    out = _plain("kv/set", params)
    expected = json.loads(json.dumps(params))
    assert out == expected
    assert out is not params
    for value in out.values():
        assert type(value) in (str, int, bool, type(None), dict, list, float)
