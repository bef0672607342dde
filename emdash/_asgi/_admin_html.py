"""Server-side rendering of Block Kit responses to accessible HTML, and the page frame.

Everything a plugin returns is hostile input, even after the host validated it against
the Block Kit schema: validation bounds shapes and sizes, it does not make text safe to
put in HTML. So this module holds to three rules of its own, whatever the validator did:

- every value that reaches the page goes through :func:`esc` (text and attributes alike,
  quotes included); there is no path that writes plugin text raw;
- a URL is used only when it parses as absolute ``http``/``https`` (:func:`safe_url`),
  and is escaped as well; anything else (``javascript:``, ``data:``, relative) is dropped;
- an unknown block or element type renders as a short notice, never its content, and the
  renderer stops after :data:`MAX_BLOCKS` blocks or :data:`MAX_DEPTH` levels of nesting
  (an oversized response costs the server bounded work and the reader a bounded page).

Forms work without JavaScript: each form, and each button outside a form, is a plain
``<form method="post">`` to the page's own URL. What a submission means (which plugin,
page, action id, block id, the declared type of every field, a button's value) is kept
server-side in the session under a random key (``remember``), so the browser only names
the key and sends the field values; it cannot forge an action the page did not show.

Colours, sizes and layout live in the static stylesheet: the Content-Security-Policy
forbids inline styles, so no ``style=`` attribute is ever written.
"""

from __future__ import annotations

import html
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "MAX_BLOCKS",
    "MAX_DEPTH",
    "BlockRenderer",
    "bar_chart",
    "esc",
    "layout",
    "safe_url",
]

MAX_BLOCKS = 500
MAX_DEPTH = 6
MAX_TEXT = 20_000
MAX_ROWS = 500
MAX_POINTS = 2_000
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?$")
_UNSHOWN_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2")

Remember = Callable[[dict[str, Any]], str]


def esc(value: Any) -> str:
    """Text for HTML (content or a quoted attribute), bounded in length."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        # Only scalars are shown: a dict or list where text belongs is a malformed block.
        text = ""
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "…"
    # Shown as U+FFFD: controls (but tab and newline) and bidirectional overrides and
    # isolates, which make text read as something else ("Safe\u202etxt.exe"); Block Kit
    # text is refused for them, but descriptor text (a plugin's name, page labels) and
    # plugin error text in the audit log reach the page unchecked. And lone surrogates (a
    # native plugin's exception text), which UTF-8 cannot carry: encoding the page would
    # raise and the client get a bare 500.
    text = _UNSHOWN_RE.sub("\ufffd", text)
    # quote=True: the same function is safe inside "..." attributes.
    return html.escape(text, quote=True)


def safe_url(value: Any) -> str | None:
    """``value`` if it is an absolute http(s) URL without credentials or a path on this
    site (``/x``, never ``//x``), else ``None``."""
    if not isinstance(value, str) or len(value) > 2048:
        return None
    if any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in value) or "\\" in value:
        return None  # spaces, controls, backslashes: browsers rewrite them before parsing
    if value.startswith("/"):
        return None if value.startswith("//") else value
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return value


# Path segments of this server's own code: the admin UI and the plugin API (under any
# mount prefix). Dot segments are refused too: the browser resolves them before asking.
_SERVER_SEGMENTS = frozenset({"_emdash", "admin", ".", ".."})


def _server_path(path: str) -> bool:
    """Whether a site path could reach the admin or the plugin API.

    An ``<img>`` on a site path is fetched with the admin's cookie (same origin), so a
    plugin's image pointing at ``/_emdash/admin/plugins/other/pages/x`` would run that
    other plugin's page_load as the admin every time the page is shown. Percent-escapes
    are decoded until stable (the server decodes the path before routing it).
    """
    decoded = path.split("?", 1)[0].split("#", 1)[0]
    for _ in range(4):
        step = unquote(decoded)
        if step == decoded:
            break
        decoded = step
    else:
        return True  # still encoded after four rounds: nothing honest looks like that
    return any(seg.lower() in _SERVER_SEGMENTS for seg in decoded.split("/"))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt_num(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:.4g}"


class BlockRenderer:
    """Renders one Block Kit response for one plugin page (see the module docstring).

    ``remember(spec)`` stores what a form or button means and returns its key; ``csrf``
    is the session's token; ``action`` the URL forms post to; ``heading`` the level of a
    ``header`` block (2 on a page, 3 inside a dashboard widget).
    """

    def __init__(
        self,
        *,
        csrf: str,
        action: str,
        remember: Remember,
        context: dict[str, Any],
        heading: int,
        form_state: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        self.csrf = csrf
        self.action = action
        self.remember = remember
        self.context = context  # {"plugin": id, "page": page}: stored with every action
        self.heading = heading
        self.count = 0
        self.skipped = 0
        self._ids = secrets.token_hex(3)
        self._next = 0
        # Forms are numbered in render order; a refused or refreshed submission re-renders
        # the same blocks with form_state[n] = {"values", "errors", "add"} for its form.
        self._forms = 0
        self.form_state: Mapping[int, Mapping[str, Any]] = form_state or {}

    # -- entry point ------------------------------------------------------------------

    def render(self, blocks: Any) -> str:
        out = self._blocks(blocks, 0)
        if self.skipped:
            out += (
                f'<p class="bk-notice">{self.skipped} more blocks were not shown: this '
                f"page shows at most {MAX_BLOCKS} blocks, {MAX_DEPTH} levels deep.</p>"
            )
        return out

    def _blocks(self, blocks: Any, depth: int) -> str:
        if not isinstance(blocks, list):
            return ""
        parts: list[str] = []
        for block in blocks:
            if self.count >= MAX_BLOCKS or depth >= MAX_DEPTH:
                self.skipped += 1
                continue
            self.count += 1
            parts.append(self._block(block, depth))
        return "".join(parts)

    def _id(self) -> str:
        self._next += 1
        return f"bk-{self._ids}-{self._next}"

    def _block(self, block: Any, depth: int) -> str:
        if not isinstance(block, dict):
            return _unsupported("block")
        kind = block.get("type")
        render = _BLOCKS.get(kind) if isinstance(kind, str) else None
        if render is None:
            return _unsupported("block")
        return render(self, block, depth)

    # -- blocks -----------------------------------------------------------------------

    def _header(self, b: dict[str, Any], _d: int) -> str:
        h = self.heading
        return f'<h{h} class="bk-header">{esc(b.get("text"))}</h{h}>'

    def _section(self, b: dict[str, Any], _d: int) -> str:
        accessory = b.get("accessory")
        extra = self._standalone(accessory, b) if isinstance(accessory, dict) else ""
        return f'<div class="bk-section"><p class="bk-text">{esc(b.get("text"))}</p>{extra}</div>'

    def _divider(self, _b: dict[str, Any], _d: int) -> str:
        return '<hr class="bk-divider">'

    def _fields(self, b: dict[str, Any], _d: int) -> str:
        items = [f for f in _list(b.get("fields")) if isinstance(f, dict)]
        rows = "".join(
            f"<div><dt>{esc(f.get('label'))}</dt><dd>{esc(f.get('value'))}</dd></div>"
            for f in items[:MAX_ROWS]
        )
        return f'<dl class="bk-fields">{rows}</dl>'

    def _context(self, b: dict[str, Any], _d: int) -> str:
        return f'<p class="bk-context">{esc(b.get("text"))}</p>'

    def _code(self, b: dict[str, Any], _d: int) -> str:
        lang = b.get("language")
        cls = (
            f' class="language-{esc(lang)}"'
            if lang in ("ts", "tsx", "jsonc", "bash", "css")
            else ""
        )
        return f'<pre class="bk-code"><code{cls}>{esc(b.get("code"))}</code></pre>'

    def _banner(self, b: dict[str, Any], _d: int) -> str:
        variant = b.get("variant")
        variant = variant if variant in ("alert", "error") else "default"
        role = "alert" if variant == "error" else "note"
        title = f"<strong>{esc(b.get('title'))}</strong>" if b.get("title") else ""
        desc = f"<p>{esc(b.get('description'))}</p>" if b.get("description") else ""
        return f'<div class="bk-banner bk-banner-{variant}" role="{role}">{title}{desc}</div>'

    def _image(self, b: dict[str, Any], _d: int) -> str:
        # The page's CSP allows images from this server only (img-src 'self' data:): a
        # site path is shown, another site's image is offered as a link to open.
        url = safe_url(b.get("url"))
        alt = esc(b.get("alt")) or "Image"
        title = f"<figcaption>{esc(b.get('title'))}</figcaption>" if b.get("title") else ""
        if url is not None and url.startswith("/"):
            if _server_path(url):
                url = None
            else:
                return (
                    f'<figure class="bk-image"><img src="{esc(url)}" alt="{alt}">{title}</figure>'
                )
        if url is None:
            return (
                f'<figure class="bk-image"><p>{alt} (image address not shown)</p>{title}</figure>'
            )
        return (
            f'<figure class="bk-image"><a href="{esc(url)}" rel="noopener noreferrer nofollow" '
            f'target="_blank">{alt}</a>{title}</figure>'
        )

    def _stats(self, b: dict[str, Any], _d: int) -> str:
        parts = []
        for item in [i for i in _list(b.get("items")) if isinstance(i, dict)][:MAX_ROWS]:
            trend = item.get("trend")
            mark = {"up": " ▲", "down": " ▼"}.get(trend, "") if isinstance(trend, str) else ""
            label = f'<span class="visually-hidden"> (trend {esc(trend)})</span>' if mark else ""
            desc = (
                f'<dd class="bk-stat-desc">{esc(item.get("description"))}</dd>'
                if item.get("description")
                else ""
            )
            parts.append(
                f'<div class="bk-stat"><dt>{esc(item.get("label"))}</dt>'
                f'<dd class="bk-stat-value">{esc(item.get("value"))}'
                f'<span aria-hidden="true">{mark}</span>{label}</dd>{desc}</div>'
            )
        return f'<dl class="bk-stats">{"".join(parts)}</dl>'

    def _meter(self, b: dict[str, Any], _d: int) -> str:
        value = _num(b.get("value")) or 0.0
        low = _num(b.get("min")) or 0.0
        high = _num(b.get("max"))
        high = high if high is not None and high > low else max(low + 100.0, value)
        ident = self._id()
        shown = esc(b.get("custom_value")) or _fmt_num(value)
        return (
            f'<div class="bk-meter"><label for="{ident}">{esc(b.get("label"))}</label> '
            f'<meter id="{ident}" min="{_fmt_num(low)}" max="{_fmt_num(high)}" '
            f'value="{_fmt_num(value)}">{shown}</meter> <span>{shown}</span></div>'
        )

    def _columns(self, b: dict[str, Any], depth: int) -> str:
        cols = [c for c in _list(b.get("columns")) if isinstance(c, list)][:3]
        inner = "".join(f'<div class="bk-col">{self._blocks(c, depth + 1)}</div>' for c in cols)
        return f'<div class="bk-columns">{inner}</div>'

    def _accordion(self, b: dict[str, Any], depth: int) -> str:
        opened = " open" if b.get("default_open") is True else ""
        return (
            f'<details class="bk-accordion"{opened}><summary>{esc(b.get("label"))}</summary>'
            f"{self._blocks(b.get('blocks'), depth + 1)}</details>"
        )

    def _tab(self, b: dict[str, Any], depth: int) -> str:
        # Without JavaScript a tab set is a list of disclosures; the default one is open.
        panels = [p for p in _list(b.get("panels")) if isinstance(p, dict)][:16]
        default = b.get("default_tab") if isinstance(b.get("default_tab"), int) else 0
        parts = [
            f'<details class="bk-tab"{" open" if i == default else ""}>'
            f"<summary>{esc(p.get('label'))}</summary>{self._blocks(p.get('blocks'), depth + 1)}"
            "</details>"
            for i, p in enumerate(panels)
        ]
        return f'<div class="bk-tabs">{"".join(parts)}</div>'

    def _empty(self, b: dict[str, Any], _d: int) -> str:
        h = min(self.heading + 1, 6)
        desc = f"<p>{esc(b.get('description'))}</p>" if b.get("description") else ""
        cmd = (
            f"<pre><code>{esc(b.get('command_line'))}</code></pre>" if b.get("command_line") else ""
        )
        actions = "".join(
            self._standalone(e, b) for e in _list(b.get("actions")) if isinstance(e, dict)
        )
        return f'<div class="bk-empty"><h{h}>{esc(b.get("title"))}</h{h}>{desc}{cmd}{actions}</div>'

    def _actions(self, b: dict[str, Any], _d: int) -> str:
        elements = [e for e in _list(b.get("elements")) if isinstance(e, dict)][:25]
        return f'<div class="bk-actions">{"".join(self._standalone(e, b) for e in elements)}</div>'

    def _table(self, b: dict[str, Any], _d: int) -> str:
        columns = [c for c in _list(b.get("columns")) if isinstance(c, dict)][:20]
        rows = [r for r in _list(b.get("rows")) if isinstance(r, dict)][:MAX_ROWS]
        page_action = b.get("page_action_id")
        head = "".join(f'<th scope="col">{esc(c.get("label"))}</th>' for c in columns)
        body = "".join(
            "<tr>"
            + "".join(_cell(r.get(str(c.get("key"))), c.get("format")) for c in columns)
            + "</tr>"
            for r in rows
        )
        if not rows:
            span = max(1, len(columns))
            body = f'<tr><td colspan="{span}">{esc(b.get("empty_text")) or "No rows."}</td></tr>'
        sort_buttons = ""
        if isinstance(page_action, str):
            sortable = [
                c for c in columns if c.get("sortable") is True and isinstance(c.get("key"), str)
            ]
            sort_buttons = "".join(
                self._action_form(
                    f"Sort by {c.get('label')} ({direction})",
                    {
                        "action_id": page_action,
                        "block_id": b.get("block_id"),
                        "value": {"sort": {"key": c["key"], "dir": direction}},
                    },
                    "secondary",
                )
                for c in sortable
                for direction in ("asc", "desc")
            )
            cursor = b.get("next_cursor")
            if isinstance(cursor, str) and cursor:
                sort_buttons += self._action_form(
                    "More rows",
                    {
                        "action_id": page_action,
                        "block_id": b.get("block_id"),
                        "value": {"cursor": cursor},
                    },
                    "secondary",
                )
        tools = f'<div class="bk-actions">{sort_buttons}</div>' if sort_buttons else ""
        return (
            f'<div class="bk-table-wrap"><table class="bk-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>{tools}</div>"
        )

    def _chart(self, b: dict[str, Any], _d: int) -> str:
        config = b.get("config")
        if isinstance(config, dict) and config.get("chart_type") == "custom":
            # Imported here: the chart module draws with this module's helpers.
            from ._admin_charts import custom_chart

            return custom_chart(config.get("options"), ident=self._id())
        if not isinstance(config, dict) or config.get("chart_type") != "timeseries":
            return '<p class="bk-notice">This chart type is not shown here.</p>'
        series = [s for s in _list(config.get("series")) if isinstance(s, dict)][:8]
        return timeseries_chart(
            series,
            bars=config.get("style") == "bar",
            x_name=config.get("x_axis_name"),
            y_name=config.get("y_axis_name"),
        )

    def _form(self, b: dict[str, Any], _d: int) -> str:
        fields = [f for f in _list(b.get("fields")) if isinstance(f, dict)][:50]
        raw_submit = b.get("submit")
        submit: dict[str, Any] = raw_submit if isinstance(raw_submit, dict) else {}
        ordinal = self._forms
        self._forms += 1
        state = self.form_state.get(ordinal) or {}
        refill: Mapping[str, Any] = state.get("values") or {}
        errors: Mapping[str, str] = state.get("errors") or {}
        named = [
            f
            for f in fields
            if isinstance(f.get("action_id"), str)
            and (f.get("type") in _INPUTS or f.get("type") == "repeater")
        ]
        # What the form shows now: the submitted values after a refused or refreshed
        # submission, else the initial ones. Condition notes are evaluated against it.
        current = {
            f["action_id"]: refill[f["action_id"]]
            if f["action_id"] in refill
            else f.get("initial_value")
            for f in named
        }
        types: dict[str, str] = {}
        choices: dict[str, list[Any]] = {}
        conditions: dict[str, Any] = {}
        repeaters: dict[str, Any] = {}
        parts: list[str] = []
        for element in fields:
            kind, action_id = element.get("type"), element.get("action_id")
            if not isinstance(kind, str) or not isinstance(action_id, str) or element not in named:
                parts.append(_unsupported("field"))
                continue
            types[action_id] = kind
            shown = element
            if action_id in refill and kind != "secret_input":  # a secret is never echoed
                shown = {**element, "initial_value": refill[action_id]}
            if kind in _CHOICE_INPUTS:
                choices[action_id] = _option_values(element)
            notes: list[str] = []
            condition = element.get("condition")
            if isinstance(condition, dict):
                conditions[action_id] = condition
                notes.append(_condition_note(condition, named, current))
            error = errors.get(action_id)
            if kind == "repeater":
                html_part, repeaters[action_id] = self._repeater(
                    shown, action_id, notes, error, add=state.get("add") == action_id
                )
                parts.append(html_part)
            else:
                parts.append(self._input(shown, f"f.{action_id}", notes=notes, error=error))
        key = self.remember(
            {
                **self.context,
                "kind": "form_submit",
                "action_id": submit.get("action_id"),
                "block_id": b.get("block_id"),
                "form": ordinal,
                "fields": types,
                "choices": choices,
                "conditions": conditions,
                "repeaters": repeaters,
            }
        )
        # Without JavaScript nothing re-evaluates a condition as the user picks: this button
        # posts the form back to be shown again (the plugin is not called), fields marked
        # for the values chosen so far.
        refresh = (
            '<button type="submit" name="_refresh" value="1" class="btn btn-secondary">'
            "Update form</button>"
            if conditions
            else ""
        )
        return (
            f'<form class="bk-form" method="post" action="{esc(self.action)}">'
            f"{self._hidden(key)}{''.join(parts)}"
            f'<div class="bk-form-submit"><button type="submit" class="btn btn-primary">'
            f"{esc(submit.get('label')) or 'Submit'}</button>{refresh}</div></form>"
        )

    def _repeater(
        self, e: dict[str, Any], action_id: str, notes: list[str], error: str | None, *, add: bool
    ) -> tuple[str, dict[str, Any]]:
        """A repeater without JavaScript: one fieldset per item (filled ones, then a blank
        one, at least ``min_items``, at most ``max_items``) and an "Add another" button
        that posts the form back for one more row. Blank rows are not items."""
        sub = [
            f
            for f in _list(e.get("fields"))
            if isinstance(f, dict)
            and f.get("type") in _REPEATER_INPUTS
            and isinstance(f.get("action_id"), str)
        ][:50]
        low = _bounded_int(e.get("min_items"), 0, 0, 100)
        high = _bounded_int(e.get("max_items"), 20, 1, 100)
        filled = [i for i in _list(e.get("initial_value")) if isinstance(i, dict)][:high]
        count = min(high, max(low, len(filled) + 1 + (1 if add else 0), 1))
        noun = e.get("item_label") if isinstance(e.get("item_label"), str) else ""
        noun = noun or "Item"
        items = []
        for i in range(count):
            values = filled[i] if i < len(filled) else {}
            inputs = "".join(
                self._input(
                    {**f, "initial_value": values[f["action_id"]]}
                    if f["action_id"] in values
                    else f,
                    f"f.{action_id}.{i}.{f['action_id']}",
                    blank=True,
                )
                for f in sub
            )
            items.append(
                f'<fieldset class="bk-repeater-item"><legend>{esc(noun)} {i + 1}</legend>'
                f"{inputs}</fieldset>"
            )
        ident = self._id()
        help_html, aria = self._help(ident, e, notes, error)
        more = (
            f'<button type="submit" name="_refresh" value="add:{esc(action_id)}" '
            f'class="btn btn-secondary">Add another {esc(noun)}</button>'
            if count < high
            else ""
        )
        spec = {
            "items": count,
            "fields": {f["action_id"]: f["type"] for f in sub},
            "choices": {f["action_id"]: _option_values(f) for f in sub if f["type"] == "select"},
            "min": low,
            "max": high,
        }
        return (
            f'<fieldset class="bk-field bk-repeater" id="{ident}"{aria}>'
            f"<legend>{esc(e.get('label'))}</legend>{help_html}{''.join(items)}{more}</fieldset>",
            spec,
        )

    def _help(
        self, ident: str, e: dict[str, Any], notes: list[str], error: str | None
    ) -> tuple[str, str]:
        """The help under a field (its description, condition notes, an error) and the
        ``aria-describedby``/``aria-invalid`` attributes pointing at it."""
        parts: list[str] = []
        ids: list[str] = []
        if error:
            ids.append(f"{ident}-e")
            parts.append(f'<span class="bk-error" id="{ident}-e">{esc(error)}</span>')
        texts = [e.get("description")] if e.get("description") else []
        for n, text in enumerate([*texts, *notes]):
            ids.append(f"{ident}-h{n}")
            parts.append(f'<span class="bk-help" id="{ident}-h{n}">{esc(text)}</span>')
        aria = f' aria-describedby="{" ".join(ids)}"' if ids else ""
        if error:
            aria += ' aria-invalid="true"'
        return "".join(parts), aria

    # -- elements ---------------------------------------------------------------------

    def _hidden(self, key: str) -> str:
        return (
            f'<input type="hidden" name="_csrf" value="{esc(self.csrf)}">'
            f'<input type="hidden" name="_key" value="{esc(key)}">'
        )

    def _action_form(self, label: Any, spec: dict[str, Any], style: Any) -> str:
        key = self.remember({**self.context, "kind": "block_action", **spec})
        cls = style if style in ("primary", "danger", "secondary") else "secondary"
        return (
            f'<form class="bk-inline" method="post" action="{esc(self.action)}">{self._hidden(key)}'
            f'<button type="submit" class="btn btn-{cls}">{esc(label)}</button></form>'
        )

    def _standalone(self, element: Any, block: dict[str, Any]) -> str:
        """An element outside a form: a button posts a block_action; an input gets its own
        small form with an Apply button (without JavaScript nothing fires on change)."""
        if not isinstance(element, dict):
            return _unsupported("element")
        kind, action_id = element.get("type"), element.get("action_id")
        if not isinstance(kind, str) or not isinstance(action_id, str):
            return _unsupported("element")
        spec = {"action_id": action_id, "block_id": block.get("block_id")}
        if kind == "button":
            spec["value"] = element.get("value")
            confirm = element.get("confirm")
            if isinstance(confirm, dict):
                # A confirmation without JavaScript: the real button sits inside a disclosure.
                return (
                    f'<details class="bk-confirm"><summary class="btn btn-{_style(element)}">'
                    f'{esc(element.get("label"))}</summary><div role="group">'
                    f"<strong>{esc(confirm.get('title'))}</strong><p>{esc(confirm.get('text'))}</p>"
                    + self._action_form(confirm.get("confirm") or "Confirm", spec, "danger")
                    + "</div></details>"
                )
            return self._action_form(element.get("label"), spec, _style(element))
        if kind not in _INPUTS:
            return _unsupported("element")
        if kind in _CHOICE_INPUTS:
            spec["choices"] = _option_values(element)
        key = self.remember({**self.context, "kind": "block_action", "input": kind, **spec})
        return (
            f'<form class="bk-inline bk-standalone" method="post" action="{esc(self.action)}">'
            f"{self._hidden(key)}{self._input(element, 'value')}"
            '<button type="submit" class="btn btn-secondary">Apply</button></form>'
        )

    def _input(
        self,
        e: dict[str, Any],
        name: str,
        *,
        notes: list[str] | None = None,
        error: str | None = None,
        blank: bool = False,
    ) -> str:
        kind = e.get("type")
        ident = self._id()
        label = f'<label for="{ident}">{esc(e.get("label"))}</label>'
        help_html, aria = self._help(ident, e, notes or [], error)
        attrs = f'id="{ident}" name="{esc(name)}"{aria}'
        initial = e.get("initial_value")
        if kind == "text_input":
            ph = f' placeholder="{esc(e.get("placeholder"))}"' if e.get("placeholder") else ""
            if e.get("multiline") is True:
                control = f'<textarea {attrs}{ph} rows="4">{esc(initial)}</textarea>'
            else:
                control = f'<input type="text" {attrs}{ph} value="{esc(initial)}">'
        elif kind == "number_input":
            bounds = "".join(
                f' {k}="{_fmt_num(v)}"' for k in ("min", "max") if (v := _num(e.get(k))) is not None
            )
            value = _num(initial)
            shown = _fmt_num(value) if value is not None else ""
            control = f'<input type="number" step="any" {attrs}{bounds} value="{shown}">'
        elif kind in ("select", "radio"):
            options = [o for o in _list(e.get("options")) if isinstance(o, dict)][:200]
            if kind == "radio":
                return self._choices(e, name, options, "radio", [initial], help_html, aria)
            # blank: a repeater row's select starts unchosen, so an untouched row is blank.
            opts = (
                f'<option value=""{"" if initial else " selected"}>(none)</option>' if blank else ""
            ) + "".join(
                f'<option value="{esc(o.get("value"))}"'
                f"{' selected' if o.get('value') == initial else ''}>{esc(o.get('label'))}</option>"
                for o in options
            )
            control = f"<select {attrs}>{opts}</select>"
        elif kind == "checkbox":
            options = [o for o in _list(e.get("options")) if isinstance(o, dict)][:200]
            return self._choices(e, name, options, "checkbox", _list(initial), help_html, aria)
        elif kind == "toggle":
            checked = " checked" if initial is True else ""
            return (
                f'<div class="bk-field bk-toggle"><input type="checkbox" role="switch" {attrs} '
                f'value="true"{checked}> {label}{help_html}</div>'
            )
        elif kind == "secret_input":
            # Never pre-filled: a stored secret is not sent back to the browser.
            hint = "A value is set; leave empty to keep it" if e.get("has_value") is True else ""
            ph = esc(e.get("placeholder")) or esc(hint)
            control = f'<input type="password" autocomplete="off" {attrs} placeholder="{ph}">'
        elif kind == "date_input":
            control = f'<input type="date" {attrs} value="{esc(initial)}">'
        elif kind == "media_picker":
            shown = safe_url(initial) or ""
            control = f'<input type="url" {attrs} value="{esc(shown)}">'
        else:  # combobox: free text with the options as suggestions
            options = [o for o in _list(e.get("options")) if isinstance(o, dict)][:200]
            suggestions = "".join(
                f'<option value="{esc(o.get("value"))}">{esc(o.get("label"))}</option>'
                for o in options
            )
            control = (
                f'<input type="text" {attrs} list="{ident}-l" value="{esc(initial)}">'
                f'<datalist id="{ident}-l">{suggestions}</datalist>'
            )
        return f'<div class="bk-field">{label}{control}{help_html}</div>'

    def _choices(
        self,
        e: dict[str, Any],
        name: str,
        options: list[dict[str, Any]],
        kind: str,
        chosen: list[Any],
        help_html: str = "",
        aria: str = "",
    ) -> str:
        items = []
        for o in options:
            ident = self._id()
            checked = " checked" if o.get("value") in chosen else ""
            items.append(
                f'<div><input type="{kind}" id="{ident}" name="{esc(name)}" '
                f'value="{esc(o.get("value"))}"{checked}> '
                f'<label for="{ident}">{esc(o.get("label"))}</label></div>'
            )
        return (
            f'<fieldset class="bk-field"{aria}><legend>{esc(e.get("label"))}</legend>'
            f"{''.join(items)}{help_html}</fieldset>"
        )


# Form inputs this renderer supports (a repeater is drawn by BlockRenderer._repeater).
_INPUTS = frozenset(
    {
        "text_input",
        "number_input",
        "select",
        "toggle",
        "secret_input",
        "checkbox",
        "date_input",
        "combobox",
        "radio",
        "media_picker",
    }
)

_CHOICE_INPUTS = frozenset({"select", "radio", "checkbox"})
_REPEATER_INPUTS = frozenset({"text_input", "number_input", "select", "toggle"})


def _bounded_int(value: Any, default: int, low: int, high: int) -> int:
    number = value if type(value) is int else default
    return max(low, min(number, high))


def _option_values(element: dict[str, Any]) -> list[Any]:
    return [o.get("value") for o in _list(element.get("options")) if isinstance(o, dict)]


def _condition_note(
    condition: dict[str, Any], fields: list[dict[str, Any]], current: Mapping[str, Any]
) -> str:
    """'Applies when "Plan" is "Pro".' (plain text: the caller escapes it), and whether it
    applies to the values the form shows now."""
    # Imported here: _admin_forms reads submissions, this module only draws them.
    from ._admin_forms import condition_holds

    target = next((f for f in fields if f.get("action_id") == condition.get("field")), None)
    negated = "neq" in condition
    wanted = condition.get("neq" if negated else "eq")
    name = target.get("label") if target is not None else condition.get("field")
    shown: Any = wanted
    if target is not None and target.get("type") == "toggle" and isinstance(wanted, bool):
        shown = "on" if wanted else "off"
    elif target is not None:
        for option in _list(target.get("options")):
            if isinstance(option, dict) and option.get("value") == wanted:
                shown = option.get("label")
    word = "is not" if negated else "is"
    note = f'Applies when "{_plain(name)}" {word} "{_plain(shown)}".'
    if not condition_holds(condition, current):
        note += " Not with the values shown now: its value is not sent."
    return note


def _plain(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:200] if isinstance(value, (str, int, float)) else ""


_BLOCKS: dict[str, Callable[[BlockRenderer, dict[str, Any], int], str]] = {
    "header": BlockRenderer._header,
    "section": BlockRenderer._section,
    "divider": BlockRenderer._divider,
    "fields": BlockRenderer._fields,
    "table": BlockRenderer._table,
    "actions": BlockRenderer._actions,
    "stats": BlockRenderer._stats,
    "form": BlockRenderer._form,
    "image": BlockRenderer._image,
    "context": BlockRenderer._context,
    "columns": BlockRenderer._columns,
    "chart": BlockRenderer._chart,
    "banner": BlockRenderer._banner,
    "meter": BlockRenderer._meter,
    "code": BlockRenderer._code,
    "empty": BlockRenderer._empty,
    "accordion": BlockRenderer._accordion,
    "tab": BlockRenderer._tab,
}


def _unsupported(what: str) -> str:
    # The type name is not echoed: a notice that it exists is all the reader needs.
    return f'<p class="bk-notice">A {what} of a type this admin does not show was left out.</p>'


def _style(element: dict[str, Any]) -> str:
    style = element.get("style")
    return style if style in ("primary", "danger", "secondary") else "secondary"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _cell(value: Any, fmt: Any) -> str:
    if fmt == "badge":
        return f'<td><span class="badge">{esc(value)}</span></td>'
    if fmt == "code":
        return f"<td><code>{esc(value)}</code></td>"
    if fmt == "number":
        return f'<td class="num">{esc(value)}</td>'
    if fmt == "relative_time" and isinstance(value, str):
        return f'<td><time datetime="{esc(value)}">{esc(value)}</time></td>'
    return f"<td>{esc(value)}</td>"


# -- charts (inline SVG, drawn here: no script, no external resource) --------------------


def timeseries_chart(series: list[dict[str, Any]], *, bars: bool, x_name: Any, y_name: Any) -> str:
    """A plugin's timeseries as an SVG line (or bar) chart with a text summary."""
    width, height, pad = 600.0, 200.0, 30.0
    points: list[tuple[int, list[tuple[float, float]]]] = []
    for i, s in enumerate(series):
        data = []
        for p in _list(s.get("data"))[:MAX_POINTS]:
            if isinstance(p, list) and len(p) == 2:
                x, y = _num(p[0]), _num(p[1])
                if x is not None and y is not None:
                    data.append((x, y))
        points.append((i, sorted(data)))
    xs = [x for _, d in points for x, _ in d]
    ys = [y for _, d in points for _, y in d]
    if not xs:
        return '<p class="bk-notice">This chart has no data.</p>'
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    xspan = (x1 - x0) or 1.0
    yspan = (y1 - y0) or 1.0

    def sx(x: float) -> float:
        return pad + (x - x0) / xspan * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / yspan * (height - 2 * pad)

    shapes: list[str] = []
    legend: list[str] = []
    for i, data in points:
        s = series[i]
        color = (
            s.get("color")
            if isinstance(s.get("color"), str) and _COLOR_RE.match(s["color"])
            else PALETTE[i % len(PALETTE)]
        )
        if bars:
            w = max(1.0, (width - 2 * pad) / max(1, len(data)) / max(1, len(points)))
            shapes.extend(
                f'<rect x="{sx(x) + i * w:.1f}" y="{sy(y):.1f}" width="{w:.1f}" '
                f'height="{max(0.0, sy(y0) - sy(y)):.1f}" fill="{color}"/>'
                for x, y in data
            )
        else:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
            shapes.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        last = _fmt_num(data[-1][1]) if data else "no data"
        legend.append(f"<li>{esc(s.get('name'))}: {len(data)} points, latest {last}</li>")
    axes = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{esc(_fmt_num(y1))} {esc(y_name)}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{esc(x_name)}</text>'
    )
    return (
        f'<figure class="bk-chart"><svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Chart">{axes}{"".join(shapes)}</svg>'
        f"<figcaption><ul>{''.join(legend)}</ul></figcaption></figure>"
    )


def bar_chart(rows: Iterable[tuple[str, float, float]], *, title: str, unit: str) -> str:
    """Horizontal paired bars (e.g. mean duration and mean CPU per plugin), as SVG.

    ``rows`` are ``(label, first, second)``; the figures are also given as a table for
    screen readers and for copying.
    """
    data = list(rows)[:50]
    if not data:
        return '<p class="bk-notice">No invocations recorded yet.</p>'
    top = max(max(a, b) for _, a, b in data) or 1.0
    label_w, bar_w, row_h = 170.0, 380.0, 34.0
    height = row_h * len(data) + 30
    parts = []
    for i, (label, a, b) in enumerate(data):
        y = 20 + i * row_h
        parts.append(
            f'<text x="0" y="{y + 14:.0f}" font-size="12">{esc(label[:26])}</text>'
            f'<rect x="{label_w}" y="{y:.0f}" width="{max(1.0, a / top * bar_w):.1f}" height="12" fill="{PALETTE[0]}"/>'
            f'<rect x="{label_w}" y="{y + 14:.0f}" width="{max(1.0, b / top * bar_w):.1f}" height="12" fill="{PALETTE[1]}"/>'
            f'<text x="{label_w + bar_w + 8:.0f}" y="{y + 11:.0f}" font-size="11">{_fmt_num(round(a, 2))} {esc(unit)}</text>'
            f'<text x="{label_w + bar_w + 8:.0f}" y="{y + 25:.0f}" font-size="11">{_fmt_num(round(b, 2))} {esc(unit)}</text>'
        )
    legend = (
        f'<rect x="{label_w}" y="0" width="10" height="10" fill="{PALETTE[0]}"/>'
        f'<text x="{label_w + 14}" y="9" font-size="11">duration</text>'
        f'<rect x="{label_w + 90}" y="0" width="10" height="10" fill="{PALETTE[1]}"/>'
        f'<text x="{label_w + 104}" y="9" font-size="11">CPU</text>'
    )
    return (
        f'<figure class="chart"><svg viewBox="0 0 640 {height:.0f}" role="img" '
        f'aria-labelledby="chart-title"><title id="chart-title">{esc(title)}</title>'
        f"{legend}{''.join(parts)}</svg></figure>"
    )


# -- the page frame ------------------------------------------------------------------------

NAV = (
    ("dashboard", "Dashboard", ""),
    ("plugins", "Plugins", "plugins"),
    ("providers", "Providers", "providers"),
    ("audit", "Audit log", "audit"),
)


def layout(
    *,
    base: str,
    title: str,
    body: str,
    csrf: str | None,
    active: str = "",
    notice: tuple[str, str] | None = None,
    extra_nav: str = "",
) -> str:
    """A whole page: skip link, banner, navigation (when signed in), notice, main."""
    nav = ""
    if csrf is not None:
        current = ' aria-current="page"'
        links = "".join(
            f'<li><a href="{esc(base + path)}"{current if key == active else ""}>{label}</a></li>'
            for key, label, path in NAV
        )
        nav = (
            f'<nav aria-label="Admin sections"><ul>{links}</ul>{extra_nav}'
            f'<form method="post" action="{esc(base)}logout" class="signout">'
            f'<input type="hidden" name="_csrf" value="{esc(csrf)}">'
            '<button type="submit" class="btn btn-secondary">Sign out</button></form></nav>'
        )
    toast = ""
    if notice is not None:
        kind, message = notice
        kind = kind if kind in ("success", "error", "info") else "info"
        role = "alert" if kind == "error" else "status"
        toast = (
            f'<div class="toast toast-{kind}" role="{role}" id="toast">'
            f'<span class="visually-hidden">{kind}: </span>{esc(message)}</div>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · EmDash admin</title>"
        # An empty icon: no favicon request to a path this server does not serve.
        '<link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{esc(base)}static/admin.css"></head><body>'
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header class="top"><a class="brand" href="{esc(base)}">EmDash admin</a>{nav}</header>'
        f'<main id="main"><h1>{esc(title)}</h1>{toast}{body}</main></body></html>'
    )
