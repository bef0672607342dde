"""Several hosts on PostgreSQL hear of a registry change when it commits (LISTEN/NOTIFY),
not only at their next poll of the registry."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from emdash._runtime._registry_sync import RegistryWatcher
from emdash._store import Store


def test_a_registry_change_reaches_another_host_without_a_poll(
    pg_database: str, tmp_path: Path
) -> None:
    with (
        Store(pg_database, media_dir=tmp_path) as writer,
        Store(pg_database, media_dir=tmp_path) as reader,
    ):
        notices = reader.registry_notices()
        assert notices is not None
        seen: list[dict[str, tuple[str, bool]]] = []
        changed = threading.Event()

        def apply(state: Mapping[str, tuple[str, bool]]) -> list[str]:
            seen.append(dict(state))
            changed.set()
            return list(state)

        # A poll once an hour: within this test only an announcement can wake the watcher.
        watcher = RegistryWatcher(
            reader.plugin_registry.list, apply, interval_s=3600.0, notices=notices
        )
        watcher.sync()  # the starting state: empty
        changed.clear()
        watcher.start()
        try:
            writer.plugin_registry.upsert("alpha", version="1.0.0", enabled=True, trusted=False)
            assert changed.wait(60), "the change was never announced"
            assert seen[-1] == {"alpha": ("1.0.0", True)}
            changed.clear()
            writer.plugin_registry.upsert("alpha", version="1.0.0", enabled=False, trusted=False)
            assert changed.wait(60)
            assert seen[-1] == {"alpha": ("1.0.0", False)}
            changed.clear()
            writer.plugin_registry.delete("alpha")
            assert changed.wait(60)
            assert seen[-1] == {}
        finally:
            watcher.stop()


def test_a_change_rolled_back_is_not_announced(pg_database: str, tmp_path: Path) -> None:
    with (
        Store(pg_database, media_dir=tmp_path) as writer,
        Store(pg_database, media_dir=tmp_path) as reader,
    ):
        notices = reader.registry_notices()
        assert notices is not None
        try:
            try:
                with writer.transaction():
                    writer.plugin_registry.upsert(
                        "beta", version="1.0.0", enabled=True, trusted=False
                    )
                    raise RuntimeError("roll it back")
            except RuntimeError:
                pass
            assert not notices.wait(0.5)  # nothing was announced (no change committed)
            writer.plugin_registry.upsert("beta", version="1.0.0", enabled=True, trusted=False)
            assert notices.wait(60)
        finally:
            notices.close()
