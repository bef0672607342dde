"""The ctx object: what each member sends, coercion of hostile arguments, and hygiene.

The ``call`` primitive is the edge of the ctx (natively the bridge, in a worker the RPC);
here it is a recording spy so each test sees exactly what would cross.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from emdash._shared._context import HttpResponse, ResponseHeaders, make_context
from emdash._shared._errors import BridgeError

INFO = {
    "plugin": {"id": "hello", "version": "1.2.3"},
    "capabilities": ["content:read"],
    "storage": ["events", "logs"],
    "site": {
        "name": "My Site",
        "url": "https://example.test/",
        "locale": "de",
        "trailingSlash": "never",
    },
}


class Spy:
    """Records every call and answers with a canned result per method."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers = answers or {}

    def __call__(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append((method, params))
        return self.answers.get(method)


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def ctx(spy: Spy) -> Any:
    return make_context(spy, INFO)


def only_call(spy: Spy) -> tuple[str, dict[str, Any]]:
    assert len(spy.calls) == 1
    return spy.calls[0]


# --- what each member sends --------------------------------------------------------------

CASES: list[tuple[str, Any, str, dict[str, Any]]] = [
    ("kv.get", lambda c: c.kv.get("k"), "kv/get", {"key": "k"}),
    (
        "kv.set",
        lambda c: c.kv.set("k", {"a": [1, 2.5, None, True]}),
        "kv/set",
        {"key": "k", "value": {"a": [1, 2.5, None, True]}},
    ),
    ("kv.delete", lambda c: c.kv.delete("k"), "kv/delete", {"key": "k"}),
    ("kv.list", lambda c: c.kv.list(), "kv/list", {"prefix": ""}),
    ("kv.list prefix", lambda c: c.kv.list("settings:"), "kv/list", {"prefix": "settings:"}),
    (
        "storage.get",
        lambda c: c.storage["events"].get("e1"),
        "storage/get",
        {"collection": "events", "id": "e1"},
    ),
    (
        "storage.put",
        lambda c: c.storage.events.put("e1", {"t": 1}),
        "storage/put",
        {"collection": "events", "id": "e1", "data": {"t": 1}},
    ),
    (
        "storage.delete",
        lambda c: c.storage.events.delete("e1"),
        "storage/delete",
        {"collection": "events", "id": "e1"},
    ),
    (
        "storage.exists",
        lambda c: c.storage.events.exists("e1"),
        "storage/exists",
        {"collection": "events", "id": "e1"},
    ),
    (
        "storage.put_many",
        lambda c: c.storage.events.put_many([{"id": "a", "data": 1}]),
        "storage/putMany",
        {"collection": "events", "items": [{"id": "a", "data": 1}]},
    ),
    (
        "storage.delete_many",
        lambda c: c.storage.events.delete_many(["a", "b"]),
        "storage/deleteMany",
        {"collection": "events", "ids": ["a", "b"]},
    ),
    (
        "storage.query",
        lambda c: c.storage.events.query(
            where={"type": "x"}, order_by={"t": "desc"}, limit=5, cursor="cur"
        ),
        "storage/query",
        {
            "collection": "events",
            "where": {"type": "x"},
            "orderBy": {"t": "desc"},
            "limit": 5,
            "cursor": "cur",
        },
    ),
    (
        "storage.query bare",
        lambda c: c.storage.events.query(),
        "storage/query",
        {"collection": "events"},
    ),
    (
        "storage.count",
        lambda c: c.storage.events.count(),
        "storage/count",
        {"collection": "events"},
    ),
    (
        "storage.count where",
        lambda c: c.storage.events.count({"type": "x"}),
        "storage/count",
        {"collection": "events", "where": {"type": "x"}},
    ),
    (
        "content.get",
        lambda c: c.content.get("posts", "p1"),
        "content/get",
        {"collection": "posts", "id": "p1"},
    ),
    (
        "content.list",
        lambda c: c.content.list("posts", limit=10, cursor="c"),
        "content/list",
        {"collection": "posts", "limit": 10, "cursor": "c"},
    ),
    (
        "content.create",
        lambda c: c.content.create("posts", {"title": "T"}),
        "content/create",
        {"collection": "posts", "data": {"title": "T"}},
    ),
    (
        "content.create locale",
        lambda c: c.content.create("posts", {"title": "T"}, locale="fr"),
        "content/create",
        {"collection": "posts", "data": {"title": "T"}, "options": {"locale": "fr"}},
    ),
    (
        "content.update",
        lambda c: c.content.update("posts", "p1", {"title": "U"}),
        "content/update",
        {"collection": "posts", "id": "p1", "data": {"title": "U"}},
    ),
    (
        "content.delete",
        lambda c: c.content.delete("posts", "p1"),
        "content/delete",
        {"collection": "posts", "id": "p1"},
    ),
    (
        "content.create_many",
        lambda c: c.content.create_many("posts", [{"title": "A"}]),
        "content/createMany",
        {"collection": "posts", "items": [{"title": "A"}]},
    ),
    (
        "content.update_many",
        lambda c: c.content.update_many("posts", [{"id": "p", "data": {}}]),
        "content/updateMany",
        {"collection": "posts", "items": [{"id": "p", "data": {}}]},
    ),
    (
        "content.delete_many",
        lambda c: c.content.delete_many("posts", ["p"]),
        "content/deleteMany",
        {"collection": "posts", "ids": ["p"]},
    ),
    ("media.get", lambda c: c.media.get("m1"), "media/get", {"id": "m1"}),
    (
        "media.list",
        lambda c: c.media.list(limit=3, mime_type="image/"),
        "media/list",
        {"limit": 3, "mimeType": "image/"},
    ),
    ("media.delete", lambda c: c.media.delete("m1"), "media/delete", {"id": "m1"}),
    ("users.get", lambda c: c.users.get("u1"), "users/get", {"id": "u1"}),
    (
        "users.get_by_email",
        lambda c: c.users.get_by_email("A@B.test"),
        "users/getByEmail",
        {"email": "A@B.test"},
    ),
    (
        "users.list",
        lambda c: c.users.list(role=40, limit=2),
        "users/list",
        {"role": 40, "limit": 2},
    ),
    ("taxonomies.get_all", lambda c: c.taxonomies.get_all(), "taxonomy/list", {}),
    (
        "taxonomies.get_terms",
        lambda c: c.taxonomies.get_terms("tags", locale="en"),
        "taxonomy/terms",
        {"taxonomy": "tags", "locale": "en"},
    ),
    (
        "taxonomies.get_entry_terms",
        lambda c: c.taxonomies.get_entry_terms("posts", "p1", taxonomy="tags"),
        "taxonomy/entryTerms",
        {"collection": "posts", "entryId": "p1", "taxonomy": "tags"},
    ),
    (
        "cron.schedule",
        lambda c: c.cron.schedule("daily", "@daily", {"n": 1}),
        "cron/schedule",
        {"name": "daily", "schedule": "@daily", "data": {"n": 1}},
    ),
    (
        "cron.schedule bare",
        lambda c: c.cron.schedule("once", "2030-01-01T00:00:00Z"),
        "cron/schedule",
        {"name": "once", "schedule": "2030-01-01T00:00:00Z"},
    ),
    (
        "cron.schedule emdash options",
        lambda c: c.cron.schedule("daily", {"schedule": "@daily", "data": {"n": 1}}),
        "cron/schedule",
        {"name": "daily", "schedule": "@daily", "data": {"n": 1}},
    ),
    (
        "cron.schedule emdash options bare",
        lambda c: c.cron.schedule("once", {"schedule": "2030-01-01T00:00:00Z"}),
        "cron/schedule",
        {"name": "once", "schedule": "2030-01-01T00:00:00Z"},
    ),
    ("cron.cancel", lambda c: c.cron.cancel("daily"), "cron/cancel", {"name": "daily"}),
    ("cron.list", lambda c: c.cron.list(), "cron/list", {}),
    (
        "email.send",
        lambda c: c.email.send({"to": "a@b.test", "subject": "S", "text": "T"}),
        "email/send",
        {"message": {"to": "a@b.test", "subject": "S", "text": "T"}},
    ),
    (
        "log.info",
        lambda c: c.log.info("hi", {"id": 1}),
        "log",
        {"level": "info", "msg": "hi", "data": {"id": 1}},
    ),
    ("log.debug", lambda c: c.log.debug("d"), "log", {"level": "debug", "msg": "d"}),
    ("log.warn", lambda c: c.log.warn("w"), "log", {"level": "warn", "msg": "w"}),
    ("log.warning", lambda c: c.log.warning("w"), "log", {"level": "warn", "msg": "w"}),
    ("log.error", lambda c: c.log.error("e"), "log", {"level": "error", "msg": "e"}),
]


@pytest.mark.parametrize(("name", "action", "method", "params"), CASES, ids=[c[0] for c in CASES])
def test_member_sends_wire_call(
    spy: Spy, ctx: Any, name: str, action: Any, method: str, params: dict[str, Any]
) -> None:
    spy.answers = {"storage/deleteMany": 2, "content/deleteMany": 1, "storage/count": 0}
    action(ctx)
    assert only_call(spy) == (method, params)


def test_results_are_returned_as_plain_data(spy: Spy, ctx: Any) -> None:
    spy.answers = {
        "kv/get": {"a": 1},
        "kv/delete": True,
        "storage/exists": False,
        "storage/count": 7,
        "storage/getMany": [["__proto__", {"x": 1}], ["b", None]],
        "storage/query": {"items": [{"id": "a", "data": 1}], "hasMore": False},
    }
    assert ctx.kv.get("k") == {"a": 1}
    assert ctx.kv.delete("k") is True
    assert ctx.storage.events.exists("x") is False
    assert ctx.storage.events.count() == 7
    # Pairs become a dict; an id like "__proto__" is just a key.
    assert ctx.storage.events.get_many(["__proto__", "b"]) == {"__proto__": {"x": 1}, "b": None}
    assert ctx.storage.events.query() == {"items": [{"id": "a", "data": 1}], "hasMore": False}


def test_media_upload_sends_base64_of_exactly_the_bytes(spy: Spy, ctx: Any) -> None:
    data = bytes(range(256))
    view = memoryview(b"xx" + data + b"yy")[2:-2]
    for given in (data, bytearray(data), view):
        spy.calls.clear()
        ctx.media.upload("a.png", "image/png", given)
        method, params = only_call(spy)
        assert method == "media/upload"
        assert params == {
            "filename": "a.png",
            "contentType": "image/png",
            "bytes": base64.b64encode(data).decode(),
            "encoding": "base64",
        }
    with pytest.raises(BridgeError) as info:
        ctx.media.upload("a.png", "image/png", "not bytes")
    assert str(info.value) == "media.upload: data must be bytes, got str"


def test_get_upload_url_is_never_available(ctx: Any, spy: Spy) -> None:
    with pytest.raises(BridgeError) as info:
        ctx.media.get_upload_url("a.png", "image/png")
    assert str(info.value).startswith(
        "getUploadUrl is not available in sandbox mode. Use media.upload(filename, contentType, bytes) instead"
    )
    assert spy.calls == []


# --- coercion of hostile arguments ---------------------------------------------------------


class LyingStr(str):
    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __str__(self) -> str:
        return "lie"

    def lower(self) -> str:
        return "lie"


class LyingDict(dict):  # type: ignore[type-arg]
    def keys(self) -> Any:
        return ["forged"]

    def __getitem__(self, key: Any) -> Any:
        return "forged"


class BigInt(int):
    def __repr__(self) -> str:
        return "999"

    def __str__(self) -> str:
        return "999"


def assert_exact(value: Any) -> None:
    """Every node is an exact builtin JSON type."""
    assert type(value) in (dict, list, str, int, float, bool, type(None)), type(value)
    if type(value) is dict:
        for k, v in value.items():
            assert type(k) is str
            assert_exact(v)
    elif type(value) is list:
        for v in value:
            assert_exact(v)


def test_str_dict_and_int_subclasses_arrive_as_plain_data(spy: Spy, ctx: Any) -> None:
    ctx.kv.set(LyingStr("real-key"), LyingDict({"a": LyingStr("x"), "n": BigInt(5)}))
    method, params = only_call(spy)
    assert_exact(params)
    assert params == {"key": "real-key", "value": {"a": "x", "n": 5}}
    assert type(params["key"]) is str


def test_storage_name_subclass_cannot_pass_as_a_declared_collection(spy: Spy, ctx: Any) -> None:
    # A str whose __eq__ says "equal to everything" is judged by its characters.
    with pytest.raises(BridgeError) as info:
        ctx.storage[LyingStr("secrets")].get("x")
    assert str(info.value) == (
        "Storage collection not declared: secrets (declare it under [storage] in the plugin descriptor)"
    )
    ctx.storage[LyingStr("events")].get("x")
    assert only_call(spy) == ("storage/get", {"collection": "events", "id": "x"})
    assert type(spy.calls[0][1]["collection"]) is str


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda c: c.kv.set("k", {1, 2}), "kv/set: arguments must be JSON data"),
        (lambda c: c.kv.set("k", float("nan")), "kv/set: arguments must be JSON data"),
        (lambda c: c.kv.set("k", object()), "kv/set: arguments must be JSON data"),
        (lambda c: c.log.info("m", b"bytes"), "log: arguments must be JSON data"),
    ],
)
def test_non_json_arguments_are_refused_before_sending(
    spy: Spy, ctx: Any, action: Any, message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        action(ctx)
    assert str(info.value).startswith(message)
    assert spy.calls == []


def test_self_referencing_data_is_refused(spy: Spy, ctx: Any) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(BridgeError, match="^kv/set: arguments must be JSON data"):
        ctx.kv.set("k", loop)
    assert spy.calls == []


# --- storage accessor ----------------------------------------------------------------------


def test_undeclared_collection_is_refused_by_item_and_attribute(spy: Spy, ctx: Any) -> None:
    expected = "Storage collection not declared: secrets (declare it under [storage] in the plugin descriptor)"
    with pytest.raises(BridgeError) as info:
        ctx.storage["secrets"]
    assert str(info.value) == expected
    with pytest.raises(BridgeError) as info:
        _ = ctx.storage.secrets
    assert str(info.value) == expected
    with pytest.raises(BridgeError) as info:
        ctx.storage[3]
    assert str(info.value) == "A storage collection name must be a string, got int"
    assert spy.calls == []


def test_storage_getattr_never_exposes_hidden_objects(ctx: Any) -> None:
    with pytest.raises(AttributeError) as info:
        _ = ctx.storage._hidden
    # CPython may fill in .obj with the object looked up on (ctx.storage itself, already
    # in the plugin's hands); it is never a hidden object behind it.
    assert info.value.obj is None or info.value.obj is ctx.storage
    assert str(info.value) == "_hidden"


# --- hygiene: nothing private reachable, nothing enumerable ------------------------------------


def reachable(root: Any, depth: int = 4) -> list[Any]:
    """Every object reachable from ``root`` through non-underscore attributes."""
    seen: dict[int, Any] = {}
    frontier = [root]
    for _ in range(depth):
        nxt = []
        for obj in frontier:
            for name in dir(obj):
                if name.startswith("_"):
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:
                    continue
                if id(value) not in seen:
                    seen[id(value)] = value
                    nxt.append(value)
        frontier = nxt
    return list(seen.values())


def test_no_private_state_is_reachable(spy: Spy) -> None:
    info = json.loads(json.dumps(INFO))
    ctx = make_context(spy, info)
    objects = reachable(ctx)
    assert objects, "the walk found the members"
    for obj in objects:
        assert obj is not spy
        assert obj is not info and obj is not info["site"] and obj is not info["storage"]
        assert type(obj) not in (dict, list, tuple, set), (type(obj), obj)
    assert not any(type(o).__name__ == "partial" for o in objects)


def test_every_ctx_object_uses_slots_and_rejects_new_attributes(ctx: Any) -> None:
    members = [
        ctx,
        ctx.plugin,
        ctx.site,
        ctx.kv,
        ctx.storage,
        ctx.storage.events,
        ctx.content,
        ctx.media,
        ctx.http,
        ctx.users,
        ctx.taxonomies,
        ctx.cron,
        ctx.email,
        ctx.log,
    ]
    for obj in members:
        assert not hasattr(obj, "__dict__"), type(obj)
        with pytest.raises(AttributeError):
            obj.smuggled = 1


def test_ctx_objects_are_not_iterable_and_repr_is_opaque(ctx: Any) -> None:
    for obj in (ctx, ctx.kv, ctx.storage, ctx.storage.events, ctx.http, ctx.log):
        with pytest.raises(TypeError):
            iter(obj)
    assert repr(ctx) == "<ctx of plugin hello>"
    assert repr(ctx.kv) == "<ctx.kv>"
    assert repr(ctx.storage) == "<ctx.storage>"
    assert repr(ctx.storage.events) == "<ctx.storage['events']>"
    assert repr(ctx.site) == "<ctx.site>"


# --- plugin, site, url ---------------------------------------------------------------------


def test_plugin_and_site_info(ctx: Any) -> None:
    assert (ctx.plugin.id, ctx.plugin.version) == ("hello", "1.2.3")
    assert (ctx.site.name, ctx.site.url, ctx.site.locale, ctx.site.trailing_slash) == (
        "My Site",
        "https://example.test",
        "de",
        "never",
    )


def test_missing_info_gets_defaults(spy: Spy) -> None:
    ctx = make_context(spy, {"plugin": {"id": "p"}})
    assert ctx.plugin.version == "0.0.0"
    assert (ctx.site.name, ctx.site.url, ctx.site.locale, ctx.site.trailing_slash) == (
        "",
        "",
        "en",
        "ignore",
    )
    assert ctx.url("/x") == "/x"


def test_url(ctx: Any, spy: Spy) -> None:
    assert ctx.url("/blog/post") == "https://example.test/blog/post"
    assert ctx.url(LyingStr("/a")) == "https://example.test/a"
    with pytest.raises(BridgeError) as info:
        ctx.url("blog")
    assert str(info.value) == 'URL path must start with "/", got: "blog"'
    with pytest.raises(BridgeError) as info:
        ctx.url("//evil.test/x")
    assert str(info.value) == 'URL path must not be protocol-relative, got: "//evil.test/x"'
    with pytest.raises(BridgeError) as info:
        ctx.url(None)
    assert str(info.value) == "ctx.url: path must be a string, got NoneType"
    assert spy.calls == []


# --- http ----------------------------------------------------------------------------------

REPLY = {
    "status": 201,
    "statusText": "Created",
    "headers": [
        ["Content-Type", "text/plain; charset=latin-1"],
        ["set-cookie", "a=1"],
        ["Set-Cookie", "b=2"],
    ],
    "bodyBase64": base64.b64encode("héllo".encode("latin-1")).decode(),
}


def test_fetch_marshals_the_request(spy: Spy, ctx: Any) -> None:
    spy.answers = {"http/fetch": REPLY}
    ctx.http.fetch("https://api.test/x")
    assert only_call(spy) == (
        "http/fetch",
        {"url": "https://api.test/x", "init": {"method": "GET", "headers": []}},
    )

    spy.calls.clear()
    ctx.http.fetch("https://api.test/x", method="POST", headers={"X-A": "1"}, body="text")
    assert only_call(spy)[1]["init"] == {
        "method": "POST",
        "headers": [["X-A", "1"]],
        "bodyType": "string",
        "body": "text",
    }

    spy.calls.clear()
    ctx.http.fetch(
        "https://api.test/x", method="PUT", headers=[("X-A", "1"), ("X-A", "2")], body=b"\x00\xff"
    )
    assert only_call(spy)[1]["init"] == {
        "method": "PUT",
        "headers": [["X-A", "1"], ["X-A", "2"]],
        "bodyType": "base64",
        "body": "AP8=",
    }

    spy.calls.clear()
    ctx.http.fetch("https://api.test/x", method="POST", json={"a": [1]})
    assert only_call(spy)[1]["init"] == {
        "method": "POST",
        "headers": [["content-type", "application/json"]],
        "bodyType": "string",
        "body": '{"a": [1]}',
    }

    spy.calls.clear()
    ctx.http.fetch(
        "https://api.test/x",
        method="POST",
        json=1,
        headers={"Content-Type": "application/vnd+json"},
    )
    assert only_call(spy)[1]["init"]["headers"] == [["Content-Type", "application/vnd+json"]]


def test_fetch_form_data_is_url_encoded_with_one_form_content_type(spy: Spy, ctx: Any) -> None:
    spy.answers = {"http/fetch": REPLY}
    ctx.http.fetch("https://api.test/x", method="POST", data={"a": "1", "q": "x y&z"})
    assert only_call(spy)[1]["init"] == {
        "method": "POST",
        "headers": [["content-type", "application/x-www-form-urlencoded"]],
        "bodyType": "string",
        "body": "a=1&q=x+y%26z",
    }
    spy.calls.clear()
    # Repeated names survive as pairs; a caller's own content-type is kept, not doubled.
    ctx.http.fetch(
        "https://api.test/x",
        method="POST",
        data=[("t", "1"), ("t", "2")],
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    init = only_call(spy)[1]["init"]
    assert init["body"] == "t=1&t=2"
    assert init["headers"] == [["Content-Type", "application/x-www-form-urlencoded; charset=utf-8"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"body": "a", "json": {}}, "ctx.http.fetch: pass only one of body=, json= and data="),
        (
            {"headers": "X-A: 1"},
            "ctx.http.fetch: headers must be a dict or a list of (name, value) pairs",
        ),
        (
            {"headers": [("X-A",)]},
            "http/fetch: init.headers must be an array of [name, value] pairs",
        ),
        ({"headers": {"X-A": 1}}, "A header value must be a string, got int"),
        ({"body": 5}, "ctx.http.fetch: body must be bytes, got int"),
        (
            {"data": {"a": "1"}, "json": {}},
            "ctx.http.fetch: pass only one of body=, json= and data=",
        ),
        (
            {"data": "a=1"},
            "ctx.http.fetch: data= must be a dict or a list of (name, value) pairs of strings",
        ),
        ({"data": [("a",)]}, "ctx.http.fetch: data= must be a list of (name, value) pairs"),
        ({"data": {"a": 1}}, "A form field value must be a string, got int"),
    ],
)
def test_fetch_refuses_bad_arguments_locally(
    spy: Spy, ctx: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        ctx.http.fetch("https://api.test/", **kwargs)
    assert str(info.value) == message
    assert spy.calls == []


def test_response_object(spy: Spy, ctx: Any) -> None:
    spy.answers = {"http/fetch": REPLY}
    response = ctx.http.fetch("https://api.test/")
    assert isinstance(response, HttpResponse)
    assert (response.status, response.status_text, response.ok) == (201, "Created", True)
    assert response.content == "héllo".encode("latin-1")
    assert response.text() == "héllo"
    headers = response.headers
    assert isinstance(headers, ResponseHeaders)
    assert headers.get("CONTENT-TYPE") == "text/plain; charset=latin-1"
    assert headers["content-type"] == "text/plain; charset=latin-1"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers.get("set-cookie") == "a=1, b=2"
    assert headers.get("missing") is None and "missing" not in headers and "Set-Cookie" in headers
    assert headers.items() == [
        ("content-type", "text/plain; charset=latin-1"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    assert list(headers) == ["content-type", "set-cookie"] and len(headers) == 2
    with pytest.raises(KeyError):
        headers["missing"]
    assert repr(response) == "<HttpResponse 201>"


def test_response_json_and_defaults(spy: Spy, ctx: Any) -> None:
    spy.answers = {
        "http/fetch": {
            "status": 404,
            "statusText": "Not Found",
            "headers": [],
            "bodyBase64": base64.b64encode(b'{"error": "nope"}').decode(),
        }
    }
    response = ctx.http.fetch("https://api.test/")
    assert response.ok is False
    assert response.json() == {"error": "nope"}
    assert response.text() == '{"error": "nope"}'


@pytest.mark.parametrize(
    "reply",
    [
        None,
        {"status": "200", "statusText": "", "headers": [], "bodyBase64": ""},
        {"status": 200, "statusText": "", "headers": {"a": "b"}, "bodyBase64": ""},
        {"status": 200, "statusText": "", "headers": [], "bodyBase64": "***"},
    ],
)
def test_malformed_host_replies_are_refused(spy: Spy, ctx: Any, reply: Any) -> None:
    spy.answers = {"http/fetch": reply}
    with pytest.raises(BridgeError, match="^http/fetch: malformed"):
        ctx.http.fetch("https://api.test/")


def test_cron_schedule_options_refuse_unknown_keys(spy: Spy, ctx: Any) -> None:
    with pytest.raises(TypeError, match=r"only schedule and data, not \['every'\]"):
        ctx.cron.schedule("t", {"schedule": "@daily", "every": 5})
    assert spy.calls == []
