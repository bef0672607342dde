"""Audit records reach the database when a process ends without ``close()``.

Real child processes on a real SQLite file: a site that served 300 committing route calls
(their records commit with their writes) and 300 read-only ones (buffered: more than one
buffer's worth, so some are still buffered) and then exits, is sent SIGTERM or SIGINT, or
is SIGKILLed once the background flusher has had its turn. Every call must have its audit
row.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emdash._store._audit import FLUSH_AT

ROOT = Path(__file__).resolve().parents[2]
CALLS = 300
assert CALLS % FLUSH_AT, "some records must still be buffered at the end"

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from emdash import define_plugin
    from emdash._runtime._runtime import Runtime

    db, how, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if how == "host-handler":
        def host_handler(signum, frame):
            pass
        signal.signal(signal.SIGTERM, host_handler)

    def bump(route_ctx, ctx):
        ctx.kv.set("n", (ctx.kv.get("n") or 0) + 1)

    def peek(route_ctx, ctx):
        return ctx.kv.get("n")

    rt = Runtime(db)
    if how != "sigkill":
        # Only the exit paths under test may write the buffer, not the age flusher.
        rt.store.audit_records.flush_after_s = None
    rt.add_plugin({"id": "counter"}, source=define_plugin(routes={"bump": bump, "peek": peek}), trusted=True)
    for _ in range(calls):
        rt.invoke_route("counter", "bump")
        rt.invoke_route("counter", "peek")
    pending = rt.store.audit_records.pending()
    assert pending, "nothing left buffered: the test would prove nothing"
    if how == "host-handler":
        assert signal.getsignal(signal.SIGTERM) is host_handler
        print("host handler kept", flush=True)
    elif how == "exit":
        print("exiting", flush=True)
        sys.exit(0)  # no rt.close()
    elif how == "sigkill":
        # The background flusher writes records older than flush_after_s; wait until its
        # write has committed (no explicit flush anywhere) and tell the parent. Committed,
        # as another connection sees it: the buffer empties when the flusher *takes* the
        # records, before its transaction commits, and a kill in between loses them (a
        # loss SIGKILL may cause by design, which is not what this case is about).
        import contextlib, sqlite3
        while True:
            with contextlib.closing(sqlite3.connect(db)) as other:
                stored = other.execute(
                    "SELECT COUNT(*) FROM _emdash_audit "
                    "WHERE plugin_id = 'counter' AND kind = 'route'"
                ).fetchone()[0]
            if stored == 2 * calls:
                break
            time.sleep(0.05)
        print("flushed", flush=True)
        time.sleep(600)
    else:
        print("waiting", flush=True)
        time.sleep(600)
    """
)


def run_child(db: Path, how: str, send: int | None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), how, str(CALLS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if send is not None:
            os.kill(child.pid, send)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert line, f"the child failed before its signal: {err}"
    return child.returncode, err


def audit_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM _emdash_audit WHERE plugin_id = 'counter' AND kind = 'route'"
            ).fetchone()[0]
        )
    finally:
        conn.close()


def counter(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT value FROM _emdash_options WHERE name LIKE '%counter%n'"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("how", "send", "status"),
    [
        ("exit", None, 0),
        ("wait", signal.SIGTERM, -signal.SIGTERM),
        # Python's own SIGINT handler raises KeyboardInterrupt: the atexit hook covers it
        # (the interpreter then ends as killed by SIGINT).
        ("wait", signal.SIGINT, -signal.SIGINT),
        ("sigkill", signal.SIGKILL, -signal.SIGKILL),
    ],
    ids=["exit-without-close", "sigterm", "sigint", "sigkill-after-flusher"],
)
def test_every_committed_call_has_its_audit_row(
    tmp_path: Path, how: str, send: int | None, status: int
) -> None:
    db = tmp_path / "site.db"
    returncode, err = run_child(db, how, send)
    assert returncode == status, err
    assert counter(db) == CALLS
    assert audit_rows(db) == 2 * CALLS


def test_a_host_sigterm_handler_is_left_alone(tmp_path: Path) -> None:
    returncode, err = run_child(tmp_path / "site.db", "host-handler", None)
    assert returncode == 0, err
