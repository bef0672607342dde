"""Public page metadata and fragments (docs/plugin-reference.md, page:metadata): ``rt.page``.

A host renders a public page by building a *page context* (:func:`page_context`), then
asking ``rt.page.render_head(page)`` for the ``<head>`` tags and
``rt.page.fragments(page, "body:start" | "body:end")`` for the body fragments.

Collection runs ``page:metadata`` (every enabled plugin, trusted or sandboxed) and
``page:fragments`` (trusted plugins only: raw HTML and scripts are never accepted from
sandboxed code, even if the pipeline were to deliver the hook to one) once per page
context object; the result is cached for the few most recent contexts, so ``render_head``
and the two ``fragments`` calls of one render run each hook once.

Merge order (first wins for every dedupe key): plugin contributions, then the site's SEO
settings (option ``emdash:seo``: ``googleVerification``, ``bingVerification``,
``defaultOgImage``), then the base SEO generated from the page context, then the hreflang
alternates. The escaping and validation rules live in :mod:`emdash._services._page_render`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._shared._errors import EmDashError, InvalidPageContextError
from ._page_render import (
    PLACEMENTS,
    flatten_contributions,
    generate_base_seo,
    generate_site_seo,
    hreflang_alternates,
    is_valid_fragment,
    is_valid_metadata,
    render_fragments,
    render_metadata,
    resolve_metadata,
)

if TYPE_CHECKING:
    from .._store import Store
    from ._hook_runner import HookRunner

__all__ = ["InvalidPageContextError", "PageContributions", "PageService", "page_context"]

log = logging.getLogger("emdash.page")

SEO_OPTION = "emdash:seo"
_CACHE_SIZE = 32


@dataclass(frozen=True, slots=True)
class PageContributions:
    """Validated plugin contributions for one page: metadata (all plugins), fragments (trusted)."""

    metadata: list[dict[str, Any]]
    fragments: list[dict[str, Any]]


def page_context(
    url: str,
    *,
    path: str | None = None,
    kind: str = "custom",
    page_type: str | None = None,
    title: str | None = None,
    page_title: str | None = None,
    description: str | None = None,
    canonical: str | None = None,
    image: str | None = None,
    locale: str | None = None,
    content: dict[str, Any] | None = None,
    seo: dict[str, Any] | None = None,
    article_meta: dict[str, Any] | None = None,
    site_name: str | None = None,
    site_url: str | None = None,
    breadcrumbs: list[dict[str, Any]] | None = None,
    alternates: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Build a ``PublicPageContext`` (camelCase keys, as plugins receive it).

    ``kind`` is ``"content"`` or ``"custom"``; ``page_type`` defaults to ``"article"`` for
    content pages and ``"website"`` otherwise. Optional keys left as ``None`` are omitted
    (``breadcrumbs=None`` means "no opinion", ``[]`` means "none").
    """
    if kind not in ("content", "custom"):
        raise InvalidPageContextError(f'Invalid page kind "{kind}": use "content" or "custom"')
    from urllib.parse import urlsplit

    page: dict[str, Any] = {
        "url": url,
        "path": path if path is not None else (urlsplit(url).path or "/"),
        "locale": locale,
        "kind": kind,
        "pageType": page_type or ("article" if kind == "content" else "website"),
        "title": title,
        "description": description,
        "canonical": canonical,
        "image": image,
    }
    optional = {
        "pageTitle": page_title,
        "content": content,
        "seo": seo,
        "articleMeta": article_meta,
        "siteName": site_name,
        "siteUrl": site_url,
        "breadcrumbs": breadcrumbs,
        "alternates": alternates,
    }
    page.update({k: v for k, v in optional.items() if v is not None})
    return page


class AddedPlugin(Protocol):
    """What the page service reads about an added plugin: whether it is trusted."""

    @property
    def trusted(self) -> bool: ...


class PageService:
    """Collects, merges and renders page contributions; available as ``rt.page``.

    ``plugins`` is a live read-only view of the added plugins by id: fragments are kept only
    from those that are trusted when their output is checked.
    """

    def __init__(
        self, store: Store, hooks: HookRunner, *, plugins: Mapping[str, AddedPlugin]
    ) -> None:
        self._store = store
        self._hooks = hooks
        self._plugins = plugins
        self._lock = threading.Lock()
        # id(page) -> (page, contributions). Holding the page keeps its id from being reused.
        self._cache: OrderedDict[int, tuple[dict[str, Any], PageContributions]] = OrderedDict()

    # -- collection ---------------------------------------------------------------------

    def collect(self, page: dict[str, Any]) -> PageContributions:
        """Run ``page:metadata`` and ``page:fragments`` for ``page`` (once per page object)."""
        with self._lock:
            hit = self._cache.get(id(page))
            if hit is not None and hit[0] is page:
                self._cache.move_to_end(id(page))
                return hit[1]
        result = PageContributions(
            metadata=self._run("page:metadata", page, trusted_only=False),
            fragments=self._run("page:fragments", page, trusted_only=True),
        )
        with self._lock:
            self._cache[id(page)] = (page, result)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    def _run(self, hook: str, page: dict[str, Any], *, trusted_only: bool) -> list[dict[str, Any]]:
        event = {"page": _plain_page(page)}  # each hook gets its own copy of the context
        valid = is_valid_fragment if hook == "page:fragments" else is_valid_metadata
        try:
            outcome = self._hooks.run_hook(hook, event)
        except EmDashError as exc:  # page hooks never break a page render
            log.error("[page] %s failed: %s", hook, exc)
            return []
        out: list[dict[str, Any]] = []
        for result in outcome.results:
            if not result.success:
                log.warning(
                    '[page] %s handler of plugin "%s" failed: %s',
                    hook,
                    result.plugin_id,
                    result.error,
                )
                continue
            if trusted_only and not self._is_trusted(result.plugin_id):
                log.warning(
                    '[page] ignored %s from sandboxed plugin "%s": fragments are accepted '
                    "from trusted plugins only",
                    hook,
                    result.plugin_id,
                )
                continue
            for item in flatten_contributions(result.value):
                if valid(item):
                    out.append(item)
                else:
                    log.warning(
                        '[page] dropped an invalid %s contribution from plugin "%s"',
                        hook,
                        result.plugin_id,
                    )
        return out

    def _is_trusted(self, plugin_id: str) -> bool:
        info = self._plugins.get(plugin_id)
        return info is not None and info.trusted is True

    def _site_seo(self) -> dict[str, Any]:
        try:
            value = self._store.options.get(SEO_OPTION)
        except EmDashError as exc:
            log.error("[page] could not read %s: %s", SEO_OPTION, exc)
            return {}
        return value if type(value) is dict else {}

    # -- public API ---------------------------------------------------------------------

    def metadata(self, page: dict[str, Any]) -> list[dict[str, Any]]:
        """The resolved head metadata for ``page``, in render order.

        Each item is a clean contribution dict (``meta``, ``property``, ``link`` or
        ``jsonld``; JSON-LD items also carry ``json``, the escaped serialisation).
        """
        contributions = self.collect(page)
        settings = self._site_seo()
        default_image = settings.get("defaultOgImage")
        merged = [
            *contributions.metadata,
            *generate_site_seo(settings),
            *generate_base_seo(page, default_image if type(default_image) is str else None),
            *hreflang_alternates(page),
        ]
        return resolve_metadata(merged)

    def render_head(self, page: dict[str, Any], *, nonce: str | None = None) -> str:
        """Everything a page adds to ``<head>``: the metadata tags, then the ``head`` fragments."""
        parts = [render_metadata(self.metadata(page)), self.fragments(page, "head", nonce=nonce)]
        return "\n".join(p for p in parts if p)

    def fragments(self, page: dict[str, Any], placement: str, *, nonce: str | None = None) -> str:
        """The fragments of trusted plugins for ``placement`` (``head``, ``body:start``, ``body:end``)."""
        if placement not in PLACEMENTS:
            raise InvalidPageContextError(
                f'Invalid fragment placement "{placement}": use one of {", ".join(PLACEMENTS)}'
            )
        return render_fragments(self.collect(page).fragments, placement, nonce=nonce)


def _plain_page(page: Any) -> dict[str, Any]:
    """A deep JSON copy of the page context (what crosses to plugins, and is all they get)."""
    if type(page) is not dict or type(page.get("url")) is not str:
        raise InvalidPageContextError(
            "Invalid page context: pass a dict with at least a string 'url' "
            "(build one with emdash.page_context(...))"
        )
    try:
        copy: dict[str, Any] = json.loads(json.dumps(page, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidPageContextError(
            f"Invalid page context: it must be plain JSON data ({exc})"
        ) from None
    return copy
