"""How far two host threads can go on this machine, whatever the runtime does.

Run ``python benchmarks/thread_ceiling.py`` (about a minute; ``--quick``: about 20 s). A
companion to ``bench_sandbox.py``, whose two-thread row (issue 10's target: no-op hooks/s
with 2 host threads >= 1.6x the rate of one) it puts in proportion.

A sandboxed call is a ping-pong: the host thread does some Python work (holding the GIL),
sends a frame, waits, and the worker does its part in between. This script replaces both
parts by busy loops of a fixed length and runs the same ping-pong with nothing else: one
thread against its own echo process, then two threads of one process against one echo
process each, in the two ways a wait can go (blocking in ``poll``; or spinning, as the
runtime's spin-wait does: a non-blocking ``recv`` and a ``sched_yield``, which lets go of
the GIL, each turn, for at most 0.5 ms before it blocks; the echo process spins that long
for its next frame). The best of the two-thread rates, against the one spinning thread,
is the most two threads of a CPython process can reach on this machine for that split of
the work: a ceiling, because the busy loops run at the speed of a hot cache, where real
code that has just woken up runs slower.

The split is measured first, in a child process, on the runtime itself (the benchmark
plugin's warm no-op hook, one thread): the host's part is the time per call the calling
thread spends outside the wait for the worker's answer; the worker's part is the time in
that wait less the spinning floor (``bench_sandbox.round_trip_floor``) of the same run.
The table then shows that split and, for the same total work, smaller host parts: what the
host's per-call work would have to shrink to for two threads to reach 1.6x here.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sandbox as bench  # noqa: E402 - the benchmarks folder is not a package

SPIN_CAP_S = 500e-6  # as the runtime's spin-wait (sandbox/_protocol.SPIN_CAP_S)

TARGET = 1.6
_PEEK_NOWAIT = socket.MSG_PEEK | socket.MSG_DONTWAIT


def _busy(seconds: float) -> None:
    """Python work of a fixed length, holding the GIL (as the host's bookkeeping does)."""
    clock = time.perf_counter
    end = clock() + seconds
    while clock() < end:
        pass


def _spin_for_bytes(sock: socket.socket) -> bool:
    """Busy-wait (yielding the CPU each turn) until ``sock`` is readable or the cap passes."""
    end = time.monotonic() + SPIN_CAP_S
    while time.monotonic() < end:
        try:
            sock.recv(1, _PEEK_NOWAIT)
            return True
        except BlockingIOError:
            os.sched_yield()
    return False


def _echo(sock: socket.socket, work_s: float, spin: bool) -> None:
    """The echo process: wait for a frame, work ``work_s``, answer; until EOF."""
    sock.setblocking(True)
    while True:
        if spin:
            _spin_for_bytes(sock)
        data = sock.recv(65536)
        if not data:
            return
        _busy(work_s)
        sock.sendall(data)


def _caller(
    sock: socket.socket, work_s: float, spin: bool, deadline: float, counts: list[int], slot: int
) -> None:
    """One host thread: work ``work_s``, send, wait for the answer; until ``deadline``."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    calls = 0
    while time.perf_counter() < deadline:
        _busy(work_s)
        sock.sendall(bench.FLOOR_FRAME)
        if not (spin and _spin_for_bytes(sock)):
            poller.poll()
        got = sock.recv(65536)
        while not got.endswith(b"\n"):  # (a frame this small arrives whole)
            poller.poll()
            got += sock.recv(65536)
        calls += 1
    counts[slot] = calls


def rate(threads: int, spin: bool, host_s: float, worker_s: float, seconds: float) -> float:
    """Calls per second of ``threads`` host threads, each with its own echo process."""
    ends: list[tuple[socket.socket, int]] = []
    for _ in range(threads):
        ours, theirs = socket.socketpair()
        child = os.fork()  # no thread of this process runs while it forks
        if child == 0:
            status = 0
            try:
                ours.close()
                for sock, _pid in ends:  # the other echo processes' host ends
                    sock.close()
                _echo(theirs, worker_s, spin)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        theirs.close()
        ends.append((ours, child))
    counts = [0] * threads
    deadline = time.perf_counter() + seconds
    callers = [
        threading.Thread(target=_caller, args=(sock, host_s, spin, deadline, counts, i))
        for i, (sock, _pid) in enumerate(ends)
    ]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    for sock, _pid in ends:
        sock.close()
    for _sock, pid in ends:
        os.waitpid(pid, 0)
    return sum(counts) / seconds


def measure_split(n: int) -> tuple[float, float]:
    """(host part, worker part) of one warm sandboxed no-op hook, in seconds (see the
    module's docstring). Runs in a child process: it starts a runtime, whose threads must
    not exist when :func:`rate` forks."""
    from sandbox import _protocol

    spinning, _cpu = bench.round_trip_floor(max(2_000, n // 4), spin=True)
    floor = statistics.median(spinning)
    waited = [0.0]
    read = _protocol.FrameReader.read

    def timed_read(self: _protocol.FrameReader, *args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return read(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            waited[0] += time.perf_counter() - started

    _protocol.FrameReader.read = timed_read  # type: ignore[method-assign]
    hosts, waits = [], []
    chunk = max(1, n // 5)
    with bench.runtime(True) as rt:
        for _ in range(n // 4):  # warm: the spin-wait settles on its policy
            rt.run_hook("content:afterSave", bench.EVENT)
        for _ in range(5):  # medians of five chunks: one slow stretch does not decide
            waited[0] = 0.0
            started = time.perf_counter()
            for _ in range(chunk):
                rt.run_hook("content:afterSave", bench.EVENT)
            total = time.perf_counter() - started
            hosts.append((total - waited[0]) / chunk)
            waits.append(waited[0] / chunk)
    return statistics.median(hosts), max(0.0, statistics.median(waits) - floor)


def _split_in_child(n: int) -> tuple[float, float]:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, __file__, "--split-only", str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=300,
        check=True,
    ).stdout.split()
    return float(out[-2]), float(out[-1])


@dataclass(frozen=True)
class Ceiling:
    """Rates (calls/s) of one split: one spinning thread, two threads each way."""

    host_s: float
    worker_s: float
    one: float
    two_blocking: float
    two_spinning: float

    @property
    def best(self) -> float:
        """The better two-thread rate as a multiple of the one-thread rate."""
        return max(self.two_blocking, self.two_spinning) / self.one


def ceiling(host_s: float, worker_s: float, rounds: int, seconds: float) -> Ceiling:
    """Medians over ``rounds`` of each rate, ``seconds`` each, for this split."""
    one, blocking, spinning = [], [], []
    for _ in range(rounds):
        one.append(rate(1, True, host_s, worker_s, seconds))
        blocking.append(rate(2, False, host_s, worker_s, seconds))
        spinning.append(rate(2, True, host_s, worker_s, seconds))
    return Ceiling(
        host_s,
        worker_s,
        statistics.median(one),
        statistics.median(blocking),
        statistics.median(spinning),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of shorter runs")
    parser.add_argument(
        "--host-us",
        metavar="US,US,...",
        help="host parts to try instead of the measured split and 20/10/0 us",
    )
    parser.add_argument("--split-only", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--measured-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.split_only:
        print(*measure_split(args.split_only))
        return 0
    rounds, seconds = (1, 0.5) if args.quick else (3, 1.0)
    if args.measured_only:  # one line for bench_sandbox: the measured split's ceiling
        found = ceiling(*_split_in_child(5_000 if args.quick else 20_000), rounds, seconds)
        print(found.host_s, found.worker_s, found.one, found.two_blocking, found.two_spinning)
        return 0
    print(
        f"machine: {bench.cpu_model()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable), Linux {platform.release()}; "
        f"python {sys.version.split()[0]}; load average " + bench.load(),
        flush=True,
    )
    host_s, worker_s = _split_in_child(5_000 if args.quick else 20_000)
    work_s = host_s + worker_s
    print(
        f"measured split of a warm sandboxed no-op hook: host {host_s * 1e6:.1f} us, "
        f"worker {worker_s * 1e6:.1f} us per call (beyond the spinning floor)\n",
        flush=True,
    )
    if args.host_us:
        hosts = [float(x) * 1e-6 for x in args.host_us.split(",")]
    else:
        hosts = [host_s] + [h for h in (20e-6, 10e-6, 0.0) if h < host_s]
    header = (
        f"{'host us':>8} {'worker us':>10} {'1 thread k/s':>13} {'2 blocking':>16} "
        f"{'2 spinning':>16} {'best':>7}  >= {TARGET}x?"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    for host in hosts:
        found = ceiling(host, max(0.0, work_s - host), rounds, seconds)
        r1, r2b, r2s = found.one, found.two_blocking, found.two_spinning
        print(
            f"{host * 1e6:8.1f} {found.worker_s * 1e6:10.1f} {r1 / 1e3:13.1f} "
            f"{r2b / 1e3:9.1f} ({r2b / r1:4.2f}x) {r2s / 1e3:9.1f} ({r2s / r1:4.2f}x) "
            f"{found.best:6.2f}x  {'yes' if found.best >= TARGET else 'no'}",
            flush=True,
        )
    print(
        "\n(1 thread spins; rates are medians of "
        f"{rounds} run{'s' if rounds > 1 else ''} of {seconds:g} s; the busy loops run at "
        "hot-cache speed, so real code reaches less)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
