"""Taxonomies: definitions, terms, entry assignments and their read shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from emdash._shared._errors import BridgeError, NotFoundError
from emdash._store import Store
from emdash._store._values import Locales


@pytest.fixture
def site(store: Store) -> dict[str, dict[str, object]]:
    tx = store.taxonomies
    tx.create_taxonomy("tags", "Tags", collections=["posts"])
    cats = tx.create_taxonomy(
        "categories",
        "Categories",
        label_singular="Category",
        hierarchical=True,
        collections=["posts", "pages"],
    )
    tx.create_taxonomy("categories", "Catégories", locale="fr", translation_group="g-cat")
    news = tx.add_term("categories", "news", "News", sort_order=1)
    world = tx.add_term(
        "categories",
        "world",
        "World",
        parent_id=news["translationGroup"],
        sort_order=1,
        data={"color": "blue"},
    )
    nouvelles = tx.add_term(
        "categories",
        "nouvelles",
        "Nouvelles",
        locale="fr",
        translation_group=news["translationGroup"],
    )
    alpha = tx.add_term("categories", "alpha", "Alpha", sort_order=0)
    python = tx.add_term("tags", "python", "Python")
    return {
        "cats": cats,
        "news": news,
        "world": world,
        "nouvelles": nouvelles,
        "alpha": alpha,
        "python": python,
    }


def test_get_all_shapes_and_locale_filter(store: Store, site: dict[str, object]) -> None:
    assert store.taxonomies.get_all() == [
        {
            "name": "categories",
            "label": "Categories",
            "labelSingular": "Category",
            "hierarchical": True,
            "collections": ["posts", "pages"],
            "locale": "en",
        },
        {
            "name": "categories",
            "label": "Catégories",
            "labelSingular": None,
            "hierarchical": False,
            "collections": [],
            "locale": "fr",
        },
        {
            "name": "tags",
            "label": "Tags",
            "labelSingular": None,
            "hierarchical": False,
            "collections": ["posts"],
            "locale": "en",
        },
    ]
    assert [d["name"] for d in store.taxonomies.get_all("fr")] == ["categories"]


def test_get_terms_order_and_shape(store: Store, site: dict[str, dict[str, object]]) -> None:
    terms = store.taxonomies.get_terms("categories", "en")
    assert [t["slug"] for t in terms] == ["alpha", "news", "world"]
    world = next(t for t in terms if t["slug"] == "world")
    assert world == {
        "id": site["world"]["id"],
        "taxonomy": "categories",
        "slug": "world",
        "label": "World",
        "parentId": site["news"]["translationGroup"],
        "data": {"color": "blue"},
        "locale": "en",
        "translationGroup": site["world"]["id"],
    }
    # sort_order first (nouvelles has the default 0), then label, then id.
    assert [t["slug"] for t in store.taxonomies.get_terms("categories")] == [
        "alpha",
        "nouvelles",
        "news",
        "world",
    ]
    assert store.taxonomies.get_terms("missing") == []


def test_entry_terms_follow_translation_groups(
    store: Store, site: dict[str, dict[str, object]]
) -> None:
    tx = store.taxonomies
    tx.assign("posts", "01POST", site["news"]["id"])  # type: ignore[arg-type]
    tx.assign("posts", "01POST", site["news"]["id"])  # type: ignore[arg-type]  # idempotent
    tx.assign("posts", "01POST", site["python"]["id"])  # type: ignore[arg-type]
    tx.assign("posts", "02POST", site["alpha"]["id"])  # type: ignore[arg-type]
    terms = tx.get_entry_terms("posts", "01POST")
    # By locale, then sort order (python 0, news 1), then label.
    assert [(t["slug"], t["locale"]) for t in terms] == [
        ("python", "en"),
        ("news", "en"),
        ("nouvelles", "fr"),
    ]
    assert [
        t["slug"] for t in tx.get_entry_terms("posts", "01POST", "categories", locale="fr")
    ] == ["nouvelles"]
    assert [t["slug"] for t in tx.get_entry_terms("posts", "01POST", "tags")] == ["python"]
    assert tx.get_entry_terms("pages", "01POST") == []
    assert tx.unassign("posts", "01POST", site["python"]["id"]) is True  # type: ignore[arg-type]
    assert [t["slug"] for t in tx.get_entry_terms("posts", "01POST", "tags")] == []


def test_write_helper_validation(store: Store, site: dict[str, object]) -> None:
    tx = store.taxonomies
    with pytest.raises(BridgeError) as info:
        tx.create_taxonomy("tags", "Tags again")
    assert str(info.value) == 'Taxonomy "tags" already exists for locale en'
    with pytest.raises(BridgeError) as info:
        tx.add_term("tags", "python", "Python")
    assert str(info.value) == 'Term "python" already exists in taxonomy "tags" for locale en'
    with pytest.raises(NotFoundError) as missing:
        tx.add_term("colors", "red", "Red")
    assert str(missing.value) == 'Taxonomy "colors" does not exist'
    with pytest.raises(NotFoundError) as missing:
        tx.add_term("tags", "x", "X", parent_id="nope")
    assert str(missing.value) == 'Parent term "nope" not found in taxonomy "tags"'
    with pytest.raises(NotFoundError):
        tx.assign("posts", "01", "no-such-term")
    with pytest.raises(BridgeError) as info:
        tx.get_all("en_US")
    assert str(info.value) == 'Invalid locale code: "en_US"'
    with pytest.raises(BridgeError) as info:
        tx.create_taxonomy("Bad Name", "x")
    assert str(info.value) == 'Invalid taxonomy name "Bad Name"'


def test_configured_locales_apply_to_taxonomy_writes_and_filters(tmp_path: Path) -> None:
    with Store(tmp_path / "t.db", locales=Locales("ja", ["ja", "zh-TW"])) as store:
        tx = store.taxonomies
        assert tx.create_taxonomy("tags", "Tags")["locale"] == "ja"
        assert tx.create_taxonomy("tags", "Tags", locale="zh-tw")["locale"] == "zh-TW"
        assert tx.add_term("tags", "a", "A")["locale"] == "ja"
        assert tx.add_term("tags", "a", "A", locale="ZH-TW")["locale"] == "zh-TW"
        with pytest.raises(BridgeError) as info:
            tx.add_term("tags", "b", "B", locale="de")
        assert str(info.value) == 'Locale "de" is not configured for this site'
        assert [t["locale"] for t in tx.get_terms("tags", locale="zh-tw")] == ["zh-TW"]
        assert [d["locale"] for d in tx.get_all("JA")] == ["ja"]
        assert tx.get_all("de") == []
