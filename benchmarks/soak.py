"""Crash soak: many SIGKILLs at pseudo-random points, then a long run; invariants and the
host's memory over time.

Run ``make soak`` or ``python benchmarks/soak.py [options]``. It is the long form of
``tests/integrity/`` and uses the same harness (``tests/integrity/harness.py``): a child
host process runs the workload (a counter plugin called through its route, content
saves, media uploads and deletes), is SIGKILLed inside an operation chosen from progress
(never from time), and the database is reopened and checked after every kill:

- ``PRAGMA integrity_check`` is ``ok``;
- the counter equals the route calls the children saw succeed, or one more per kill (the
  call in flight committed before its report);
- every committed route call has its audit row, but for what one kill may lose of the
  audit buffer (``AUDIT_LOSS_PER_KILL``: 0, audit rows commit with the writes);
- no reported content or media is lost; no media row without its file, no file without
  its row.

Phase 2 (``--invocations``) runs one child without kills for that many operations and
prints the host's RSS every ``--rss-every`` operations: it should stay flat.

``--processes N`` (1) makes it a multi-process run on the one database, as a site served
by N worker processes is: in phase 1 each killed child has N - 1 companion hosts running
``--max-ops`` operations beside it (each its own counter, checked like the killed one's);
in phase 2 N children share the operations and **one** counter, so their route calls
conflict across processes (a child retries a ``ConflictError``, as a caller should): the
counter must equal the route calls all children reported, and their reported values must
be distinct (no two calls saw the same count: no lost update).

The kill points are drawn from ``--seed``, so a failing run can be replayed exactly. The
exit status is 1 if any invariant failed. Every figure printed is a count or a size; the
only timing is the total wall time, for planning runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integrity.harness import (  # noqa: E402 - the repository root is put on the path first
    AUDIT_LOSS_PER_KILL,
    KILL_POINTS,
    OPS,
    Reported,
    State,
    check,
    observe,
    read_until,
    rss_kib,
    running,
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=60, help="SIGKILLs in phase 1 (60)")
    parser.add_argument(
        "--max-ops",
        type=int,
        default=40,
        help="a child runs at most this many operations before it is killed (40)",
    )
    parser.add_argument(
        "--mode",
        choices=("native", "sandboxed", "both"),
        default="both",
        help="plugin mode; 'both' alternates per kill (default)",
    )
    parser.add_argument(
        "--invocations",
        type=int,
        default=20_000,
        help="operations of the unkilled phase-2 child (20000; 0 skips phase 2)",
    )
    parser.add_argument("--rss-every", type=int, default=2_000, help="RSS sample period (2000)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="host processes on the one database (1; see the module docstring)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the kill points (7)")
    parser.add_argument("--dir", type=Path, help="where the database goes (a temporary dir)")
    return parser.parse_args(argv)


def soak(args: argparse.Namespace, workdir: Path) -> int:
    db = workdir / "site.db"
    rng = random.Random(args.seed)
    reported = Reported()
    previous: State | None = None
    failures = 0
    started = time.monotonic()
    print(f"database: {db}; seed {args.seed}; audit loss allowed per kill: {AUDIT_LOSS_PER_KILL}")
    print(
        f"{'kill':>5} {'mode':>9} {'point':>13} {'op':>11} {'lines':>5} {'counter':>7} "
        f"{'unreported':>10} {'audit-missing':>13} {'rss KiB':>8}  verdict"
    )
    print(
        "(counter, unreported commits and audit rows missing are totals over every kill so "
        "far; rss: the child host's peak resident set)"
    )
    for kill in range(1, args.kills + 1):
        mode = args.mode if args.mode != "both" else ("native", "sandboxed")[kill % 2]
        op = rng.randrange(args.max_ops)
        where = rng.choice(KILL_POINTS)
        with ExitStack() as stack:
            proc = stack.enter_context(running(db, mode, "soak", kill_op=op, kill_at=where))
            companions = [
                (f"soak{i}", stack.enter_context(running(db, mode, f"soak{i}", ops=args.max_ops)))
                for i in range(2, args.processes + 1)
            ]
            ended = read_until(proc, "soak", reported, kill_op=op)
            for who, companion in companions:
                read_until(companion, who, reported)
        state = observe(db, reported)
        verdict = check(state, reported, kill, previous)
        previous = state
        failures += bool(verdict.failures)
        print(
            f"{kill:>5} {mode:>9} {where:>13} {f'{op}:{OPS[op % len(OPS)]}':>11} "
            f"{ended.lines:>5} {state.counts.get('soak', 0):>7} "
            f"{verdict.unreported_commits:>10} {verdict.audit_missing:>13} "
            f"{ended.rss_kib:>8}  {'; '.join(verdict.failures) or 'ok'}",
            flush=True,
        )
    if args.invocations and args.processes > 1:
        failures += phase2_shared(args, db, reported, previous)
    elif args.invocations:
        mode = "native" if args.mode == "native" else "sandboxed"
        print(f"\nphase 2: {args.invocations} operations, {mode}, no kills; host RSS (KiB):")
        with running(db, mode, "soak", ops=args.invocations) as proc:
            assert proc.stdout is not None
            seen = 0
            for text in proc.stdout:
                line = text.strip()
                if line == "done":
                    break
                reported.take("soak", line)
                seen += 1
                if seen % args.rss_every == 0:
                    print(f"  after {seen:>7} operations: {rss_kib(proc.pid):>8}", flush=True)
            code = proc.wait()
        if code != 0:
            print(f"phase 2 child failed with exit code {code}")
            failures += 1
        verdict = check(observe(db, reported), reported, args.kills, previous)
        failures += bool(verdict.failures)
        print(
            f"after phase 2: {'; '.join(verdict.failures) or 'every invariant holds'} "
            f"(route calls without an audit row: {verdict.audit_missing}; a child that "
            "ends cleanly loses none, so these are the killed children's)"
        )
    print(
        f"\n{args.kills} kills, {reported.lines} reported operations, {failures} failed "
        f"checks; {time.monotonic() - started:.0f} s wall"
    )
    return 1 if failures else 0


def phase2_shared(
    args: argparse.Namespace, db: Path, reported: Reported, previous: State | None
) -> int:
    """Phase 2 with ``--processes`` children on one shared counter; returns failures."""
    mode = "native" if args.mode == "native" else "sandboxed"
    n = args.processes
    print(
        f"\nphase 2: {args.invocations} operations over {n} processes, {mode}, no kills, "
        "one shared counter; host RSS (KiB) of each:"
    )
    failures = 0
    lines: list[list[str]] = [[] for _ in range(n)]
    with ExitStack() as stack:
        procs = [
            stack.enter_context(running(db, mode, "shared", ops=args.invocations // n))
            for _ in range(n)
        ]

        def drain(i: int) -> None:
            # One reader per child: a child blocked on a full pipe would stall the run.
            stream = procs[i].stdout
            assert stream is not None
            for text in stream:
                line = text.strip()
                if line == "done":
                    break
                lines[i].append(line)
                if i == 0 and len(lines[0]) % max(1, args.rss_every // n) == 0:
                    rss = " ".join(f"{rss_kib(p.pid):>8}" for p in procs)
                    print(f"  after {sum(map(len, lines)):>7} operations: {rss}", flush=True)

        readers = [threading.Thread(target=drain, args=(i,)) for i in range(n)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        codes = [p.wait() for p in procs]
    if any(codes):
        print(f"phase 2 children failed with exit codes {codes}")
        failures += 1
    counts: list[int] = []
    retried = 0  # ConflictErrors the children saw and retried (sandboxed: re-run inside)
    for i in range(n):
        for line in lines[i]:
            reported.take("shared", line)
            if line.startswith("hit "):
                parts = line.split()
                counts.append(int(parts[1]))
                retried += int(parts[2]) if len(parts) > 2 else 0
    # take() keeps the last count it read; across processes the largest is the last.
    reported.hits["shared"] = max(counts, default=0)
    state = observe(db, reported)
    verdict = check(state, reported, args.kills, previous)
    stored = state.counts.get("shared", 0)
    problems = list(verdict.failures)
    if stored != len(counts):
        problems.append(f"shared counter is {stored}, {len(counts)} route calls reported")
    if len(set(counts)) != len(counts):
        problems.append(f"{len(counts) - len(set(counts))} route calls saw a count already seen")
    failures += bool(problems)
    print(
        f"after phase 2: {'; '.join(problems) or 'every invariant holds'} (shared counter "
        f"{stored} = route calls reported by {n} processes: {len(counts)}; conflicts the "
        f"children retried: {retried}; route calls without an audit row: "
        f"{verdict.audit_missing})"
    )
    return failures


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        return soak(args, args.dir)
    with tempfile.TemporaryDirectory(prefix="emdash-soak-") as tmp:
        return soak(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
