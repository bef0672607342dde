"""Site config parity with EmDash: configured locales and the default site URL.

A site declares its locales and its default locale; a locale entering the store is
normalised to the configured spelling or refused, and content without one is created in
the site's default locale. The default site URL is ``""`` so ``ctx.url("/p")`` is ``"/p"``.
Plugins are run in both modes (trusted in-process, sandboxed in a forked worker) on real
SQLite files; the host side goes through ``rt.content``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import ConfigError, EmDashError

SOURCE = """
from emdash import BridgeError, define_plugin

def create(route_ctx, ctx):
    out = []
    for locale in route_ctx["input"]["locales"]:
        try:
            out.append(["ok", ctx.content.create("posts", {"title": "t"}, locale=locale)["locale"]])
        except BridgeError as exc:
            out.append(["BridgeError", str(exc)])
    return out

def site(route_ctx, ctx):
    return [ctx.url("/posts"), ctx.site.url, ctx.site.locale]

plugin = define_plugin(routes={"create": create, "site": site})
"""

MODES = pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "sandboxed"])


def _runtime(tmp_path: Path, trusted: bool, site: dict[str, Any] | None) -> emdash.Runtime:
    rt = emdash.Runtime(tmp_path / "site.db", site=site)
    rt.add_plugin(
        {"id": "loc", "capabilities": ["content:write"]},
        source={"plugin.py": SOURCE},
        trusted=trusted,
    )
    return rt


@pytest.fixture
def locales_site() -> dict[str, Any]:
    return {"locale": "ja", "locales": ["ja", "en", "zh-TW"]}


@MODES
def test_plugin_content_locales_are_normalised_refused_or_defaulted(
    tmp_path: Path, trusted: bool, locales_site: dict[str, Any]
) -> None:
    with _runtime(tmp_path, trusted, locales_site) as rt:
        out = rt.invoke_route("loc", "create", input={"locales": [None, "zh-tw", "EN", "de"]})
        assert out == [
            ["ok", "ja"],
            ["ok", "zh-TW"],
            ["ok", "en"],
            ["BridgeError", 'Locale "de" is not configured for this site'],
        ]
        # Nothing was written for the refused one.
        assert sorted(i["locale"] for i in rt.store.content_items.list("posts")["items"]) == [
            "en",
            "ja",
            "zh-TW",
        ]


@MODES
def test_default_site_url_is_empty_so_ctx_url_is_the_path(tmp_path: Path, trusted: bool) -> None:
    with _runtime(tmp_path, trusted, None) as rt:
        assert rt.site["url"] == ""
        assert rt.invoke_route("loc", "site") == ["/posts", "", "en"]
        out = rt.invoke_route("loc", "create", input={"locales": [None, "de"]})
        # Without configured locales any well-formed code is accepted (EmDash without i18n).
        assert out == [["ok", "en"], ["ok", "de"]]


@MODES
def test_site_locale_is_the_default_and_reaches_ctx_site(tmp_path: Path, trusted: bool) -> None:
    site = {"url": "https://example.test/", "locale": "ja"}
    with _runtime(tmp_path, trusted, site) as rt:
        assert rt.invoke_route("loc", "site") == [
            "https://example.test/posts",
            "https://example.test",
            "ja",
        ]
        assert rt.invoke_route("loc", "create", input={"locales": [None]}) == [["ok", "ja"]]


def test_host_content_uses_the_site_locales(tmp_path: Path, locales_site: dict[str, Any]) -> None:
    with emdash.Runtime(tmp_path / "site.db", site=locales_site) as rt:
        assert rt.site["locale"] == "ja"
        assert rt.content.create("posts", {"title": "a"})["locale"] == "ja"
        assert rt.content.create("posts", {"title": "b"}, locale="ZH-TW")["locale"] == "zh-TW"
        with pytest.raises(EmDashError) as info:
            rt.content.create("posts", {"title": "c"}, locale="de")
        assert str(info.value) == 'Locale "de" is not configured for this site'
        found = rt.store.content_items.list("posts", where={"locale": "zh-tw"})["items"]
        assert [i["data"]["title"] for i in found] == ["b"]


def test_the_first_configured_locale_is_the_default_and_spelled_as_configured(
    tmp_path: Path,
) -> None:
    with emdash.Runtime(tmp_path / "a.db", site={"locales": ["fr", "en"]}) as rt:
        assert rt.site["locale"] == "fr"
        assert rt.content.create("posts", {})["locale"] == "fr"
    with emdash.Runtime(tmp_path / "b.db", site={"locale": "ZH-tw", "locales": ["zh-TW"]}) as rt:
        assert rt.site["locale"] == "zh-TW"


@pytest.mark.parametrize(
    ("site", "message"),
    [
        (
            {"locale": "de", "locales": ["en", "fr"]},
            'Site locale setting is invalid: Locale "de" is not configured for this site '
            '(codes like "en" or "zh-TW"); "locale" must be one of "locales": en, fr',
        ),
        (
            {"locales": "en"},
            'Site "locales" must be a list of locale codes, e.g. ["en", "zh-TW"]',
        ),
        (
            {"locales": []},
            "Site locale setting is invalid: The site's locales list is empty; name at least "
            'one locale (codes like "en" or "zh-TW")',
        ),
        (
            {"locale": "en_US"},
            'Site locale setting is invalid: Invalid locale code: "en_US" '
            '(codes like "en" or "zh-TW")',
        ),
    ],
)
def test_bad_site_locales_are_refused_at_construction(
    tmp_path: Path, site: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        emdash.Runtime(tmp_path / "site.db", site=site)
    assert str(info.value) == message
