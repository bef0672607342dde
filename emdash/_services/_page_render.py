"""Page metadata and fragments: validation, merge, base SEO and HTML rendering (pure code).

Everything here is a pure function of plain data, so the rules that keep plugin output from
becoming script injection can be tested without a runtime. :mod:`emdash._services._page` collects the
contributions from the hooks and calls into this module.

Security model. Every contribution is treated as hostile, whoever made it: a sandboxed
plugin's result crossed a process boundary, and a trusted plugin may echo user data (a post
title, a comment) into its tags. So

- every contribution is shape-checked (EmDash checks only isolate output; checking is cheap);
- ``link`` needs a ``rel`` from a fixed allowlist (no ``stylesheet``/``preload``/``import``
  that would load active content) and an ``href`` with an ``http``, ``https`` or ``at``
  scheme (no ``javascript:``/``data:``);
- every attribute value is HTML-escaped (``& < > " '``) and always emitted inside double
  quotes;
- JSON-LD is serialised as strict JSON and then ``<``, ``>``, U+2028 and U+2029 are escaped,
  so no string inside the graph can close the ``<script>`` element or open a comment;
- fragment attribute *names* must be plain attribute names: escaping a value does not help
  when the name itself is ``x onload=alert(1) y`` (EmDash escapes names but lets spaces
  through); names starting with ``on`` (event handlers) are dropped;
- in inline script code every ``</`` becomes ``<\\/``.

Only ``html`` fragments are emitted raw, by design: they come only from trusted plugins that
hold ``hooks.page-fragments:register``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FRAGMENT_KINDS",
    "LINK_RELS",
    "METADATA_KINDS",
    "PLACEMENTS",
    "escape_html_attr",
    "flatten_contributions",
    "generate_base_seo",
    "generate_site_seo",
    "hreflang_alternates",
    "is_valid_fragment",
    "is_valid_metadata",
    "render_fragments",
    "render_metadata",
    "resolve_fragments",
    "resolve_metadata",
    "safe_jsonld",
]

METADATA_KINDS = frozenset({"meta", "property", "link", "jsonld"})
LINK_RELS = frozenset(
    {"canonical", "alternate", "author", "license", "nlweb", "site.standard.document"}
)
FRAGMENT_KINDS = frozenset({"external-script", "inline-script", "html"})
PLACEMENTS = ("head", "body:start", "body:end")

# A contribution list longer than this from one handler is cut: a plugin must not be able
# to make every page render slow by returning a million tags.
MAX_CONTRIBUTIONS_PER_HANDLER = 200

_SAFE_HREF = re.compile(r"^(https?|at)://", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ATTR_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.-]{0,63}$")
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_HTML_ESCAPE_RE = re.compile(r"[&<>\"']")


def escape_html_attr(value: str) -> str:
    """Escape ``& < > " '`` so ``value`` is inert inside a double-quoted attribute."""
    return _HTML_ESCAPE_RE.sub(lambda m: _HTML_ESCAPES[m.group(0)], value)


def safe_jsonld(graph: Any) -> str:
    """Serialise a JSON-LD graph for a ``<script type="application/ld+json">`` element.

    Strict JSON (``NaN`` and non-JSON types raise ``ValueError``/``TypeError``), compact like
    ``JSON.stringify``, then ``<``, ``>``, U+2028 and U+2029 escaped as ``\\uXXXX`` so that
    ``</script>`` or ``<!--`` inside a string cannot end the element.
    """
    text = json.dumps(graph, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


# --- validation ------------------------------------------------------------------------


def _opt_str(obj: Mapping[str, Any], key: str) -> bool:
    return obj.get(key) is None or type(obj.get(key)) is str


def is_valid_metadata(c: Any) -> bool:
    """EmDash's ``isValidMetadataContribution`` plus type checks on the optional keys.

    ``meta`` needs string ``name``/``content``; ``property`` string ``property``/``content``;
    ``link`` a string ``href`` and a ``rel`` from :data:`LINK_RELS`; ``jsonld`` a ``graph``
    that is an object or a list of objects. ``key``, ``id`` and ``hreflang``, when given,
    must be strings (a non-string dedupe key could collide or fail to hash).
    """
    if type(c) is not dict or type(c.get("kind")) is not str or c["kind"] not in METADATA_KINDS:
        return False
    kind = c["kind"]
    if not _opt_str(c, "key"):
        return False
    if kind == "meta":
        return type(c.get("name")) is str and type(c.get("content")) is str
    if kind == "property":
        return type(c.get("property")) is str and type(c.get("content")) is str
    if kind == "link":
        return (
            type(c.get("href")) is str
            and type(c.get("rel")) is str
            and c["rel"] in LINK_RELS
            and _opt_str(c, "hreflang")
        )
    graph = c.get("graph")
    graph_ok = type(graph) is dict or (
        type(graph) is list and bool(graph) and all(type(g) is dict for g in graph)
    )
    return graph_ok and _opt_str(c, "id")


def is_valid_fragment(c: Any) -> bool:
    """Shape check of a ``page:fragments`` contribution (kind, placement, typed fields)."""
    if type(c) is not dict or c.get("kind") not in FRAGMENT_KINDS:
        return False
    if c.get("placement") not in PLACEMENTS or not _opt_str(c, "key"):
        return False
    attrs = c.get("attributes")
    if attrs is not None and type(attrs) is not dict:
        return False
    kind = c["kind"]
    if kind == "external-script":
        src = c.get("src")
        if type(src) is not str or not src:
            return False
        # A src with a scheme must be http(s): no javascript:/data: script sources.
        if _SCHEME.match(src) and not re.match(r"^https?://", src, re.IGNORECASE):
            return False
        return all(c.get(flag) is None or type(c.get(flag)) is bool for flag in ("async", "defer"))
    if kind == "inline-script":
        return type(c.get("code")) is str
    return type(c.get("html")) is str


def flatten_contributions(value: Any) -> list[Any]:
    """A handler may return one contribution, a list of them, or ``None``."""
    if value is None:
        return []
    if type(value) is list:
        return value[:MAX_CONTRIBUTIONS_PER_HANDLER]
    return [value]


# --- merge -----------------------------------------------------------------------------


def resolve_metadata(contributions: Iterable[Any]) -> list[dict[str, Any]]:
    """Validate, dedupe (first wins) and order contributions for rendering.

    Dedupe keys: ``meta`` ``key``/``name``; ``property`` ``key``/``property``; one global
    slot for ``link rel=canonical``; other links ``key``/``hreflang``/``href`` (one namespace
    for all non-canonical rels); ``jsonld`` by ``id`` when present, never otherwise. Links
    with an unsafe ``href`` and invalid contributions are dropped. The result is ordered
    meta, property, link, jsonld (the render order) and holds clean copies: the input
    objects are never returned, so nothing a plugin keeps a reference to can change them.
    """
    groups: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("meta", "property", "link", "jsonld")
    }
    seen: dict[str, set[str]] = {k: set() for k in groups}
    for c in contributions:
        if not is_valid_metadata(c):
            continue
        kind = c["kind"]
        explicit = c.get("key")
        key: str | None
        out: dict[str, Any]
        if kind == "meta":
            key = explicit if explicit is not None else c["name"]
            out = {"kind": "meta", "name": c["name"], "content": c["content"]}
        elif kind == "property":
            key = explicit if explicit is not None else c["property"]
            out = {"kind": "property", "property": c["property"], "content": c["content"]}
        elif kind == "link":
            if not _SAFE_HREF.match(c["href"]):
                continue
            if c["rel"] == "canonical":
                key = "canonical"  # one global slot, whatever key the contribution names
            else:
                key = "k:" + next(
                    v for v in (explicit, c.get("hreflang"), c["href"]) if v is not None
                )
            out = {"kind": "link", "rel": c["rel"], "href": c["href"]}
            if c.get("hreflang"):
                out["hreflang"] = c["hreflang"]
        else:
            try:
                # A clean, JSON-only copy: nothing the plugin still references stays shared.
                graph = json.loads(json.dumps(c["graph"], allow_nan=False))
            except (TypeError, ValueError, RecursionError):
                continue  # not JSON (NaN, a set, a cycle...): drop rather than emit junk
            key = c.get("id") or None  # JSON-LD without an id is never deduped
            out = {"kind": "jsonld", "graph": graph}
            if key:
                out["id"] = key
            out["json"] = safe_jsonld(graph)
        if key is not None:
            if key in seen[kind]:
                continue
            seen[kind].add(key)
        groups[kind].append(out)
    return [*groups["meta"], *groups["property"], *groups["link"], *groups["jsonld"]]


def render_metadata(resolved: Iterable[Mapping[str, Any]]) -> str:
    """Render :func:`resolve_metadata` output as head HTML, one tag per line."""
    parts: list[str] = []
    for c in resolved:
        kind = c["kind"]
        if kind == "meta":
            parts.append(
                f'<meta name="{escape_html_attr(c["name"])}" '
                f'content="{escape_html_attr(c["content"])}">'
            )
        elif kind == "property":
            parts.append(
                f'<meta property="{escape_html_attr(c["property"])}" '
                f'content="{escape_html_attr(c["content"])}">'
            )
        elif kind == "link":
            tag = f'<link rel="{escape_html_attr(c["rel"])}" href="{escape_html_attr(c["href"])}"'
            if c.get("hreflang"):
                tag += f' hreflang="{escape_html_attr(c["hreflang"])}"'
            parts.append(tag + ">")
        elif kind == "jsonld":
            json_text = c.get("json") or safe_jsonld(c["graph"])
            parts.append(f'<script type="application/ld+json">{json_text}</script>')
    return "\n".join(parts)


def resolve_fragments(contributions: Iterable[Any], placement: str) -> list[dict[str, Any]]:
    """Valid fragments for ``placement``, deduped first-wins by ``key``, else by script ``src``."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for c in contributions:
        if not is_valid_fragment(c) or c["placement"] != placement:
            continue
        if c.get("key"):
            dedupe = "key:" + c["key"]
        elif c["kind"] == "external-script":
            dedupe = "src:" + c["src"]
        else:
            dedupe = ""
        if dedupe:
            if dedupe in seen:
                continue
            seen.add(dedupe)
        out.append(c)
    return out


def _render_attrs(attrs: Mapping[str, Any] | None) -> str:
    if not attrs:
        return ""
    parts = []
    for name, value in attrs.items():
        # Drop event handlers (onload, ONERROR...) and anything that is not a plain attribute
        # name: a name is emitted unquoted, so it must not be able to smuggle in a second one.
        if type(name) is not str or not _ATTR_NAME.match(name) or name[:2].lower() == "on":
            continue
        if type(value) is bool:
            if value:
                parts.append(f" {name}")
            continue
        if type(value) not in (str, int) and not (type(value) is float and math.isfinite(value)):
            continue
        parts.append(f' {name}="{escape_html_attr(str(value))}"')
    return "".join(parts)


def _render_fragment(c: Mapping[str, Any], nonce: str | None) -> str:
    nonce_attr = f' nonce="{escape_html_attr(nonce)}"' if nonce else ""
    if c["kind"] == "external-script":
        tag = f'<script src="{escape_html_attr(c["src"])}"{nonce_attr}'
        if c.get("async"):
            tag += " async"
        if c.get("defer"):
            tag += " defer"
        return tag + _render_attrs(c.get("attributes")) + "></script>"
    if c["kind"] == "inline-script":
        # "</" cannot appear in valid JS outside strings/regexes/comments, and inside them
        # "<\/" means the same thing, so the rewrite is meaning-preserving and closes the
        # only way out of the element.
        code = c["code"].replace("</", "<\\/")
        return f"<script{nonce_attr}{_render_attrs(c.get('attributes'))}>{code}</script>"
    html: str = c["html"]
    return html


def render_fragments(contributions: Iterable[Any], placement: str, nonce: str | None = None) -> str:
    """Render the fragments for one placement, one per line."""
    return "\n".join(
        _render_fragment(c, nonce) for c in resolve_fragments(contributions, placement)
    )


# --- base and site SEO -----------------------------------------------------------------


def _s(value: Any) -> str | None:
    """A non-empty string, or None (page fields may be missing, null or of the wrong type)."""
    return value if type(value) is str and value else None


def _first(*values: Any) -> str | None:
    for v in values:
        if _s(v):
            return str(v)
    return None


def _site_origin(page: Mapping[str, Any]) -> str:
    for candidate in (_s(page.get("siteUrl")), _s(page.get("url"))):
        if candidate:
            parts = urlsplit(candidate)
            if parts.scheme and parts.netloc:
                return f"{parts.scheme}://{parts.netloc}"
    return _s(page.get("siteUrl")) or _s(page.get("canonical")) or _s(page.get("url")) or ""


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values recursively (JSON-LD validators prefer absent keys)."""
    return {k: _clean(v) if type(v) is dict else v for k, v in obj.items() if v is not None}


def generate_base_seo(
    page: Mapping[str, Any], default_og_image: str | None = None
) -> list[dict[str, Any]]:
    """The fallback tags generated from the page context (plugins and site settings win).

    Emits description, robots, canonical, ``og:type``/title/description/image/url/site_name,
    the twitter card tags, ``article:*`` times and author for articles, and a ``BlogPosting``
    (articles with a canonical URL) or ``WebSite`` (other pages with a site name) JSON-LD.
    """
    raw_seo = page.get("seo")
    seo: Mapping[str, Any] = raw_seo if type(raw_seo) is dict else {}
    article = page.get("pageType") == "article"
    description = _s(page.get("description"))
    # Title falls back only when the SEO title is absent (EmDash uses ?? here, || below).
    og_title = (
        _s(seo.get("ogTitle"))
        if seo.get("ogTitle") is not None
        else _first(page.get("pageTitle"), page.get("title"))
    )
    og_description = _first(seo.get("ogDescription"), description)
    og_image = _first(seo.get("ogImage"), page.get("image"), default_og_image)
    robots = _s(seo.get("robots"))
    canonical = _s(page.get("canonical"))
    site_name = _s(page.get("siteName"))

    out: list[dict[str, Any]] = []

    def meta(name: str, content: str | None) -> None:
        if content:
            out.append({"kind": "meta", "name": name, "content": content})

    def prop(name: str, content: str | None) -> None:
        if content:
            out.append({"kind": "property", "property": name, "content": content})

    meta("description", description)
    meta("robots", robots)
    if canonical:
        out.append({"kind": "link", "rel": "canonical", "href": canonical})
    prop("og:type", "article" if article else "website")
    prop("og:title", og_title)
    prop("og:description", og_description)
    prop("og:image", og_image)
    prop("og:url", canonical)
    prop("og:site_name", site_name)
    meta("twitter:card", "summary_large_image" if og_image else "summary")
    meta("twitter:title", og_title)
    meta("twitter:description", og_description)
    meta("twitter:image", og_image)

    raw_meta = page.get("articleMeta")
    article_meta: Mapping[str, Any] = raw_meta if type(raw_meta) is dict else {}
    published = _s(article_meta.get("publishedTime"))
    modified = _s(article_meta.get("modifiedTime"))
    author = _s(article_meta.get("author"))
    if article:
        prop("article:published_time", published)
        prop("article:modified_time", modified)
        prop("article:author", author)

    if article and canonical:
        graph = _clean(
            {
                "@context": "https://schema.org",
                "@type": "BlogPosting",
                "@id": f"{canonical}#article",
                "headline": og_title,
                "description": og_description,
                "image": og_image,
                "url": canonical,
                "datePublished": published,
                "dateModified": modified or published,
                "author": {"@type": "Person", "name": author} if author else None,
                "publisher": {
                    "@type": "Organization",
                    "@id": f"{_site_origin(page)}/#organization",
                    "name": site_name,
                }
                if site_name
                else None,
                "mainEntityOfPage": {"@type": "WebPage", "@id": canonical},
            }
        )
        out.append({"kind": "jsonld", "id": "primary", "graph": graph})
    elif not article and site_name:
        origin = _site_origin(page)
        graph = {
            "@context": "https://schema.org",
            "@type": "WebSite",
            "@id": f"{origin}/#website",
            "name": site_name,
            "url": origin,
        }
        out.append({"kind": "jsonld", "id": "primary", "graph": graph})
    return out


def generate_site_seo(settings: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Site-wide verification tags from the SEO settings (``googleVerification``...)."""
    if not settings:
        return []
    out: list[dict[str, Any]] = []
    google = _s(settings.get("googleVerification"))
    bing = _s(settings.get("bingVerification"))
    if google:
        out.append({"kind": "meta", "name": "google-site-verification", "content": google})
    if bing:
        out.append({"kind": "meta", "name": "msvalidate.01", "content": bing})
    return out


def hreflang_alternates(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``link rel=alternate`` tags from the page's optional ``alternates`` list.

    ``alternates`` (``[{"hreflang": "de", "href": "https://..."}]``) is how a host passes the
    translations of a page; entries of the wrong shape are ignored.
    """
    raw = page.get("alternates")
    if type(raw) is not list:
        return []
    return [
        {"kind": "link", "rel": "alternate", "href": a["href"], "hreflang": a["hreflang"]}
        for a in raw
        if type(a) is dict and _s(a.get("href")) and _s(a.get("hreflang"))
    ]
