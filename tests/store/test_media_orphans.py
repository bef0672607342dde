"""Media files left without a row by a killed process are removed at the next open, and
a file whose upload is still in flight in another (live) process never is.

Real processes: a child writes a file with ``LocalMediaStorage.put`` (which holds the
file's lock until the row settles) and then waits; the parent opens the store meanwhile
(the upload is in flight: kept) and again after SIGKILLing it (orphan: removed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from emdash._store import Store

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys, threading
    from emdash._store import Store
    store = Store(sys.argv[1])
    key = store.new_id() + ".txt"
    store.media_files.put(key, b"in flight")
    print(key, flush=True)
    threading.Event().wait()  # the row never commits: until SIGKILL
    """
)


def test_an_upload_in_flight_is_kept_and_its_orphan_removed_after_a_kill(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    Store(db).close()
    media = tmp_path / "site.db-media"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert child.stdout is not None
        key = child.stdout.readline().strip()
        assert (media / key).read_bytes() == b"in flight"
        with Store(db) as store:  # the writer is alive: its file may still get a row
            assert store.media_items.sweep_orphans() == 0
        assert (media / key).exists()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with Store(db) as store:  # its writer is gone and no row names it: an orphan
        assert not (media / key).exists()
        assert store.media_items.sweep_orphans() == 0


def test_the_sweep_keeps_files_with_rows_and_files_it_did_not_name(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    with Store(db) as store:
        kept = store.media_items.upload("a.txt", "text/plain", b"a")["storageKey"]
        gone = store.media_items.upload("b.txt", "text/plain", b"b")
    media = tmp_path / "site.db-media"
    # A delete whose file removal a kill cut off: the row is gone, the file stays.
    with Store(db) as store, store.lock:
        store.db.execute("DELETE FROM _emdash_media WHERE id = ?", (gone["mediaId"],))
    (media / ".upload-abc123").write_bytes(b"half written")  # a killed put's temporary
    (media / "README").write_text("the operator's own file")
    with Store(db) as store:
        assert store.media_items.sweep_orphans() == 0  # already swept at open
        assert sorted(p.name for p in media.iterdir()) == sorted([kept, "README"])
        assert store.media_items.get(gone["mediaId"]) is None


def test_an_upload_rolled_back_by_its_invocation_leaves_no_file(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    with Store(db) as store:
        try:
            with store.invocation():
                store.media_items.upload("a.txt", "text/plain", b"a")
                raise RuntimeError("the invocation fails after the upload")
        except RuntimeError:
            pass
        assert list((tmp_path / "site.db-media").iterdir()) == []
        assert store.media_files._held == {}
