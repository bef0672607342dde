"""Taxonomies (categories, tags...): definitions, terms, and their assignment to entries.

Read shapes follow EmDash's (docs/plugin-reference.md, ctx.taxonomies):

* definition ``{name, label, labelSingular, hierarchical, collections, locale}``, by name;
* term ``{id, taxonomy, slug, label, parentId, data, locale, translationGroup}``, ordered by
  sort order, then label, then id. ``parentId`` holds the parent's translation group, and
  an entry is assigned a term's translation group, so one assignment covers every locale
  of a term (EmDash's ``content_taxonomies.taxonomy_id = taxonomies.translation_group``).

Plugins only read; the write helpers (``create_taxonomy``, ``add_term``, ``assign``) are
for the host and its tests.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from .._shared._errors import BridgeError, NotFoundError
from ._db import Db
from ._values import Locales, check_collection, decode_json, encode_json

__all__ = ["Taxonomies"]

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_SLUG_RE = re.compile(r"[^\s/?#\\]{1,256}")
_TERM_COLUMNS = "id, taxonomy, slug, label, parent_id, data, locale, translation_group"


class Taxonomies:
    def __init__(self, db: Db, locales: Locales | None = None) -> None:
        self._db = db
        self._locales = locales or Locales()

    # -- host helpers ------------------------------------------------------------------

    def create_taxonomy(
        self,
        name: str,
        label: str,
        *,
        label_singular: str | None = None,
        hierarchical: bool = False,
        collections: Sequence[str] = (),
        locale: str | None = None,
        translation_group: str | None = None,
    ) -> dict[str, Any]:
        name = _name(name)
        locale = self._locales.resolve(locale)
        cols = [check_collection(c) for c in collections]
        def_id = self._db.new_id()
        try:
            with self._db.transaction():
                self._db.execute(
                    "INSERT INTO _emdash_taxonomy_defs (id, name, label, label_singular, "
                    "hierarchical, collections, locale, translation_group, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        def_id,
                        name,
                        str(label),
                        label_singular,
                        int(bool(hierarchical)),
                        encode_json(cols, what="Taxonomy collections"),
                        locale,
                        translation_group or def_id,
                        self._db.now(),
                    ),
                )
        except sqlite3.IntegrityError:
            raise BridgeError(f'Taxonomy "{name}" already exists for locale {locale}') from None
        return next(d for d in self.get_all(locale) if d["name"] == name)

    def add_term(
        self,
        taxonomy: str,
        slug: str,
        label: str,
        *,
        parent_id: str | None = None,
        data: Any = None,
        locale: str | None = None,
        sort_order: int = 0,
        translation_group: str | None = None,
    ) -> dict[str, Any]:
        """Add a term; ``parent_id`` is the parent term's translation group."""
        taxonomy = _name(taxonomy)
        locale = self._locales.resolve(locale)
        if type(slug) is not str or not _SLUG_RE.fullmatch(slug):
            raise BridgeError(f'Invalid term slug "{str(slug)[:64]}"')
        if (
            self._db.scalar("SELECT 1 FROM _emdash_taxonomy_defs WHERE name = ?", (taxonomy,))
            is None
        ):
            raise NotFoundError(f'Taxonomy "{taxonomy}" does not exist')
        if (
            parent_id is not None
            and self._db.scalar(
                "SELECT 1 FROM _emdash_taxonomy_terms WHERE taxonomy = ? AND translation_group = ?",
                (taxonomy, parent_id),
            )
            is None
        ):
            raise NotFoundError(f'Parent term "{parent_id}" not found in taxonomy "{taxonomy}"')
        term_id = self._db.new_id()
        try:
            with self._db.transaction():
                self._db.execute(
                    "INSERT INTO _emdash_taxonomy_terms (id, taxonomy, slug, label, parent_id, "
                    "data, locale, translation_group, sort_order, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        term_id,
                        taxonomy,
                        slug,
                        str(label),
                        parent_id,
                        None if data is None else encode_json(data, what="Term data"),
                        locale,
                        translation_group or term_id,
                        int(sort_order),
                        self._db.now(),
                    ),
                )
        except sqlite3.IntegrityError:
            raise BridgeError(
                f'Term "{slug}" already exists in taxonomy "{taxonomy}" for locale {locale}'
            ) from None
        row = self._db.row(
            f"SELECT {_TERM_COLUMNS} FROM _emdash_taxonomy_terms WHERE id = ?", (term_id,)
        )
        assert row is not None
        return _term(row)

    def assign(self, collection: str, entry_id: str, term_id: str) -> None:
        """Attach a term (by id, any locale) to a content entry; idempotent."""
        check_collection(collection)
        group = self._db.scalar(
            "SELECT translation_group FROM _emdash_taxonomy_terms WHERE id = ?", (str(term_id),)
        )
        if group is None:
            raise NotFoundError(f'Term "{str(term_id)[:64]}" does not exist')
        with self._db.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO _emdash_content_taxonomies (collection, entry_id, "
                "term_group) VALUES (?, ?, ?)",
                (collection, str(entry_id), group),
            )

    def unassign(self, collection: str, entry_id: str, term_id: str) -> bool:
        check_collection(collection)
        with self._db.transaction():
            return (
                self._db.execute(
                    "DELETE FROM _emdash_content_taxonomies WHERE collection = ? AND entry_id = ? "
                    "AND term_group = (SELECT translation_group FROM _emdash_taxonomy_terms "
                    "WHERE id = ?)",
                    (collection, str(entry_id), str(term_id)),
                )
                > 0
            )

    # -- plugin reads (taxonomies:read) ------------------------------------------------

    def get_all(self, locale: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM _emdash_taxonomy_defs"
        params: list[Any] = []
        if locale is not None:
            sql += " WHERE locale = ?"
            params.append(self._locales.match(locale))
        rows = self._db.rows(sql + " ORDER BY name, locale", params)
        return [_definition(r) for r in rows]

    def get_terms(self, taxonomy: str, locale: str | None = None) -> list[dict[str, Any]]:
        if type(taxonomy) is not str:
            raise BridgeError("Missing required string parameter: taxonomy")
        sql = f"SELECT {_TERM_COLUMNS} FROM _emdash_taxonomy_terms WHERE taxonomy = ?"
        params: list[Any] = [taxonomy]
        if locale is not None:
            sql += " AND locale = ?"
            params.append(self._locales.match(locale))
        rows = self._db.rows(sql + " ORDER BY sort_order, label, id", params)
        return [_term(r) for r in rows]

    def get_entry_terms(
        self,
        collection: str,
        entry_id: str,
        taxonomy: str | None = None,
        *,
        locale: str | None = None,
    ) -> list[dict[str, Any]]:
        check_collection(collection)
        if type(entry_id) is not str:
            raise BridgeError("Missing required string parameter: entryId")
        sql = (
            f"SELECT {', '.join('t.' + c.strip() for c in _TERM_COLUMNS.split(','))} "
            "FROM _emdash_content_taxonomies ct JOIN _emdash_taxonomy_terms t "
            "ON ct.term_group = t.translation_group WHERE ct.collection = ? AND ct.entry_id = ?"
        )
        params: list[Any] = [collection, entry_id]
        if taxonomy is not None:
            if type(taxonomy) is not str:
                raise BridgeError("Parameter taxonomy must be a string when provided")
            sql += " AND t.taxonomy = ?"
            params.append(taxonomy)
        if locale is not None:
            sql += " AND t.locale = ?"
            params.append(self._locales.match(locale))
        rows = self._db.rows(sql + " ORDER BY t.locale, t.sort_order, t.label, t.id", params)
        return [_term(r) for r in rows]


def _definition(r: dict[str, Any]) -> dict[str, Any]:
    collections = decode_json(r["collections"])
    return {
        "name": r["name"],
        "label": r["label"],
        "labelSingular": r["label_singular"],
        "hierarchical": bool(r["hierarchical"]),
        "collections": collections if isinstance(collections, list) else [],
        "locale": r["locale"],
    }


def _term(r: dict[str, Any]) -> dict[str, Any]:
    data = decode_json(r["data"])
    return {
        "id": r["id"],
        "taxonomy": r["taxonomy"],
        "slug": r["slug"],
        "label": r["label"],
        "parentId": r["parent_id"],
        "data": data if isinstance(data, dict) else None,
        "locale": r["locale"],
        "translationGroup": r["translation_group"],
    }


def _name(value: object) -> str:
    if type(value) is not str or not _NAME_RE.fullmatch(value):
        raise BridgeError(f'Invalid taxonomy name "{str(value)[:64]}"')
    return value
