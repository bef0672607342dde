"""Filtered, paged reads of the audit log, done by SQLite (not in Python over a listing).

The admin's audit page filters by plugin, kind, outcome and time and pages through the
result; with a million rows kept (the default retention bound) that must be one indexed
query per page, not ``list(limit=10000)`` filtered in Python (which also silently missed
every match beyond the newest 10,000 rows).

Paging is by keyset on the row id (rows get increasing ids in the order they were
written): a page holds the newest rows with ``id < before`` ("older") or the oldest rows
with ``id > after`` ("newer", shown newest first again). Unlike ``OFFSET``, a page costs
the same wherever it is and does not shift when new rows arrive while someone reads.
The ``(plugin_id, id)`` and ``(at)`` indexes serve the plugin and time filters.

Buffered records (not yet written, see :mod:`._audit`) are flushed first, so a query sees
every record made before it; if the database cannot be written right now the query shows
what is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .._shared._errors import EmDashError
from ._audit import AUDIT_KINDS, AUDIT_OUTCOMES, AuditRecords, _from_row

__all__ = ["AuditPage", "query_audit"]

MAX_PAGE = 500
#: How many of the newest matching records the totals and per-plugin figures read. Every
#: query holds the store's lock, so every plugin invocation of this host waits for it: a
#: count over all matches cost ~70 ms per 100,000 rows (the retention bound keeps a
#: million), for a page of 100 rows. Past this, the page says "10,000+".
FIGURES_WINDOW = 10_000
log = logging.getLogger("emdash.store")


@dataclass(frozen=True)
class AuditPage:
    """One page of matching audit records, newest first.

    ``older``/``newer`` are the keyset cursors for the neighbouring pages (pass them as
    ``before``/``after``), ``None`` when there is no such page. ``figures`` is
    ``[(plugin_id, count, mean duration ms, mean CPU ms or None)]`` by plugin id, and
    ``total`` their count, over the newest :data:`FIGURES_WINDOW` matching records;
    ``total_capped`` is true when more records match than that (``total`` is then the
    window's size: "at least").
    """

    rows: list[dict[str, Any]]
    older: int | None
    newer: int | None
    total: int
    figures: list[tuple[str, int, float, float | None]] = field(default_factory=list)
    total_capped: bool = False


def query_audit(
    records: AuditRecords,
    *,
    plugin_id: str | None = None,
    kind: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = None,
    after: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """The records matching every given filter (``since``/``until``: ISO-8601 UTC as the
    store writes them, ``at >= since`` and ``at < until``), one page of at most ``limit``
    (clamped to [1, 500]). ``before`` and ``after`` are exclusive; give at most one."""
    if kind is not None and kind not in AUDIT_KINDS:
        raise EmDashError(f"Unknown audit kind {kind!r}: use one of {sorted(AUDIT_KINDS)}")
    if outcome is not None and outcome not in AUDIT_OUTCOMES:
        raise EmDashError(f"Unknown audit outcome {outcome!r}: use one of {sorted(AUDIT_OUTCOMES)}")
    if before is not None and after is not None:
        raise EmDashError("query_audit: give before (older page) or after (newer page), not both")
    size = max(1, min(int(limit), MAX_PAGE))
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("plugin_id", plugin_id), ("kind", kind), ("outcome", outcome)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at < ?")
        params.append(until)
    db = records._db
    try:
        records.flush()
    except EmDashError:
        # The database cannot be written now: show what it holds (the flusher retries).
        log.warning("Could not write buffered audit records before a query", exc_info=True)
    filters = " AND ".join(where)
    paged = list(where)
    page_params = list(params)
    if before is not None:
        paged.append("id < ?")
        page_params.append(int(before))
    elif after is not None:
        paged.append("id > ?")
        page_params.append(int(after))
    clause = f"WHERE {' AND '.join(paged)}" if paged else ""
    order = "ASC" if after is not None else "DESC"
    # One more row than the page tells whether a further page exists in that direction.
    found = db.rows(
        f"SELECT * FROM _emdash_audit {clause} ORDER BY id {order} LIMIT ?",
        [*page_params, size + 1],
    )
    more = len(found) > size
    found = found[:size]
    if after is not None:
        found.reverse()
    rows = [_from_row(r) for r in found]
    older = newer = None
    if rows:
        first, last = int(rows[0]["id"]), int(rows[-1]["id"])
        # The extra row answers for the direction we paged in; the other side is one
        # indexed probe (the newest page has no newer side at all).
        if after is None:
            older = last if more else None
            if before is not None and _exists(db, where, params, "id > ?", first):
                newer = first
        else:
            newer = first if more else None
            if _exists(db, where, params, "id < ?", last):
                older = last
    # Over the newest FIGURES_WINDOW + 1 matches only (the extra row says "more"): a read
    # bounded by the window, not by how many rows the log keeps.
    grouped = _figures(db, filters, params, FIGURES_WINDOW + 1)
    capped = sum(int(g["n"]) for g in grouped) > FIGURES_WINDOW
    if capped:  # without the extra row: the figures are over exactly the window
        grouped = _figures(db, filters, params, FIGURES_WINDOW)
    figures = [
        (
            str(g["plugin_id"]),
            int(g["n"]),
            float(g["duration"] or 0.0),
            None if g["cpu"] is None else float(g["cpu"]),
        )
        for g in grouped
    ]
    return AuditPage(
        rows=rows,
        older=older,
        newer=newer,
        total=sum(f[1] for f in figures),
        figures=figures,
        total_capped=capped,
    )


def _exists(db: Any, where: list[str], params: list[Any], extra: str, value: int) -> bool:
    clause = " AND ".join([*where, extra])
    found = db.rows(f"SELECT 1 FROM _emdash_audit WHERE {clause} LIMIT 1", [*params, value])
    return bool(found)


def _figures(db: Any, filters: str, params: list[Any], window: int) -> list[dict[str, Any]]:
    """Count, mean duration and mean CPU by plugin over the newest ``window`` matches."""
    return db.rows(  # type: ignore[no-any-return]
        "SELECT plugin_id, COUNT(*) AS n, AVG(duration_ms) AS duration, AVG(cpu_ms) AS cpu "
        "FROM (SELECT plugin_id, duration_ms, cpu_ms FROM _emdash_audit "
        f"{'WHERE ' + filters if filters else ''} ORDER BY id DESC LIMIT ?) AS newest "
        "GROUP BY plugin_id ORDER BY plugin_id",
        [*params, window],
    )
