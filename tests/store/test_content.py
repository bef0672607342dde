"""Content items: CRUD, status, soft delete, batches, and keyset paging over any order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emdash._shared._errors import BridgeError, InvalidCursorError, NotFoundError
from emdash._store import Store
from emdash._store._content import split_system_keys
from emdash._store._values import Locales

from .conftest import Clock

KEYS = {
    "id",
    "type",
    "slug",
    "status",
    "data",
    "authorId",
    "locale",
    "version",
    "createdAt",
    "updatedAt",
    "publishedAt",
    "scheduledAt",
    "deletedAt",
    "liveRevisionId",
    "draftRevisionId",
}


def test_create_returns_the_full_item(store: Store) -> None:
    item = store.content_items.create("posts", {"title": "Hello", "body": "x"}, slug="hello")
    assert set(item) == KEYS
    assert len(item["id"]) == 26
    assert item | {"id": "-"} == {
        "id": "-",
        "type": "posts",
        "slug": "hello",
        "status": "draft",
        "data": {"title": "Hello", "body": "x"},
        "authorId": None,
        "locale": "en",
        "version": 1,
        "createdAt": "2026-11-22T05:33:24.123Z",
        "updatedAt": "2026-11-22T05:33:24.123Z",
        "publishedAt": None,
        "scheduledAt": None,
        "deletedAt": None,
        "liveRevisionId": None,
        "draftRevisionId": None,
    }
    assert store.content_items.get("posts", item["id"]) == item


def test_create_published_sets_published_at_and_the_default_locale(store: Store) -> None:
    item = store.content_items.create("pages", {}, status="published", author_id="01USER")
    assert item["publishedAt"] == "2026-11-22T05:33:24.123Z"
    assert item["locale"] == "en"
    assert item["authorId"] == "01USER"
    # Without configured locales any well-formed code is kept as spelled (EmDash without i18n).
    assert store.content_items.create("pages", {}, locale="zh-tw")["locale"] == "zh-tw"


def test_configured_locales_set_the_default_and_the_spelling(tmp_path: Path, clock: Clock) -> None:
    locales = Locales("fr", ["fr", "en", "zh-TW"])
    with Store(tmp_path / "l.db", media_dir=tmp_path / "m", clock=clock, locales=locales) as s:
        items = s.content_items
        assert items.create("pages", {})["locale"] == "fr"
        assert items.create("pages", {}, locale="zh-tw")["locale"] == "zh-TW"
        assert [i["locale"] for i in items.create_many("pages", [{}, {}])] == ["fr", "fr"]
        with pytest.raises(BridgeError, match='^Locale "de" is not configured for this site$'):
            items.create("pages", {}, locale="de")
        with pytest.raises(BridgeError, match='^Invalid locale code: "en_US"$'):
            items.create("pages", {}, locale="en_US")
        assert len(items.list("pages")["items"]) == 4  # the refused ones wrote nothing
        # A filter is normalised too; an unconfigured locale finds nothing rather than failing.
        assert len(items.list("pages", where={"locale": "ZH-tw"})["items"]) == 1
        assert items.list("pages", where={"locale": "de"})["items"] == []


def test_collections_must_exist_and_names_are_checked(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        store.content_items.create("recipes", {})
    assert str(info.value) == (
        'Collection "recipes" does not exist. Create it first '
        '(store.content_items.ensure_collection("recipes")).'
    )
    store.content_items.ensure_collection("recipes", label="Recipes")
    assert store.content_items.create("recipes", {"title": "Soup"})["type"] == "recipes"
    assert store.content_items.get_collection("recipes") == {
        "name": "recipes",
        "label": "Recipes",
        "supports": [],
        "createdAt": "2026-11-22T05:33:24.123Z",
    }
    assert [c["name"] for c in store.content_items.collections()] == ["pages", "posts", "recipes"]
    for bad in ["Posts", "ec_posts; DROP TABLE x", "a-b", "", "posts\n"]:
        with pytest.raises(BridgeError) as invalid:
            store.content_items.list(bad)
        assert str(invalid.value) == f"Invalid collection name: {bad}"
    assert store.content_items.list("unknown") == {"items": [], "hasMore": False}
    assert store.content_items.get("unknown", "x") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "live"}, 'Invalid status "live": must be one of draft, published, scheduled'),
        ({"status": "scheduled"}, "Scheduling needs scheduled_at (an ISO 8601 datetime)"),
        ({"locale": "en_US"}, 'Invalid locale code: "en_US"'),
        ({"locale": 5}, "Invalid locale code: expected a string"),
        (
            {"slug": "a b"},
            "Invalid slug \"a b\": use 1-256 characters without spaces, '/', '?', '#' or '\\'",
        ),
        ({"author_id": "x y"}, "Invalid author id: expected a user id string"),
    ],
)
def test_create_validation(store: Store, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError) as info:
        store.content_items.create("posts", {"title": "x"}, **kwargs)
    assert str(info.value) == message
    assert store.content_items.list("posts")["items"] == []


def test_data_must_be_a_json_object(store: Store) -> None:
    with pytest.raises(BridgeError) as info:
        store.content_items.create("posts", ["a"])  # type: ignore[arg-type]
    assert str(info.value) == "Content data must be an object"
    with pytest.raises(BridgeError, match="^Content data must be JSON data"):
        store.content_items.create("posts", {"x": {1, 2}})


def test_slugs_are_unique_per_collection_and_locale_among_live_items(store: Store) -> None:
    first = store.content_items.create("posts", {}, slug="hello")
    store.content_items.create("pages", {}, slug="hello")
    store.content_items.create("posts", {}, slug="hello", locale="fr")
    with pytest.raises(BridgeError) as info:
        store.content_items.create("posts", {}, slug="hello")
    assert str(info.value) == (
        'Slug "hello" is already used in collection "posts" (locale en). Choose another slug.'
    )
    store.content_items.soft_delete("posts", first["id"])
    second = store.content_items.create("posts", {}, slug="hello")
    with pytest.raises(BridgeError, match='^Slug "hello" is already used'):
        store.content_items.restore("posts", first["id"])
    assert store.content_items.get("posts", first["id"]) is None
    store.content_items.update("posts", second["id"], {}, slug="hello-2")
    assert store.content_items.restore("posts", first["id"])["slug"] == "hello"


def test_update_merges_fields_and_bumps_version(store: Store, clock: Clock) -> None:
    item = store.content_items.create("posts", {"title": "A", "body": "b"})
    clock.advance(seconds=1)
    updated = store.content_items.update(
        "posts", item["id"], {"title": "B", "tags": ["x"]}, slug="b"
    )
    assert updated["data"] == {"title": "B", "body": "b", "tags": ["x"]}
    assert updated["version"] == 2
    assert updated["slug"] == "b"
    assert updated["updatedAt"] == "2026-11-22T05:33:25.123Z"
    assert updated["createdAt"] == item["createdAt"]
    with pytest.raises(NotFoundError) as info:
        store.content_items.update("posts", "nope", {"x": 1})
    assert str(info.value) == 'Content not found: no item "nope" in collection "posts"'
    with pytest.raises(NotFoundError):
        store.content_items.update("pages", item["id"], {"x": 1})  # wrong collection


def test_soft_delete_restore_and_permanent_delete(store: Store, clock: Clock) -> None:
    item = store.content_items.create("posts", {"title": "A"})
    clock.advance(seconds=1)
    assert store.content_items.soft_delete("posts", item["id"]) is True
    assert store.content_items.soft_delete("posts", item["id"]) is False
    assert store.content_items.get("posts", item["id"]) is None
    trashed = store.content_items.get("posts", item["id"], include_deleted=True)
    assert trashed is not None and trashed["deletedAt"] == "2026-11-22T05:33:25.123Z"
    assert store.content_items.list("posts")["items"] == []
    assert [i["id"] for i in store.content_items.list("posts", include_deleted=True)["items"]] == [
        item["id"]
    ]
    with pytest.raises(NotFoundError):
        store.content_items.update("posts", item["id"], {"title": "B"})
    restored = store.content_items.restore("posts", item["id"])
    assert restored["deletedAt"] is None
    assert store.content_items.delete_permanently("posts", item["id"]) is True
    assert store.content_items.delete_permanently("posts", item["id"]) is False
    with pytest.raises(NotFoundError):
        store.content_items.restore("posts", item["id"])


def test_status_transitions(store: Store, clock: Clock) -> None:
    item = store.content_items.create("posts", {})
    with pytest.raises(BridgeError, match="^Scheduling needs scheduled_at"):
        store.content_items.set_status("posts", item["id"], "scheduled")
    sched = store.content_items.set_status(
        "posts", item["id"], "scheduled", scheduled_at="2026-12-01T10:00:00+02:00"
    )
    assert (sched["status"], sched["scheduledAt"], sched["version"]) == (
        "scheduled",
        "2026-12-01T08:00:00.000Z",
        2,
    )
    clock.advance(days=20)
    pub = store.content_items.set_status("posts", item["id"], "published")
    assert pub["publishedAt"] == "2026-12-12T05:33:24.123Z"
    assert pub["scheduledAt"] is None
    clock.advance(days=1)
    again = store.content_items.set_status("posts", item["id"], "published")
    assert again["publishedAt"] == "2026-12-12T05:33:24.123Z"  # kept
    draft = store.content_items.set_status("posts", item["id"], "draft")
    assert (draft["status"], draft["publishedAt"]) == ("draft", "2026-12-12T05:33:24.123Z")
    explicit = store.content_items.set_status(
        "posts", item["id"], "published", published_at="2020-01-01T00:00:00Z"
    )
    assert explicit["publishedAt"] == "2020-01-01T00:00:00.000Z"
    with pytest.raises(BridgeError) as info:
        store.content_items.set_status("posts", item["id"], "scheduled", scheduled_at="tomorrow")
    assert str(info.value) == (
        'Invalid scheduledAt "tomorrow": use an ISO 8601 datetime such as "2026-05-01T12:00:00Z"'
    )
    with pytest.raises(NotFoundError):
        store.content_items.set_status("posts", "missing", "published")


def test_due_scheduled(store: Store) -> None:
    a = store.content_items.create(
        "posts", {}, status="scheduled", scheduled_at="2026-11-23T00:00:00Z"
    )
    b = store.content_items.create(
        "pages", {}, status="scheduled", scheduled_at="2026-11-22T06:00:00Z"
    )
    c = store.content_items.create(
        "posts", {}, status="scheduled", scheduled_at="2026-11-24T00:00:00Z"
    )
    d = store.content_items.create(
        "posts", {}, status="scheduled", scheduled_at="2026-11-22T00:00:00Z"
    )
    store.content_items.soft_delete("posts", d["id"])
    due = store.content_items.due_scheduled("2026-11-23T00:00:00.000Z")
    assert [i["id"] for i in due] == [b["id"], a["id"]]
    assert c["id"] not in [
        i["id"] for i in store.content_items.due_scheduled("2026-11-23T12:00:00Z")
    ]


def test_batches_are_all_or_nothing(store: Store) -> None:
    items = store.content_items.create_many("posts", [{"title": f"t{i}"} for i in range(3)])
    assert [i["data"]["title"] for i in items] == ["t0", "t1", "t2"]
    with pytest.raises(BridgeError) as info:
        store.content_items.create_many("posts", [{}] * 101)
    assert str(info.value) == "Batch size 101 exceeds maximum of 100"
    with pytest.raises(BridgeError):
        store.content_items.create_many("posts", [{"title": "ok"}, {"bad": float("nan")}])
    assert len(store.content_items.list("posts")["items"]) == 3

    ids = [i["id"] for i in items]
    updated = store.content_items.update_many(
        "posts", [{"id": ids[0], "data": {"title": "u0"}}, {"id": ids[1], "data": {"n": 1}}]
    )
    assert [u["data"] for u in updated] == [{"title": "u0"}, {"title": "t1", "n": 1}]
    with pytest.raises(NotFoundError):
        store.content_items.update_many(
            "posts", [{"id": ids[2], "data": {"title": "never"}}, {"id": "missing", "data": {}}]
        )
    assert store.content_items.get("posts", ids[2])["data"] == {"title": "t2"}  # type: ignore[index]
    with pytest.raises(BridgeError) as info:
        store.content_items.update_many("posts", [{"id": ids[0]}])
    assert str(info.value) == (
        "Parameter items must be an array of { id: string, data: object } items"
    )
    with pytest.raises(BridgeError, match="^Batch size 101 exceeds maximum of 100$"):
        store.content_items.delete_many("posts", ["x"] * 101)
    assert store.content_items.delete_many("posts", [ids[0], ids[0], "missing", ids[1]]) == 2
    assert [i["id"] for i in store.content_items.list("posts")["items"]] == [ids[2]]


def test_batch_failure_inside_invocation_is_contained(store: Store) -> None:
    with store.invocation():
        store.content_items.create("posts", {"title": "kept"})
        with pytest.raises(NotFoundError):
            store.content_items.update_many("posts", [{"id": "missing", "data": {}}])
    assert [i["data"]["title"] for i in store.content_items.list("posts")["items"]] == ["kept"]


def test_list_where_status_and_locale(store: Store) -> None:
    store.content_items.create("posts", {"n": 1}, status="published")
    store.content_items.create("posts", {"n": 2}, status="draft")
    store.content_items.create("posts", {"n": 3}, status="published", locale="fr")
    pub = store.content_items.list("posts", where={"status": "published"})["items"]
    assert sorted(i["data"]["n"] for i in pub) == [1, 3]
    fr = store.content_items.list("posts", where={"status": "published", "locale": "fr"})["items"]
    assert [i["data"]["n"] for i in fr] == [3]
    with pytest.raises(BridgeError) as info:
        store.content_items.list("posts", where={"title": "x"})
    assert str(info.value) == (
        "Unsupported where key: title. Content lists can be filtered by status and locale."
    )


def test_list_order_validation(store: Store) -> None:
    with pytest.raises(BridgeError) as info:
        store.content_items.list("posts", order_by={"body": "asc"})
    assert (
        str(info.value)
        == "Invalid order field: body. Custom fields must be indexed before sorting."
    )
    with pytest.raises(BridgeError) as info:
        store.content_items.list("posts", order_by={"title": "up"})
    assert str(info.value) == 'Parameter orderBy must be an object mapping field to "asc"|"desc"'


@pytest.mark.parametrize(("limit", "size"), [(None, 50), (50, 50), (500, 100), (0, 50), (-3, 1)])
def test_list_limit(store: Store, limit: Any, size: int) -> None:
    store.content_items.create_many("posts", [{}] * 100)
    store.content_items.create_many("posts", [{}] * 20)
    assert len(store.content_items.list("posts", limit=limit)["items"]) == size


# -- keyset paging ---------------------------------------------------------------------

TITLES: list[Any] = ["b", None, "a", "b", "MISSING", "c", "a", "", 7, "b"]
STATUSES = ["draft", "published", "draft"]


@pytest.fixture
def many(store: Store, clock: Clock) -> list[dict[str, Any]]:
    """31 items: createdAt ties in groups of 4, NULL/missing titles, mixed statuses."""
    items = []
    for i in range(31):
        if i % 4 == 0:
            clock.advance(seconds=1)
        title = TITLES[i % len(TITLES)]
        data = {} if title == "MISSING" else {"title": title}
        item = store.content_items.create("posts", data, status=STATUSES[i % 3])
        if i % 5 == 0 and item["status"] == "draft":
            item = store.content_items.set_status("posts", item["id"], "published")
        items.append(item)
    store.content_items.create("pages", {"title": "other collection"})
    return items


def _value(item: dict[str, Any], field: str) -> Any:
    return item["data"].get("title") if field == "title" else item[field]


def _rank(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, int | float):
        return (1, v)
    return (2, v)


def _expected(items: list[dict[str, Any]], order: list[tuple[str, str]]) -> list[str]:
    by_id = {i["id"]: i for i in items}
    ids = sorted(by_id, reverse=order[-1][1] == "desc")
    for field, direction in reversed(order):
        ranks = {x: _rank(_value(by_id[x], field)) for x in ids}
        ids.sort(key=ranks.__getitem__, reverse=direction == "desc")
    return ids


@pytest.mark.parametrize(
    "order",
    [
        [("createdAt", "desc")],
        [("createdAt", "asc")],
        [("title", "asc")],
        [("title", "desc")],
        [("publishedAt", "asc")],
        [("publishedAt", "desc")],
        [("status", "asc"), ("title", "desc")],
        [("status", "desc"), ("createdAt", "asc"), ("title", "asc")],
    ],
)
@pytest.mark.parametrize("limit", [3, 8])
def test_content_paging_has_no_duplicates_and_no_gaps(
    store: Store, many: list[dict[str, Any]], order: list[tuple[str, str]], limit: int
) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.content_items.list("posts", order_by=dict(order), limit=limit, cursor=cursor)
        pages += 1
        seen.extend(i["id"] for i in page["items"])
        if not page["hasMore"]:
            assert "cursor" not in page
            break
        cursor = page["cursor"]
    assert pages >= 3
    assert len(seen) == len(set(seen)) == 31
    assert seen == _expected(many, order)


def test_default_content_order_is_newest_first(store: Store, many: list[dict[str, Any]]) -> None:
    page = store.content_items.list("posts", limit=100)
    assert [i["id"] for i in page["items"]] == _expected(many, [("createdAt", "desc")])
    assert page["items"][0]["id"] == many[-1]["id"]


def test_content_paging_with_a_status_filter(store: Store, many: list[dict[str, Any]]) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = store.content_items.list(
            "posts",
            where={"status": "published"},
            order_by={"title": "asc"},
            limit=2,
            cursor=cursor,
        )
        seen.extend(i["id"] for i in page["items"])
        if not page["hasMore"]:
            break
        cursor = page["cursor"]
    published = [
        i
        for i in many
        if store.content_items.get("posts", i["id"])["status"] == "published"  # type: ignore[index]
    ]
    assert seen == _expected(published, [("title", "asc")])


def test_content_cursor_is_bound_to_order_and_collection(
    store: Store, many: list[dict[str, Any]]
) -> None:
    cursor = store.content_items.list("posts", order_by={"title": "asc"}, limit=2)["cursor"]
    for kwargs in (
        {"order_by": {"title": "desc"}},
        {"order_by": None},
        {"order_by": {"slug": "asc"}},
    ):
        with pytest.raises(InvalidCursorError) as info:
            store.content_items.list("posts", limit=2, cursor=cursor, **kwargs)
        assert str(info.value) == f"Invalid pagination cursor: {cursor[:47]}..."
    with pytest.raises(InvalidCursorError):
        store.content_items.list("pages", order_by={"title": "asc"}, cursor=cursor)
    with pytest.raises(InvalidCursorError):
        store.content_items.list("posts", cursor="not-a-cursor")
    with pytest.raises(InvalidCursorError):
        store.content_items.list("posts", cursor="")


# --- collection supports, revisions and draft-aware updates ---------------------------


def test_collections_declare_what_they_support(store: Store) -> None:
    items = store.content_items
    assert items.get_collection("posts")["supports"] == []  # type: ignore[index]
    made = items.ensure_collection("articles", supports=["revisions", "drafts", "revisions"])
    assert made["supports"] == ["drafts", "revisions"]
    # Re-ensuring without supports keeps the declared set; a given set replaces it.
    assert items.ensure_collection("articles", label="Articles")["supports"] == [
        "drafts",
        "revisions",
    ]
    assert items.ensure_collection("articles", supports=[])["supports"] == []
    for bad, text in [
        (["history"], 'Unknown collection support "history": use any of drafts, revisions, '),
        ("revisions", "supports must be a list of strings"),
    ]:
        with pytest.raises(BridgeError) as info:
            items.ensure_collection("articles", supports=bad)
        assert str(info.value).startswith(text)
    assert items.get_collection("articles")["supports"] == []  # type: ignore[index]


def test_update_of_a_published_item_is_staged_as_a_draft_revision(
    store: Store, clock: Clock
) -> None:
    items = store.content_items
    items.ensure_collection("articles", supports=["drafts", "revisions"])
    item = items.create("articles", {"title": "Live", "body": "b"}, slug="live")
    published = items.set_status("articles", item["id"], "published")
    assert published["liveRevisionId"] is not None and published["draftRevisionId"] is None
    assert published["version"] == 2
    clock.advance(seconds=1)

    draft = items.update("articles", item["id"], {"title": "Draft"}, slug="renamed")
    # update returns the effective draft ...
    assert draft["data"] == {"title": "Draft", "body": "b"} and draft["slug"] == "renamed"
    assert draft["version"] == 3 and draft["draftRevisionId"] is not None
    assert draft["status"] == "published"
    # ... while the live item keeps its data and slug.
    live = items.get("articles", item["id"])
    assert live is not None
    assert (live["data"], live["slug"]) == ({"title": "Live", "body": "b"}, "live")
    assert live["version"] == 3 and live["draftRevisionId"] == draft["draftRevisionId"]
    assert items.list("articles")["items"] == [live]
    assert items.get_effective("articles", item["id"]) == draft

    # A second update merges into the same draft.
    again = items.update("articles", item["id"], {"body": "c"})
    assert again["data"] == {"title": "Draft", "body": "c"} and again["slug"] == "renamed"
    assert again["draftRevisionId"] == draft["draftRevisionId"] and again["version"] == 4
    assert items.get("articles", item["id"])["data"] == {"title": "Live", "body": "b"}  # type: ignore[index]

    # Publishing promotes the draft.
    promoted = items.set_status("articles", item["id"], "published")
    assert promoted["data"] == {"title": "Draft", "body": "c"} and promoted["slug"] == "renamed"
    assert promoted["liveRevisionId"] == draft["draftRevisionId"]
    assert promoted["draftRevisionId"] is None
    assert items.get_effective("articles", item["id"]) == promoted


def test_drafts_and_collections_without_revisions_are_updated_in_place(store: Store) -> None:
    items = store.content_items
    items.ensure_collection("articles", supports=["revisions"])
    draft = items.create("articles", {"title": "a"})
    updated = items.update("articles", draft["id"], {"title": "b"})
    assert updated["data"] == {"title": "b"} and updated["draftRevisionId"] is None
    # posts declares no revisions: a published post is overwritten (no live/draft split).
    post = items.create("posts", {"title": "a"}, status="published")
    over = items.update("posts", post["id"], {"title": "b"})
    assert over["data"] == {"title": "b"} and over["draftRevisionId"] is None
    assert over["liveRevisionId"] is None
    assert items.get("posts", post["id"]) == over


def test_a_draft_slug_is_checked_and_permanent_delete_drops_revisions(store: Store) -> None:
    items = store.content_items
    items.ensure_collection("articles", supports=["revisions"])
    items.create("articles", {}, slug="taken")
    item = items.create("articles", {"title": "a"}, slug="mine", status="published")
    with pytest.raises(BridgeError) as info:
        items.update("articles", item["id"], {"title": "b"}, slug="taken")
    assert str(info.value) == (
        'Slug "taken" is already used in collection "articles" (locale en). Choose another slug.'
    )
    assert items.get("articles", item["id"])["version"] == 1  # type: ignore[index]
    items.update("articles", item["id"], {"title": "b"})
    assert store.db["_emdash_revisions"].count == 1
    assert items.delete_permanently("articles", item["id"]) is True
    assert store.db["_emdash_revisions"].count == 0


def test_system_keys_are_split_from_plugin_data_and_host_data_is_kept(store: Store) -> None:
    data = {"title": "t", "id": "x", "version": 9, "locale": "de", "slug": 5, "status": "s"}
    assert split_system_keys({**data, "author_id": "u1"}) == (
        {"title": "t"},
        {"status": "s", "author_id": "u1"},
    )
    # The host's create/update keep what they are given (beforeSave hooks may set a "slug"
    # field, as EmDash's SEO plugins do); only the plugin-facing paths split system keys.
    item = store.content_items.create("posts", {"title": "t", "slug": "field"})
    assert item["data"] == {"title": "t", "slug": "field"} and item["slug"] is None


def test_create_many_applies_slug_status_and_author_and_rolls_back_on_duplicates(
    store: Store,
) -> None:
    items = store.content_items
    made = items.create_many(
        "posts",
        [
            {"title": "a", "slug": "a", "status": "published", "author_id": "u1", "id": "x"},
            {"title": "b", "slug": 7, "version": 3},
        ],
    )
    assert [(i["slug"], i["status"], i["authorId"]) for i in made] == [
        ("a", "published", "u1"),
        (None, "draft", None),
    ]
    assert [i["data"] for i in made] == [{"title": "a"}, {"title": "b"}]
    with pytest.raises(BridgeError) as info:
        items.create_many("posts", [{"slug": "fresh"}, {"slug": "a"}])
    assert str(info.value).startswith('Slug "a" is already used in collection "posts"')
    with pytest.raises(BridgeError):
        items.create_many("posts", [{"slug": "b1"}, {"slug": "b1"}])
    with pytest.raises(BridgeError) as bad:
        items.create_many("posts", [{"title": "c"}, {"status": "live"}])
    assert str(bad.value).startswith('Invalid status "live"')
    assert len(items.list("posts")["items"]) == 2  # every failed batch left nothing
