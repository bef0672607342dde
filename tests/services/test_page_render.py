"""Page metadata/fragment validation, merge and rendering (pure functions)."""

from __future__ import annotations

import json

import pytest

from emdash._services._page_render import (
    escape_html_attr,
    generate_base_seo,
    generate_site_seo,
    hreflang_alternates,
    is_valid_fragment,
    is_valid_metadata,
    render_fragments,
    render_metadata,
    resolve_fragments,
    resolve_metadata,
    safe_jsonld,
)


def test_escape_html_attr_escapes_the_five_characters() -> None:
    assert escape_html_attr("""a&b<c>d"e'f""") == "a&amp;b&lt;c&gt;d&quot;e&#39;f"


def test_safe_jsonld_escapes_script_breakers_and_line_separators() -> None:
    text = safe_jsonld({"name": "</script><!--\u2028\u2029"})
    assert text == '{"name":"\\u003c/script\\u003e\\u003c!--\\u2028\\u2029"}'
    assert "<" not in text and ">" not in text
    assert json.loads(text) == {"name": "</script><!--\u2028\u2029"}


def test_safe_jsonld_refuses_non_json() -> None:
    with pytest.raises(ValueError):
        safe_jsonld({"x": float("nan")})
    with pytest.raises(TypeError):
        safe_jsonld({"x": {1, 2}})


@pytest.mark.parametrize(
    "contribution",
    [
        {"kind": "meta", "name": "a", "content": "b"},
        {"kind": "meta", "name": "a", "content": "b", "key": "k"},
        {"kind": "property", "property": "og:x", "content": "b"},
        {"kind": "link", "rel": "canonical", "href": "https://x"},
        {"kind": "link", "rel": "alternate", "href": "https://x", "hreflang": "de"},
        {"kind": "link", "rel": "site.standard.document", "href": "at://did/x"},
        {"kind": "jsonld", "graph": {"@type": "Thing"}},
        {"kind": "jsonld", "id": "p", "graph": [{"@type": "Thing"}]},
    ],
)
def test_valid_metadata_shapes(contribution: dict[str, object]) -> None:
    assert is_valid_metadata(contribution)


@pytest.mark.parametrize(
    "contribution",
    [
        None,
        "meta",
        ["kind", "meta"],
        {"kind": "script", "src": "x"},
        {"kind": "meta", "name": "a"},
        {"kind": "meta", "name": 1, "content": "b"},
        {"kind": "meta", "name": "a", "content": "b", "key": 3},
        {"kind": "property", "property": "og:x", "content": None},
        {"kind": "link", "rel": "stylesheet", "href": "https://evil/x.css"},
        {"kind": "link", "rel": "preload", "href": "https://evil/x.js"},
        {"kind": "link", "rel": "canonical"},
        {"kind": "link", "rel": "alternate", "href": "https://x", "hreflang": 5},
        {"kind": "jsonld", "graph": None},
        {"kind": "jsonld", "graph": "string"},
        {"kind": "jsonld", "graph": []},
        {"kind": "jsonld", "graph": [1]},
        {"kind": "jsonld", "graph": {}, "id": 7},
    ],
)
def test_invalid_metadata_shapes(contribution: object) -> None:
    assert not is_valid_metadata(contribution)


def test_resolve_first_wins_per_dedupe_key_and_orders_by_kind() -> None:
    resolved = resolve_metadata(
        [
            {"kind": "jsonld", "id": "primary", "graph": {"n": 1}},
            {"kind": "link", "rel": "canonical", "href": "https://plugin/c"},
            {"kind": "property", "property": "og:title", "content": "plugin"},
            {"kind": "meta", "name": "description", "content": "plugin"},
            {"kind": "meta", "name": "description", "content": "base"},
            {"kind": "meta", "name": "robots", "content": "a", "key": "r"},
            {"kind": "meta", "name": "robots2", "content": "b", "key": "r"},
            {"kind": "property", "property": "og:title", "content": "base"},
            {"kind": "link", "rel": "canonical", "href": "https://base/c", "key": "other"},
            {"kind": "link", "rel": "alternate", "href": "https://x/de", "hreflang": "de"},
            {"kind": "link", "rel": "author", "href": "https://x/de2", "hreflang": "de"},
            {"kind": "link", "rel": "license", "href": "https://x/l"},
            {"kind": "link", "rel": "author", "href": "https://x/l"},
            {"kind": "jsonld", "id": "primary", "graph": {"n": 2}},
            {"kind": "jsonld", "graph": {"n": 3}},
            {"kind": "jsonld", "graph": {"n": 3}},
            {"kind": "unknown", "name": "x"},
        ]
    )
    assert resolved == [
        {"kind": "meta", "name": "description", "content": "plugin"},
        {"kind": "meta", "name": "robots", "content": "a"},
        {"kind": "property", "property": "og:title", "content": "plugin"},
        {"kind": "link", "rel": "canonical", "href": "https://plugin/c"},
        {"kind": "link", "rel": "alternate", "href": "https://x/de", "hreflang": "de"},
        {"kind": "link", "rel": "license", "href": "https://x/l"},
        {"kind": "jsonld", "graph": {"n": 1}, "id": "primary", "json": '{"n":1}'},
        {"kind": "jsonld", "graph": {"n": 3}, "json": '{"n":3}'},
        {"kind": "jsonld", "graph": {"n": 3}, "json": '{"n":3}'},
    ]


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "data:text/html,<script>",
        "//evil.example/x",
        "/relative",
        " https://x",
        "vbscript:x",
        "JAVASCRIPT://x",
    ],
)
def test_links_with_unsafe_href_are_dropped(href: str) -> None:
    assert resolve_metadata([{"kind": "link", "rel": "author", "href": href}]) == []


def test_safe_href_schemes_are_case_insensitive() -> None:
    resolved = resolve_metadata([{"kind": "link", "rel": "author", "href": "HTTPS://X/a"}])
    assert resolved == [{"kind": "link", "rel": "author", "href": "HTTPS://X/a"}]


def test_resolve_copies_graphs_and_drops_non_json() -> None:
    graph = {"a": [1, 2]}
    resolved = resolve_metadata(
        [
            {"kind": "jsonld", "graph": graph},
            {"kind": "jsonld", "graph": {"bad": float("inf")}},
            {"kind": "jsonld", "graph": {"bad": object()}},
        ]
    )
    assert len(resolved) == 1
    graph["a"].append(3)  # the plugin keeps its object; the resolved copy must not change
    assert resolved[0]["graph"] == {"a": [1, 2]}


def test_render_metadata_escapes_every_attribute_and_jsonld() -> None:
    resolved = resolve_metadata(
        [
            {"kind": "meta", "name": 'x" onload="alert(1)', "content": "<script>alert(1)</script>"},
            {"kind": "property", "property": "og:title", "content": "Tom & 'Jerry'"},
            {"kind": "link", "rel": "alternate", "href": 'https://x/"><script>', "hreflang": 'de"'},
            {"kind": "jsonld", "graph": {"headline": "</script><script>alert(1)</script>"}},
        ]
    )
    assert render_metadata(resolved) == "\n".join(
        [
            '<meta name="x&quot; onload=&quot;alert(1)" '
            'content="&lt;script&gt;alert(1)&lt;/script&gt;">',
            '<meta property="og:title" content="Tom &amp; &#39;Jerry&#39;">',
            '<link rel="alternate" href="https://x/&quot;&gt;&lt;script&gt;" hreflang="de&quot;">',
            '<script type="application/ld+json">{"headline":"\\u003c/script\\u003e'
            '\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"}</script>',
        ]
    )


# --- fragments -------------------------------------------------------------------------


def test_fragment_validation() -> None:
    assert is_valid_fragment({"kind": "html", "placement": "body:end", "html": "<b>x</b>"})
    assert is_valid_fragment(
        {"kind": "external-script", "placement": "head", "src": "https://cdn/x.js", "async": True}
    )
    assert is_valid_fragment({"kind": "external-script", "placement": "head", "src": "/x.js"})
    assert is_valid_fragment({"kind": "inline-script", "placement": "body:start", "code": "1"})
    assert not is_valid_fragment({"kind": "html", "placement": "footer", "html": "x"})
    assert not is_valid_fragment({"kind": "iframe", "placement": "head", "src": "https://x"})
    assert not is_valid_fragment({"kind": "external-script", "placement": "head", "src": ""})
    assert not is_valid_fragment(
        {"kind": "external-script", "placement": "head", "src": "javascript:alert(1)"}
    )
    assert not is_valid_fragment(
        {"kind": "external-script", "placement": "head", "src": "data:text/javascript,alert(1)"}
    )
    assert not is_valid_fragment(
        {"kind": "external-script", "placement": "head", "src": "https://x", "async": "yes"}
    )
    assert not is_valid_fragment({"kind": "inline-script", "placement": "head", "code": 1})
    assert not is_valid_fragment(
        {"kind": "inline-script", "placement": "head", "code": "1", "attributes": ["a"]}
    )


def test_fragments_filter_by_placement_and_dedupe_first_wins() -> None:
    contributions = [
        {"kind": "external-script", "placement": "head", "src": "https://a/x.js"},
        {"kind": "external-script", "placement": "head", "src": "https://a/x.js", "defer": True},
        {"kind": "html", "placement": "head", "html": "<i>1</i>", "key": "k"},
        {"kind": "html", "placement": "head", "html": "<i>2</i>", "key": "k"},
        {"kind": "html", "placement": "body:end", "html": "<i>3</i>", "key": "k"},
        {"kind": "inline-script", "placement": "head", "code": "a()"},
        {"kind": "inline-script", "placement": "head", "code": "a()"},
    ]
    assert resolve_fragments(contributions, "head") == [
        contributions[0],
        contributions[2],
        contributions[5],
        contributions[6],
    ]
    assert render_fragments(contributions, "body:end") == "<i>3</i>"


def test_render_fragments_drops_event_handlers_and_bad_attribute_names() -> None:
    html = render_fragments(
        [
            {
                "kind": "external-script",
                "placement": "head",
                "src": 'https://cdn/x.js?a=1&b="2"',
                "async": True,
                "defer": True,
                "attributes": {
                    "onload": "steal()",
                    "OnError": "steal()",
                    "x onload=steal() y": "v",
                    'data-x"': "v",
                    "data-site": 'a"b<c',
                    "crossorigin": "anonymous",
                    "integrity": 5,
                    "nomodule": True,
                    "hidden": False,
                    "data-obj": {"a": 1},
                },
            },
            {
                "kind": "inline-script",
                "placement": "head",
                "code": 'var s = "</script><script>alert(1)</script>";',
                "attributes": {"type": "module", "onclick": "x"},
            },
        ],
        "head",
        nonce='n"1',
    )
    assert html == "\n".join(
        [
            '<script src="https://cdn/x.js?a=1&amp;b=&quot;2&quot;" nonce="n&quot;1" async defer'
            ' data-site="a&quot;b&lt;c" crossorigin="anonymous" integrity="5" nomodule></script>',
            '<script nonce="n&quot;1" type="module">'
            'var s = "<\\/script><script>alert(1)<\\/script>";</script>',
        ]
    )


def test_html_fragments_are_emitted_raw() -> None:
    raw = '<div class="banner">Hello</div>'
    assert (
        render_fragments([{"kind": "html", "placement": "body:start", "html": raw}], "body:start")
        == raw
    )


# --- base SEO --------------------------------------------------------------------------


def test_base_seo_for_an_article() -> None:
    page = {
        "url": "https://site.example/posts/hi",
        "pageType": "article",
        "title": "Hi",
        "pageTitle": "Hi | Site",
        "description": "About hi",
        "canonical": "https://site.example/posts/hi",
        "image": "https://site.example/hi.png",
        "seo": {"ogTitle": None, "ogDescription": "", "ogImage": None, "robots": "noindex"},
        "articleMeta": {
            "publishedTime": "2026-01-01T00:00:00Z",
            "modifiedTime": None,
            "author": "Ann",
        },
        "siteName": "Site",
        "siteUrl": "https://site.example/blog",
    }
    assert generate_base_seo(page) == [
        {"kind": "meta", "name": "description", "content": "About hi"},
        {"kind": "meta", "name": "robots", "content": "noindex"},
        {"kind": "link", "rel": "canonical", "href": "https://site.example/posts/hi"},
        {"kind": "property", "property": "og:type", "content": "article"},
        {"kind": "property", "property": "og:title", "content": "Hi | Site"},
        {"kind": "property", "property": "og:description", "content": "About hi"},
        {"kind": "property", "property": "og:image", "content": "https://site.example/hi.png"},
        {"kind": "property", "property": "og:url", "content": "https://site.example/posts/hi"},
        {"kind": "property", "property": "og:site_name", "content": "Site"},
        {"kind": "meta", "name": "twitter:card", "content": "summary_large_image"},
        {"kind": "meta", "name": "twitter:title", "content": "Hi | Site"},
        {"kind": "meta", "name": "twitter:description", "content": "About hi"},
        {"kind": "meta", "name": "twitter:image", "content": "https://site.example/hi.png"},
        {
            "kind": "property",
            "property": "article:published_time",
            "content": "2026-01-01T00:00:00Z",
        },
        {"kind": "property", "property": "article:author", "content": "Ann"},
        {
            "kind": "jsonld",
            "id": "primary",
            "graph": {
                "@context": "https://schema.org",
                "@type": "BlogPosting",
                "@id": "https://site.example/posts/hi#article",
                "headline": "Hi | Site",
                "description": "About hi",
                "image": "https://site.example/hi.png",
                "url": "https://site.example/posts/hi",
                "datePublished": "2026-01-01T00:00:00Z",
                "dateModified": "2026-01-01T00:00:00Z",
                "author": {"@type": "Person", "name": "Ann"},
                "publisher": {
                    "@type": "Organization",
                    "@id": "https://site.example/#organization",
                    "name": "Site",
                },
                "mainEntityOfPage": {"@type": "WebPage", "@id": "https://site.example/posts/hi"},
            },
        },
    ]


def test_base_seo_for_a_website_page_uses_default_image_and_seo_overrides() -> None:
    page = {
        "url": "https://site.example/",
        "pageType": "website",
        "title": "Home",
        "seo": {"ogTitle": "OG home", "ogDescription": "OG desc"},
        "siteName": "Site",
        "articleMeta": {"publishedTime": "2026-01-01T00:00:00Z"},
    }
    assert generate_base_seo(page, "https://cdn/default.png") == [
        {"kind": "property", "property": "og:type", "content": "website"},
        {"kind": "property", "property": "og:title", "content": "OG home"},
        {"kind": "property", "property": "og:description", "content": "OG desc"},
        {"kind": "property", "property": "og:image", "content": "https://cdn/default.png"},
        {"kind": "property", "property": "og:site_name", "content": "Site"},
        {"kind": "meta", "name": "twitter:card", "content": "summary_large_image"},
        {"kind": "meta", "name": "twitter:title", "content": "OG home"},
        {"kind": "meta", "name": "twitter:description", "content": "OG desc"},
        {"kind": "meta", "name": "twitter:image", "content": "https://cdn/default.png"},
        {
            "kind": "jsonld",
            "id": "primary",
            "graph": {
                "@context": "https://schema.org",
                "@type": "WebSite",
                "@id": "https://site.example/#website",
                "name": "Site",
                "url": "https://site.example",
            },
        },
    ]


def test_base_seo_minimal_page_and_wrong_types_are_ignored() -> None:
    page = {"url": "https://x/", "title": 5, "description": ["x"], "seo": "nope"}
    assert generate_base_seo(page) == [
        {"kind": "property", "property": "og:type", "content": "website"},
        {"kind": "meta", "name": "twitter:card", "content": "summary"},
    ]


def test_site_seo_and_hreflang_alternates() -> None:
    assert generate_site_seo({"googleVerification": "g", "bingVerification": "b"}) == [
        {"kind": "meta", "name": "google-site-verification", "content": "g"},
        {"kind": "meta", "name": "msvalidate.01", "content": "b"},
    ]
    assert generate_site_seo(None) == []
    page = {"alternates": [{"hreflang": "de", "href": "https://x/de"}, {"hreflang": "fr"}, "x"]}
    assert hreflang_alternates(page) == [
        {"kind": "link", "rel": "alternate", "href": "https://x/de", "hreflang": "de"}
    ]
