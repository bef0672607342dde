"""The admin's own pages (sign-in, plugins, providers, audit log) as HTML bodies.

Pure functions from plain data to HTML, so they are easy to read and to test; the request
handling is in :mod:`emdash._asgi._admin_app`. Plugin ids, names, versions, hosts, hook and
route names, audit errors and setting labels are all plugin- or client-provided text, and
every one goes through :func:`esc`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from .._store._audit_query import AuditPage
from ._admin_html import bar_chart, esc

__all__ = [
    "AUDIT_WINDOWS",
    "audit_body",
    "login_body",
    "plugins_body",
    "providers_body",
]

# Audit time filter: label -> seconds (None: no bound).
AUDIT_WINDOWS: dict[str, tuple[str, float | None]] = {
    "1h": ("Last hour", 3600.0),
    "24h": ("Last 24 hours", 86400.0),
    "7d": ("Last 7 days", 7 * 86400.0),
    "all": ("Everything kept", None),
}
AUDIT_KINDS = ("hook", "route", "lifecycle", "cron", "load", "admin")
AUDIT_OUTCOMES = ("ok", "error", "timeout", "limit", "vetoed")


def _csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="_csrf" value="{esc(csrf)}">'


def plugin_url(base: str, plugin_id: str, *rest: str) -> str:
    return base + "plugins/" + quote(plugin_id, safe="") + "".join("/" + r for r in rest)


def login_body(base: str, *, can_sign_in: bool) -> str:
    if not can_sign_in:
        return (
            '<p class="bk-banner bk-banner-error" role="alert">No API token is configured for '
            "this site, so nobody can sign in. Set <code>api_token</code> in emdash.toml (for "
            "example from the EMDASH_API_TOKEN environment variable) and restart the server.</p>"
        )
    return (
        f'<form method="post" action="{esc(base)}login" class="login">'
        '<div class="bk-field"><label for="token">API token</label>'
        '<input type="password" id="token" name="token" autocomplete="current-password" required>'
        '<span class="bk-help">The site\'s API token (api_token in emdash.toml).</span></div>'
        '<button type="submit" class="btn btn-primary">Sign in</button></form>'
    )


def _list_text(items: Iterable[Any], empty: str = "none") -> str:
    values = [f"<code>{esc(i)}</code>" for i in items]
    return ", ".join(values) if values else f'<span class="muted">{empty}</span>'


def plugins_body(
    base: str,
    csrf: str,
    plugins: list[dict[str, Any]],
    unloaded: Sequence[Mapping[str, Any]] = (),
) -> str:
    """``plugins``: one dict per plugin (see ``AdminApp._plugin_rows``); ``unloaded``: the
    configured plugins the host left out (``{"id", "status", "error", "hint"}``)."""
    if not plugins and not unloaded:
        return "<p>No plugins are installed. Add one with <code>emdash plugins add PATH</code>.</p>"
    cards = [_unloaded_card(u) for u in unloaded]
    for p in plugins:
        pid = str(p["id"])
        state = "enabled" if p["enabled"] else "disabled"
        verb = "disable" if p["enabled"] else "enable"
        pages = "".join(
            f'<li><a href="{esc(plugin_url(base, pid, "pages", quote(str(pg["path"]).lstrip("/"))))}">'
            f"{esc(pg['label'])}</a></li>"
            for pg in p["pages"]
        )
        if p["settings"]:
            pages += f'<li><a href="{esc(plugin_url(base, pid, "settings"))}">Settings</a></li>'
        links = f'<ul class="links">{pages}</ul>' if pages and p["enabled"] else ""
        title = esc(p.get("name") or pid)
        cards.append(
            f'<section class="card" aria-labelledby="p-{esc(pid)}">'
            f'<h2 id="p-{esc(pid)}">{title} <span class="badge badge-{state}">{state}</span></h2>'
            '<dl class="meta">'
            f"<div><dt>Id</dt><dd><code>{esc(pid)}</code></dd></div>"
            f"<div><dt>Version</dt><dd>{esc(p['version'])}</dd></div>"
            f"<div><dt>Mode</dt><dd>{esc(p['mode'])}</dd></div>"
            f"<div><dt>Capabilities</dt><dd>{_list_text(p['capabilities'])}</dd></div>"
            f"<div><dt>Allowed hosts</dt><dd>{_list_text(p['allowed_hosts'])}</dd></div>"
            f"<div><dt>Hooks</dt><dd>{_list_text(p['hooks'])}</dd></div>"
            f"<div><dt>Routes</dt><dd>{_list_text(p['routes'])}</dd></div>"
            "</dl>"
            f"{links}"
            f'<form method="post" action="{esc(plugin_url(base, pid, verb))}">{_csrf_field(csrf)}'
            f'<button type="submit" class="btn btn-{"danger" if p["enabled"] else "primary"}">'
            f"{verb.capitalize()} {title}</button></form></section>"
        )
    return "".join(cards)


def _unloaded_card(item: Mapping[str, Any]) -> str:
    # Every value here came from a plugin's files or an error about them: escaped.
    pid = str(item.get("id", ""))
    label = "needs upgrade" if item.get("status") == "needs-upgrade" else "failed to load"
    return (
        f'<section class="card" aria-labelledby="p-{esc(pid)}">'
        f'<h2 id="p-{esc(pid)}">{esc(pid)} <span class="badge badge-disabled">not loaded: '
        f"{esc(label)}</span></h2>"
        "<p>This plugin is not running: none of its hooks or routes answer.</p>"
        '<dl class="meta">'
        f"<div><dt>Why</dt><dd>{esc(item.get('error', ''))}</dd></div>"
        f"<div><dt>Fix</dt><dd><code>{esc(item.get('hint', ''))}</code></dd></div>"
        "</dl></section>"
    )


def providers_body(base: str, csrf: str, hooks: Mapping[str, Mapping[str, Any]]) -> str:
    if not hooks:
        return "<p>No installed plugin provides an exclusive hook.</p>"
    parts = ["<p>An exclusive hook runs one provider. Choose which plugin provides each one.</p>"]
    for i, (hook, info) in enumerate(sorted(hooks.items())):
        providers = [str(p) for p in info.get("providers") or []]
        selected = info.get("selected")
        radios = []
        for j, pid in enumerate([*providers, ""]):
            ident = f"prov-{i}-{j}"
            checked = " checked" if (pid or None) == selected else ""
            label = f"<code>{esc(pid)}</code>" if pid else "None (the hook does not run)"
            radios.append(
                f'<div><input type="radio" id="{ident}" name="provider" value="{esc(pid)}"{checked}>'
                f' <label for="{ident}">{label}</label></div>'
            )
        parts.append(
            f'<form method="post" action="{esc(base)}providers" class="card">{_csrf_field(csrf)}'
            f'<input type="hidden" name="hook" value="{esc(hook)}">'
            f"<fieldset><legend><code>{esc(hook)}</code></legend>{''.join(radios)}</fieldset>"
            '<button type="submit" class="btn btn-primary">Save provider</button></form>'
        )
    return "".join(parts)


def audit_body(
    base: str,
    page: AuditPage,
    *,
    plugin_ids: list[str],
    filters: Mapping[str, str],
) -> str:
    def select(name: str, label: str, options: list[tuple[str, str]]) -> str:
        current = filters.get(name, "")
        opts = "".join(
            f'<option value="{esc(v)}"{" selected" if v == current else ""}>{esc(text)}</option>'
            for v, text in options
        )
        return (
            f'<div class="bk-field"><label for="af-{name}">{label}</label>'
            f'<select id="af-{name}" name="{name}">{opts}</select></div>'
        )

    form = (
        f'<form method="get" action="{esc(base)}audit" class="filters" role="search">'
        + select("plugin", "Plugin", [("", "All plugins"), *[(p, p) for p in plugin_ids]])
        + select("kind", "Kind", [("", "All kinds"), *[(k, k) for k in AUDIT_KINDS]])
        + select("outcome", "Outcome", [("", "All outcomes"), *[(o, o) for o in AUDIT_OUTCOMES]])
        + select("since", "Time", [(k, v[0]) for k, v in AUDIT_WINDOWS.items()])
        + '<button type="submit" class="btn btn-secondary">Filter</button></form>'
    )
    over = f" (the newest {page.total:,} entries)" if page.total_capped else ""
    chart = bar_chart(
        [(pid, duration, cpu or 0.0) for pid, _n, duration, cpu in page.figures],
        title=f"Mean duration and mean CPU per invocation, per plugin (ms){over}",
        unit="ms",
    )
    rows = page.rows
    table_rows = "".join(
        "<tr>"
        f"<td>{esc(r.get('at'))}</td><td><code>{esc(r.get('pluginId'))}</code></td>"
        f"<td>{esc(r.get('kind'))}</td><td><code>{esc(r.get('name'))}</code></td>"
        f'<td><span class="badge badge-{esc(r.get("outcome"))}">{esc(r.get("outcome"))}</span></td>'
        f'<td class="num">{_ms(r.get("durationMs"))}</td><td class="num">{_ms(r.get("cpuMs"))}</td>'
        f"<td>{esc(r.get('limit'))} {esc(_short(r.get('error')))}</td>"
        "</tr>"
        for r in rows
    )
    if not rows:
        table_rows = '<tr><td colspan="8">No audit entries match these filters.</td></tr>'
    links = []
    if page.newer is not None:
        query = audit_query({**filters, "after": str(page.newer)})
        links.append(f'<a rel="prev" href="{esc(base)}audit?{esc(query)}">Newer entries</a>')
    if page.older is not None:
        query = audit_query({**filters, "before": str(page.older)})
        links.append(f'<a rel="next" href="{esc(base)}audit?{esc(query)}">Older entries</a>')
    pager = (
        f'<nav class="pager" aria-label="Audit log pages">{" ".join(links)}</nav>' if links else ""
    )
    return (
        f"{form}<h2>Figures</h2>{chart}"
        f"<h2>Entries</h2><p>{len(rows)} of {_total(page)} matching entries shown, newest "
        "first.</p>"
        '<div class="bk-table-wrap"><table class="bk-table audit"><thead><tr>'
        '<th scope="col">When (UTC)</th><th scope="col">Plugin</th><th scope="col">Kind</th>'
        '<th scope="col">Name</th><th scope="col">Outcome</th><th scope="col">Duration ms</th>'
        '<th scope="col">CPU ms</th><th scope="col">Limit / error</th>'
        f"</tr></thead><tbody>{table_rows}</tbody></table></div>{pager}"
    )


def audit_query(filters: Mapping[str, str]) -> str:
    return urlencode({k: v for k, v in filters.items() if v})


def _ms(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return f"{value:.1f}"


def _short(value: Any) -> str:
    text = str(value) if isinstance(value, str) else ""
    return text if len(text) <= 300 else text[:300] + "…"


def _total(page: AuditPage) -> str:
    """How many entries match: exact, or "10,000+" past the figures' window."""
    return f"{page.total:,}+" if page.total_capped else f"{page.total:,}"
