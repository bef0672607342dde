"""Sandbox benchmark: what isolation costs, measured against the machine's own floor.

Run ``python benchmarks/bench_sandbox.py`` (or ``make bench``); ``--quick`` for a short run
(under a minute). Absolute figures do not carry across machines (a VM's wake-up latency
alone varies fivefold), so the run first measures the floors on this machine, in the same
minutes, and reports every figure both absolutely and as a multiple of its floor:

* blocking floor: a plain blocking ping-pong of a small JSON frame over a socketpair
  between two Python processes (p50): the least any process-isolated design pays per
  round trip without spinning. Sandboxed figures are multiples of it.
* spinning floor: the same ping-pong with both sides busy-polling (shown for reference).
* native floor: ``rt.run_hook`` of the same no-op handler, trusted, with the handler
  called inline on the calling thread (the pipeline's own bookkeeping plus a plain call,
  no thread hop). Native figures are multiples of it; a bare Python call of the handler
  is shown too.

It also reports host and worker CPU per call (``/proc/<pid>/task/*/schedstat`` deltas
over the measured loop, divided by the calls), the machine (CPU model, cores, load
average at start and end, Python), and each target of issue 10 as a multiple next to the
measured multiple with PASS/MISS. It never fails: timings are not a build verdict.

Metrics (see benchmarks/README.md for how each is measured and why):

1. warm no-op hook through ``rt.run_hook``          target: sandboxed p50 <= 1.5x blocking floor
                                                    target: native p50 <= 5x native floor
2. ``ctx.kv.get`` round trip inside a handler       target: sandboxed p50 <= 1.5x blocking floor
3. realistic hook (two kv reads and a kv write)     target: sandboxed p50 <= 3x native p50
4. cold plugin load to first call                   target: sandboxed p50 <= 10 ms
5. idle USS per plugin worker (smaps_rollup)        target: <= 2 MiB
6. CPU-limit overshoot at a 50 ms budget            target: p99 <= 10 ms
7. no-op hook throughput, 1 and 2 host threads      target: 2 threads >= 1.6x 1 thread
   and 2 host processes of one thread each          (no target: two callers, no shared GIL)
   and a bare replay of the hook's split of the     (no target: what two threads of a
   work (thread_replay.py)                          CPython process reach for that split)
8. host-side CPU watch, per call                    (no target: what it costs)
9. no-op hook with ``limits.fresh_worker``          (no target: what it costs)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
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

# A realistic hook: two bridge calls (reads) and a small write, the shape of a plugin that
# reads its settings and a counter on every save and records the update.
REALISTIC = """
from emdash import define_plugin


def on_save(event, ctx):
    settings = ctx.kv.get("settings")
    count = ctx.kv.get("count") or 0
    ctx.kv.set("count", count + 1)
    return None


plugin = define_plugin(hooks={"content:afterSave": on_save})
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


def task_cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns.

    ``/proc/<pid>/schedstat`` covers only the main thread, and ``/proc/<pid>/stat`` counts
    in 10 ms ticks (coarse against a loop of tens of ms), so the per-thread schedstat
    files are summed. A thread that exited during the loop drops out of the sum; the
    measured loops start no threads."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class CpuPerCall:
    """CPU per call over a measured loop, in seconds: this process, and the other side
    (the worker, or the floor's echo process; None when there is none)."""

    host: float
    peer: float | None


@contextmanager
def cpu_per_call(peer: int | None, calls: Callable[[], int]) -> Iterator[list[CpuPerCall]]:
    """Measure the CPU the block uses in this process and in ``peer``; ``calls()`` says how
    many calls to divide by when the block ends. The result lands in the yielded list."""
    out: list[CpuPerCall] = []
    me = os.getpid()
    host0, peer0 = task_cpu_ns(me), task_cpu_ns(peer) if peer else 0
    yield out
    host1, peer1 = task_cpu_ns(me), task_cpu_ns(peer) if peer else 0
    n = max(1, calls())
    out.append(CpuPerCall((host1 - host0) / 1e9 / n, (peer1 - peer0) / 1e9 / n if peer else None))


# --------------------------------------------------------------------------------------
# The floors: what this machine charges for a round trip, measured in the same run
# --------------------------------------------------------------------------------------

# A small frame of the size and shape of a hook call (the worker protocol is JSON too).
FLOOR_FRAME = (
    json.dumps({"id": 1, "op": "hook", "name": "content:afterSave", "event": EVENT}).encode()
    + b"\n"
)


def _recv_frame(sock: socket.socket, spin: bool) -> bytes:
    """One newline-terminated frame; b"" at EOF. Spinning: poll a non-blocking socket."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            if spin:
                continue
            raise
        if not chunk:
            return b""
        data += chunk
    return data


def _echo_forever(sock: socket.socket, spin: bool) -> None:
    """The floor's other process: decode each frame, answer with a small JSON frame."""
    while True:
        frame = _recv_frame(sock, spin)
        if not frame:
            return
        request = json.loads(frame)
        sock.sendall(json.dumps({"id": request["id"], "ok": True, "value": None}).encode() + b"\n")


def round_trip_floor(n: int, spin: bool) -> tuple[list[float], CpuPerCall]:
    """p50 material for a ping-pong of FLOOR_FRAME with a forked Python process: what the
    host sends and decodes per call at the least. Seconds per round trip, and the CPU of
    both processes per round trip."""
    ours, theirs = socket.socketpair()
    # Forked before the benchmark starts any thread (the first measurement of the run).
    child = os.fork()
    if child == 0:
        status = 0
        try:
            ours.close()
            theirs.setblocking(not spin)
            _echo_forever(theirs, spin)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    theirs.close()
    ours.setblocking(not spin)
    try:

        def once() -> None:
            ours.sendall(FLOOR_FRAME)
            json.loads(_recv_frame(ours, spin))

        timed(once, max(200, n // 10))  # warm-up
        with cpu_per_call(child, lambda: n) as cpu:
            samples = timed(once, n)
    finally:
        ours.close()
        os.waitpid(child, 0)
    return samples, cpu[0]


def plain_call(n: int) -> list[float]:
    """A bare Python call of the benchmark plugin's no-op handler, timed like the rest."""
    namespace: dict[str, Any] = {}
    exec(compile(PLUGIN, "<bench plugin>", "exec"), namespace)
    handler = namespace["noop"]
    return timed(lambda: handler(EVENT, None), n)


def native_floor(n: int) -> list[float] | None:
    """``rt.run_hook`` of the trusted no-op plugin with its handler run inline on the
    calling thread: the pipeline's own bookkeeping (audit record, result envelope, CPU
    accounting) plus a plain call, without a thread hop.

    Runtimes before issue 10 ran a native handler on a pool thread unless the calling
    thread was already inside an invocation; the benchmark tells it so for its one plugin,
    so that older runtimes measure the same floor. Since issue 10 every native handler runs
    inline and the switch changes nothing for hooks. None if the runtime has no such switch
    (then the native rows are judged against the plain call only)."""
    with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
        if not callable(getattr(rt, "_inside_invocation", None)):
            return None
        setattr(rt, "_inside_invocation", lambda: True)  # noqa: B010 - a private switch
        rt.add_plugin(descriptor("bench"), source={"plugin.py": PLUGIN}, trusted=True)
        outcome = rt.run_hook("content:afterSave", EVENT)
        assert [r.plugin_id for r in outcome.results] == ["bench"], outcome
        timed(lambda: rt.run_hook("content:afterSave", EVENT), max(200, n // 10))
        return timed(lambda: rt.run_hook("content:afterSave", EVENT), n)


@dataclass
class Floors:
    blocking: list[float]
    blocking_cpu: CpuPerCall
    spinning: list[float]
    spinning_cpu: CpuPerCall
    plain: list[float]
    native: list[float] | None

    @property
    def sandboxed_s(self) -> float:
        """The floor sandboxed figures are multiples of: the blocking p50, in s."""
        return pct(self.blocking, 50)

    @property
    def native_s(self) -> float:
        """The floor native figures are multiples of, in s."""
        return pct(self.native if self.native else self.plain, 50)


def measure_floors(n: int) -> Floors:
    blocking, blocking_cpu = round_trip_floor(n, spin=False)
    spinning, spinning_cpu = round_trip_floor(n, spin=True)
    return Floors(blocking, blocking_cpu, spinning, spinning_cpu, plain_call(n), native_floor(n))


# --------------------------------------------------------------------------------------
# The metrics
# --------------------------------------------------------------------------------------


@dataclass
class Paired:
    """One metric, sandboxed and native: samples (s) and CPU per call."""

    sandboxed: list[float]
    sandboxed_cpu: CpuPerCall
    native: list[float]
    native_cpu: CpuPerCall


def the_worker() -> int | None:
    """The one sandbox worker of a runtime with one sandboxed plugin (None natively)."""
    workers = fork_server_children()
    return workers[0] if len(workers) == 1 else None


def hook_loop(n: int, source: str = PLUGIN) -> Paired:
    """Warm ``rt.run_hook`` of one plugin whose content:afterSave handler is ``source``'s,
    sandboxed then native; with the CPU of the host and of the worker per call."""
    out: list[tuple[list[float], CpuPerCall]] = []
    for sandboxed in (True, False):
        with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
            rt.add_plugin(descriptor("bench"), source={"plugin.py": source}, trusted=not sandboxed)
            outcome = rt.run_hook("content:afterSave", EVENT)
            assert [r.plugin_id for r in outcome.results] == ["bench"], outcome
            timed(lambda: rt.run_hook("content:afterSave", EVENT), max(200, n // 10))  # warm-up
            with cpu_per_call(the_worker() if sandboxed else None, lambda: n) as cpu:
                samples = timed(lambda: rt.run_hook("content:afterSave", EVENT), n)
            out.append((samples, cpu[0]))
    return Paired(out[0][0], out[0][1], out[1][0], out[1][1])


def kv_round_trip(n: int) -> Paired:
    out: list[tuple[list[float], CpuPerCall]] = []
    for sandboxed in (True, False):
        with runtime(sandboxed) as rt:
            rt.invoke_route("bench", "kv", input={"n": 200})  # warm-up
            samples: list[float] = []
            # Per kv.get; includes a share of the route call around each batch of 2000.
            with cpu_per_call(the_worker() if sandboxed else None, lambda: n) as cpu:
                while len(samples) < n:
                    samples += rt.invoke_route(
                        "bench", "kv", input={"n": min(2000, n - len(samples))}
                    )
            out.append((samples, cpu[0]))
    return Paired(out[0][0], out[0][1], out[1][0], out[1][1])


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


# The other interpreters' virtual environments `make test` makes (.ci/other-pythons).
OTHER_VENVS = (".venv-3.11", ".venv-3.12", ".venv-3.13")


def other_interpreters_uss(n: int) -> list[tuple[str, float]]:
    """Idle USS per worker (median MiB) under each other CPython whose venv exists beside
    this checkout: memory is what differs most between interpreters (3.12 and 3.13 have
    immortal objects, so their workers stop copying the fork server's pages)."""
    root = Path(__file__).resolve().parent.parent
    out: list[tuple[str, float]] = []
    for name in OTHER_VENVS:
        python = root / name / "bin" / "python"
        if not python.exists() or name.endswith(f"{sys.version_info[0]}.{sys.version_info[1]}"):
            continue
        try:
            done = subprocess.run(
                [str(python), __file__, "--uss-only", str(n)],
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, "PYTHONPATH": str(root)},
            )
            version, value = done.stdout.split()
            out.append((version, float(value)))
        except (OSError, ValueError, subprocess.SubprocessError):
            continue  # that venv is broken or stale: say nothing rather than guess
    return out


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
        for i in range(n):
            # A new plugin each time: the pool backs off a plugin whose worker keeps being
            # killed for CPU (repeated kills), which would stop the loop after a few.
            pid = f"spin-{i}"
            rt.add_plugin(descriptor(pid, limits), source={"plugin.py": PLUGIN})
            rt.invoke_route(pid, "ping", input={})  # make sure its worker is up
            workers = fork_server_children()
            before = {pid: cpu_ns(pid) or 0 for pid in workers}
            last: dict[int, int] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_cpu, args=(workers, last, stop), daemon=True)
            sampler.start()
            try:
                rt.invoke_route(pid, "spin", input={})
            except emdash.CpuLimitExceeded:
                pass
            stop.set()
            sampler.join()
            used = max((last.get(w, 0) - before[w]) for w in workers) / 1e6
            overshoot.append(max(0.0, used - 50.0))
            rt.remove_plugin(pid)
    return overshoot


def _hammer(rt: emdash.Runtime, deadline: float, counts: list[int], slot: int) -> None:
    while time.perf_counter() < deadline:
        rt.run_hook("content:afterSave", EVENT)
        counts[slot] += 1


def _rate(rt: emdash.Runtime, threads: int, seconds: float) -> float:
    counts = [0] * threads
    deadline = time.perf_counter() + seconds
    workers = [
        threading.Thread(target=_hammer, args=(rt, deadline, counts, i)) for i in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return sum(counts) / seconds


def throughput(seconds: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """No-op hooks/s with 1 and with 2 host threads on the same runtime
    (``worker_pool_size=2``): (sandboxed 1, 2), (native 1, 2)."""
    out = []
    for sandboxed in (True, False):
        with runtime(sandboxed, pool_size=2) as rt:
            timed(lambda: rt.run_hook("content:afterSave", EVENT), 200)
            _rate(rt, 2, min(0.2, seconds / 5))  # both workers up and warm
            out.append((_rate(rt, 1, seconds), _rate(rt, 2, seconds)))
    return out[0], out[1]


def _rate_child(start_at: float, seconds: float) -> tuple[float, float]:
    """One process of :func:`process_throughput`: warm up, wait for the common start
    (``time.monotonic`` is one clock for every process on Linux), hammer, report the rate
    and how late it started (seconds)."""
    with runtime(True, pool_size=1) as rt:
        timed(lambda: rt.run_hook("content:afterSave", EVENT), 200)
        _rate(rt, 1, 0.1)
        late = time.monotonic() - start_at
        time.sleep(max(0.0, -late))
        return _rate(rt, 1, seconds), max(0.0, late)


def process_throughput(seconds: float, processes: int = 2) -> float | None:
    """No-op hooks/s of ``processes`` host processes with one thread each, at the same time
    (summed): what two callers of the runtime reach without sharing a GIL (what two
    threads reach with no runtime: :func:`two_thread_replay`). Each process is a lone
    caller, so each spins as one would (two threads of one process do not, see
    ``sandbox._pool.CPUS_PER_SPINNING_CALL``). None when a child fails or started more
    than a tenth of the run late (the sum would overstate what ran side by side)."""
    root = Path(__file__).resolve().parent.parent
    start_at = time.monotonic() + 3.0  # time for every child to start and warm up
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--rate-child", f"{start_at!r},{seconds!r}"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        for _ in range(processes)
    ]
    total = 0.0
    try:
        for child in children:
            out, _ = child.communicate(timeout=120)
            rate, late = (float(x) for x in out.split()[-2:])
            if late > seconds / 10:
                return None
            total += rate
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return total


# How far the replay's one-thread rate may be from the runtime's for its two-thread
# multiple to be shown next to the runtime's (see two_thread_replay).
REPLAY_MATCH = 0.25


def json_from_child(args: list[str], timeout: float) -> Any:
    """Run ``python *args`` with this checkout on ``PYTHONPATH``: the JSON value on the last
    line it printed. Raises ``subprocess.SubprocessError`` (a failure or the timeout),
    ``ValueError`` or ``IndexError`` (no JSON line)."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=timeout,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def two_thread_replay(quick: bool) -> dict[str, float] | None:
    """The no-op hook's split of the work (host part, worker part) measured on the runtime
    and replayed with busy loops in a bare ping-pong, one thread and two
    (``thread_replay.py``, in a child process: it forks echo processes, which this process,
    with runtimes' threads about, should not). Its fields: ``host_s``, ``worker_s``,
    ``one``, ``two_sleeping``, ``two_spinning`` (calls/s), ``runtime_rate``. None if the
    child fails."""
    script = Path(__file__).resolve().parent / "thread_replay.py"
    try:
        answer = json_from_child(
            [str(script), "--measured-only", *(["--quick"] if quick else [])], timeout=600
        )
        found = {k: float(v) for k, v in answer.items()}
    except (OSError, ValueError, IndexError, AttributeError, subprocess.SubprocessError):
        return None
    return found if found.get("one", 0.0) > 0 and found.get("runtime_rate", 0.0) > 0 else None


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


@dataclass
class Row:
    metric: str
    unit: str
    sandboxed: tuple[float, float] | None  # (p50, p99) or (value, value)
    native: tuple[float, float] | None
    sx: float | None = None  # sandboxed p50 as a multiple of the blocking floor
    nx: float | None = None  # native p50 as a multiple of the native floor
    note: str = ""


@dataclass
class Target:
    what: str
    measured: float | None
    limit: float
    at_most: bool  # True: measured <= limit passes; False: measured >= limit passes
    unit: str = "x"
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        ok = self.measured <= self.limit if self.at_most else self.measured >= self.limit
        return "PASS" if ok else "MISS"


def p50_p99(values: list[float], scale: float) -> tuple[float, float]:
    return pct(values, 50) * scale, pct(values, 99) * scale


def _x(value: float | None) -> str:
    return f"{'-':>8}" if value is None else f"{value:>7.2f}x"


def render(rows: list[Row]) -> str:
    def pair(v: tuple[float, float] | None) -> str:
        if v is None:
            return f"{'n/a':>21}"
        return f"{v[0]:>10.1f} {v[1]:>10.1f}"

    head = (
        f"{'metric':<40} {'unit':<4} {'sandbox p50':>10} {'p99':>10} {'x floor':>8} "
        f"{'native p50':>10} {'p99':>10} {'x floor':>8} {'sb/nat':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = (
            f"{r.sandboxed[0] / r.native[0]:>6.1f}x"
            if r.sandboxed and r.native and r.native[0]
            else f"{'-':>7}"
        )
        lines.append(
            f"{r.metric:<40} {r.unit:<4} {pair(r.sandboxed)} {_x(r.sx)} "
            f"{pair(r.native)} {_x(r.nx)} {ratio}" + (f"  ({r.note})" if r.note else "")
        )
    return "\n".join(lines)


def render_floors(floors: Floors, end_blocking: list[float]) -> str:
    def cpu(c: CpuPerCall | None) -> str:
        if c is None:
            return f"{'-':>9} {'-':>9}"
        peer = f"{c.peer * 1e6:>9.1f}" if c.peer is not None else f"{'-':>9}"
        return f"{c.host * 1e6:>9.1f} {peer}"

    head = f"{'floor (this run)':<44} {'p50 us':>9} {'p99 us':>9} {'CPU us/call: here':>18} {'peer':>9}"
    lines = [head, "-" * len(head)]

    def line(name: str, values: list[float] | None, c: CpuPerCall | None) -> None:
        if values is None:
            lines.append(f"{name:<44} {'n/a':>9}")
            return
        p50, p99 = p50_p99(values, 1e6)
        lines.append(f"{name:<44} {p50:>9.1f} {p99:>9.1f} {cpu(c):>28}")

    line("blocking round trip, 2 processes (SANDBOX)", floors.blocking, floors.blocking_cpu)
    line("spinning round trip, 2 processes", floors.spinning, floors.spinning_cpu)
    line("run_hook native, handler inline (NATIVE)", floors.native, None)
    line("plain Python call of the handler", floors.plain, None)
    line("blocking round trip again, end of run", end_blocking, None)
    if floors.native is None:
        lines.append("(no inline switch in this runtime: native figures are x the plain call)")
    return "\n".join(lines)


def render_cpu(entries: list[tuple[str, CpuPerCall, list[float]]], floor_total: float) -> str:
    """CPU per call is a mean (CPU over the loop / calls), so the wall time next to it is
    the loop's mean too, not its p50: a few long stalls raise both."""
    head = (
        f"{'CPU per call (means)':<40} {'host us':>9} {'worker us':>9} {'total us':>9} "
        f"{'x floor CPU':>11} {'wall us':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, c, samples in entries:
        total = c.host + (c.peer or 0.0)
        peer = f"{c.peer * 1e6:>9.1f}" if c.peer is not None else f"{'-':>9}"
        lines.append(
            f"{name:<40} {c.host * 1e6:>9.1f} {peer} {total * 1e6:>9.1f} "
            f"{_x(total / floor_total if floor_total else None):>11} "
            f"{statistics.fmean(samples) * 1e6:>9.1f}"
        )
    return "\n".join(lines)


def render_targets(targets: list[Target]) -> str:
    head = f"{'target':<66} {'measured':>9}  verdict"
    lines = [head, "-" * len(head)]
    for t in targets:
        measured = "n/a" if t.measured is None else f"{t.measured:.2f}{t.unit}"
        lines.append(
            f"{t.what:<66} {measured:>9}  {t.verdict}" + (f"  ({t.note})" if t.note else "")
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (under a minute)")
    parser.add_argument("--uss-only", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--rate-child", metavar="START,SECONDS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rate_child:  # one process of process_throughput
        start_at, seconds = (float(x) for x in args.rate_child.split(","))
        print(*_rate_child(start_at, seconds))
        return 0
    if args.uss_only:  # one interpreter's idle USS, for other_interpreters_uss
        found = idle_uss(args.uss_only)
        print(platform.python_version(), statistics.median(found) if found else "nan")
        return 0
    # Lifecycle and pipeline notices would interleave with the table.
    logging.getLogger("emdash").setLevel(logging.ERROR)
    quick = args.quick
    n_floor = 2_000 if quick else 20_000
    n_hook = 2_000 if quick else 20_000
    n_kv = 2_000 if quick else 20_000
    n_real = 1_000 if quick else 10_000
    n_cold = 20 if quick else 100
    n_idle = 5 if quick else 20
    n_cpu = 5 if quick else 30
    n_fresh = 50 if quick else 300
    t_tp = 1.0 if quick else 5.0

    started = time.monotonic()
    load_start = load()
    print(
        f"emdash {emdash.__version__} sandbox benchmark ({'quick' if quick else 'full'} run)\n"
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable), Linux {platform.release()}\n"
        f"python: {platform.python_implementation()} {sys.version.split()[0]}\n"
        f"load average at start: {load_start}",
        flush=True,
    )
    rows: list[Row] = []

    def step(what: str) -> None:
        print(f"  measuring {what}...", flush=True)

    # The floors first, before any runtime exists (the floor forks, and no thread runs yet).
    step("the floors (blocking and spinning round trips, native inline, plain call)")
    floors = measure_floors(n_floor)
    fs, fn = floors.sandboxed_s, floors.native_s

    def sx(value_s: float) -> float:
        return value_s / fs

    def nx(value_s: float) -> float:
        return value_s / fn

    step("warm no-op hooks")
    noop = hook_loop(n_hook)
    s, n = p50_p99(noop.sandboxed, 1e6), p50_p99(noop.native, 1e6)
    noop_sx, noop_nx = sx(pct(noop.sandboxed, 50)), nx(pct(noop.native, 50))
    rows.append(Row("warm no-op hook (rt.run_hook)", "us", s, n, noop_sx, noop_nx))

    step("ctx.kv.get round trips")
    kv = kv_round_trip(n_kv)
    s, n = p50_p99(kv.sandboxed, 1e6), p50_p99(kv.native, 1e6)
    kv_sx = sx(pct(kv.sandboxed, 50))
    rows.append(
        Row(
            "ctx.kv.get round trip (in handler)",
            "us",
            s,
            n,
            kv_sx,
            nx(pct(kv.native, 50)),
        )
    )

    step("a realistic hook (two kv reads, one kv write)")
    real = hook_loop(n_real, REALISTIC)
    s, n = p50_p99(real.sandboxed, 1e6), p50_p99(real.native, 1e6)
    real_ratio = pct(real.sandboxed, 50) / pct(real.native, 50)
    rows.append(
        Row(
            "realistic hook (2 kv.get + kv.set)",
            "us",
            s,
            n,
            sx(pct(real.sandboxed, 50)),
            nx(pct(real.native, 50)),
        )
    )

    step("cold loads")
    sb, nat = cold_load(n_cold)
    s, n = p50_p99(sb, 1e3), p50_p99(nat, 1e3)
    cold_p50_ms = s[0]
    rows.append(
        Row(
            "cold plugin load to first call",
            "ms",
            s,
            n,
            sx(pct(sb, 50)),
            nx(pct(nat, 50)),
        )
    )

    step("idle worker memory")
    uss = idle_uss(n_idle)
    u = (statistics.median(uss), max(uss)) if uss else None
    rows.append(
        Row(
            "idle USS per plugin worker",
            "MiB",
            u,
            None,
            note=f"{len(uss)} workers; max shown as p99",
        )
    )
    others = other_interpreters_uss(n_idle)
    for version, value in others:
        rows.append(
            Row(
                f"idle USS per worker, CPython {version}",
                "MiB",
                (value, value),
                None,
                note=f"the .venv-{version.rsplit('.', 1)[0]} beside this checkout",
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
            note="native: no CPU limit",
        )
    )

    step("throughput, 1 and 2 host threads")
    (sb1, sb2), (nat1, nat2) = throughput(t_tp)
    # A rate's multiple: how many floor round trips' worth of calls per second it reaches
    # (1.0x = one call per floor round trip; higher is better).
    for threads, sb_rate, nat_rate in ((1, sb1, nat1), (2, sb2, nat2)):
        rows.append(
            Row(
                f"no-op hooks, {threads} host thread{'s' if threads > 1 else ''}",
                "k/s",
                (sb_rate / 1e3, sb_rate / 1e3),
                (nat_rate / 1e3, nat_rate / 1e3),
                sb_rate * fs,
                nat_rate * fn,
                "a rate, p50 = p99; x floor = rate x floor (higher is better)",
            )
        )

    step("throughput, 2 host processes")
    sb_procs = process_throughput(t_tp)
    if sb_procs is not None:
        rows.append(
            Row(
                "no-op hooks, 2 host processes",
                "k/s",
                (sb_procs / 1e3, sb_procs / 1e3),
                None,
                sb_procs * fs,
                None,
                f"1 thread each, summed: no shared GIL; {sb_procs / sb1:.2f}x 1 thread",
            )
        )

    step("the two-thread replay of the no-op hook's split (thread_replay.py)")
    replay = two_thread_replay(quick)
    replay_x = None
    if replay is not None:
        best = max(replay["two_sleeping"], replay["two_spinning"])
        note = (
            f"host {replay['host_s'] * 1e6:.0f} + worker {replay['worker_s'] * 1e6:.0f} us "
            f"of busy loop per call, no runtime; {best / replay['one']:.2f}x its 1 thread"
        )
        # The replay's one thread always spins; the runtime's stops spinning on a busy
        # machine. Where their one-thread rates differ much, the multiples do not compare.
        if abs(replay["one"] / replay["runtime_rate"] - 1) <= REPLAY_MATCH:
            replay_x = best / replay["one"]
        else:
            note += (
                f", whose rate ({replay['one'] / 1e3:.1f} k/s) is not the runtime's "
                f"({replay['runtime_rate'] / 1e3:.1f}): not comparable (a busy machine?)"
            )
        rows.append(
            Row(
                "2 threads, replay of the split",
                "k/s",
                (best / 1e3, best / 1e3),
                None,
                best * fs,
                None,
                note,
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
            sx(pct(reads, 50)),
            note=f"two clock reads; {share:.1f}% of the no-op hook's p50",
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
            sx(pct(fresh, 50)),
            note=f"reused worker: p50 {pct(reused, 50) * 1e3:.3f} ms",
        )
    )
    rows.append(
        Row(
            f"no-op hook, fresh_worker, {FRESH_GAP_S * 1e3:.0f} ms apart",
            "ms",
            p50_p99(spaced, 1e3),
            None,
            sx(pct(spaced, 50)),
            note="next worker made between calls",
        )
    )

    step("the blocking floor again (drift over the run)")
    end_blocking, _ = round_trip_floor(n_floor // 2, spin=False)
    load_end = load()

    floor_cpu = floors.blocking_cpu.host + (floors.blocking_cpu.peer or 0.0)
    targets = [
        Target("sandboxed warm no-op run_hook p50 <= 1.5x blocking floor", noop_sx, 1.5, True),
        Target("sandboxed ctx.kv.get round trip p50 <= 1.5x blocking floor", kv_sx, 1.5, True),
        Target("realistic hook, sandboxed p50 <= 3x the same hook native", real_ratio, 3.0, True),
        Target(
            "native no-op run_hook p50 <= 5x "
            + ("native floor (inline)" if floors.native else "plain call"),
            noop_nx,
            5.0,
            True,
        ),
        Target(
            "sandboxed no-op hooks/s, 2 host threads >= 1.6x 1 thread",
            sb2 / sb1,
            1.6,
            False,
            note="" if replay_x is None else f"a bare replay reaches {replay_x:.2f}x here",
        ),
        Target(
            f"idle USS per worker <= 2 MiB (CPython {platform.python_version()})",
            u[0] if u else None,
            2.0,
            True,
            " MiB",
        ),
        *[
            Target(f"idle USS per worker <= 2 MiB (CPython {version})", value, 2.0, True, " MiB")
            for version, value in others
        ],
        Target(
            "cold plugin load to first call, sandboxed p50 <= 10 ms", cold_p50_ms, 10, True, " ms"
        ),
        Target("CPU-limit overshoot at 50 ms, p99 <= 10 ms", o[1], 10, True, " ms"),
    ]

    print()
    print(render_floors(floors, end_blocking))
    print()
    print(render(rows))
    print()
    print(
        render_cpu(
            [
                ("blocking floor round trip", floors.blocking_cpu, floors.blocking),
                ("spinning floor round trip", floors.spinning_cpu, floors.spinning),
                ("warm no-op hook, sandboxed", noop.sandboxed_cpu, noop.sandboxed),
                ("warm no-op hook, native", noop.native_cpu, noop.native),
                ("ctx.kv.get, sandboxed (per get)", kv.sandboxed_cpu, kv.sandboxed),
                ("ctx.kv.get, native (per get)", kv.native_cpu, kv.native),
                ("realistic hook, sandboxed", real.sandboxed_cpu, real.sandboxed),
                ("realistic hook, native", real.native_cpu, real.native),
            ],
            floor_cpu,
        )
    )
    print(
        "(worker = the plugin's worker, for the floors the echo process; host = every thread "
        "of this process; kv.get includes a share of the route call around each batch)"
    )
    print()
    print(render_targets(targets))
    print()
    print(
        f"load average at start: {load_start}; at end: {load_end}; "
        f"run took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
