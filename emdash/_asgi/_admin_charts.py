"""``custom`` Block Kit charts drawn on the server: a data table and an inline SVG.

EmDash hands a custom chart's ``options`` to a client-side chart library (ECharts). This
admin runs no script at all (its Content-Security-Policy forbids it), so it reads the
common, data-carrying part of those options and draws it itself:

- ``title.text``; category labels from ``xAxis.data`` (or ``yAxis.data`` for horizontal
  bars); ``series``: ``[{name, type, data}]`` where ``type`` is ``line``, ``bar``,
  ``scatter`` or ``pie`` and ``data`` holds numbers, ``[x, y]`` pairs or
  ``{name, value}`` objects;
- everything else (styles, tooltips, formatters, any function-like string) is ignored:
  nothing of ``options`` becomes markup or a URL, every text goes through :func:`esc`.

The table under the picture is the accessible form of the chart (a screen reader reads
the numbers, not the picture); the SVG is an image described by that table.
"""

from __future__ import annotations

import math
from typing import Any

from ._admin_html import PALETTE, esc

__all__ = ["custom_chart"]

MAX_SERIES = 10
MAX_POINTS = 500  # per series, in the table and the picture
_WIDTH, _HEIGHT, _PAD = 600.0, 220.0, 34.0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:.4g}"


def _label(value: Any) -> str:
    if isinstance(value, str):
        return value[:200]
    number = _num(value)
    return _fmt(number) if number is not None else ""


def _first(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else {}


def _points(data: Any) -> list[tuple[str | None, float | None]]:
    """``(label or None, value)`` per item of a series' ``data``."""
    out: list[tuple[str | None, float | None]] = []
    for item in data[:MAX_POINTS] if isinstance(data, list) else []:
        name: str | None = None
        if isinstance(item, dict):
            name = _label(item.get("name")) or None
            item = item.get("value")
        if isinstance(item, list) and len(item) == 2:
            name = name or _label(item[0]) or None
            item = item[1]
        out.append((name, _num(item)))
    return out


def custom_chart(options: Any, *, ident: str) -> str:
    """The chart for a ``custom`` config's ``options``; a notice if nothing can be drawn.

    ``ident`` is a page-unique id prefix (for ``aria-describedby``)."""
    if not isinstance(options, dict):
        return '<p class="bk-notice">This chart has no data this admin can draw.</p>'
    title = _label(_first(options.get("title")).get("text"))
    raw_series = options.get("series")
    series_list = raw_series if isinstance(raw_series, list) else [raw_series]
    series = [s for s in series_list if isinstance(s, dict)][:MAX_SERIES]
    drawn = [(s, _points(s.get("data"))) for s in series]
    drawn = [(s, p) for s, p in drawn if any(v is not None for _, v in p)]
    if not drawn:
        return '<p class="bk-notice">This chart has no data this admin can draw.</p>'
    pies = [(s, p) for s, p in drawn if s.get("type") == "pie"]
    if pies:
        return _pie(title, pies[0][0], pies[0][1], ident)
    axis = _first(options.get("xAxis")).get("data")
    if not isinstance(axis, list):
        axis = _first(options.get("yAxis")).get("data")
    categories = [_label(c) for c in axis[:MAX_POINTS]] if isinstance(axis, list) else []
    length = max(len(p) for _, p in drawn)
    rows: list[str] = []
    for i in range(length):
        named = [p[i][0] for _, p in drawn if i < len(p) and p[i][0]]
        rows.append(
            categories[i] if i < len(categories) else (named[0] or "") if named else str(i + 1)
        )
    names = [_label(s.get("name")) or f"Series {n + 1}" for n, (s, _) in enumerate(drawn)]
    head = '<th scope="col">Category</th>' + "".join(
        f'<th scope="col">{esc(n)}</th>' for n in names
    )
    body = "".join(
        f'<tr><th scope="row">{esc(row)}</th>'
        + "".join(f'<td class="num">{_fmt(p[i][1]) if i < len(p) else ""}</td>' for _, p in drawn)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    values = [v for _, p in drawn for _, v in p if v is not None]
    low, high = min(0.0, min(values)), max(0.0, max(values))
    span = (high - low) or 1.0
    step = (_WIDTH - 2 * _PAD) / max(1, length)

    def sy(v: float) -> float:
        return _HEIGHT - _PAD - (v - low) / span * (_HEIGHT - 2 * _PAD)

    shapes: list[str] = []
    bars = [i for i, (s, _) in enumerate(drawn) if s.get("type") not in ("line", "scatter")]
    width = max(1.0, step * 0.8 / max(1, len(bars)))
    for n, (s, p) in enumerate(drawn):
        color = PALETTE[n % len(PALETTE)]
        kind = s.get("type")
        spots = [(_PAD + step * (i + 0.5), sy(v)) for i, (_, v) in enumerate(p) if v is not None]
        if kind == "line":
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in spots)
            shapes.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        elif kind == "scatter":
            shapes.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in spots
            )
        else:
            slot = bars.index(n)
            for i, (_, v) in enumerate(p):
                if v is None:
                    continue
                x = _PAD + step * i + step * 0.1 + slot * width
                top, bottom = sorted((sy(v), sy(0.0)))
                shapes.append(
                    f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" '
                    f'height="{max(0.5, bottom - top):.1f}" fill="{color}"/>'
                )
    axes = (
        f'<line x1="{_PAD}" y1="{sy(0.0):.1f}" x2="{_WIDTH - _PAD}" y2="{sy(0.0):.1f}" stroke="#888"/>'
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_HEIGHT - _PAD}" stroke="#888"/>'
        f'<text x="2" y="{_PAD - 8}" font-size="11">{esc(_fmt(high))}</text>'
    )
    if length <= 24:  # category names under the axis while they fit; the table has all
        axes += "".join(
            f'<text x="{_PAD + step * (i + 0.5):.1f}" y="{_HEIGHT - _PAD + 16:.0f}" '
            f'font-size="11" text-anchor="middle">{esc(row[:12])}</text>'
            for i, row in enumerate(rows)
        )
    return _figure(title, ident, head, body, f"{axes}{''.join(shapes)}", names)


def _pie(
    title: str, s: dict[str, Any], points: list[tuple[str | None, float | None]], ident: str
) -> str:
    parts = [
        (name or f"Item {i + 1}", v)
        for i, (name, v) in enumerate(points)
        if v is not None and v > 0
    ]
    total = sum(v for _, v in parts) or 1.0
    head = '<th scope="col">Item</th><th scope="col">Value</th><th scope="col">Share</th>'
    body = "".join(
        f'<tr><th scope="row">{esc(name)}</th><td class="num">{_fmt(v)}</td>'
        f'<td class="num">{v / total * 100:.1f}%</td></tr>'
        for name, v in parts
    )
    cx, cy, r = _WIDTH / 2, _HEIGHT / 2, _HEIGHT / 2 - 10
    angle = -math.pi / 2
    shapes: list[str] = []
    for i, (_, v) in enumerate(parts):
        color = PALETTE[i % len(PALETTE)]
        share = v / total
        if share >= 0.9999:
            shapes.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{color}"/>')
            break
        end = angle + share * 2 * math.pi
        x0, y0 = cx + r * math.cos(angle), cy + r * math.sin(angle)
        x1, y1 = cx + r * math.cos(end), cy + r * math.sin(end)
        large = 1 if share > 0.5 else 0
        shapes.append(
            f'<path d="M{cx:.1f},{cy:.1f} L{x0:.1f},{y0:.1f} A{r:.1f},{r:.1f} 0 {large} 1 '
            f'{x1:.1f},{y1:.1f} Z" fill="{color}"/>'
        )
        angle = end
    name = _label(s.get("name"))
    return _figure(title or name, ident, head, body, "".join(shapes), [n for n, _ in parts])


def _figure(title: str, ident: str, head: str, body: str, svg: str, legend: list[str]) -> str:
    caption = esc(title) if title else "Chart"
    keys = "".join(
        f'<li><span class="bk-key bk-key-{i % len(PALETTE)}" aria-hidden="true"></span>{esc(n)}</li>'
        for i, n in enumerate(legend[: len(PALETTE) * 4])
    )
    # The table is the chart's text: the picture is labelled as described by it.
    return (
        f'<figure class="bk-chart bk-chart-custom"><figcaption id="{ident}-t">{caption}</figcaption>'
        f'<svg viewBox="0 0 {_WIDTH:.0f} {_HEIGHT:.0f}" role="img" aria-labelledby="{ident}-t" '
        f'aria-describedby="{ident}-d">{svg}</svg><ul class="bk-legend">{keys}</ul>'
        f'<table class="bk-table" id="{ident}-d"><caption>Data of the chart: {caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></figure>"
    )
