"""SEO check: a before-save filter and a before-delete veto.

- ``content:beforeSave`` refuses an item without a title (raising aborts the save), trims
  the title, and fills ``slug`` and ``meta_description`` when they are missing. It returns
  the new field map, which the pipeline hands to the next handler and then stores.
- ``content:beforeDelete`` returns ``False`` (a veto) for items whose ``pinned`` field is true.
"""

import re

from emdash import HookConfig, define_plugin

DESCRIPTION_LENGTH = 160


def slugify(text):
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:80] or "item"


def describe(body):
    text = re.sub(r"\s+", " ", body).strip()
    if len(text) <= DESCRIPTION_LENGTH:
        return text
    cut = text[: DESCRIPTION_LENGTH - 1].rsplit(" ", 1)[0]
    return cut + "\u2026"


def before_save(event, ctx):
    fields = dict(event["content"])
    if event["isNew"] or "title" in fields:
        title = fields.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ValueError(
                "seo-check: every " + event["collection"] + " item needs a non-empty title"
            )
        fields["title"] = title.strip()
    if event["isNew"] and not fields.get("slug"):
        fields["slug"] = slugify(fields["title"])
    elif isinstance(fields.get("slug"), str):
        fields["slug"] = slugify(fields["slug"])
    body = fields.get("body")
    if isinstance(body, str) and body and not fields.get("meta_description"):
        fields["meta_description"] = describe(body)
    return fields


def before_delete(event, ctx):
    item = ctx.content.get(event["collection"], event["id"])
    if item is not None and item["data"].get("pinned") is True:
        ctx.log.warn("Refusing to delete a pinned item", {"id": event["id"]})
        return False
    return None


plugin = define_plugin(
    hooks={
        # Runs early so later beforeSave handlers see the normalised fields.
        "content:beforeSave": HookConfig(before_save, priority=10),
        "content:beforeDelete": before_delete,
    },
)
