"""Two host threads on this machine, replaying a sandboxed hook's split of the work.

Run ``python benchmarks/thread_replay.py`` (about a minute; ``--quick``: about 20 s). A
companion to ``bench_sandbox.py``, whose two-thread row (issue 10's target: no-op hooks/s
with 2 host threads >= 1.6x the rate of one) it puts in proportion.

A sandboxed call is a ping-pong: the host thread does some Python work (holding the GIL),
sends a frame, waits, and the worker does its part in between. This script measures how a
warm no-op hook's time divides between the two on the runtime itself, then *replays* that
split with busy loops of those lengths in a ping-pong with nothing else: one host thread
against its own echo process, then two threads of one process against one echo process
each. The replay waits the way the runtime does: alone, a thread spins briefly for its
answer (yielding its CPU, and with it the GIL, each turn; at most ``SPIN_CAP_S``) and its
echo process spins as long for the next frame; with two threads it sleeps in ``poll``,
and sends and reads with ``sandbox._quickio.QuickIO``, which keeps the GIL, as the pool
does with two calls in flight. The replay with two threads that *spin* (what the runtime
does only from 4 CPUs on) is shown as well.

The split, measured in a child process before anything here forks:

- the host's part: per call, the calling thread's time outside its wait for the answer
  (``FrameReader.read``): the hook pipeline, the pool's check-out, encoding, the send, the
  answer's checks, the audit record;
- the worker's part: the time in that wait less the replay's own bare round trip (one
  spinning thread, no work), so that the replay's one-thread rate matches the runtime's.
  Where the runtime's spin-wait slept, the wake-up is counted as worker work.

Run it on an otherwise idle machine: the replay's one thread always spins, where the
runtime's spin-wait stops on a busy machine. When the replay's one-thread rate is more than
a quarter off the runtime's, the script says so, and ``bench_sandbox.py`` shows no replay
multiple next to the target.

It is an estimate, not a bound: the busy loops run at the speed of a hot cache, with no
bookkeeping besides, which flatters the replay; the runtime can still do better in a
given run (its host part includes short system calls that let go of the GIL). The table
shows the measured split and then the same worker part with a smaller host part: how
small the host's part of a call would have to be for two threads to reach 1.6x here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sandbox as bench  # noqa: E402 - the benchmarks folder is not a package

from sandbox._protocol import SPIN_CAP_S  # noqa: E402
from sandbox._quickio import QuickIO  # noqa: E402

TARGET = 1.6
_PEEK_NOWAIT = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)


def _busy(seconds: float) -> None:
    """Python work of a fixed length, holding the GIL (as the host's bookkeeping does)."""
    clock = time.perf_counter
    end = clock() + seconds
    while clock() < end:
        pass


def _echo(sock: socket.socket, work_s: float, spin: bool) -> None:
    """The echo process: wait for a frame (spinning first, as a worker does between calls
    while its host calls alone), work ``work_s``, answer; until EOF."""
    probe = sock.recv
    yield_cpu = os.sched_yield
    while True:
        if spin:
            end = time.monotonic() + SPIN_CAP_S
            while time.monotonic() < end:
                yield_cpu()
                try:
                    probe(1, _PEEK_NOWAIT)
                    break
                except BlockingIOError:
                    pass
        data = sock.recv(65536)
        if not data:
            return
        _busy(work_s)
        sock.sendall(data)


class _Caller:
    """One host thread's side of the replay: work, send, wait for the whole answer."""

    def __init__(self, sock: socket.socket, quick: bool, spin: bool) -> None:
        self.sock = sock
        self.quick = QuickIO(sock) if quick else None
        self.spin = spin
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.calls = 0
        self.error: BaseException | None = None

    def _send(self, data: bytes) -> None:
        if self.quick is None:
            self.sock.sendall(data)
            return
        while data:  # a frame this small is taken at once
            data = data[self.quick.send(data) :]

    def _readable(self) -> bool:
        if self.quick is not None:
            return self.quick.readable()
        return bool(self.poller.poll(0))

    def _recv(self) -> bytes:
        got = self.quick.recv() if self.quick is not None else self.sock.recv(65536)
        if got == b"":
            raise ConnectionError("the echo process closed its end")
        return got or b""

    def _spun(self) -> bool:
        """Spin until the answer is readable or the cap passes; yield first, then look,
        as ``SpinWait.spin`` does."""
        end = time.monotonic() + SPIN_CAP_S
        while True:
            os.sched_yield()
            if self._readable():
                return True
            if time.monotonic() >= end:
                return False

    def _answer(self) -> None:
        # After a spin that saw the answer, straight to recv (no poll), as the pool does.
        got = self._recv() if self.spin and self._spun() else b""
        while not got.endswith(b"\n"):
            self.poller.poll()
            got += self._recv()

    def run(self, work_s: float, deadline: float) -> None:
        try:
            while time.perf_counter() < deadline:
                _busy(work_s)
                self._send(bench.FLOOR_FRAME)
                self._answer()
                self.calls += 1
        except BaseException as exc:  # reported by rate(), not by threading's excepthook
            self.error = exc


def rate(threads: int, spin: bool, host_s: float, worker_s: float, seconds: float) -> float:
    """Calls per second of ``threads`` host threads, each with its own echo process.
    Alone, a thread uses the socket's own methods (as the pool does for a lone call);
    with others, ``QuickIO``. Raises if a caller or an echo process failed."""
    ends: list[tuple[socket.socket, int]] = []
    callers: list[_Caller] = []
    try:
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
        callers = [_Caller(sock, threads > 1, spin) for sock, _pid in ends]
        deadline = time.perf_counter() + seconds
        running = [threading.Thread(target=c.run, args=(host_s, deadline)) for c in callers]
        for t in running:
            t.start()
        for t in running:
            t.join()
    finally:
        for sock, _pid in ends:
            sock.close()
        failed = [pid for _sock, pid in ends if os.waitpid(pid, 0)[1] != 0]
    for caller in callers:
        if caller.error is not None:
            raise RuntimeError(f"a replay thread failed: {caller.error!r}") from caller.error
    if failed:
        raise RuntimeError(f"echo process(es) {failed} failed")
    return sum(c.calls for c in callers) / seconds


@dataclass(frozen=True)
class Split:
    """A warm sandboxed no-op hook's time per call, in seconds (see the module's doc)."""

    host_s: float
    worker_s: float
    runtime_rate: float  # the runtime's own one-thread rate while it was measured


def measure_split(n: int) -> Split:
    """Measured in a child process: it starts a runtime, whose threads must not exist when
    :func:`rate` forks (the replay's bare round trip is measured first, before any)."""
    from sandbox import _protocol

    bare = 1 / rate(1, True, 0.0, 0.0, 0.5)
    waited = [0.0]
    read = _protocol.FrameReader.read

    def timed_read(self: _protocol.FrameReader, *args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return read(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            waited[0] += time.perf_counter() - started

    _protocol.FrameReader.read = timed_read  # type: ignore[method-assign]
    chunks: list[tuple[float, float]] = []  # (seconds per call, of which waiting)
    size = max(1, n // 5)
    with bench.runtime(True) as rt:
        for _ in range(n // 4):  # warm: the spin-wait settles on its policy
            rt.run_hook("content:afterSave", bench.EVENT)
        for _ in range(5):  # the median chunk: one slow stretch does not decide
            waited[0] = 0.0
            started = time.perf_counter()
            for _ in range(size):
                rt.run_hook("content:afterSave", bench.EVENT)
            chunks.append(((time.perf_counter() - started) / size, waited[0] / size))
    per_call, in_wait = sorted(chunks)[len(chunks) // 2]
    return Split(per_call - in_wait, max(0.0, in_wait - bare), 1 / per_call)


def _split_in_child(n: int) -> Split:
    return Split(**bench.json_from_child([__file__, "--split-only", str(n)], timeout=300))


@dataclass(frozen=True)
class Replay:
    """Rates (calls/s) of one split's replay: one thread, two threads each way."""

    host_s: float
    worker_s: float
    one: float
    two_sleeping: float
    two_spinning: float

    @property
    def best(self) -> float:
        """The better two-thread rate as a multiple of the one-thread rate (0 if none)."""
        return max(self.two_sleeping, self.two_spinning) / self.one if self.one > 0 else 0.0


def replay(host_s: float, worker_s: float, rounds: int, seconds: float) -> Replay:
    """Medians over ``rounds`` of each rate, ``seconds`` each, for this split."""
    one, sleeping, spinning = [], [], []
    for _ in range(rounds):
        one.append(rate(1, True, host_s, worker_s, seconds))
        sleeping.append(rate(2, False, host_s, worker_s, seconds))
        spinning.append(rate(2, True, host_s, worker_s, seconds))
    return Replay(
        host_s,
        worker_s,
        statistics.median(one),
        statistics.median(sleeping),
        statistics.median(spinning),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of shorter runs")
    parser.add_argument(
        "--host-us",
        metavar="US,US,...",
        help="host parts to replay instead of the measured one and 20/10/0 us",
    )
    parser.add_argument("--split-only", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--measured-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.split_only:  # in the child of _split_in_child
        split = measure_split(args.split_only)
        print(json.dumps(split.__dict__))
        return 0
    rounds, seconds = (1, 0.5) if args.quick else (3, 1.0)
    split = _split_in_child(5_000 if args.quick else 20_000)
    if args.measured_only:  # one JSON line for bench_sandbox: the measured split's replay
        found = replay(split.host_s, split.worker_s, rounds, seconds)
        print(json.dumps({**found.__dict__, "runtime_rate": split.runtime_rate}))
        return 0
    print(
        f"machine: {bench.cpu_model()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable), Linux {platform.release()}; "
        f"python {sys.version.split()[0]}; load average " + bench.load(),
        flush=True,
    )
    print(
        f"measured split of a warm sandboxed no-op hook: host {split.host_s * 1e6:.1f} us, "
        f"worker {split.worker_s * 1e6:.1f} us per call beyond the replay's bare round trip "
        f"(the runtime, one thread: {split.runtime_rate / 1e3:.1f} k/s)\n",
        flush=True,
    )
    if args.host_us:
        hosts = [float(x) * 1e-6 for x in args.host_us.split(",")]
    else:
        hosts = [split.host_s] + [h for h in (20e-6, 10e-6, 0.0) if h < split.host_s]
    header = (
        f"{'host us':>8} {'worker us':>10} {'1 thread k/s':>13} {'2 sleeping':>16} "
        f"{'2 spinning':>16} {'best':>7}  >= {TARGET}x?"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    first_one = 0.0
    for i, host in enumerate(hosts):
        found = replay(host, split.worker_s, rounds, seconds)
        r1, r2s, r2p = found.one, found.two_sleeping, found.two_spinning
        if i == 0:
            first_one = r1
        r1 = r1 or float("nan")  # no call in time (a very busy machine): no multiple
        print(
            f"{host * 1e6:8.1f} {found.worker_s * 1e6:10.1f} {r1 / 1e3:13.1f} "
            f"{r2s / 1e3:9.1f} ({r2s / r1:4.2f}x) {r2p / 1e3:9.1f} ({r2p / r1:4.2f}x) "
            f"{found.best:6.2f}x  {'yes' if found.best >= TARGET else 'no'}",
            flush=True,
        )
    measured = replay(split.host_s, split.worker_s, 1, seconds) if args.host_us else None
    one = measured.one if measured else first_one
    if abs(one / split.runtime_rate - 1) > bench.REPLAY_MATCH:
        print(
            f"\nthe replay's one thread ({one / 1e3:.1f} k/s) did not run at the runtime's rate "
            f"({split.runtime_rate / 1e3:.1f} k/s): a busy machine? The multiples do not compare."
        )
    print(
        "\n(rates are medians of "
        f"{rounds} run{'s' if rounds > 1 else ''} of {seconds:g} s; one thread spins as the "
        "runtime's lone caller does; the worker part stays as measured)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
