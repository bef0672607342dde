"""Fairness benchmark: another plugin's latency while one plugin's public route is flooded.

Run ``python benchmarks/bench_fairness.py`` (``--quick`` for fewer samples). It is a script,
not a test (tests never assert timings); compare runs on the same, otherwise idle, machine.

Setup (everything real: the ``emdash.asgi`` app behind uvicorn on 127.0.0.1, sandboxed
plugins on fork-server workers, ``worker_pool_size=2``):

- plugin ``slow``: a public route that runs to its wall limit (``wall_ms``, 1 s by default):
  it calls ``ctx.http.fetch`` on an origin that never answers in time. The origin is an
  httpx transport handed to ``Runtime(http_transport=...)`` that waits out the deadline the
  host gives it, so the worker and the host thread wait without using CPU, as they would
  on a slow real server (DNS is answered with a fixed public address: no network is used);
- plugin ``quick``: a public route that returns ``"pong"``;
- the flood: ``--clients`` (80) anonymous HTTP clients, each sending its next request to
  ``slow`` as soon as the previous one is answered (503s included: a flood does not honour
  ``Retry-After``).

Printed: the median (and p90) latency of ``quick`` measured by one sequential client

1. with no flood (the floor of this run),
2. under the flood, with admission control (the defaults: ``slow`` runs 2 calls and queues
   4, in the event loop; the excess gets 503 at once),
3. under the flood, without admission control (``slow`` admits everyone: each caller takes
   a server thread and waits there for a worker, the behaviour before admission),

with each median's ratio to the floor, and how ``slow``'s callers were answered.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import uvicorn

import emdash
from emdash.asgi import create_app
from emdash.testing import fake_dns

SLOW = """
from emdash import RouteConfig, define_plugin


def wait(route_ctx, ctx):
    ctx.http.fetch("https://slow.example/")
    return "done"


plugin = define_plugin(routes={"wait": RouteConfig(wait, public=True)})
"""

QUICK = """
from emdash import RouteConfig, define_plugin


def ping(route_ctx, ctx):
    return "pong"


plugin = define_plugin(routes={"ping": RouteConfig(ping, public=True)})
"""

API = "/_emdash/api/plugins"
# A new connection per request: see latencies() for why.
CLOSE = {"connection": "close"}


class NeverInTime(httpx.BaseTransport):
    """An origin that answers after the caller's deadline: waits it out, then times out."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read") or 1.0
        self.closed.wait(float(timeout))
        raise httpx.ReadTimeout("the origin did not answer in time", request=request)

    def close(self) -> None:
        self.closed.set()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="error", lifespan="off", backlog=4096, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class Flood:
    """``clients`` HTTP clients in a separate process (not sharing the server's GIL), each
    re-requesting slow's route as soon as it is answered; counts the answers by status."""

    def __init__(self, base: str, clients: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._results: multiprocessing.Queue[dict[str, int]] = ctx.Queue()
        self._process = ctx.Process(
            target=flood_process,
            args=(base, clients, self._ready, self._stop, self._results),
            daemon=True,
        )
        self.statuses: Counter[str] = Counter()

    def __enter__(self) -> Flood:
        self._process.start()
        # The child imports httpx first (seconds on a busy machine): wait for its answers.
        if not self._ready.wait(300):
            raise RuntimeError("the flood process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.statuses.update(self._results.get(timeout=300))
        self._process.join(timeout=60)


def flood_process(base: str, clients: int, ready: Any, stop: Any, results: Any) -> None:
    statuses: Counter[str] = Counter()

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
        async with httpx.AsyncClient(
            base_url=base, trust_env=False, timeout=300, limits=limits
        ) as client:

            async def one() -> None:
                while True:
                    try:
                        r = await client.get(f"{API}/slow/wait", headers=CLOSE)
                        statuses[str(r.status_code)] += 1
                        if sum(statuses.values()) >= clients:
                            ready.set()
                    except httpx.HTTPError as exc:
                        statuses[type(exc).__name__] += 1

            async with anyio.create_task_group() as tg:
                for _ in range(clients):
                    tg.start_soon(one)
                while not stop.is_set():
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

    anyio.run(main)
    results.put(dict(statuses))


def latencies(base: str, samples: int, route: str = "quick/ping", status: int = 200) -> list[float]:
    """``samples`` sequential GETs of ``route`` by one client, each expected to answer
    ``status``; their wall-clock latencies in seconds.

    Each request on a new connection (``Connection: close``), as a new visitor would: on a
    kept-alive connection uvicorn's h11 server and httpx meet a ~40 ms delayed-ACK stall
    per request on Linux (any ASGI app, a bare one included), which would hide the floor.
    """
    out = []
    with httpx.Client(base_url=base, trust_env=False, timeout=600) as client:
        for _ in range(samples):
            started = time.perf_counter()
            r = client.get(f"{API}/{route}", headers=CLOSE)
            out.append(time.perf_counter() - started)
            if r.status_code != status:
                raise RuntimeError(f"{route} answered {r.status_code}: {r.text[:200]}")
    return out


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--clients", type=int, default=80)
    parser.add_argument("--wall-ms", type=int, default=1000)
    args = parser.parse_args()
    samples = 10 if args.quick else 30
    flooded_samples = 5 if args.quick else 15
    warmup = 2 * args.wall_ms / 1000

    logging.basicConfig(level=logging.ERROR)
    # DNS for slow.example: a fixed public address (the transport never connects anyway).
    dns = fake_dns({"slow.example": "93.184.216.34"})
    origin = NeverInTime()
    limits = emdash.Limits(wall_ms=args.wall_ms, cpu_ms=1000)
    rows: list[tuple[str, list[float], Counter[str]]] = []
    with emdash.Runtime(
        ":memory:", worker_pool_size=2, limits=limits, http_transport=origin, resolver=dns
    ) as rt:
        rt.add_plugin(
            {
                "id": "slow",
                "version": "1.0.0",
                "capabilities": ["network:request"],
                "allowedHosts": ["slow.example"],
            },
            source={"plugin.py": SLOW},
        )
        rt.add_plugin({"id": "quick", "version": "1.0.0"}, source={"plugin.py": QUICK})
        defaults = rt.admission.policy("slow")
        with serving(create_app(rt)) as base:
            latencies(base, 5)  # warm-up
            rows.append(("quick, no flood (floor)", latencies(base, samples), Counter()))

            with Flood(base, args.clients) as flood:
                time.sleep(warmup)
                during = rt.admission.stats("slow")
                quick = latencies(base, flooded_samples)
                # What a refused caller of the flooded plugin waits for its 503.
                refused = latencies(base, flooded_samples, "slow/wait", 503)
            rows.append(("quick, flood, admission", quick, flood.statuses))
            rows.append(("slow refused, flood, admission", refused, Counter()))

            rt.admission.configure("slow", max_concurrency=10_000, max_queue=0)
            with Flood(base, args.clients) as flood:
                time.sleep(warmup)
                during_off = rt.admission.stats("slow")
                quick = latencies(base, flooded_samples)
            rows.append(("quick, flood, no admission", quick, flood.statuses))
            origin.close()  # let the callers still waiting on the origin go

    floor = statistics.median(rows[0][1])
    print(
        f"quick route latency, {args.clients} clients flooding slow (wall_ms={args.wall_ms}, "
        f"worker_pool_size=2, slow's admission defaults: max_concurrency="
        f"{defaults.max_concurrency}, max_queue={defaults.max_queue})"
    )
    print(
        f"slow's calls in flight when measuring: with admission {during['running']} running "
        f"+ {during['queued']} queued; without admission {during_off['running']} admitted"
    )
    print(f"{'case':30} {'n':>3} {'median ms':>10} {'p90 ms':>10} {'x floor':>8}  slow answered")
    for name, values, statuses in rows:
        med = statistics.median(values)
        answered = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "-"
        print(
            f"{name:30} {len(values):3d} {med * 1000:10.1f} {p90(values) * 1000:10.1f} "
            f"{med / floor:7.1f}x  {answered}"
        )


if __name__ == "__main__":
    main()
