"""The worker's serve loop per call: Python calls (cProfile) and CPU (a measuring tool).

    PYTHONPATH=. python benchmarks/profile_worker.py [--calls 5000] [--profile] [--case noop]

Records the exact ``load`` and ``call`` frames the pool sends for the benchmark's plugins
(``worker_memory.record_frames``), builds the fork server's ``WorkerRuntime`` in this
process (``_forkserver._prepare``) and runs the worker's serve loop (``_Server``) here,
unconfined, on a ``socketpair``, with a forked process playing the host: it sends the recorded
frames, answers host calls as the bridge would (``kv.get`` -> null, ``kv.set`` -> null)
and waits for each result. Reported: the serve thread's CPU per call (``thread_time``,
which load does not change much, unlike wall time), and with ``--profile`` the Python
function calls per call, counted by cProfile (independent of load). Cases: ``noop`` (the
no-op hook), ``kv`` (one ``ctx.kv.get`` per call, the ``kv`` route with n=1), ``realistic``
(two ``kv.get`` and a ``kv.set``). No seccomp, rlimits or namespaces here: what they cost
is kernel time in the real worker, which this does not see.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sandbox import EVENT, PLUGIN, REALISTIC  # noqa: E402
from worker_memory import record_frames  # noqa: E402

from sandbox import _forkserver, _worker  # noqa: E402
from sandbox._protocol import FrameReader, encode_frame  # noqa: E402


def frames_for(case: str) -> tuple[dict[str, Any], Any, Any]:
    if case == "realistic":
        config, (load, call) = record_frames(REALISTIC, EVENT)
        return config, load, call
    config, (load, call) = record_frames(PLUGIN, EVENT)
    if case == "kv":
        call = {
            **call,
            "fn": call["fn"].replace("invoke_hook", "invoke_route"),
            "args": ["kv", {"input": {"n": 1}, "request": None}],
        }
    return config, load, call


def host(sock: socket.socket, load: Any, call: Any, n: int, counts: list[int]) -> None:
    reader = FrameReader(sock, 1 << 24, orjson.loads)
    assert reader.read()["op"] == "ready"
    sock.sendall(encode_frame(load, 1 << 24))
    loaded = reader.read()
    assert loaded["op"] == "loaded", loaded
    frame = encode_frame(call, 1 << 24)
    for _ in range(n):
        sock.sendall(frame)
        while True:
            reply = reader.read()
            if reply["op"] != "host_call":
                break
            counts[0] += 1
            answer = {"op": "host_result", "id": reply["id"], "value": None}
            sock.sendall(encode_frame(answer, 1 << 24))
        assert reply["op"] == "result", reply
    sock.close()


def pipelined_host(sock: socket.socket, load: Any, call: Any, n: int, host_calls: int) -> None:
    """Everything sent up front: ``n`` calls, each followed by the answers to its
    ``host_calls`` host calls (every answer null). The serve loop then never waits for
    the host, so its CPU per call is its own work without the wake-ups."""
    frames = [encode_frame(load, 1 << 24)]
    for i in range(n):
        cid = 1_000_000 + i
        frames.append(encode_frame({**call, "id": cid}, 1 << 24))
        answer = encode_frame({"op": "host_result", "id": cid, "value": None}, 1 << 24)
        frames.extend([answer] * host_calls)
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: sock.recv(1 << 20), b"")])
    drain.start()
    sock.sendall(b"".join(frames))
    sock.shutdown(socket.SHUT_WR)
    drain.join()
    sock.close()


def run(
    rt: Any, load: Any, call: Any, n: int, profile: bool, pipelined: int = -1
) -> tuple[float, Any, int]:
    ours, theirs = socket.socketpair()
    # The host is another process, as it is for a real worker (a thread would share the
    # GIL with the serve loop and add its hand-offs to every round trip).
    pid = os.fork()
    if pid == 0:
        ours.close()
        counts = [0]
        try:
            if pipelined >= 0:
                pipelined_host(theirs, load, call, n, pipelined)
                counts[0] = pipelined * n
            else:
                host(theirs, load, call, n, counts)
        finally:
            os._exit(min(counts[0] // n, 100) if n else 0)
    theirs.close()
    server = _worker._Server(ours, rt)
    gc.disable()  # as in a worker
    profiler = cProfile.Profile() if profile else None
    started = time.thread_time()
    if profiler is not None:
        profiler.enable()
    server.serve({})
    if profiler is not None:
        profiler.disable()
    cpu = time.thread_time() - started
    ours.close()
    _, status = os.waitpid(pid, 0)
    gc.enable()
    return cpu, profiler, os.waitstatus_to_exitcode(status)


def seccomp_child(rt: Any, load: Any, call: Any, n: int) -> float:
    """CPU (s) of a child that serves ``n`` calls under the worker's seccomp filter, its
    load included (from ``wait4``: the confined child cannot report it itself)."""
    import ctypes

    child = os.fork()
    if child == 0:
        try:
            ours, theirs = socket.socketpair()
            if os.fork() == 0:
                ours.close()
                try:
                    host(theirs, load, call, n, [0])
                finally:
                    os._exit(0)
            theirs.close()
            ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            os.dup2(ours.fileno(), 0)  # the filter allows the channel on fd 0 only
            channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)
            server = _worker._Server(channel, rt)
            gc.disable()
            rt.seccomp_filter.load()
            server.serve({})
        finally:
            os._exit(0)
    _, _, usage = os.wait4(child, 0)
    return float(usage.ru_utime + usage.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--case", choices=("noop", "kv", "realistic"), default="noop")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--seccomp",
        action="store_true",
        help="also measure the serve loop in a child under the worker's seccomp filter",
    )
    args = parser.parse_args()
    config, load, call = frames_for(args.case)
    rt = _forkserver._prepare(config)
    if args.seccomp:
        one = min(seccomp_child(rt, load, call, 1) for _ in range(3))
        many = seccomp_child(rt, load, call, args.calls + 1)
        per = (many - one) / args.calls * 1e6
        print(f"{args.case}: serve-loop CPU under seccomp {per:.1f} us/call (wait4 rusage)")
    run(rt, load, call, 200, False)  # warm-up
    # The load is part of the run: subtract a run of 1 call from the run of n (same load).
    base, _, _ = run(rt, load, call, 1, False)
    cpu, _, host_calls = run(rt, load, call, args.calls + 1, False)
    per = (cpu - base) / args.calls * 1e6
    print(f"{args.case}: serve-loop CPU {per:.1f} us/call ({host_calls} host calls per call)")
    k = host_calls
    base, _, _ = run(rt, load, call, 1, False, k)
    cpu, _, _ = run(rt, load, call, args.calls + 1, False, k)
    per = (cpu - base) / args.calls * 1e6
    print(f"{args.case}: serve-loop CPU, pipelined (no waits) {per:.1f} us/call")
    if args.profile:
        _, p1, _ = run(rt, load, call, 1, True)
        _, pn, _ = run(rt, load, call, args.calls + 1, True)
        calls_1 = pstats.Stats(p1).total_calls  # type: ignore[attr-defined]
        calls_n = pstats.Stats(pn).total_calls  # type: ignore[attr-defined]
        print(f"Python calls per call (cProfile): {(calls_n - calls_1) / args.calls:.1f}")
        pstats.Stats(pn).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
