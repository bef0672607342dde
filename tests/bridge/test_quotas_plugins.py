"""Quotas seen by real plugins, sandboxed and trusted (issue rows 6 and 8).

A plugin over its stored-data quota gets ``QuotaExceededError`` (catchable in both modes,
with ``quota`` and ``limit``), nothing it stored before is lost, deleting makes room, and
a failed invocation leaves the counters exact. Its log lines past ``log_bytes_per_minute``
are dropped with one warning per window; a logging loop in a worker ends with the
subrequest limit instead of running on the host's CPU until the wall limit.

Real SQLite on disk and real sandboxed workers. The log window's clock is a frozen
function, so no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emdash import PluginError, QuotaExceededError, Quotas, SubrequestLimitExceeded
from emdash._bridge._budget import LogWindow
from emdash._runtime._runtime import Runtime
from emdash._shared._errors import error_from_wire, error_to_wire, passes_through
from emdash._store._quotas import AuditRetention

SOURCE = """
from emdash import QuotaExceededError, define_plugin


def fill(route_ctx, ctx):
    args = route_ctx["input"]
    stored = 0
    try:
        for i in range(args["n"]):
            if args.get("docs"):
                ctx.storage["docs"].put("d" + str(i), "y" * args["size"])
            else:
                ctx.kv.set("k" + str(i), "x" * args["size"])
            stored += 1
    except QuotaExceededError as exc:
        return {"stored": stored, "quota": exc.quota, "limit": exc.limit, "error": str(exc)}
    return {"stored": stored}


def fill_uncaught(route_ctx, ctx):
    ctx.kv.set("before", 1)
    ctx.kv.set("huge", "z" * 5000)
    return {"ok": True}


def drop(route_ctx, ctx):
    return {"deleted": sum(1 for key in route_ctx["input"]["keys"] if ctx.kv.delete(key))}


def write_then_fail(route_ctx, ctx):
    ctx.kv.set("tmp", "t" * 500)
    ctx.storage["docs"].put("tmp", "u" * 500)
    ctx.kv.delete("keep")
    raise ValueError("the handler failed after writing")


def log_lines(route_ctx, ctx):
    for i in range(route_ctx["input"]["n"]):
        ctx.log.info("m" * route_ctx["input"]["size"])
    return {"ok": True}


def log_loop(route_ctx, ctx):
    for i in range(100000):
        ctx.log.info("x")
    return {"ok": True}


plugin = define_plugin(routes={
    "fill": fill, "fill-uncaught": fill_uncaught, "drop": drop,
    "write-then-fail": write_then_fail, "log": log_lines, "log-loop": log_loop,
})
"""

PID = "filler"
DESCRIPTOR = {
    "id": PID,
    "version": "1.0.0",
    "storage": {"docs": {}},
    "limits": {"subrequests": 100},
}
QUOTAS = Quotas(stored_bytes=4000, stored_rows=20, log_bytes_per_minute=2000)


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sandboxed", "trusted"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with Runtime(tmp_path / "site.db", plugin_quotas={PID: QUOTAS}) as rt:
        rt.add_plugin(DESCRIPTOR, source=SOURCE, trusted=request.param == "trusted")
        yield rt


def _route(rt: Runtime, name: str, input: Any = None) -> Any:
    return rt.invoke_route(PID, name, input=input)


def _usage(rt: Runtime) -> dict[str, int]:
    usage = rt.store.stored_quota.usage(PID)
    assert usage == rt.store.stored_quota.recount(PID)  # the counters are exact
    return usage


def test_over_quota_the_plugin_gets_a_typed_error_and_keeps_its_data(runtime: Runtime) -> None:
    runtime.store.kv_entries.set(PID, "keep", "kept value")
    answer = _route(runtime, "fill", {"n": 100, "size": 1000})
    assert answer["quota"] == "stored_bytes" and answer["limit"] == 4000
    assert answer["error"].startswith(f"Plugin {PID} would exceed its stored_bytes quota")
    assert "Nothing was written" in answer["error"]
    stored = answer["stored"]
    assert 0 < stored < 100
    # What was stored before the refusal (this invocation's too: it returned normally) stays.
    kv = runtime.store.kv_entries
    assert kv.get(PID, "keep") == "kept value"
    assert [kv.get(PID, f"k{i}") for i in range(stored)] == ["x" * 1000] * stored
    assert kv.get(PID, f"k{stored}") is None
    assert _usage(runtime)["bytes"] <= 4000


def test_the_row_quota_applies_to_storage_documents(runtime: Runtime) -> None:
    answer = _route(runtime, "fill", {"n": 50, "size": 1, "docs": True})
    assert (answer["stored"], answer["quota"], answer["limit"]) == (20, "stored_rows", 20)
    assert _usage(runtime)["rows"] == 20


def test_an_uncaught_quota_error_reaches_the_host_as_itself(runtime: Runtime) -> None:
    with pytest.raises(QuotaExceededError) as info:
        _route(runtime, "fill-uncaught")
    assert (info.value.plugin_id, info.value.quota, info.value.limit) == (
        PID,
        "stored_bytes",
        4000,
    )
    # The invocation failed: its earlier write was rolled back with it, counters too.
    assert runtime.store.kv_entries.get(PID, "before") is None
    assert _usage(runtime) == {"bytes": 0, "rows": 0}
    audit = runtime.audit_log(limit=1, plugin_id=PID)[0]
    assert audit["outcome"] == "error" and "stored_bytes quota" in audit["error"]


def test_deleting_makes_room(runtime: Runtime) -> None:
    first = _route(runtime, "fill", {"n": 100, "size": 1000})
    assert "quota" in first
    assert _route(runtime, "drop", {"keys": ["k0", "k1"]}) == {"deleted": 2}
    again = _route(runtime, "fill", {"n": first["stored"], "size": 1000})
    assert again == {"stored": first["stored"]}  # the same keys fit again


def test_counters_stay_exact_after_a_failed_invocation(runtime: Runtime) -> None:
    runtime.store.kv_entries.set(PID, "keep", "kept value")
    before = _usage(runtime)
    with pytest.raises(PluginError):
        _route(runtime, "write-then-fail")
    assert _usage(runtime) == before
    assert runtime.store.kv_entries.get(PID, "keep") == "kept value"
    assert runtime.store.kv_entries.get(PID, "tmp") is None


def test_the_log_window_drops_lines_and_warns_once(runtime: Runtime, caplog: Any) -> None:
    clock = FrozenClock()
    runtime.bridge.log_window = LogWindow(
        lambda pid: runtime.store.quotas.for_plugin(pid).log_bytes_per_minute, clock=clock
    )
    caplog.set_level(logging.INFO, logger="emdash.plugins")
    # 10 lines of 500 bytes against 2000 bytes per minute: 4 written, then dropped; the
    # handler is not failed for it.
    assert _route(runtime, "log", {"n": 10, "size": 500}) == {"ok": True}
    assert _route(runtime, "log", {"n": 3, "size": 1}) == {"ok": True}  # same window
    mine = [r for r in caplog.records if r.name == f"emdash.plugins.{PID}"]
    lines = [r for r in mine if r.levelno == logging.INFO]
    warnings = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    assert len(lines) == 4
    assert len(warnings) == 1 and "logged more than 2000 bytes within 60 s" in warnings[0]
    assert "log_bytes_per_minute" in warnings[0]
    # The next window writes again (and warns again once it is full).
    clock.now += 60
    caplog.clear()
    assert _route(runtime, "log", {"n": 5, "size": 500}) == {"ok": True}
    mine = [r for r in caplog.records if r.name == f"emdash.plugins.{PID}"]
    assert [r.levelno for r in mine] == [logging.INFO] * 4 + [logging.WARNING]


def test_the_log_window_is_per_plugin_and_operator_set(runtime: Runtime, caplog: Any) -> None:
    runtime.store.quotas.set(PID, Quotas(log_bytes_per_minute=0))
    caplog.set_level(logging.INFO, logger="emdash.plugins")
    assert _route(runtime, "log", {"n": 3, "size": 1}) == {"ok": True}
    mine = [r for r in caplog.records if r.name == f"emdash.plugins.{PID}"]
    assert [r.levelno for r in mine] == [logging.WARNING]


def test_a_logging_loop_in_a_worker_ends_at_the_subrequest_limit(
    tmp_path: Path, caplog: Any
) -> None:
    # Before: dropped lines were free, so a worker looping on ctx.log kept the host busy
    # answering it until the wall limit (5-9 s of host CPU per 50 ms invocation). Now each
    # call past the 200-line cap is a subrequest: the loop ends after 200 + 10 calls.
    caplog.set_level(logging.INFO, logger="emdash.plugins")
    with Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin({**DESCRIPTOR, "limits": {"subrequests": 10}}, source=SOURCE)
        with pytest.raises(SubrequestLimitExceeded) as info:
            rt.invoke_route(PID, "log-loop")
    assert f"Plugin {PID} exceeded its subrequest limit of 10" in str(info.value)
    mine = [r for r in caplog.records if r.name == f"emdash.plugins.{PID}"]
    assert len([r for r in mine if r.levelno == logging.INFO]) == 200
    assert len([r for r in mine if r.levelno == logging.WARNING]) == 1


def test_the_quota_error_crosses_the_wire_with_checked_fields() -> None:
    err = QuotaExceededError("over", plugin_id=PID, quota="stored_rows", limit=20)
    wire = error_to_wire(err)
    assert wire["type"] == "QuotaExceededError" and passes_through("QuotaExceededError")
    back = error_from_wire(wire, plugin_id=PID)
    assert isinstance(back, QuotaExceededError)
    assert (back.quota, back.limit, back.plugin_id) == ("stored_rows", 20, PID)
    # What a worker sends is hostile: odd field types are dropped, text is escaped and cut.
    forged = error_from_wire(
        {
            "type": "QuotaExceededError",
            "message": "m",
            "quota": "\x1b[31m" + "q" * 500,
            "limit": "9",
        }
    )
    assert isinstance(forged, QuotaExceededError) and forged.limit is None
    assert forged.quota is not None and "\x1b" not in forged.quota and len(forged.quota) < 80


def test_audit_rows_of_failing_calls_stay_within_the_retention_bound(tmp_path: Path) -> None:
    # Issue row 8: every failing call added an audit row (~4.9 KB), kept forever.
    with Runtime(tmp_path / "site.db", audit_retention=AuditRetention(max_rows=20)) as rt:
        rt.add_plugin(DESCRIPTOR, source=SOURCE)
        for _ in range(300):  # more than one flush (256 records) worth
            with pytest.raises(PluginError):
                _route(rt, "write-then-fail")
        rt.store.audit_records.flush()
        stored = rt.store.db.execute("SELECT COUNT(*), MAX(id) FROM _emdash_audit").fetchone()
    assert stored[0] <= 20 and stored[1] >= 300
