"""List-shaped bridge results are bounded in bytes before they are built (issue row 2).

A plugin stored ~100 MB in KV (and in a storage collection), then made one ``ctx.kv.list()``
or ``get_many``: the host read every row into memory before the frame cap could refuse the
answer (host RSS 341 MB / 456 MB / 1.1 GB). Now the size of each row is counted in SQL, from
the stored JSON text, and rows stop before the budget (``MAX_RESULT_BYTES``) is passed:
``kv.list()`` without paging arguments refuses with a clear error, ``kv.list(limit=,
cursor=)`` and ``query`` return shorter pages with a cursor, ``get_many`` refuses.

Real SQLite on disk, a real sandboxed worker (the hostile path) and the trusted mode. The
one figure asserted, host RSS growth, is compared with a same-run baseline and a wide
margin; everything else is structural.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emdash import Quotas
from emdash._runtime._runtime import Runtime
from emdash._store._values import MAX_DOC_BYTES, MAX_RESULT_BYTES

SOURCE = """
from emdash import BridgeError, define_plugin


def kv_list(route_ctx, ctx):
    args = route_ctx["input"] or {}
    try:
        if args.get("paged"):
            return {"ok": ctx.kv.list(args.get("prefix", ""), limit=args.get("limit"),
                                      cursor=args.get("cursor"))}
        return {"ok": ctx.kv.list(args.get("prefix", ""))}
    except BridgeError as exc:
        return {"error": "BridgeError: " + str(exc)}


def kv_sizes(route_ctx, ctx):
    # Walk every page; answer only sizes, so the route's own result stays small.
    pages, keys, cursor = 0, [], None
    while True:
        page = ctx.kv.list("big:", limit=1000, cursor=cursor)
        pages += 1
        keys.extend(item["key"] for item in page["items"])
        if not page["hasMore"]:
            return {"pages": pages, "keys": keys}
        cursor = page["cursor"]


def get_many(route_ctx, ctx):
    try:
        found = ctx.storage["docs"].get_many(route_ctx["input"]["ids"])
        return {"ok": sorted(found)}
    except BridgeError as exc:
        return {"error": "BridgeError: " + str(exc)}


def query_pages(route_ctx, ctx):
    pages, ids, cursor = [], [], None
    while True:
        page = ctx.storage["docs"].query(limit=100, cursor=cursor)
        pages.append(len(page["items"]))
        ids.extend(item["id"] for item in page["items"])
        if not page["hasMore"]:
            return {"pages": pages, "ids": ids}
        cursor = page["cursor"]


plugin = define_plugin(routes={
    "kv-list": kv_list, "kv-sizes": kv_sizes, "get-many": get_many, "query": query_pages,
})
"""

DESCRIPTOR = {
    "id": "hoarder",
    "version": "1.0.0",
    "storage": {"docs": {"indexes": []}},
    # Walking ~100 MB page by page costs the worker real CPU (decoding); the bound under
    # test is the host's, not these.
    "limits": {"cpu_ms": 120_000, "wall_ms": 600_000, "subrequests": 1000},
}
VALUE_CHARS = MAX_DOC_BYTES - 64  # a value just under the per-value cap (~1 MiB of JSON)
COUNT = 100  # ~100 MB in all


@pytest.fixture(scope="module", params=["sandboxed", "trusted"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    db = Path(tmp_path_factory.mktemp("bounds")) / "site.db"
    # The operator gave this plugin room for ~200 MB (the default stored_bytes is 64 MiB).
    roomy = {"hoarder": Quotas(stored_bytes=512 * 1024 * 1024)}
    with Runtime(db, site={"name": "T", "url": "https://site.example"}, plugin_quotas=roomy) as rt:
        rt.add_plugin(DESCRIPTOR, source=SOURCE, trusted=request.param == "trusted")
        big = "x" * VALUE_CHARS
        kv = rt.store.kv_entries
        docs = rt.store.plugin_documents
        for i in range(COUNT):
            kv.set("hoarder", f"big:{i:03d}", big)
            docs.put("hoarder", "docs", f"d{i:03d}", {"blob": big})
        kv.set("hoarder", "small:a", 1)
        kv.set("hoarder", "small:b", {"n": 2})
        yield rt


def _route(rt: Runtime, name: str, input: Any = None) -> Any:
    return rt.invoke_route("hoarder", name, input=input)


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _peak_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@contextlib.contextmanager
def _peak_growth() -> Iterator[list[int]]:
    """Peak RSS growth (KiB) of the host process over the block: VmHWM is reset first
    (``clear_refs`` 5), so the peak is this block's own."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs) here")
    out: list[int] = []
    start = _rss_kb()
    yield out
    out.append(_peak_kb() - start)


def test_kv_list_of_100_mb_refuses_clearly_and_the_host_does_not_pay(runtime: Runtime) -> None:
    # Same-run baseline: one small call through the same path.
    with _peak_growth() as baseline:
        assert _route(runtime, "kv-list", {"prefix": "small:"}) == {
            "ok": [{"key": "small:a", "value": 1}, {"key": "small:b", "value": {"n": 2}}]
        }
    with _peak_growth() as growth:
        answer = _route(runtime, "kv-list", {})
    assert answer["error"].startswith("BridgeError: kv.list: the keys of plugin hoarder")
    assert f"more than {MAX_RESULT_BYTES} bytes" in answer["error"]
    assert "limit=..., cursor=..." in answer["error"]
    data_kb = COUNT * VALUE_CHARS // 1024
    # Before the fix: 341 MB and more for ~100 MB. Bounded: the budget (4 MiB), one row over
    # it, SQLite's page cache and the frame copies. A wide margin over the baseline.
    assert growth[0] - baseline[0] < data_kb // 3, (growth, baseline, data_kb)


def test_kv_list_pages_cover_every_key_within_the_budget(runtime: Runtime) -> None:
    answer = _route(runtime, "kv-list", {"prefix": "big:", "paged": True, "limit": 1000})
    page = answer["ok"]
    assert page["hasMore"] is True and isinstance(page["cursor"], str)
    # Stopped before the budget: fewer than the 1000 asked for, each item whole.
    assert 0 < len(page["items"]) < MAX_RESULT_BYTES // VALUE_CHARS + 1
    assert all(len(item["value"]) == VALUE_CHARS for item in page["items"])
    walked = _route(runtime, "kv-sizes")
    assert walked["keys"] == [f"big:{i:03d}" for i in range(COUNT)]
    assert walked["pages"] >= COUNT * VALUE_CHARS // MAX_RESULT_BYTES


def test_kv_list_page_with_limit_and_cursor(runtime: Runtime) -> None:
    first = _route(runtime, "kv-list", {"prefix": "small:", "paged": True, "limit": 1})["ok"]
    assert first == {
        "items": [{"key": "small:a", "value": 1}],
        "hasMore": True,
        "cursor": "small:a",
    }
    second = _route(
        runtime, "kv-list", {"prefix": "small:", "paged": True, "limit": 1, "cursor": "small:a"}
    )["ok"]
    assert second == {"items": [{"key": "small:b", "value": {"n": 2}}], "hasMore": False}


def test_get_many_over_the_budget_refuses_and_the_host_does_not_pay(runtime: Runtime) -> None:
    ids = [f"d{i:03d}" for i in range(COUNT)]
    with _peak_growth() as baseline:
        assert _route(runtime, "get-many", {"ids": ids[:2]}) == {"ok": ids[:2]}
    with _peak_growth() as growth:
        answer = _route(runtime, "get-many", {"ids": ids})
    assert answer["error"].startswith("BridgeError: storage.docs.getMany: the 100 requested")
    assert "ask for fewer ids per call" in answer["error"]
    assert growth[0] - baseline[0] < COUNT * VALUE_CHARS // 1024 // 3, (growth, baseline)


def test_query_pages_are_bounded_in_bytes_and_cover_everything(runtime: Runtime) -> None:
    walked = _route(runtime, "query")
    assert walked["ids"] == [f"d{i:03d}" for i in range(COUNT)]
    per_page = max(walked["pages"])
    assert per_page < 100  # limit=100 asked; the byte budget ended each page earlier
    assert per_page * VALUE_CHARS <= MAX_RESULT_BYTES
