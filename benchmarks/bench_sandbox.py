"""Sandbox benchmark: what isolation costs, measured next to native mode in the same run.

Run ``python benchmarks/bench_sandbox.py`` (or ``make bench``); ``--quick`` for a short run.
Prints one table: for each metric the sandboxed p50/p99, the native p50/p99, their ratio
and the target from the design brief, with a verdict. Everything goes through the public
API of the installed package (``emdash.Runtime``), on real fork-server workers.

Metrics (see benchmarks/README.md for how each is measured and why):

1. warm no-op hook through ``rt.run_hook``           target: sandboxed p50 <= 40 us
2. ``ctx.kv.get`` round trip inside a hook handler   target: sandboxed p50 <= 35 us
3. cold plugin load to first call                    target: sandboxed p50 <= 10 ms
4. idle USS per plugin worker (smaps_rollup)         target: <= 2 MB
5. CPU-limit overshoot at a 50 ms budget             target: <= 10 ms
6. no-op hook throughput, 2 host threads             target: >= 20 000 / s
7. host-side CPU watch, per call                     (no target: what it costs)
8. no-op hook with ``limits.fresh_worker``           (no target: what it costs)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import emdash

EVENT = {"content": {"id": "01BENCH", "title": "bench"}, "collection": "posts", "isNew": True}

PLUGIN = """
import time
from emdash import define_plugin


def noop(event, ctx):
    return None


def kv_loop(route_ctx, ctx):
    n = route_ctx["input"]["n"]
    samples = []
    for i in range(n):
        started = time.perf_counter()
        ctx.kv.get("bench")
        samples.append(time.perf_counter() - started)
    return samples


def ping(route_ctx, ctx):
    return "pong"


def spin(route_ctx, ctx):
    while True:
        pass


plugin = define_plugin(
    hooks={"content:afterSave": noop},
    routes={"kv": kv_loop, "ping": ping, "spin": spin},
)
"""

ROOMY = {"cpu_ms": 60_000, "memory_mb": 128, "wall_ms": 600_000, "subrequests": 100_000}


def descriptor(pid: str, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    # content:read: without it the pipeline drops the content:afterSave hook (and the
    # benchmark would time an empty pipeline).
    return {
        "id": pid,
        "version": "1.0.0",
        "capabilities": ["content:read"],
        "limits": limits or ROOMY,
    }


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """``n`` wall-clock samples of ``fn()``, in seconds."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


@contextmanager
def runtime(sandboxed: bool, pool_size: int = 1) -> Iterator[emdash.Runtime]:
    with emdash.Runtime(":memory:", worker_pool_size=pool_size) as rt:
        rt.add_plugin(descriptor("bench"), source={"plugin.py": PLUGIN}, trusted=not sandboxed)
        yield rt


def fork_server_children() -> list[int]:
    """Pids of the sandbox workers: children of this process's fork server(s)."""
    me = os.getpid()
    servers: list[int] = []
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        )
        by_parent.setdefault(ppid, []).append(int(entry.name))
        if ppid == me and b"_forkserver" in cmdline:
            servers.append(int(entry.name))
    return sorted(pid for server in servers for pid in by_parent.get(server, []))


def uss_kb(pid: int) -> int:
    """Unique set size of ``pid`` (private clean + private dirty), from smaps_rollup."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def cpu_ns(pid: int) -> int | None:
    """Time ``pid`` has spent on a CPU, in ns (schedstat: exact, unlike the 10 ms ticks)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------------------
# The six metrics
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    unit: str
    sandboxed: tuple[float, float] | None  # (p50, p99) or (value, value)
    native: tuple[float, float] | None
    target: str
    ok: bool | None
    note: str = ""


def warm_noop_hook(n: int) -> tuple[list[float], list[float]]:
    out = []
    for sandboxed in (True, False):
        with runtime(sandboxed) as rt:
            outcome = rt.run_hook("content:afterSave", EVENT)
            assert [r.plugin_id for r in outcome.results] == ["bench"], outcome
            timed(lambda: rt.run_hook("content:afterSave", EVENT), max(200, n // 10))  # warm-up
            out.append(timed(lambda: rt.run_hook("content:afterSave", EVENT), n))
    return out[0], out[1]


def kv_round_trip(n: int) -> tuple[list[float], list[float]]:
    out = []
    for sandboxed in (True, False):
        with runtime(sandboxed) as rt:
            rt.invoke_route("bench", "kv", input={"n": 200})  # warm-up
            samples: list[float] = []
            while len(samples) < n:
                samples += rt.invoke_route("bench", "kv", input={"n": min(2000, n - len(samples))})
            out.append(samples)
    return out[0], out[1]


def cold_load(n: int) -> tuple[list[float], list[float]]:
    out = []
    for sandboxed in (True, False):
        with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
            # The fork server starts once per runtime; that is not per-plugin cost.
            rt.add_plugin(descriptor("warmup"), source={"plugin.py": PLUGIN}, trusted=not sandboxed)
            samples = []
            for i in range(n):
                pid = f"cold-{i}"
                started = time.perf_counter()
                rt.add_plugin(descriptor(pid), source={"plugin.py": PLUGIN}, trusted=not sandboxed)
                rt.invoke_route(pid, "ping", input={})
                samples.append(time.perf_counter() - started)
                rt.remove_plugin(pid)
            out.append(samples)
    return out[0], out[1]


def idle_uss(n: int) -> list[float]:
    with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
        for i in range(n):
            rt.add_plugin(descriptor(f"idle-{i}"), source={"plugin.py": PLUGIN})
            rt.invoke_route(f"idle-{i}", "ping", input={})
        time.sleep(0.2)
        return [uss_kb(pid) / 1024 for pid in fork_server_children()]


def _sample_cpu(pids: list[int], seen: dict[int, int], stop: threading.Event) -> None:
    """Keep the last schedstat value of each pid (readable until the process is reaped)."""
    while not stop.is_set():
        for pid in pids:
            value = cpu_ns(pid)
            if value is not None:
                seen[pid] = value
        time.sleep(0.0002)


def cpu_overshoot(n: int) -> list[float]:
    """CPU the worker really used past its 50 ms budget, per kill (ms)."""
    limits = {"cpu_ms": 50, "memory_mb": 64, "wall_ms": 10_000, "subrequests": 10}
    overshoot = []
    with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
        rt.add_plugin(descriptor("spin", limits), source={"plugin.py": PLUGIN})
        for _ in range(n):
            rt.invoke_route("spin", "ping", input={})  # make sure a fresh worker is up
            workers = fork_server_children()
            before = {pid: cpu_ns(pid) or 0 for pid in workers}
            last: dict[int, int] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_cpu, args=(workers, last, stop), daemon=True)
            sampler.start()
            try:
                rt.invoke_route("spin", "spin", input={})
            except emdash.CpuLimitExceeded:
                pass
            stop.set()
            sampler.join()
            used = max((last.get(pid, 0) - before[pid]) for pid in workers) / 1e6
            overshoot.append(max(0.0, used - 50.0))
    return overshoot


def _hammer(rt: emdash.Runtime, deadline: float, counts: list[int], slot: int) -> None:
    while time.perf_counter() < deadline:
        rt.run_hook("content:afterSave", EVENT)
        counts[slot] += 1


def throughput(seconds: float) -> tuple[float, float]:
    out = []
    for sandboxed in (True, False):
        with runtime(sandboxed, pool_size=2) as rt:
            timed(lambda: rt.run_hook("content:afterSave", EVENT), 200)
            counts = [0, 0]
            deadline = time.perf_counter() + seconds
            threads = [
                threading.Thread(target=_hammer, args=(rt, deadline, counts, i)) for i in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out.append(sum(counts) / seconds)
    return out[0], out[1]


def cpu_watch_cost(n: int) -> tuple[list[float], list[float]]:
    """(per-call cost of the host's CPU measurement, the warm no-op hook it is part of), s.

    The pool reads a worker's CPU clock twice per call (when the call takes the worker and
    when its answer arrives): one ``clock_gettime`` each, timed here on a real worker. The
    watch thread's reads (every 0.2 s, per worker) are not per call and are left out.
    """
    with runtime(True) as rt:
        rt.run_hook("content:afterSave", EVENT)
        (worker,) = fork_server_children()
        clock = (~worker << 3) | 2  # the worker's process CPU clock, as the pool reads it
        clock_gettime_ns = time.clock_gettime_ns
        reads = []
        for _ in range(n):
            started = time.perf_counter()
            clock_gettime_ns(clock)
            clock_gettime_ns(clock)
            reads.append(time.perf_counter() - started)
        timed(lambda: rt.run_hook("content:afterSave", EVENT), max(200, n // 10))
        hooks = timed(lambda: rt.run_hook("content:afterSave", EVENT), n)
    return reads, hooks


FRESH_GAP_S = 0.05


def fresh_worker_hook(n: int) -> tuple[list[float], list[float], list[float]]:
    """No-op hook with ``limits.fresh_worker``: back to back (each call waits for a fork and
    a load) and FRESH_GAP_S apart (the next worker is made ready between calls); and the
    same plugin with its worker reused. Seconds."""

    def run(fresh: bool, gap: float) -> list[float]:
        with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
            rt.add_plugin(
                descriptor("bench", {**ROOMY, "fresh_worker": fresh}),
                source={"plugin.py": PLUGIN},
                trusted=False,
            )
            timed(lambda: rt.run_hook("content:afterSave", EVENT), 20)
            samples = []
            for _ in range(n):
                if gap:
                    time.sleep(gap)
                samples += timed(lambda: rt.run_hook("content:afterSave", EVENT), 1)
            return samples

    return run(True, 0.0), run(True, FRESH_GAP_S), run(False, 0.0)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def p50_p99(values: list[float], scale: float) -> tuple[float, float]:
    return pct(values, 50) * scale, pct(values, 99) * scale


def render(rows: list[Row]) -> str:
    def pair(v: tuple[float, float] | None) -> str:
        if v is None:
            return f"{'n/a':>21}"
        return f"{v[0]:>10.1f} {v[1]:>10.1f}"

    head = (
        f"{'metric':<34} {'unit':<5} {'sandboxed p50':>10} {'p99':>10} "
        f"{'native p50':>10} {'p99':>10} {'ratio':>7}  {'target':<14} verdict"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = (
            f"{r.sandboxed[0] / r.native[0]:>6.1f}x"
            if r.sandboxed and r.native and r.native[0]
            else f"{'-':>7}"
        )
        verdict = {True: "ok", False: "MISSED", None: "-"}[r.ok]
        lines.append(
            f"{r.metric:<34} {r.unit:<5} {pair(r.sandboxed)} {pair(r.native)} {ratio}  "
            f"{r.target:<14} {verdict}" + (f"  ({r.note})" if r.note else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a few seconds)")
    args = parser.parse_args(argv)
    # Lifecycle and pipeline notices would interleave with the table.
    logging.getLogger("emdash").setLevel(logging.ERROR)
    quick = args.quick
    n_hook = 2_000 if quick else 20_000
    n_kv = 2_000 if quick else 20_000
    n_cold = 20 if quick else 100
    n_idle = 5 if quick else 20
    n_cpu = 5 if quick else 30
    n_fresh = 50 if quick else 300
    t_tp = 1.0 if quick else 5.0

    print(
        f"emdash {emdash.__version__} sandbox benchmark ({'quick' if quick else 'full'} run), "
        f"CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows: list[Row] = []

    def step(what: str) -> None:
        print(f"  measuring {what}...", flush=True)

    step("warm no-op hooks")

    sb, nat = warm_noop_hook(n_hook)
    s, n = p50_p99(sb, 1e6), p50_p99(nat, 1e6)
    rows.append(Row("warm no-op hook (rt.run_hook)", "us", s, n, "p50 <= 40 us", s[0] <= 40))

    step("ctx.kv.get round trips")
    sb, nat = kv_round_trip(n_kv)
    s, n = p50_p99(sb, 1e6), p50_p99(nat, 1e6)
    rows.append(Row("ctx.kv.get round trip (in handler)", "us", s, n, "p50 <= 35 us", s[0] <= 35))

    step("cold loads")
    sb, nat = cold_load(n_cold)
    s, n = p50_p99(sb, 1e3), p50_p99(nat, 1e3)
    rows.append(Row("cold plugin load to first call", "ms", s, n, "p50 <= 10 ms", s[0] <= 10))

    step("idle worker memory")
    uss = idle_uss(n_idle)
    u = (statistics.median(uss), max(uss)) if uss else None
    rows.append(
        Row(
            "idle USS per plugin worker",
            "MB",
            u,
            None,
            "<= 2 MB",
            u is not None and u[0] <= 2.0,
            f"{len(uss)} workers; max shown as p99",
        )
    )

    step("CPU-limit overshoot")
    over = cpu_overshoot(n_cpu)
    o = p50_p99(over, 1.0)
    rows.append(
        Row(
            "CPU-limit overshoot at 50 ms",
            "ms",
            o,
            None,
            "<= 10 ms",
            o[1] <= 10,
            "native: no CPU limit",
        )
    )

    step("throughput")
    tp_sb, tp_nat = throughput(t_tp)
    rows.append(
        Row(
            "no-op hooks, 2 host threads",
            "k/s",
            (tp_sb / 1e3, tp_sb / 1e3),
            (tp_nat / 1e3, tp_nat / 1e3),
            ">= 20 k/s",
            tp_sb >= 20_000,
            "a rate, p50 = p99",
        )
    )

    step("the host-side CPU watch")
    reads, hooks = cpu_watch_cost(n_hook)
    r = p50_p99(reads, 1e6)
    share = pct(reads, 50) / pct(hooks, 50) * 100
    rows.append(
        Row(
            "host CPU measurement, per call",
            "us",
            r,
            None,
            "-",
            None,
            f"two clock reads; {share:.1f}% of the no-op hook's p50",
        )
    )

    step("fresh worker per invocation")
    fresh, spaced, reused = fresh_worker_hook(n_fresh)
    rows.append(
        Row(
            "no-op hook, fresh_worker, back to back",
            "ms",
            p50_p99(fresh, 1e3),
            None,
            "-",
            None,
            f"reused worker: p50 {pct(reused, 50) * 1e3:.3f} ms",
        )
    )
    rows.append(
        Row(
            f"no-op hook, fresh_worker, {FRESH_GAP_S * 1e3:.0f} ms apart",
            "ms",
            p50_p99(spaced, 1e3),
            None,
            "-",
            None,
            "next worker made between calls",
        )
    )

    print()
    print(render(rows))
    missed = [r.metric for r in rows if r.ok is False]
    print()
    print("all targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
