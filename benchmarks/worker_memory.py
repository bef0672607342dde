"""Where a sandbox worker's private memory goes, stage by stage (a measuring tool, not a test).

    PYTHONPATH=. python benchmarks/worker_memory.py [--calls 1] [--pages]

Runs the benchmark's plugin once through ``emdash.Runtime`` to record the exact ``load`` and
``call`` frames the pool sends (and the fork server's configuration), then starts a fork
server of its own with the same configuration, forks one worker and reads its
``/proc/<pid>/smaps`` at each stage:

* ``fork``: stopped at the start of ``worker_main`` (right after the fork);
* ``confined``: stopped right before the seccomp filter is loaded (every other step done);
* ``ready``: the serve loop started and reported ``ready`` (the worker waits for its load);
* ``loaded``: after the recorded ``load`` frame (compile, load, ``init``);
* ``call``: after the recorded no-op ``content:afterSave`` hook call (``--calls`` of them).

The two early stops come from ``memstage_boot`` (it patches the fork server it runs in,
never the runtime). USS is ``Private_Clean + Private_Dirty``, grouped by mapping: the C
heap, anonymous mappings (pymalloc arenas, large malloc blocks), the stack, and the
writable data of each shared object. ``--pages`` also classifies each page the worker owns
alone against the fork server's page at the same address: byte-identical again (a
reference count raised and lowered), a few bytes apart (counters: reference counts, GC
state), or rewritten (new objects, allocator state).

Root is needed to read a confined (non-dumpable) worker's memory maps and pages.
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import emdash  # noqa: E402
from sandbox import _forkclient, _pool  # noqa: E402
from sandbox._protocol import FrameReader, encode_frame  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def record_frames(plugin: str, event: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The fork server's configuration and the load/call frames of one hook call."""
    configs: list[dict[str, Any]] = []
    frames: list[Any] = []
    real_init = _forkclient.ForkServerClient.__init__
    real_encode: Callable[[Any, int], bytes] = getattr(_pool, "encode_frame")  # noqa: B009

    def init(self: Any, config: dict[str, Any], **kw: Any) -> None:
        configs.append(config)
        real_init(self, config, **kw)

    def encode(obj: Any, max_bytes: int) -> bytes:
        if type(obj) is dict and obj.get("op") in ("load", "call"):
            frames.append(obj)
        return real_encode(obj, max_bytes)

    _forkclient.ForkServerClient.__init__ = init  # type: ignore[method-assign]
    setattr(_pool, "encode_frame", encode)  # noqa: B010
    try:
        descriptor = {
            "id": "mem",
            "version": "1.0.0",
            "capabilities": ["content:read"],
            "limits": {"cpu_ms": 60_000, "memory_mb": 128, "wall_ms": 600_000},
        }
        with emdash.Runtime(":memory:", worker_pool_size=1) as rt:
            rt.add_plugin(descriptor, source={"plugin.py": plugin})
            rt.run_hook("content:afterSave", event)
    finally:
        _forkclient.ForkServerClient.__init__ = real_init  # type: ignore[method-assign]
        setattr(_pool, "encode_frame", real_encode)  # noqa: B010
    load = next(f for f in frames if f["op"] == "load")
    call = next(f for f in frames if f["op"] == "call")
    return configs[0], [load, call]


def category(path: str, perms: str) -> str:
    if not path:
        return "anon"
    if path.startswith("["):
        return path
    name = os.path.basename(path)
    if ".so" in name or "python" in name:
        kind = {"r-xp": "text", "rw-p": "data/bss", "r--p": "rodata/relro"}.get(perms, perms)
        return f"{name} {kind}"
    return name


def smaps(pid: int) -> tuple[dict[str, int], list[tuple[int, int, str, str]]]:
    """Private kB per category, and the mappings (start, end, perms, path)."""
    out: dict[str, int] = defaultdict(int)
    maps: list[tuple[int, int, str, str]] = []
    cat = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            path = head[5] if len(head) > 5 else ""
            cat = category(path, head[1])
            maps.append((start, end, head[1], path))
        elif head[0] in ("Private_Clean:", "Private_Dirty:"):
            out[cat] += int(head[1])
    return dict(out), maps


def wait_stopped(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.001)
    raise RuntimeError(f"worker {pid} did not stop")


def present_pages(
    pid: int, maps: list[tuple[int, int, str, str]]
) -> Iterator[tuple[int, int, str, str]]:
    """(address, pagemap entry, perms, path) of every present page of ``pid``."""
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for start, end, perms, path in maps:
            if path in ("[vsyscall]", "[vvar]", "[vdso]"):
                continue
            pm.seek(start // PAGE * 8)
            data = pm.read((end - start) // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                if entry >> 63 & 1:
                    yield start + i * PAGE, entry, perms, path


def page_frames(pid: int) -> dict[int, int]:
    """Address -> page frame number of every present page of ``pid``."""
    _cats, maps = smaps(pid)
    return {addr: entry & ((1 << 55) - 1) for addr, entry, _p, _path in present_pages(pid, maps)}


def exclusive_pages(pid: int, maps: list[tuple[int, int, str, str]]) -> list[tuple[int, str, int]]:
    """(address, category, frame) of present pages mapped by this process alone."""
    return [
        (addr, category(path, perms), entry & ((1 << 55) - 1))
        for addr, entry, perms, path in present_pages(pid, maps)
        if entry >> 56 & 1
    ]


def classify(
    pid: int, parent: int, maps: list[tuple[int, int, str, str]], origin: dict[int, int]
) -> dict[str, Any]:
    pages = exclusive_pages(pid, maps)
    result: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(f"/proc/{pid}/mem", "rb", 0) as child, open(f"/proc/{parent}/mem", "rb", 0) as mem:
        for addr, cat, frame in pages:
            if origin.get(addr) == frame:
                # The worker still holds the page the server had before the fork: the
                # server wrote to it since (its copy), not the worker.
                result[cat]["server wrote"] += 1
                continue
            child.seek(addr)
            mine = child.read(PAGE)
            try:
                mem.seek(addr)
                theirs = mem.read(PAGE)
            except OSError:
                theirs = b""
            if len(theirs) != PAGE:
                kind = "new (not in server)"
            elif mine == theirs:
                kind = "identical"
            else:
                diff = sum(1 for a, b in zip(mine, theirs, strict=True) if a != b)
                kind = "<=64 bytes differ" if diff <= 64 else "rewritten"
            result[cat][kind] += 1
    return {k: dict(v) for k, v in result.items()}


def explain(pid: int, parent: int, origin: dict[int, int], objects_path: str) -> None:
    """Which objects the worker's small writes (pages <= 64 bytes apart) landed in."""
    import bisect

    rows = []
    for line in Path(objects_path).read_text().splitlines():
        start, size, name = line.split("\t")
        rows.append((int(start), int(size), name))
    rows.sort()
    starts = [r[0] for r in rows]
    _cats, maps = smaps(pid)
    hits: dict[str, int] = defaultdict(int)
    unknown = 0
    with open(f"/proc/{pid}/mem", "rb", 0) as child, open(f"/proc/{parent}/mem", "rb", 0) as mem:
        for addr, cat, frame in exclusive_pages(pid, maps):
            if origin.get(addr) == frame or not cat.startswith(("anon", "[heap]")):
                continue
            child.seek(addr)
            mine = child.read(PAGE)
            mem.seek(addr)
            theirs = mem.read(PAGE)
            words = [i for i in range(0, PAGE, 8) if mine[i : i + 8] != theirs[i : i + 8]]
            if not words or len(words) > 8:
                continue
            for offset in words:
                where = addr + offset
                i = bisect.bisect_right(starts, where) - 1
                if i >= 0 and where < rows[i][0] + rows[i][1]:
                    hits[f"{rows[i][2]} +{where - rows[i][0]}"] += 1
                else:
                    unknown += 1
    print("\nsmall writes (8-byte words) by object type and offset, top 25:")
    for key, n in sorted(hits.items(), key=lambda kv: -kv[1])[:25]:
        print(f"   {n:5d}  {key}")
    print(f"   {unknown:5d}  not inside a listed object (allocator state, C structures)")


def report(
    stage: str, pid: int, parent: int, origin: dict[int, int] | None, prev: dict[str, int]
) -> dict[str, int]:
    cats, maps = smaps(pid)
    total = sum(cats.values())
    rollup = {
        line.split()[0]: int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        if line.split()[0].startswith("Private")
    }
    print(
        f"\n== {stage}: USS {total / 1024:.2f} MiB "
        f"(clean {rollup['Private_Clean:']} kB, dirty {rollup['Private_Dirty:']} kB)"
    )
    for cat, kb in sorted(cats.items(), key=lambda kv: -kv[1]):
        if kb or prev.get(cat):
            print(f"   {kb:6d} kB  (+{kb - prev.get(cat, 0):5d})  {cat}")
    if origin is not None:
        for cat, kinds in sorted(classify(pid, parent, maps, origin).items()):
            print(f"   pages  {cat:40s} {dict(sorted(kinds.items()))}")
    return cats


def start_worker(client: Any, load: Any, call: Any) -> Any:
    """A worker taken through every stage without stops or reports (for --workers)."""
    proc = client.fork(128, 60)
    for _ in range(2):
        wait_stopped(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
    reader = FrameReader(proc.channel, 1 << 24, orjson.loads)
    reader.read()
    proc.channel.sendall(encode_frame(load, 1 << 24))
    reader.read()
    proc.channel.sendall(encode_frame(call, 1 << 24))
    reader.read()
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--pages", action="store_true", help="classify private pages")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="with --pages: which objects (type, offset) the small differences are in",
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        help="experiment: the fork server serves the recorded frames this many times first",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="fork this many first (the last is reported)"
    )
    args = parser.parse_args()
    from bench_sandbox import EVENT, PLUGIN

    config, (load, call) = record_frames(PLUGIN, EVENT)
    extra = ""
    if args.explain:
        extra += "memstage_boot.dump_objects('/tmp/worker_memory_objects.tsv'); "
    if args.warm:
        Path("/tmp/worker_memory_frames.json").write_bytes(
            orjson.dumps([load] + [{**call, "id": 1000 + i} for i in range(5)])
        )
        extra += f"memstage_boot.warm('/tmp/worker_memory_frames.json', {args.warm}); "
    _forkclient._BOOT = (
        f"import sys, memstage_boot; memstage_boot.install(); {extra}"
        "from sandbox._forkserver import main; main(sys.argv)"
    )
    client = _forkclient.ForkServerClient(config)
    print(f"python {sys.version.split()[0]}; fork server {client.pid}")
    try:
        server = smaps(client.pid)[0]
        print(f"fork server USS {sum(server.values()) / 1024:.1f} MiB")
        earlier = [start_worker(client, load, call) for _ in range(args.workers - 1)]
        origin = page_frames(client.pid) if args.pages else None
        proc = client.fork(128, 60)
        pid, parent = proc.pid, client.pid
        prev: dict[str, int] = {}
        for stage in ("fork", "confined"):
            wait_stopped(pid)
            prev = report(stage, pid, parent, origin, prev)
            os.kill(pid, signal.SIGCONT)
        reader = FrameReader(proc.channel, 1 << 24, orjson.loads)
        assert reader.read()["op"] == "ready"
        prev = report("ready", pid, parent, origin, prev)
        proc.channel.sendall(encode_frame(load, 1 << 24))
        assert reader.read()["op"] == "loaded"
        prev = report("loaded", pid, parent, origin, prev)
        for _ in range(args.calls):
            proc.channel.sendall(encode_frame(call, 1 << 24))
            while True:
                reply = reader.read()
                if reply["op"] != "host_call":
                    break
                answer = {"op": "host_result", "id": reply["id"], "value": None}
                proc.channel.sendall(encode_frame(answer, 1 << 24))
            assert reply["op"] == "result", reply
        report(f"call x{args.calls}", pid, parent, origin, prev)
        if args.explain and origin is not None:
            explain(pid, parent, origin, "/tmp/worker_memory_objects.tsv")
        for other in earlier:
            print(
                f"earlier worker {other.pid}: USS {sum(smaps(other.pid)[0].values()) / 1024:.2f} MiB"
            )
        proc.channel.close()
    finally:
        client.close()


if __name__ == "__main__":
    main()
