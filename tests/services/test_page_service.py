"""rt.page: page:metadata from trusted and sandboxed plugins, page:fragments from trusted ones,
merged with site and base SEO, escaped and rendered."""

from __future__ import annotations

from typing import Any

import pytest

import emdash
from emdash._services._page import page_context
from emdash._shared._errors import InvalidPageContextError, ManifestError

PAGE = page_context(
    "https://site.example/posts/hi",
    kind="content",
    title="Hi",
    description="About hi",
    canonical="https://site.example/posts/hi",
    content={"collection": "posts", "id": "01H", "slug": "hi"},
    site_name="Site",
)

METADATA = """
def meta(event, ctx):
    record("page", event["page"])
    event["page"]["description"] = "mutated by plugin"   # must not leak into base SEO
    return [
        {"kind": "meta", "name": "description", "content": "From plugin"},
        {"kind": "property", "property": "og:title", "content": "Plugin <b>title</b>"},
        {"kind": "link", "rel": "canonical", "href": "https://site.example/canonical"},
        {"kind": "jsonld", "id": "primary", "graph": {"@type": "Thing", "name": "p"}},
    ]
plugin = define_plugin(hooks={"page:metadata": meta})
"""

FRAGMENTS = """
def fragments(event, ctx):
    record("fragments", event["page"]["url"])
    return [
        {"kind": "external-script", "placement": "head", "src": "https://cdn.example/a.js",
         "defer": True, "attributes": {"onload": "steal()", "data-site": "s"}},
        {"kind": "inline-script", "placement": "body:end",
         "code": "window.x = '</script><script>alert(1)</script>';"},
        {"kind": "html", "placement": "body:start", "html": "<div id=banner>Hi</div>"},
        {"kind": "html", "placement": "nowhere", "html": "dropped"},
    ]
plugin = define_plugin(hooks={"page:fragments": fragments})
"""


def test_page_context_helper() -> None:
    assert page_context("https://x.example/a/b?q=1") == {
        "url": "https://x.example/a/b?q=1",
        "path": "/a/b",
        "locale": None,
        "kind": "custom",
        "pageType": "website",
        "title": None,
        "description": None,
        "canonical": None,
        "image": None,
    }
    assert PAGE["pageType"] == "article" and PAGE["siteName"] == "Site"
    with pytest.raises(InvalidPageContextError) as exc:
        page_context("https://x", kind="blog")
    assert str(exc.value) == 'Invalid page kind "blog": use "content" or "custom"'


def test_render_head_merges_first_wins_and_orders_output(rt: emdash.Runtime, plugins: Any) -> None:
    rec = plugins.add("seo", METADATA)
    page = dict(PAGE)
    head = rt.page.render_head(page)
    assert head == "\n".join(
        [
            '<meta name="description" content="From plugin">',
            '<meta name="twitter:card" content="summary">',
            '<meta name="twitter:title" content="Hi">',
            '<meta name="twitter:description" content="About hi">',
            '<meta property="og:title" content="Plugin &lt;b&gt;title&lt;/b&gt;">',
            '<meta property="og:type" content="article">',
            '<meta property="og:description" content="About hi">',
            '<meta property="og:url" content="https://site.example/posts/hi">',
            '<meta property="og:site_name" content="Site">',
            '<link rel="canonical" href="https://site.example/canonical">',
            '<script type="application/ld+json">{"@type":"Thing","name":"p"}</script>',
        ]
    )
    # The plugin got the page context as data, and its mutation stayed in its copy.
    assert rec.records("page") == [PAGE]
    assert page == PAGE


def test_site_seo_settings_and_alternates(rt: emdash.Runtime) -> None:
    rt.store.options.set(
        "emdash:seo",
        {"googleVerification": "g-123", "defaultOgImage": "https://cdn.example/og.png"},
    )
    page = page_context(
        "https://site.example/",
        title="Home",
        alternates=[{"hreflang": "de", "href": "https://site.example/de/"}],
    )
    resolved = rt.page.metadata(page)
    assert {"kind": "meta", "name": "google-site-verification", "content": "g-123"} in resolved
    assert {
        "kind": "property",
        "property": "og:image",
        "content": "https://cdn.example/og.png",
    } in resolved
    assert {
        "kind": "link",
        "rel": "alternate",
        "href": "https://site.example/de/",
        "hreflang": "de",
    } in resolved


def test_xss_attempts_from_a_trusted_plugin_are_escaped_or_dropped(
    rt: emdash.Runtime, plugins: Any
) -> None:
    plugins.add(
        "evil-ish",
        """
        def meta(event, ctx):
            return [
                {"kind": "meta", "name": "description",
                 "content": '"><script>alert(1)</script>'},
                {"kind": "link", "rel": "author", "href": "javascript:alert(1)"},
                {"kind": "link", "rel": "stylesheet", "href": "https://evil.example/x.css"},
                {"kind": "jsonld", "graph": {"name": "</script><script>alert(1)</script>"}},
                {"kind": "script", "src": "https://evil.example/x.js"},
                "not a contribution",
            ]
        plugin = define_plugin(hooks={"page:metadata": meta})
        """,
    )
    head = rt.page.render_head(page_context("https://site.example/"))
    assert "<script>alert" not in head
    assert "javascript:" not in head and "stylesheet" not in head and "evil.example" not in head
    assert (
        '<meta name="description" content="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">'
        in head
    )
    assert (
        '<script type="application/ld+json">{"name":"\\u003c/script\\u003e\\u003cscript'
        '\\u003ealert(1)\\u003c/script\\u003e"}</script>'
    ) in head


def test_sandboxed_plugin_metadata_is_validated_and_its_fragments_never_run(
    rt: emdash.Runtime,
) -> None:
    source = """
from emdash import define_plugin

def meta(event, ctx):
    return [
        {"kind": "meta", "name": "author", "content": event["page"]["title"] + " & co"},
        {"kind": "link", "rel": "alternate", "href": "data:text/html,<script>x</script>"},
        {"kind": "link", "rel": "preload", "href": "https://evil.example/x.js"},
        {"kind": "meta", "name": "broken"},
    ]

def fragments(event, ctx):
    return {"kind": "html", "placement": "head", "html": "<script>alert(1)</script>"}

plugin = define_plugin(hooks={"page:metadata": meta, "page:fragments": fragments})
"""
    rt.add_plugin(
        {
            "id": "sandboxed-seo",
            "version": "1.0.0",
            "capabilities": ["hooks.page-fragments:register"],
        },
        source=source,
    )
    page = page_context("https://site.example/", title="Home")
    # Shape check at collection drops the bad rel and the incomplete meta...
    assert rt.page.collect(page).metadata == [
        {"kind": "meta", "name": "author", "content": "Home & co"},
        {"kind": "link", "rel": "alternate", "href": "data:text/html,<script>x</script>"},
    ]
    # ...and the merge drops the link whose href scheme is not http(s)/at.
    assert [c for c in rt.page.metadata(page) if c["kind"] == "link"] == []
    assert rt.page.collect(page).fragments == []
    head = rt.page.render_head(page)
    assert '<meta name="author" content="Home &amp; co">' in head
    assert "evil.example" not in head and "data:" not in head and "alert" not in head


def test_fragments_from_trusted_plugins_with_the_capability(
    rt: emdash.Runtime, plugins: Any
) -> None:
    rec = plugins.add("analytics", FRAGMENTS, capabilities=["hooks.page-fragments:register"])
    with pytest.raises(ManifestError, match='hook page:fragments needs capability "hooks.page'):
        plugins.add(
            "no-cap",
            """
            plugin = define_plugin(hooks={"page:fragments": lambda e, c:
                {"kind": "html", "placement": "head", "html": "<b>no capability</b>"}})
            """,
        )
    page = page_context("https://site.example/")
    assert rt.page.fragments(page, "head") == (
        '<script src="https://cdn.example/a.js" defer data-site="s"></script>'
    )
    assert rt.page.fragments(page, "body:start") == "<div id=banner>Hi</div>"
    assert rt.page.fragments(page, "body:end", nonce="n1") == (
        "<script nonce=\"n1\">window.x = '<\\/script><script>alert(1)<\\/script>';</script>"
    )
    head = rt.page.render_head(page)
    assert head.endswith('<script src="https://cdn.example/a.js" defer data-site="s"></script>')
    # One page object: the hooks ran once for all four calls.
    assert rec.records("fragments") == ["https://site.example/"]
    with pytest.raises(InvalidPageContextError) as exc:
        rt.page.fragments(page, "footer")
    assert str(exc.value) == (
        'Invalid fragment placement "footer": use one of head, body:start, body:end'
    )


def test_failing_page_hooks_never_break_the_page(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "crashy",
        """
        def meta(event, ctx):
            raise RuntimeError("metadata boom")
        plugin = define_plugin(hooks={"page:metadata": meta})
        """,
    )
    plugins.add("seo", METADATA)
    head = rt.page.render_head(dict(PAGE))
    assert head.startswith('<meta name="description" content="From plugin">')


def test_invalid_page_context(rt: emdash.Runtime) -> None:
    with pytest.raises(InvalidPageContextError) as exc:
        rt.page.render_head({"title": "no url"})
    assert str(exc.value) == (
        "Invalid page context: pass a dict with at least a string 'url' "
        "(build one with emdash.page_context(...))"
    )
    with pytest.raises(InvalidPageContextError) as exc:
        rt.page.metadata({"url": "https://x/", "when": object()})
    assert str(exc.value).startswith("Invalid page context: it must be plain JSON data")
