"""Per-plugin admission through the ASGI interface: 503 + Retry-After for that plugin only.

The plugin is made "full" by holding its turns directly (``rt.admission.gate(...)``), so
the verdicts are structural: refused or admitted, never "fast enough".
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import anyio
import pytest

from emdash._runtime._admission import AdmissionSlot
from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI

from .conftest import API, TOKEN, call


@pytest.fixture
def full_probe(runtime: Runtime) -> Iterator[AdmissionSlot]:
    """The probe plugin with one turn, held by the test, and no queue."""
    rt = runtime
    before = rt.admission.policy("probe")
    rt.admission.configure("probe", max_concurrency=1, max_queue=0, retry_after_s=7)
    slot = rt.admission.gate("probe").try_enter()
    assert slot is not None
    try:
        yield slot
    finally:
        slot.release()
        rt.admission.configure("probe", **before.__dict__)


def audit_rows(rt: Runtime) -> int:
    return len(rt.audit_log(limit=10_000, plugin_id="probe"))


def test_full_plugin_answers_503_with_retry_after(
    app: EmDashASGI, runtime: Runtime, full_probe: AdmissionSlot
) -> None:
    rows = audit_rows(runtime)
    r = call(app, "GET", f"{API}/probe/public-echo", token=None)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert r.headers["cache-control"] == "private, no-store"
    assert r.json() == {
        "success": False,
        "error": {"code": "PLUGIN_BUSY", "message": "Plugin probe is busy; retry in 7 s"},
    }
    head = call(app, "HEAD", f"{API}/probe/echo")
    assert head.status_code == 503 and head.content == b""
    assert head.headers["retry-after"] == "7"
    # Another plugin is not affected; nothing of the refused calls reached the audit log.
    assert call(app, "GET", f"{API}/plugin-hello/recent").status_code == 200
    assert audit_rows(runtime) == rows
    assert runtime.admission.stats("probe")["refused"] == 2


def test_client_errors_come_before_admission(app: EmDashASGI, full_probe: AdmissionSlot) -> None:
    # Unknown routes, missing auth and bad input are answered without taking a turn.
    assert call(app, "GET", f"{API}/probe/nope").status_code == 404
    assert call(app, "GET", f"{API}/probe/echo", token=None).status_code == 401
    bad = call(app, "POST", f"{API}/probe/echo", content=b'{"n": 1' + b"0" * 30 + b"}")
    assert bad.status_code == 400


def run_queued(
    app: EmDashASGI, runtime: Runtime, holder: AdmissionSlot, *, then: str
) -> list[MutableMapping[str, Any]]:
    """One GET of probe/public-echo that must queue; once it is queued, ``then`` is
    "release" (the held turn), "disconnect" (the client) or "cancel" (the app's task, as a
    server shutting down would). Returns the messages the app sent."""
    sent: list[MutableMapping[str, Any]] = []
    gate = runtime.admission.gate("probe")

    async def main() -> None:
        gone = anyio.Event()
        first = True

        async def receive() -> MutableMapping[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": f"{API}/probe/public-echo",
            "query_string": b"",
            "headers": [(b"host", b"site.example")],
            "client": ("127.0.0.1", 5000),
            "scheme": "https",
        }
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, scope, receive, send)
            while gate.stats()["queued"] == 0:
                await anyio.sleep(0.001)
            if then == "disconnect":
                gone.set()
            elif then == "release":
                holder.release()
            else:
                tg.cancel_scope.cancel()

    anyio.run(main)
    return sent


def test_queued_call_is_admitted_when_a_turn_frees(
    app: EmDashASGI, runtime: Runtime, full_probe: AdmissionSlot
) -> None:
    runtime.admission.configure("probe", max_queue=1)
    sent = run_queued(app, runtime, full_probe, then="release")
    assert sent[0]["status"] == 200
    assert runtime.admission.stats("probe")["running"] == 0


def test_queued_client_that_disconnects_leaves_the_queue_unserved(
    app: EmDashASGI, runtime: Runtime, full_probe: AdmissionSlot
) -> None:
    runtime.admission.configure("probe", max_queue=1)
    rows = audit_rows(runtime)
    sent = run_queued(app, runtime, full_probe, then="disconnect")
    assert sent == []
    stats = runtime.admission.stats("probe")
    assert (stats["running"], stats["queued"]) == (1, 0)  # only the test's turn
    assert audit_rows(runtime) == rows  # the plugin never ran for it


def test_queue_wait_is_bounded(
    app: EmDashASGI, runtime: Runtime, full_probe: AdmissionSlot
) -> None:
    # The held turn is never released: the queued caller can only time out.
    runtime.admission.configure("probe", max_queue=1, queue_timeout_ms=1)
    r = call(app, "GET", f"{API}/probe/echo", token=TOKEN)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "PLUGIN_BUSY"
    assert r.headers["retry-after"] == "7"
    assert runtime.admission.stats("probe")["timed_out"] >= 1


def test_cancelled_waiter_leaves_the_queue(
    app: EmDashASGI, runtime: Runtime, full_probe: AdmissionSlot
) -> None:
    runtime.admission.configure("probe", max_queue=1)
    assert run_queued(app, runtime, full_probe, then="cancel") == []
    stats = runtime.admission.stats("probe")
    assert (stats["running"], stats["queued"]) == (1, 0)
    full_probe.release()
    # The plugin's turns are all back: a new call is admitted at once.
    assert runtime.admission.stats("probe")["running"] == 0
    assert call(app, "GET", f"{API}/probe/public-echo", token=None).status_code == 200
