"""Crash-consistency harness: a child host process runs a workload on a real SQLite file,
is SIGKILLed at a chosen point, and the parent reopens the database and checks its
invariants.

Shared by ``tests/integrity/`` (a few bounded kill points, for CI) and
``benchmarks/soak.py`` (many kills, many invocations, host RSS over time).

The child (``python -m tests.integrity.harness DB MODE WHO OPS KILL_OP KILL_AT``) adds the
``counter`` plugin (sandboxed or trusted) and cycles through four operations, printing one
line on stdout, flushed, after each one *succeeded*::

    hit <count>              route call: the plugin read its counter and wrote it + 1
    content <id>             rt.content.create
    media <id> <key> <op>    rt.media.upload (the bytes are ``payload(op)``)
    unmedia <id>             rt.media.delete of the oldest media item this child uploaded

So the parent knows exactly what succeeded before the kill. Kill points are chosen from
progress, never from time: operation ``KILL_OP`` (0-based) is the one in flight, and
``KILL_AT`` says where in it the process dies:

- ``marker``: the child prints ``in <op>`` before starting it and the parent SIGKILLs it
  on reading that line (the kill lands somewhere inside that operation, or just after it);
- ``before-commit`` / ``after-commit``: the child SIGKILLs itself when that operation's
  first transaction is about to commit / has just committed (the commit from the
  operation's own thread, not the audit flusher's);
- ``after-put``: media bytes written, their row not committed yet;
- ``before-unlink``: a media row's deletion committed, its file not removed yet.

After operation ``KILL_OP`` the child blocks (it never reports beyond it), so the
invariants are exact: every reported write is in the database, and at most one more (the
operation in flight may have committed before its line was printed).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_ID = "counter"
DESCRIPTOR: dict[str, Any] = {
    "id": PLUGIN_ID,
    "capabilities": [],
    # Generous wall limit: a loaded CI box must not turn a slow call into a failure.
    "limits": {"wall_ms": 60_000},
}
SOURCE = """
from emdash import define_plugin

def hit(route_ctx, ctx):
    # A read-modify-write: exact here because one child at a time writes this key.
    key = "count-" + route_ctx["input"]["who"]
    value = (ctx.kv.get(key) or 0) + 1
    ctx.kv.set(key, value)
    return {"count": value}

plugin = define_plugin(routes={"hit": hit})
"""
OPS = ("hit", "content", "media", "unmedia")

#: How many committed route calls may lack their audit row after one SIGKILL: none. An
#: invocation that commits writes has its audit record written in that same transaction
#: (docs/integrity.md), so every committed hit has its row and no row exists without it.
AUDIT_LOSS_PER_KILL = 0


def payload(op_number: int) -> bytes:
    return f"media bytes of op {op_number}\n".encode() * 8


# -- the child -------------------------------------------------------------------------

KILL_POINTS = ("marker", "before-commit", "after-commit", "after-put", "before-unlink")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    threading.Event().wait()  # the signal is on its way; never run past this point


def _arm(kill_at: str, armed: threading.Event) -> None:
    """Make this process SIGKILL itself at ``kill_at`` once ``armed`` is set (only in
    this child: production code has no kill hooks)."""
    from emdash._store import _db, _media

    def ours() -> bool:  # the operation's own threads, not the background audit flusher
        return armed.is_set() and threading.current_thread().name != "emdash-audit-flush"

    if kill_at in ("before-commit", "after-commit"):
        execute = _db._Connection.execute

        def patched(self: Any, sql: str, parameters: Any = (), /) -> Any:
            commit = sql == "COMMIT" and ours()
            if commit and kill_at == "before-commit":
                _die()
            result = execute(self, sql, parameters)
            if commit:
                _die()
            return result

        _db._Connection.execute = patched  # type: ignore[method-assign]
    elif kill_at == "after-put":
        put = _media.LocalMediaStorage.put

        def patched_put(self: Any, key: str, data: bytes) -> None:
            put(self, key, data)
            if ours():
                _die()

        _media.LocalMediaStorage.put = patched_put  # type: ignore[method-assign]
    elif kill_at == "before-unlink":
        delete = _media.LocalMediaStorage.delete

        def patched_delete(self: Any, key: str) -> bool:
            if ours():
                _die()
            return delete(self, key)

        _media.LocalMediaStorage.delete = patched_delete  # type: ignore[method-assign]


def child(db: str, mode: str, who: str, ops: int, kill_op: int, kill_at: str) -> None:
    """The child host: runs ``ops`` operations (0: until killed), reporting each success;
    dies in operation ``kill_op`` (-1: never) at ``kill_at``."""
    import emdash

    out = sys.stdout
    armed = threading.Event()
    if kill_op >= 0 and kill_at != "marker":
        _arm(kill_at, armed)
    rt = emdash.Runtime(db)
    rt.add_plugin(DESCRIPTOR, source={"plugin.py": SOURCE}, trusted=mode == "native")
    uploaded: list[str] = []
    n = 0
    while ops == 0 or n < ops:
        op = OPS[n % len(OPS)]
        if n == kill_op:
            if kill_at == "marker":
                out.write(f"in {op}\n")
                out.flush()
            armed.set()
        if op == "hit":
            # What a caller does with a ConflictError (docs/integrity.md): retry. Only a
            # shared key (two hosts on one counter) conflicts; nothing of a conflicting
            # call was kept, so a retry is safe.
            for _attempt in range(1000):
                try:
                    result = rt.invoke_route(PLUGIN_ID, "hit", input={"who": who})
                    break
                except emdash.ConflictError:
                    continue
            else:
                raise RuntimeError("1000 conflicts in a row")
            # The retries after a ConflictError: the soak counts them (conflicts seen).
            line = f"hit {result['count']} {_attempt}"
        elif op == "content":
            item = rt.content.create("posts", {"title": f"{who}-{n}"})
            line = f"content {item['id']}"
        elif op == "media":
            media = rt.media.upload(f"{who}-{n}.txt", "text/plain", payload(n))
            uploaded.append(media["id"])
            line = f"media {media['id']} {media['storageKey']} {n}"
        elif uploaded:
            gone = uploaded.pop(0)
            rt.media.delete(gone)
            line = f"unmedia {gone}"
        else:
            line = "skip"
        out.write(line + "\n")
        out.flush()
        if n == kill_op:
            threading.Event().wait()  # never past the operation in flight: until killed
        n += 1
    rt.close()
    out.write("done\n")
    out.flush()


# -- the parent ------------------------------------------------------------------------


@dataclass
class Reported:
    """What children reported as succeeded, over every round on one database."""

    hits: dict[str, int] = field(default_factory=dict)  # who -> last count reported
    content: set[str] = field(default_factory=set)
    media: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (key, op)
    unmedia: set[str] = field(default_factory=set)
    lines: int = 0

    def take(self, who: str, line: str) -> None:
        parts = line.split()
        self.lines += 1
        if parts[0] == "hit":
            self.hits[who] = int(parts[1])
        elif parts[0] == "content":
            self.content.add(parts[1])
        elif parts[0] == "media":
            self.media[parts[1]] = (parts[2], int(parts[3]))
        elif parts[0] == "unmedia":
            self.unmedia.add(parts[1])


@dataclass
class Round:
    """One child process: how many lines it reported, how it ended, its peak RSS."""

    lines: int
    killed: bool
    rss_kib: int


def spawn(
    db: Path, mode: str, who: str, ops: int = 0, kill_op: int = -1, kill_at: str = "marker"
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [str(db), mode, who, str(ops), str(kill_op), kill_at]
    # The child's stderr goes to a file next to the database (a pipe nobody reads could
    # fill and block it): a child that fails shows it in the assertion (read_until).
    errors = db.with_name(f"{db.name}.{who}.{len(_STDERR)}.stderr")
    with errors.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integrity.harness", *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=sink,
            env=env,
            text=True,
        )
    _STDERR[proc.pid] = errors
    return proc


#: Each spawned child's stderr file, by pid.
_STDERR: dict[int, Path] = {}


def child_stderr(proc: subprocess.Popen[str], limit: int = 4000) -> str:
    """The end of what a child wrote on stderr (for failure messages)."""
    path = _STDERR.get(proc.pid)
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-limit:]


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for text in fh:
                if text.startswith("VmRSS:"):
                    return int(text.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def running(
    db: Path, mode: str, who: str, ops: int = 0, kill_op: int = -1, kill_at: str = "marker"
) -> Iterator[subprocess.Popen[str]]:
    """A child host, always reaped (and killed if still running) on the way out."""
    proc = spawn(db, mode, who, ops, kill_op, kill_at)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def read_until(
    proc: subprocess.Popen[str], who: str, reported: Reported, kill_op: int = -1
) -> Round:
    """Read ``proc``'s success lines until it ends. An ``in <op>`` marker is the parent's
    kill point: SIGKILL at once, then read what was written before the kill. A child whose
    own kill point was not reached in operation ``kill_op`` (say ``after-put`` in an
    operation that uploads nothing) reports that operation and blocks: it is killed then."""
    stream: IO[str] | None = proc.stdout
    assert stream is not None
    seen, peak, killed = 0, 0, False
    # A child that is killed before its first report may still have committed a hit: its
    # counter is checked from the first round (0 reported, so 0 or 1 stored).
    reported.hits.setdefault(who, 0)
    for text in stream:
        line = text.strip()
        if line == "done":
            break
        if line.startswith("in "):
            peak = max(peak, rss_kib(proc.pid))
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            continue
        reported.take(who, line)
        seen += 1
        if seen % 16 == 1:
            peak = max(peak, rss_kib(proc.pid))
        if seen == kill_op + 1 and not killed:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
    code = proc.wait()
    if killed or code == -signal.SIGKILL:
        return Round(lines=seen, killed=True, rss_kib=peak)
    assert code == 0, f"child {who} failed with exit code {code}:\n{child_stderr(proc)}"
    return Round(lines=seen, killed=False, rss_kib=peak)


# -- the invariants --------------------------------------------------------------------


@dataclass
class State:
    """What the reopened database holds (after the next start's own recovery)."""

    integrity: str
    counts: dict[str, int]
    audit_ok_hits: int
    content: set[str]
    media_rows: dict[str, str]  # id -> storage key
    media_files: set[str]
    media_bytes: dict[str, bytes]  # key -> bytes, for the keys children reported


def observe(db: Path, reported: Reported) -> State:
    """Reopen the database as the next start would, and read what it holds."""
    raw = sqlite3.connect(db)
    try:
        integrity = raw.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        raw.close()
    from emdash._store import Store

    with Store(db) as store:  # the next start: WAL recovery, orphan sweep, migrations
        counts = {
            who: int(store.kv_entries.get(PLUGIN_ID, f"count-{who}") or 0) for who in reported.hits
        }
        store.audit_records.flush()
        audit = store.db.execute(
            "SELECT count(*) FROM _emdash_audit WHERE plugin_id = ? AND kind = 'route' "
            "AND name = 'hit' AND outcome = 'ok'",
            [PLUGIN_ID],
        ).fetchone()[0]
        content = {r[0] for r in store.db.execute("SELECT id FROM _emdash_content").fetchall()}
        media_rows = {
            r[0]: r[1]
            for r in store.db.execute("SELECT id, storage_key FROM _emdash_media").fetchall()
        }
        root = store.media_files.root
        files = {p.name for p in root.iterdir()} if root.is_dir() else set()
        media_bytes = {
            key: (root / key).read_bytes()
            for key, _ in reported.media.values()
            if (root / key).is_file()
        }
    return State(integrity, counts, int(audit), content, media_rows, files, media_bytes)


@dataclass
class Verdict:
    """Which invariants failed (empty: all held), and the figures behind them."""

    failures: list[str]
    unreported_commits: int  # writes that committed after the child's last report
    audit_missing: int


def check(state: State, reported: Reported, kills: int, previous: State | None) -> Verdict:
    """Every invariant, after ``kills`` SIGKILLs so far on this database."""
    bad: list[str] = []
    if state.integrity != "ok":
        bad.append(f"PRAGMA integrity_check: {state.integrity}")
    extra = 0
    # Counters: each child's counter is what it last reported, or one more (the call in
    # flight committed and the kill came before its line).
    for who, count in reported.hits.items():
        got = state.counts.get(who, 0)
        if got not in (count, count + 1):
            bad.append(f"counter of {who} is {got}, children reported {count} successes")
        extra += max(0, got - count)
    # Audit: every committed route call has its audit row, but for what one kill may lose
    # of the buffer (AUDIT_LOSS_PER_KILL); never an "ok" row for a call that did not commit.
    total = sum(state.counts.values())
    missing = total - state.audit_ok_hits
    if missing < 0:
        bad.append(f"{-missing} ok audit rows for route calls that did not commit")
    if missing > AUDIT_LOSS_PER_KILL * kills:
        bad.append(f"{missing} committed route calls have no audit row (after {kills} kills)")
    # Content: every reported item exists; at most one unreported item per kill.
    lost = reported.content - state.content
    if lost:
        bad.append(f"{len(lost)} reported content items are gone: {sorted(lost)[:3]}")
    unreported = len(state.content - reported.content)
    if unreported > kills:
        bad.append(f"{unreported} content items nobody reported, after {kills} kills")
    extra += unreported
    # Media: reported uploads exist with their bytes unless reported deleted; reported
    # deletions are gone; every row has its file and every file its row (no orphans).
    for media_id, (key, op) in reported.media.items():
        if media_id in reported.unmedia:
            if media_id in state.media_rows:
                bad.append(f"media {media_id} was reported deleted but its row is there")
            continue
        if media_id not in state.media_rows:
            # Its deletion may have been the operation in flight at a kill.
            continue
        if state.media_bytes.get(key) != payload(op):
            bad.append(f"media {media_id}: its file {key} is missing or not what was uploaded")
    orphan_rows = [k for k in state.media_rows.values() if k not in state.media_files]
    if orphan_rows:
        bad.append(f"media rows without their file: {orphan_rows[:3]}")
    orphan_files = state.media_files - set(state.media_rows.values())
    if orphan_files:
        bad.append(f"media files without a row: {sorted(orphan_files)[:3]}")
    reported_live = {m for m in reported.media if m not in reported.unmedia}
    unreported_media = len(set(state.media_rows) - reported_live)
    if unreported_media > kills:
        bad.append(f"{unreported_media} media rows beyond what children reported")
    if previous is not None:
        # Nothing committed earlier is lost later: state only grows (media: but deletes).
        for who, count in previous.counts.items():
            if state.counts.get(who, 0) < count:
                bad.append(f"counter of {who} went back from {count}")
        if not previous.content <= state.content:
            bad.append("content items committed before an earlier kill are gone")
    return Verdict(bad, extra, max(0, missing))


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
