"""Content and users through the bridge on a real store (capability allowed side)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash._bridge._dispatch import Bridge
from emdash._shared._errors import BridgeError, NotFoundError


def call(bridge: Bridge, pid: str, method: str, **params: Any) -> Any:
    return bridge.dispatch(pid, method, params)


def test_create_get_list_update_delete(bridge: Bridge) -> None:
    item = call(
        bridge,
        "writer",
        "content/create",
        collection="posts",
        data={"title": "Hello", "body": [1, 2]},
    )
    assert item["type"] == "posts" and item["status"] == "draft"
    assert item["data"] == {"title": "Hello", "body": [1, 2]}
    # content:write implies content:read (normalised once, in the descriptor).
    assert call(bridge, "writer", "content/get", collection="posts", id=item["id"]) == item
    assert call(bridge, "reader", "content/get", collection="posts", id=item["id"]) == item
    listed = call(bridge, "reader", "content/list", collection="posts")
    assert [i["id"] for i in listed["items"]] == [item["id"]] and listed["hasMore"] is False
    updated = call(
        bridge, "writer", "content/update", collection="posts", id=item["id"], data={"title": "Bye"}
    )
    assert updated["data"] == {"title": "Bye", "body": [1, 2]} and updated["version"] == 2
    assert call(bridge, "writer", "content/delete", collection="posts", id=item["id"]) is True
    assert call(bridge, "writer", "content/delete", collection="posts", id=item["id"]) is False
    assert call(bridge, "reader", "content/get", collection="posts", id=item["id"]) is None


def test_create_lifts_slug_and_status_and_honours_locale(bridge: Bridge) -> None:
    item = call(
        bridge,
        "writer",
        "content/create",
        collection="posts",
        data={"title": "T", "slug": "t-1", "status": "published"},
        options={"locale": "fr"},
    )
    assert (item["slug"], item["status"], item["locale"]) == ("t-1", "published", "fr")
    assert item["data"] == {"title": "T"}


def test_list_pages_with_a_cursor(bridge: Bridge) -> None:
    ids = [
        call(bridge, "writer", "content/create", collection="posts", data={"n": n})["id"]
        for n in range(3)
    ]
    first = call(bridge, "reader", "content/list", collection="posts", limit=2)
    assert len(first["items"]) == 2 and first["hasMore"] is True
    rest = call(
        bridge, "reader", "content/list", collection="posts", limit=2, cursor=first["cursor"]
    )
    assert {i["id"] for i in first["items"] + rest["items"]} == set(ids)


def test_batches_are_all_or_nothing_and_capped(bridge: Bridge, store: Any) -> None:
    made = call(
        bridge, "writer", "content/createMany", collection="posts", items=[{"n": 1}, {"n": 2}]
    )
    assert [i["data"] for i in made] == [{"n": 1}, {"n": 2}]
    a, b = (i["id"] for i in made)
    updated = call(
        bridge,
        "writer",
        "content/updateMany",
        collection="posts",
        items=[{"id": a, "data": {"n": 10}}, {"id": b, "data": {"n": 20}}],
    )
    assert [i["data"]["n"] for i in updated] == [10, 20]
    with pytest.raises(NotFoundError):
        call(
            bridge,
            "writer",
            "content/updateMany",
            collection="posts",
            items=[{"id": a, "data": {"n": 99}}, {"id": "missing", "data": {}}],
        )
    assert store.content_items.get("posts", a)["data"]["n"] == 10  # rolled back
    assert (
        call(bridge, "writer", "content/deleteMany", collection="posts", ids=[a, b, "missing"]) == 2
    )
    with pytest.raises(BridgeError) as info:
        call(bridge, "writer", "content/createMany", collection="posts", items=[{}] * 101)
    assert str(info.value) == "Batch size 101 exceeds maximum of 100"
    with pytest.raises(BridgeError) as info:
        call(bridge, "writer", "content/deleteMany", collection="posts", ids=["x"] * 101)
    assert str(info.value) == "Batch size 101 exceeds maximum of 100"
    assert store.content_items.list("posts")["items"] == []


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("content/get", {"collection": "Posts", "id": "x"}, "Invalid collection name: Posts"),
        (
            "content/get",
            {"collection": "ec_posts; DROP", "id": "x"},
            "Invalid collection name: ec_posts; DROP",
        ),
        ("content/get", {"id": "x"}, "Missing required string parameter: collection"),
        ("content/get", {"collection": "posts"}, "Missing required string parameter: id"),
        (
            "content/list",
            {"collection": "posts", "cursor": 1},
            "Parameter cursor must be a string when provided",
        ),
        ("content/create", {"collection": "posts"}, "Missing required object parameter: data"),
        (
            "content/create",
            {"collection": "posts", "data": []},
            "Missing required object parameter: data",
        ),
        (
            "content/create",
            {"collection": "posts", "data": {}, "options": "fr"},
            "Parameter options must be an object when provided",
        ),
        (
            "content/create",
            {"collection": "posts", "data": {}, "options": {"locale": 5}},
            "Invalid locale code: expected a string",
        ),
        (
            "content/update",
            {"collection": "posts", "id": "x", "data": "t"},
            "Missing required object parameter: data",
        ),
        (
            "content/createMany",
            {"collection": "posts", "items": [1]},
            "Parameter items must be an array of objects",
        ),
        (
            "content/updateMany",
            {"collection": "posts", "items": [{"id": "x", "data": 1}]},
            "Parameter items must be an array of { id: string, data: object } items",
        ),
        (
            "content/updateMany",
            {"collection": "posts", "items": [{"data": {}}]},
            "Parameter items must be an array of { id: string, data: object } items",
        ),
        (
            "content/deleteMany",
            {"collection": "posts", "ids": [1]},
            "Parameter ids must be an array of strings",
        ),
    ],
)
def test_content_param_texts(
    bridge: Bridge, method: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("writer", method, params)
    assert str(info.value) == message


def test_reads_of_an_unknown_collection_find_nothing(bridge: Bridge) -> None:
    assert call(bridge, "reader", "content/get", collection="nothing_here", id="x") is None
    assert call(bridge, "reader", "content/list", collection="nothing_here") == {
        "items": [],
        "hasMore": False,
    }


# --- ctx.content in both plugin modes ----------------------------------------------------

CONTENT_PLUGIN = """
from emdash import define_plugin

def run(route_ctx, ctx):
    op = route_ctx["input"]["op"]
    args = route_ctx["input"]["args"]
    try:
        if op == "create":
            return ctx.content.create(*args)
        if op == "create_many":
            return ctx.content.create_many(*args)
        if op == "update":
            return ctx.content.update(*args)
        if op == "update_many":
            return ctx.content.update_many(*args)
        if op == "get":
            return ctx.content.get(*args)
        if op == "list":
            return ctx.content.list(args[0], limit=args[1])
    except Exception as exc:
        return {"error": str(exc)}
    return {"error": "unknown op " + op}

plugin = define_plugin(routes={"run": run})
"""


@pytest.fixture(params=["native", "sandboxed"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[emdash.Runtime]:
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        runtime.add_plugin(
            {"id": "editor", "capabilities": ["content:write"]},
            source={"plugin.py": CONTENT_PLUGIN},
            trusted=request.param == "native",
        )
        yield runtime


def run(site: emdash.Runtime, op: str, *args: Any) -> Any:
    return site.invoke_route("editor", "run", input={"op": op, "args": list(args)})


def test_ctx_update_of_a_published_item_stages_a_draft(site: emdash.Runtime) -> None:
    site.store.content_items.ensure_collection("articles", supports=["drafts", "revisions"])
    item = site.content.create("articles", {"title": "Live"}, slug="live", status="published")
    draft = run(site, "update", "articles", item["id"], {"title": "Draft", "slug": "draft"})
    assert (draft["data"], draft["slug"]) == ({"title": "Draft"}, "draft")
    assert draft["draftRevisionId"] is not None and draft["version"] == item["version"] + 1
    live = run(site, "get", "articles", item["id"])
    assert (live["data"], live["slug"], live["status"]) == ({"title": "Live"}, "live", "published")
    promoted = site.content.publish("articles", item["id"])
    assert (promoted["data"], promoted["slug"]) == ({"title": "Draft"}, "draft")
    assert run(site, "get", "articles", item["id"]) == promoted
    # posts declares no revisions: the same update overwrites the published item.
    post = site.content.create("posts", {"title": "Live"}, status="published")
    over = run(site, "update", "posts", post["id"], {"title": "New"})
    assert run(site, "get", "posts", post["id"]) == over and over["data"] == {"title": "New"}


def test_ctx_create_many_applies_slug_status_and_rolls_back(site: emdash.Runtime) -> None:
    made = run(
        site,
        "create_many",
        "posts",
        [{"title": "a", "slug": "a", "status": "published"}, {"title": "b"}],
    )
    assert [(i["slug"], i["status"], i["data"]) for i in made] == [
        ("a", "published", {"title": "a"}),
        (None, "draft", {"title": "b"}),
    ]
    failed = run(site, "create_many", "posts", [{"slug": "c"}, {"slug": "a"}])
    assert failed == {
        "error": 'Slug "a" is already used in collection "posts" (locale en). Choose another slug.'
    }
    assert len(site.store.content_items.list("posts")["items"]) == 2  # nothing of "c"


def test_ctx_system_keys_are_columns_not_data(site: emdash.Runtime) -> None:
    system = {"id": "x", "version": 7, "created_at": "2000-01-01", "locale": "de"}
    item = run(site, "create", "posts", {"title": "t", "author_id": "user_1", **system})
    assert item["data"] == {"title": "t"} and item["authorId"] == "user_1"
    assert (item["version"], item["locale"]) == (1, "en") and item["id"] != "x"
    updated = run(site, "update", "posts", item["id"], {"title": "u", **system})
    assert updated["data"] == {"title": "u"} and updated["version"] == 2
    [made] = run(site, "create_many", "posts", [{"author_id": "user_2", **system}])
    assert made["data"] == {} and made["authorId"] == "user_2"
    [again] = run(
        site,
        "update_many",
        "posts",
        [{"id": made["id"], "data": {"n": 1, "slug": "renamed", **system}}],
    )
    assert (again["data"], again["slug"], again["version"]) == ({"n": 1}, "renamed", 2)


def test_ctx_list_limit_zero_is_the_default_page(site: emdash.Runtime) -> None:
    site.store.content_items.create_many("posts", [{"n": n} for n in range(60)])
    assert len(run(site, "list", "posts", 0)["items"]) == 50
    assert len(run(site, "list", "posts", 2)["items"]) == 2


# --- users -------------------------------------------------------------------------------


def test_users_expose_only_public_fields(bridge: Bridge, store: Any) -> None:
    admin = store.user_accounts.create("Admin@Site.test", "Ada", 50)
    store.user_accounts.create("ed@site.test", "Ed", 40)
    got = call(bridge, "reader", "users/get", id=admin["id"])
    assert set(got) == {"id", "email", "name", "role", "createdAt"}
    assert (got["email"], got["name"], got["role"]) == ("Admin@Site.test", "Ada", 50)
    assert call(bridge, "reader", "users/getByEmail", email="ADMIN@site.TEST")["id"] == admin["id"]
    assert call(bridge, "reader", "users/get", id="missing") is None
    editors = call(bridge, "reader", "users/list", role=40)
    assert [u["name"] for u in editors["items"]] == ["Ed"] and "nextCursor" not in editors
    page = call(bridge, "reader", "users/list", limit=1)
    assert len(page["items"]) == 1 and "nextCursor" in page
    with pytest.raises(BridgeError) as info:
        call(bridge, "reader", "users/list", role="admin")
    assert str(info.value) == "Parameter role must be a number when provided"
    with pytest.raises(BridgeError) as info:
        call(bridge, "reader", "users/getByEmail")
    assert str(info.value) == "Missing required string parameter: email"
