"""Serializable invocations through the whole runtime: real SQLite files, real sandboxed
workers, real threads and processes, a real local HTTP server.

Every ordering claim is proven with events (who was still waiting when what finished),
never with timings.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emdash import ConflictError, Runtime, define_plugin
from emdash._bridge._http import HttpClient

ROOT = Path(__file__).resolve().parents[2]

COUNTER = """
from emdash import define_plugin

def bump(route_ctx, ctx):
    n = ctx.kv.get("n") or 0
    ctx.kv.set("n", n + 1)
    return n + 1

def hit(route_ctx, ctx):
    return ctx.kv.increment("hits")

def cas(route_ctx, ctx):
    i = route_ctx["input"]
    return ctx.kv.compare_and_set(i["key"], i["expected"], i["new"])

def get(route_ctx, ctx):
    return ctx.kv.get(route_ctx["input"]["key"])

def logged_bump(route_ctx, ctx):
    n = ctx.kv.get("n") or 0
    ctx.log.warn("bumping")  # the test's log handler races it here
    ctx.kv.set("n", n + 1)
    return n + 1

def fetching_bump(route_ctx, ctx):
    n = ctx.kv.get("n") or 0
    ctx.http.fetch(route_ctx["input"]["url"])
    ctx.kv.set("n", n + 1)
    ctx.kv.set("bumped", True)

def set_then_fetch(route_ctx, ctx):
    ctx.kv.set("a", 1)
    ctx.http.fetch(route_ctx["input"]["url"])
    return "fetched"

plugin = define_plugin(routes={
    "bump": bump, "hit": hit, "cas": cas, "get": get, "logged_bump": logged_bump,
    "fetching_bump": fetching_bump, "set_then_fetch": set_then_fetch,
})
"""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    on_request: Callable[[], None] = staticmethod(lambda: None)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.on_request()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


def _url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/slow"


def _runtime(path: Path, **kw: Any) -> Runtime:
    rt = Runtime(path, **kw)
    rt.store.audit_records.flush_after_s = None
    # Test-only wiring: let this bridge reach the local server.
    rt.bridge.http = HttpClient(allow_private=["127.0.0.1"], timeout=30.0)
    return rt


def _add(rt: Runtime, pid: str, *, trusted: bool) -> None:
    rt.add_plugin(
        {"id": pid, "capabilities": ["network:request"], "allowedHosts": ["127.0.0.1"]},
        source={"plugin.py": COUNTER},
        trusted=trusted,
    )


def _in_threads(n: int, fn: Callable[[int], None]) -> None:
    pool = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(300)
    assert not any(t.is_alive() for t in pool)


@pytest.mark.parametrize("mode", ["native", "sandboxed"])
@pytest.mark.parametrize("threads", [2, 8])
def test_read_modify_write_loses_no_update(tmp_path: Path, mode: str, threads: int) -> None:
    calls = 12 if mode == "sandboxed" else 40
    ok = [0] * threads
    conflicts = [0] * threads
    # Room for every thread at once (the default admits as many as there are workers).
    admission = {"counter": {"max_concurrency": threads, "max_queue": threads}}
    with _runtime(tmp_path / "site.db", admission=admission) as rt:
        _add(rt, "counter", trusted=mode == "native")

        def worker(i: int) -> None:
            for _ in range(calls):
                try:
                    rt.invoke_route("counter", "bump")
                    ok[i] += 1
                except ConflictError:  # the only failure allowed: typed, and nothing kept
                    conflicts[i] += 1

        _in_threads(threads, worker)
        assert rt.store.kv_entries.get("counter", "n") == sum(ok)
        assert sum(ok) + sum(conflicts) == calls * threads
        # Every committed call has its audit row, committed with it (no flush here).
        rows = rt.store._db.scalar(
            "SELECT COUNT(*) FROM _emdash_audit "
            "WHERE plugin_id = 'counter' AND kind = 'route' AND outcome = 'ok'"
        )
        assert rows == sum(ok)


@pytest.mark.parametrize("mode", ["native", "sandboxed"])
def test_increment_and_compare_and_set_through_ctx(tmp_path: Path, mode: str) -> None:
    with _runtime(tmp_path / "site.db") as rt:
        _add(rt, "counter", trusted=mode == "native")

        def worker(_: int) -> None:
            for _ in range(10):
                rt.invoke_route("counter", "hit")

        _in_threads(4, worker)
        assert rt.store.kv_entries.get("counter", "hits") == 40

        def cas(key: str, expected: Any, new: Any) -> Any:
            return rt.invoke_route(
                "counter", "cas", input={"key": key, "expected": expected, "new": new}
            )

        assert cas("lock", None, {"owner": "a"}) is True
        assert cas("lock", None, {"owner": "b"}) is False
        assert cas("lock", {"owner": "a"}, 1) is True
        assert cas("lock", 1.0, 2) is False  # exact JSON
        assert rt.invoke_route("counter", "get", input={"key": "lock"}) == 1
        assert cas("lock", 1, None) is True
        assert rt.invoke_route("counter", "get", input={"key": "lock"}) is None


def test_a_write_then_a_slow_fetch_blocks_no_other_plugin(tmp_path: Path, server: _Server) -> None:
    arrived = threading.Event()
    release = threading.Event()

    def hold() -> None:
        arrived.set()
        release.wait(60)

    server.on_request = hold
    with _runtime(tmp_path / "site.db") as rt:
        _add(rt, "slow", trusted=False)
        _add(rt, "other", trusted=False)
        _add(rt, "native", trusted=True)
        result: list[Any] = []
        slow = threading.Thread(
            target=lambda: result.append(
                rt.invoke_route("slow", "set_then_fetch", input={"url": _url(server)})
            )
        )
        slow.start()
        try:
            assert arrived.wait(60)  # "slow" has written and is inside its fetch
            done = threading.Event()

            def others() -> None:
                rt.invoke_route("other", "bump")
                rt.invoke_route("native", "bump")
                rt.store.kv_entries.set("host", "k", 1)  # the host's own write
                done.set()

            t = threading.Thread(target=others)
            t.start()
            assert done.wait(60), "another plugin's write waited for the slow invocation"
            t.join(10)
            # The other writes committed while "slow" was still held inside its fetch.
            assert not release.is_set() and slow.is_alive()
            assert rt.store.kv_entries.get("other", "n") == 1
            assert rt.store.kv_entries.get("native", "n") == 1
            assert rt.store.kv_entries.get("slow", "a") is None  # not committed yet
        finally:
            release.set()
            slow.join(60)
        assert result == ["fetched"]
        assert rt.store.kv_entries.get("slow", "a") == 1


def test_a_conflict_after_an_outside_effect_reaches_the_caller(
    tmp_path: Path, server: _Server
) -> None:
    with _runtime(tmp_path / "site.db") as rt:
        _add(rt, "counter", trusted=False)
        # While the plugin is inside its fetch, another writer changes what it read.
        server.on_request = lambda: rt.store.kv_entries.set("counter", "n", 100)
        with pytest.raises(ConflictError) as info:
            rt.invoke_route("counter", "fetching_bump", input={"url": _url(server)})
        err = info.value
        assert err.plugin_id == "counter" and err.scope == "kv/counter/n"
        assert str(err).startswith(
            "Plugin counter could not commit its route:fetching_bump invocation: "
            "kv/counter/n was changed by another invocation or process"
        )
        # Not re-run (it fetched), and nothing of it kept.
        assert rt.store.kv_entries.get("counter", "n") == 100
        assert rt.store.kv_entries.get("counter", "bumped") is None
        rt.store.audit_records.flush()
        (row,) = [r for r in rt.audit_log(plugin_id="counter") if r["kind"] == "route"]
        assert row["outcome"] == "error" and "could not commit" in row["error"]


class _RaceOnce(logging.Handler):
    """On the first plugin log line, a write from another thread races the invocation."""

    def __init__(self, race: Callable[[], None]) -> None:
        super().__init__()
        self.race = race
        self.fired = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "bumping" in record.getMessage():
            self.fired += 1
            if self.fired == 1:
                t = threading.Thread(target=self.race)
                t.start()
                t.join(30)


def test_a_conflict_without_outside_effects_is_re_run(tmp_path: Path) -> None:
    logger = logging.getLogger("test-integrity")
    logger.propagate = False
    rt_box: list[Runtime] = []
    handler = _RaceOnce(lambda: rt_box[0].store.kv_entries.set("counter", "n", 100))
    logger.addHandler(handler)
    try:
        with _runtime(tmp_path / "site.db", logger=logger) as rt:
            rt_box.append(rt)
            _add(rt, "counter", trusted=False)
            assert rt.invoke_route("counter", "logged_bump") == 101
            assert handler.fired == 2  # ran twice: the first run lost the race
            assert rt.store.kv_entries.get("counter", "n") == 101
            (row,) = [r for r in rt.audit_log(plugin_id="counter") if r["kind"] == "route"]
            assert (row["name"], row["outcome"]) == ("logged_bump", "ok")
    finally:
        logger.removeHandler(handler)


def test_a_native_conflict_is_not_re_run(tmp_path: Path) -> None:
    handler_runs: list[int] = []
    with _runtime(tmp_path / "site.db") as rt:

        def bump(route_ctx: Any, ctx: Any) -> None:
            handler_runs.append(1)
            n = ctx.kv.get("n") or 0
            t = threading.Thread(target=lambda: rt.store.kv_entries.set("native", "n", 100))
            t.start()
            t.join(30)
            ctx.kv.set("n", n + 1)

        rt.add_plugin({"id": "native"}, source=define_plugin(routes={"bump": bump}), trusted=True)
        with pytest.raises(ConflictError):
            rt.invoke_route("native", "bump")
        assert handler_runs == [1]
        assert rt.store.kv_entries.get("native", "n") == 100


def test_the_audit_row_of_a_committed_invocation_is_in_the_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    with _runtime(path) as rt:
        _add(rt, "counter", trusted=False)
        rt.invoke_route("counter", "bump")
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute(
                "SELECT kind, name, outcome, cpu_ms IS NOT NULL FROM _emdash_audit "
                "WHERE plugin_id = 'counter' AND kind = 'route'"
            ).fetchall()
        finally:
            conn.close()
        assert rows == [("route", "bump", "ok", 1)]


# -- two processes on one site.db --------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from emdash import ConflictError, define_plugin
    from emdash._runtime._runtime import Runtime

    db, go, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def bump(route_ctx, ctx):
        ctx.kv.set("n", (ctx.kv.get("n") or 0) + 1)

    def hit(route_ctx, ctx):
        ctx.kv.increment("hits")

    rt = Runtime(db)
    rt.add_plugin(
        {"id": "counter"}, source=define_plugin(routes={"bump": bump, "hit": hit}),
        trusted=True,
    )
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
    out = {"bump": 0, "hit": 0, "conflicts": 0}
    for _ in range(calls):
        for route in ("bump", "hit"):
            try:
                rt.invoke_route("counter", route)
                out[route] += 1
            except ConflictError:
                out["conflicts"] += 1
    rt.close()
    print(json.dumps(out), flush=True)
    """
)


def test_two_processes_on_one_database_lose_no_update(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children: list[subprocess.Popen[str]] = []
    try:
        # One after the other until both are set up (each adds the plugin); then both
        # hammer the same counter at once.
        for _ in range(2):
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(db), str(go), "60"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            children.append(child)
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        go.touch()
        results = []
        for child in children:
            out, err = child.communicate(timeout=300)
            # Any failure but a ConflictError (a raw sqlite3 error, a StorageError after
            # the busy timeout) fails the child.
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    conn = sqlite3.connect(db)
    try:
        values = dict(
            conn.execute(
                "SELECT name, value FROM _emdash_options WHERE name LIKE 'plugin:counter:%'"
            ).fetchall()
        )
    finally:
        conn.close()
    assert int(values["plugin:counter:n"]) == sum(r["bump"] for r in results)
    assert int(values["plugin:counter:hits"]) == sum(r["hit"] for r in results) == 120
