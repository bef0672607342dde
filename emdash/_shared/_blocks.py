"""Block Kit builders: plain functions that return the JSON data of blocks and elements.

A plugin's ``admin`` route answers ``{"blocks": [...], "toast": ...}``; these functions
spell the blocks so a typo is a ``TypeError`` in the plugin rather than a refused response
in the admin. They only *build* data: the host validates every response against the Block
Kit schema (``emdash._admin._blockkit``) whatever produced it, so nothing here is a
security boundary. Optional arguments left at ``None`` are omitted from the result.

This module is shared (a prelude of every sandbox worker, see ``emdash._shared``): plugins
reach it as ``from emdash import blocks as bk`` in both modes. Natively ``emdash.blocks``
is a module re-exporting these functions; in a worker ``blocks`` is :data:`blocks`, an
instance of :class:`BlockBuilders`, whose functions are staticmethods (the one form of a
host function the sandbox lets plugin code read off a host object). Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BUILDER_NAMES",
    "BlockBuilders",
    "accordion",
    "actions",
    "banner",
    "blocks",
    "button",
    "chart",
    "checkbox",
    "code",
    "column",
    "columns",
    "combobox",
    "condition",
    "confirm",
    "context",
    "date_input",
    "divider",
    "empty",
    "field",
    "fields",
    "form",
    "header",
    "image",
    "media_picker",
    "meter",
    "number_input",
    "option",
    "panel",
    "radio",
    "repeater",
    "response",
    "secret_input",
    "section",
    "select",
    "series",
    "stat",
    "stats",
    "tab",
    "table",
    "text_input",
    "toast",
    "toggle",
]

Block = dict[str, Any]
Element = dict[str, Any]


def _data(kind_key: str, kind: str, **fields: Any) -> dict[str, Any]:
    """``{kind_key: kind, **fields}`` without the fields left at ``None``."""
    out: dict[str, Any] = {kind_key: kind}
    for key, value in fields.items():
        if value is not None:
            out[key] = value
    return out


def _list(items: Sequence[Any] | None) -> list[Any] | None:
    return None if items is None else list(items)


# -- responses --------------------------------------------------------------------------


def toast(message: str, type: str = "success") -> dict[str, Any]:
    """A toast: ``type`` is ``"success"``, ``"error"`` or ``"info"``."""
    return {"message": message, "type": type}


def response(
    blocks: Sequence[Block] = (), toast: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What an ``admin`` route returns: ``{"blocks": [...], "toast": {...}}`` (toast optional)."""
    out: dict[str, Any] = {"blocks": list(blocks)}
    if toast is not None:
        out["toast"] = dict(toast)
    return out


# -- blocks -----------------------------------------------------------------------------


def header(text: str, *, block_id: str | None = None) -> Block:
    return _data("type", "header", text=text, block_id=block_id)


def section(text: str, *, accessory: Element | None = None, block_id: str | None = None) -> Block:
    return _data("type", "section", text=text, accessory=accessory, block_id=block_id)


def divider(*, block_id: str | None = None) -> Block:
    return _data("type", "divider", block_id=block_id)


def field(label: str, value: str) -> dict[str, Any]:
    """One ``{label, value}`` pair of a :func:`fields` block."""
    return {"label": label, "value": value}


def fields(items: Sequence[Mapping[str, Any]], *, block_id: str | None = None) -> Block:
    return _data("type", "fields", fields=[dict(i) for i in items], block_id=block_id)


def column(
    key: str, label: str, *, format: str | None = None, sortable: bool | None = None
) -> dict[str, Any]:
    """A table column; ``format``: text, badge, relative_time, number or code."""
    return _data("key", key, label=label, format=format, sortable=sortable)


def table(
    columns: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    *,
    page_action_id: str,
    next_cursor: str | None = None,
    empty_text: str | None = None,
    block_id: str | None = None,
) -> Block:
    return _data(
        "type",
        "table",
        columns=[dict(c) for c in columns],
        rows=[dict(r) for r in rows],
        page_action_id=page_action_id,
        next_cursor=next_cursor,
        empty_text=empty_text,
        block_id=block_id,
    )


def actions(elements: Sequence[Element], *, block_id: str | None = None) -> Block:
    return _data("type", "actions", elements=list(elements), block_id=block_id)


def stat(
    label: str,
    value: str | int | float,
    *,
    description: str | None = None,
    trend: str | None = None,
) -> dict[str, Any]:
    """One item of a :func:`stats` block; ``trend``: up, down or neutral."""
    return _data("label", label, value=value, description=description, trend=trend)


def stats(items: Sequence[Mapping[str, Any]], *, block_id: str | None = None) -> Block:
    return _data("type", "stats", items=[dict(i) for i in items], block_id=block_id)


def condition(field: str, *, eq: Any = None, neq: Any = None) -> dict[str, Any]:
    """Show a form field only when ``field`` equals ``eq`` (or differs from ``neq``)."""
    return {"field": field, "eq": eq} if neq is None else {"field": field, "neq": neq}


def form(
    block_id: str,
    fields: Sequence[Element],
    *,
    submit: str = "Save",
    action_id: str | None = None,
) -> Block:
    """A form: its submit sends ``form_submit`` with ``action_id`` (default: ``block_id``)."""
    return {
        "type": "form",
        "block_id": block_id,
        "fields": list(fields),
        "submit": {"label": submit, "action_id": action_id or block_id},
    }


def image(url: str, alt: str, *, title: str | None = None, block_id: str | None = None) -> Block:
    """An image; ``url`` must be ``https://``/``http://`` or a site path (``/media/x.png``)."""
    return _data("type", "image", url=url, alt=alt, title=title, block_id=block_id)


def context(text: str, *, block_id: str | None = None) -> Block:
    return _data("type", "context", text=text, block_id=block_id)


def columns(*cols: Sequence[Block], block_id: str | None = None) -> Block:
    """Two or three columns, each a list of blocks."""
    return _data("type", "columns", columns=[list(c) for c in cols], block_id=block_id)


def series(
    name: str, data: Sequence[Sequence[int | float]], *, color: str | None = None
) -> dict[str, Any]:
    """One series of a timeseries chart: ``data`` is ``[[timestamp_ms, value], ...]``."""
    return _data("name", name, data=[list(p) for p in data], color=color)


def chart(
    series: Sequence[Mapping[str, Any]],
    *,
    style: str | None = None,
    x_axis_name: str | None = None,
    y_axis_name: str | None = None,
    height: int | None = None,
    gradient: bool | None = None,
    block_id: str | None = None,
) -> Block:
    """A timeseries chart; ``style``: line or bar."""
    config = _data(
        "chart_type",
        "timeseries",
        series=[dict(s) for s in series],
        style=style,
        x_axis_name=x_axis_name,
        y_axis_name=y_axis_name,
        height=height,
        gradient=gradient,
    )
    return _data("type", "chart", config=config, block_id=block_id)


def banner(
    title: str | None = None,
    description: str | None = None,
    *,
    variant: str | None = None,
    block_id: str | None = None,
) -> Block:
    """A banner; ``variant``: default, alert or error."""
    return _data(
        "type", "banner", title=title, description=description, variant=variant, block_id=block_id
    )


def meter(
    label: str,
    value: int | float,
    *,
    max: int | float | None = None,
    min: int | float | None = None,
    custom_value: str | None = None,
    block_id: str | None = None,
) -> Block:
    return _data(
        "type",
        "meter",
        label=label,
        value=value,
        max=max,
        min=min,
        custom_value=custom_value,
        block_id=block_id,
    )


def code(code: str, *, language: str | None = None, block_id: str | None = None) -> Block:
    """A code block; ``language``: ts, tsx, jsonc, bash or css."""
    return _data("type", "code", code=code, language=language, block_id=block_id)


def empty(
    title: str,
    *,
    description: str | None = None,
    command_line: str | None = None,
    size: str | None = None,
    actions: Sequence[Element] | None = None,
    block_id: str | None = None,
) -> Block:
    return _data(
        "type",
        "empty",
        title=title,
        description=description,
        command_line=command_line,
        size=size,
        actions=_list(actions),
        block_id=block_id,
    )


def accordion(
    label: str,
    blocks: Sequence[Block],
    *,
    default_open: bool | None = None,
    block_id: str | None = None,
) -> Block:
    return _data(
        "type",
        "accordion",
        label=label,
        blocks=list(blocks),
        default_open=default_open,
        block_id=block_id,
    )


def panel(label: str, blocks: Sequence[Block]) -> dict[str, Any]:
    """One panel of a :func:`tab` block."""
    return {"label": label, "blocks": list(blocks)}


def tab(
    panels: Sequence[Mapping[str, Any]],
    *,
    default_tab: int | None = None,
    block_id: str | None = None,
) -> Block:
    return _data(
        "type", "tab", panels=[dict(p) for p in panels], default_tab=default_tab, block_id=block_id
    )


# -- elements ---------------------------------------------------------------------------


def option(label: str, value: str) -> dict[str, Any]:
    """One option of a select, checkbox, radio or combobox."""
    return {"label": label, "value": value}


def confirm(
    title: str,
    text: str,
    *,
    confirm: str = "Confirm",
    deny: str = "Cancel",
    style: str | None = None,
) -> dict[str, Any]:
    """A confirmation dialog for a button; ``style``: ``"danger"``."""
    return _data("title", title, text=text, confirm=confirm, deny=deny, style=style)


def button(
    action_id: str,
    label: str,
    *,
    style: str | None = None,
    value: Any = None,
    confirm: Mapping[str, Any] | None = None,
) -> Element:
    """A button; ``style``: primary, danger or secondary. Sends ``block_action``."""
    return _data(
        "type",
        "button",
        action_id=action_id,
        label=label,
        style=style,
        value=value,
        confirm=None if confirm is None else dict(confirm),
    )


def text_input(
    action_id: str,
    label: str,
    *,
    placeholder: str | None = None,
    initial_value: str | None = None,
    multiline: bool | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _data(
        "type",
        "text_input",
        action_id=action_id,
        label=label,
        placeholder=placeholder,
        initial_value=initial_value,
        multiline=multiline,
        condition=None if condition is None else dict(condition),
    )


def number_input(
    action_id: str,
    label: str,
    *,
    initial_value: int | float | None = None,
    min: int | float | None = None,
    max: int | float | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _data(
        "type",
        "number_input",
        action_id=action_id,
        label=label,
        initial_value=initial_value,
        min=min,
        max=max,
        condition=None if condition is None else dict(condition),
    )


def _choice(
    kind: str,
    action_id: str,
    label: str,
    options: Sequence[Mapping[str, Any]],
    initial_value: Any,
    condition: Mapping[str, Any] | None,
    **extra: Any,
) -> Element:
    return _data(
        "type",
        kind,
        action_id=action_id,
        label=label,
        options=[dict(o) for o in options],
        initial_value=initial_value,
        condition=None if condition is None else dict(condition),
        **extra,
    )


def select(
    action_id: str,
    label: str,
    options: Sequence[Mapping[str, Any]],
    *,
    initial_value: str | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _choice("select", action_id, label, options, initial_value, condition)


def radio(
    action_id: str,
    label: str,
    options: Sequence[Mapping[str, Any]],
    *,
    initial_value: str | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _choice("radio", action_id, label, options, initial_value, condition)


def combobox(
    action_id: str,
    label: str,
    options: Sequence[Mapping[str, Any]],
    *,
    initial_value: str | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _choice("combobox", action_id, label, options, initial_value, condition)


def checkbox(
    action_id: str,
    label: str,
    options: Sequence[Mapping[str, Any]],
    *,
    initial_value: Sequence[str] | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _choice("checkbox", action_id, label, options, _list(initial_value), condition)


def toggle(
    action_id: str,
    label: str,
    *,
    description: str | None = None,
    initial_value: bool | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    return _data(
        "type",
        "toggle",
        action_id=action_id,
        label=label,
        description=description,
        initial_value=initial_value,
        condition=None if condition is None else dict(condition),
    )


def secret_input(
    action_id: str,
    label: str,
    *,
    placeholder: str | None = None,
    has_value: bool | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    """A secret: never carries its value, only whether one is stored (``has_value``)."""
    return _data(
        "type",
        "secret_input",
        action_id=action_id,
        label=label,
        placeholder=placeholder,
        has_value=has_value,
        condition=None if condition is None else dict(condition),
    )


def date_input(
    action_id: str,
    label: str,
    *,
    initial_value: str | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Element:
    """A date (``YYYY-MM-DD``)."""
    return _data(
        "type",
        "date_input",
        action_id=action_id,
        label=label,
        initial_value=initial_value,
        condition=None if condition is None else dict(condition),
    )


def repeater(
    action_id: str,
    label: str,
    fields: Sequence[Element],
    *,
    item_label: str | None = None,
    min_items: int | None = None,
    max_items: int | None = None,
) -> Element:
    """A list of items, each made of ``fields`` (text, number, select and toggle inputs)."""
    return _data(
        "type",
        "repeater",
        action_id=action_id,
        label=label,
        fields=list(fields),
        item_label=item_label,
        min_items=min_items,
        max_items=max_items,
    )


def media_picker(
    action_id: str,
    label: str,
    *,
    mime_type_filter: str | None = None,
    initial_value: str | None = None,
) -> Element:
    return _data(
        "type",
        "media_picker",
        action_id=action_id,
        label=label,
        mime_type_filter=mime_type_filter,
        initial_value=initial_value,
    )


# -- the namespace plugins import -------------------------------------------------------

BUILDER_NAMES = (
    "accordion",
    "actions",
    "banner",
    "button",
    "chart",
    "checkbox",
    "code",
    "column",
    "columns",
    "combobox",
    "condition",
    "confirm",
    "context",
    "date_input",
    "divider",
    "empty",
    "field",
    "fields",
    "form",
    "header",
    "image",
    "media_picker",
    "meter",
    "number_input",
    "option",
    "panel",
    "radio",
    "repeater",
    "response",
    "secret_input",
    "section",
    "select",
    "series",
    "stat",
    "stats",
    "tab",
    "table",
    "text_input",
    "toast",
    "toggle",
)


class BlockBuilders:
    """``emdash.blocks`` inside a sandbox worker: every builder as a staticmethod.

    No state and no slots: reading ``bk.header`` yields the plain function, which the
    sandbox's attribute guard allows because the class stores it as a staticmethod.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<emdash.blocks>"


for _name in BUILDER_NAMES:
    setattr(BlockBuilders, _name, staticmethod(globals()[_name]))
del _name

blocks = BlockBuilders()
