"""Where the host's time goes in one warm sandboxed no-op hook, layer by layer.

Run ``python benchmarks/host_layers.py`` (about 20 seconds). A companion to
``bench_sandbox.py``: that script says how far each figure is from the machine's floor,
this one says which layer of the host pays what, so the gap can be attributed.

Each row calls one layer in a loop on the calling thread and reports, per call, the CPU
time of that thread (``time.thread_time``: what this layer costs the host, whatever the
worker does meanwhile) and the p50 wall time. Rows, innermost first:

1. the blocking floor's host side (``bench_sandbox.round_trip_floor``): send a small JSON
   frame, sleep until the answer, read it;
2. ``pool.call``: the sandbox package alone (check-out with its liveness and CPU checks,
   frame encoding, the exchange, the exact-JSON check of the answer, the CPU verdict);
3. the plugin host's ``invoke_hook``: adds the store's invocation scope (optimistic
   concurrency), the subrequest budget and the error translation;
4. ``rt.run_hook``: adds the hook pipeline (the log capture, the result envelope) and the
   audit record;
5. ``rt.run_hook`` with the pool's call replaced by a canned answer: the host's
   bookkeeping of rows 3-4 alone, with no worker and so with warm CPU caches;
6. ``rt.run_hook`` of the same plugin added natively (trusted): the same bookkeeping
   around a plain call.

The last column counts the Python bytecodes the calling thread executes per call
(``sys.settrace`` opcode events over 200 calls): unlike the times, it is the same on
every machine and under any load, so it says whether a change made the host's own work
smaller.

Row 4 minus rows 2 and 5 is what a real round trip adds to the bookkeeping around it: on
a VM, the worker runs on the caller's CPU while the caller sleeps (a synchronous wake-up),
so the caller's code and data are evicted from the caches and everything after the answer
runs cold. It reaches into the runtime's private attributes to find the plugin's pool: it
is a measurement tool, not an example.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sandbox as bench  # noqa: E402  (the benchmark's plugin, event and floor)

import emdash  # noqa: E402
from sandbox._call import CallResult  # noqa: E402


def opcodes_per_call(fn: Callable[[], Any], n: int = 200) -> float:
    """Python bytecodes this thread executes per call of ``fn`` (``sys.settrace`` with
    opcode events): a count that does not depend on the machine or its load."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        for _ in range(n):
            fn()
    finally:
        sys.settrace(None)
    return count / n


def per_call(fn: Callable[[], Any], n: int, rounds: int) -> tuple[float, float]:
    """(median thread CPU per call, median p50 wall per call) over ``rounds`` loops, in us."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(rounds):
        before = time.thread_time()
        samples = bench.timed(fn, n)
        cpu.append((time.thread_time() - before) / n * 1e6)
        wall.append(bench.pct(samples, 50) * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per loop")
    parser.add_argument("--rounds", type=int, default=5, help="loops per row (median)")
    args = parser.parse_args(argv)
    logging.getLogger("emdash").setLevel(logging.ERROR)
    n, rounds = args.calls, args.rounds
    print(f"python {sys.version.split()[0]}; load average {bench.load()}", flush=True)

    floor_samples, floor_cpu = bench.round_trip_floor(n * rounds, spin=False)
    rows: list[tuple[str, float, float, float | None]] = [
        (
            "blocking floor, host side",
            floor_cpu.host * 1e6,
            bench.pct(floor_samples, 50) * 1e6,
            None,
        )
    ]
    event = bench.EVENT
    with (
        emdash.Runtime(":memory:", worker_pool_size=1) as rt,
        emdash.Runtime(":memory:", worker_pool_size=1) as native,
    ):
        rt.add_plugin(bench.descriptor("bench"), source={"plugin.py": bench.PLUGIN})
        native.add_plugin(
            bench.descriptor("bench"), source={"plugin.py": bench.PLUGIN}, trusted=True
        )
        host: Any = rt._plugins["bench"].host
        pool = host._pool
        real_call = pool.call

        def through_pool() -> None:
            real_call(
                "emdash._shared._worker_dispatch:invoke_hook",
                ["content:afterSave", event],
                on_host_call=lambda method, params: None,
            )

        def through_host() -> None:
            host.invoke_hook("content:afterSave", event)

        def run_hook() -> None:
            rt.run_hook("content:afterSave", event)

        def run_native() -> None:
            native.run_hook("content:afterSave", event)

        layers: list[tuple[str, Callable[[], None]]] = [
            ("pool.call (sandbox package)", through_pool),
            ("plugin host invoke_hook", through_host),
            ("rt.run_hook", run_hook),
        ]
        for _, fn in layers:
            bench.timed(fn, 300)  # warm-up
        # CPython 3.12 reports no opcode events for the first loop traced in a process
        # (its tracing is set up lazily): trace a throwaway loop first.
        opcodes_per_call(through_pool, 5)
        for name, fn in layers:
            rows.append((name, *per_call(fn, n, rounds), opcodes_per_call(fn)))
        canned = CallResult(None, 0.01, 0, 0.01)
        pool.call = lambda *a, **k: canned
        try:
            bench.timed(run_hook, 300)
            rows.append(
                (
                    "rt.run_hook, pool answer canned",
                    *per_call(run_hook, n, rounds),
                    opcodes_per_call(run_hook),
                )
            )
        finally:
            pool.call = real_call
        bench.timed(run_native, 300)
        rows.append(
            ("rt.run_hook, native", *per_call(run_native, n, rounds), opcodes_per_call(run_native))
        )

    floor_host = rows[0][1]
    print(f"\n{'layer':38s} {'host CPU us':>11s} {'x floor':>8s} {'p50 us':>8s} {'opcodes':>8s}")
    print("-" * 77)
    for name, cpu, wall, ops in rows:
        shown = "-" if ops is None else f"{ops:.0f}"
        print(f"{name:38s} {cpu:11.1f} {cpu / floor_host:7.2f}x {wall:8.1f} {shown:>8s}")
    print(f"\nload average at end: {bench.load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
