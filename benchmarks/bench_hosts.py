"""Several hosts benchmark: hook and kv throughput with 1, 2 and 4 host processes, on
PostgreSQL next to SQLite, as multiples of a floor measured in the same run.

Each host is a separate process with its own ``Runtime`` on the shared database and one
trusted (in-process) plugin; all hosts start their loop together and run it for the same
wall time. Two workloads:

* ``hook``: ``rt.run_hook("content:afterSave")`` whose handler does nothing: the pipeline,
  the invocation scope and the audit record (buffered, flushed in batches).
* ``kv``:   the same hook whose handler calls ``ctx.kv.increment("n")``: one write
  committed per call (validate, replay, bump a version, COMMIT under the site's writer).

The floor is one ``SELECT 1`` round trip to the PostgreSQL server from one process (p50),
measured at the start and again at the end of the run. A throughput is shown as calls/s
and as ``rate x floor``: 1.0 would be one call per bare database round trip, for all the
hosts together; a higher figure is better. SQLite rows use the same floor, so that the two
backends are compared on one scale. Finally the kv counter is checked against the calls
that succeeded (no lost update), for every row.

    python benchmarks/bench_hosts.py [--seconds 3] [--url postgresql://...]

Without ``--url`` a temporary PostgreSQL server is started from the installed binaries
(as the tests do). A script, not a test: it never fails the build; run it on an otherwise
idle machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAVE = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}
DESCRIPTOR = {"id": "bench", "version": "1.0.0", "capabilities": ["content:read"]}


def _plugin(workload: str) -> Any:
    from emdash import define_plugin

    def noop(event: Any, ctx: Any) -> None:
        return None

    def count(event: Any, ctx: Any) -> None:
        ctx.kv.increment("n")

    return define_plugin(hooks={"content:afterSave": noop if workload == "hook" else count})


def _host(
    database: str,
    media: str,
    workload: str,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """One host process: its own Runtime; calls the hook in a loop for ``seconds``."""
    from emdash import ConflictError
    from emdash._runtime._runtime import Runtime

    rt = Runtime(database, media_dir=media, sandbox=False)
    try:
        rt.add_plugin(dict(DESCRIPTOR), source=_plugin(workload), trusted=True)
        barrier.wait()
        done = failed = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            try:
                outcome = rt.run_hook("content:afterSave", SAVE)
            except ConflictError:
                failed += 1
                continue
            if all(r.success for r in outcome.results):
                done += 1
            else:
                failed += 1
        results.put((done, failed))
    finally:
        rt.close()


def run_row(database: str, workload: str, hosts: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    media = tempfile.mkdtemp(prefix="emdash-bench-media-")
    barrier = ctx.Barrier(hosts)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_host, args=(database, media, workload, seconds, barrier, results))
        for _ in range(hosts)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    shutil.rmtree(media, ignore_errors=True)
    done = sum(d for d, _ in got)
    failed = sum(f for _, f in got)
    counter = None
    if workload == "kv":
        from emdash._store import Store

        with Store(database, media_dir=Path(media)) as store:
            counter = store.kv_entries.get("bench", "n")
            with store.transaction():
                store.kv_entries.delete("bench", "n")
    return {"done": done, "failed": failed, "rate": done / seconds, "counter": counter}


def pg_floor(url: str, n: int = 2000) -> float:
    """p50 of one ``SELECT 1`` round trip, in seconds."""
    import psycopg

    samples: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(200):
            conn.execute("SELECT 1").fetchone()
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--url", help="an empty PostgreSQL database (default: a temporary server)")
    parser.add_argument("--hosts", default="1,2,4")
    args = parser.parse_args()
    counts = [int(h) for h in args.hosts.split(",")]

    server = None
    url = args.url
    if url is None:
        from tests.pgserver import start_pg_server

        server = start_pg_server()
        url = server.create_database()
    tmp = tempfile.mkdtemp(prefix="emdash-bench-")
    try:
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load {os.getloadavg()}"
        )
        floor = pg_floor(url)
        print(f"floor: PostgreSQL SELECT 1 round trip p50 = {floor * 1e6:.0f} us")
        print(
            f"{'backend':<10} {'work':<5} {'hosts':>5} {'calls/s':>9} {'x floor':>8} "
            f"{'failed':>7}  counter"
        )
        for backend in ("sqlite", "postgresql"):
            for workload in ("hook", "kv"):
                for hosts in counts:
                    database = (
                        url if backend == "postgresql" else str(Path(tmp) / f"{workload}{hosts}.db")
                    )
                    row = run_row(database, workload, hosts, args.seconds)
                    check = ""
                    if row["counter"] is not None:
                        ok = row["counter"] == row["done"]
                        check = f"{row['counter']} ({'= successes' if ok else 'LOST UPDATES'})"
                    print(
                        f"{backend:<10} {workload:<5} {hosts:>5} {row['rate']:>9.0f} "
                        f"{row['rate'] * floor:>8.3f} {row['failed']:>7}  {check}",
                        flush=True,
                    )
        again = pg_floor(url)
        print(f"floor again, end of run: {again * 1e6:.0f} us; load {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if server is not None:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


if __name__ == "__main__":
    main()
