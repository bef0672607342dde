"""OpenGraph metadata: ``page:metadata`` contributions.

The handler returns a list of contributions (``property``, ``meta``, ``link`` and
``jsonld``). The host validates their shapes, keeps the first contribution per key, escapes
every attribute and the JSON-LD, and drops links whose rel or href it does not allow.
"""

from emdash import define_plugin


def page_metadata(event, ctx):
    page = event["page"]
    kind = page.get("pageType") or ("article" if page.get("kind") == "content" else "website")
    title = page.get("pageTitle") or page.get("title") or ctx.site.name
    out = [
        {"kind": "property", "property": "og:type", "content": kind},
        {"kind": "property", "property": "og:title", "content": title},
        {
            "kind": "meta",
            "name": "twitter:card",
            "content": "summary_large_image" if page.get("image") else "summary",
        },
    ]
    if page.get("url"):
        out.append({"kind": "property", "property": "og:url", "content": page["url"]})
    if page.get("description"):
        out.append(
            {"kind": "property", "property": "og:description", "content": page["description"]}
        )
    if page.get("image"):
        out.append({"kind": "property", "property": "og:image", "content": page["image"]})
    if ctx.site.name:
        out.append({"kind": "property", "property": "og:site_name", "content": ctx.site.name})
    if page.get("canonical"):
        out.append({"kind": "link", "rel": "canonical", "href": page["canonical"]})
    graph = {
        "@context": "https://schema.org",
        "@type": "BlogPosting" if kind == "article" else "WebPage",
        "headline": title,
        "url": page.get("url"),
    }
    article = page.get("articleMeta") or {}
    if article.get("publishedTime"):
        graph["datePublished"] = article["publishedTime"]
    if article.get("author"):
        graph["author"] = {"@type": "Person", "name": article["author"]}
    out.append({"kind": "jsonld", "id": "og-metadata-main", "graph": graph})
    return out


plugin = define_plugin(hooks={"page:metadata": page_metadata})
