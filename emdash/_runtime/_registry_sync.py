"""Several hosts, one site: each host follows the plugin registry the hosts share.

A plugin enabled, disabled, removed or upgraded on one host changes the registry rows
(``_emdash_plugins``) in the shared database; the lifecycle hook runs once, on that host.
Every other host hears of the change at once (on PostgreSQL the change is announced with
``NOTIFY`` when its transaction commits, and each host's watcher listens on a
connection of its own), and also polls the registry (one small query every
:data:`POLL_INTERVAL_S`, for an announcement lost with a broken connection). It brings its
own pipeline in line, without running hooks:

- enabled / disabled: the plugin joins or leaves this host's pipeline and its cron;
- removed (no row): the plugin leaves the pipeline;
- another version in the registry than the one this host loaded: the plugin leaves the
  pipeline and an error is logged until this host is deployed with that version (a host
  never runs a plugin version the site moved away from).

Hosts on a SQLite file are alone on their database: only a PostgreSQL runtime starts a
watcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._shared._errors import EmDashError
from .._store._db import RegistryNotices

__all__ = ["POLL_INTERVAL_S", "RegistryWatcher", "site_state"]

log = logging.getLogger("emdash")

#: How often a host re-reads the registry (the longest another host's change takes to
#: reach it, plus the time of one query).
POLL_INTERVAL_S = 1.0
# The longest a stopping watcher waits on the listener before it sees the stop.
_STOP_SLICE_S = 1.0


def site_state(rows: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
    """``{plugin id: (version, enabled)}`` from the registry's rows."""
    return {str(r["id"]): (str(r["version"]), bool(r["enabled"])) for r in rows}


class RegistryWatcher:
    """Polls the registry and hands what changed to ``apply`` (the runtime's).

    ``read`` returns the registry's rows; ``apply`` is given the site's state and returns
    the ids whose local state it changed. :meth:`sync` does one round (tests call it).
    """

    def __init__(
        self,
        read: Callable[[], list[dict[str, Any]]],
        apply: Callable[[Mapping[str, tuple[str, bool]]], list[str]],
        *,
        interval_s: float = POLL_INTERVAL_S,
        notices: RegistryNotices | None = None,
    ) -> None:
        self._read = read
        self._apply = apply
        self.interval_s = interval_s
        #: Other hosts' announcements of a change (``None``: polling only).
        self._notices = notices
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, tuple[str, bool]] | None = None

    def sync(self) -> list[str]:
        state = site_state(self._read())
        if state == self._last:
            return []
        changed = self._apply(state)
        self._last = state
        return changed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="emdash-registry-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _wait(self) -> bool:
        """Until an announcement or the next poll; False once the watcher is stopping."""
        if self._notices is None:
            return not self._stop.wait(self.interval_s)
        end = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            left = end - time.monotonic()
            # In slices of at most a second, so that stop() is not kept waiting.
            if left <= 0 or self._notices.wait(min(left, _STOP_SLICE_S)):
                break
        return not self._stop.is_set()

    def _loop(self) -> None:
        try:
            self._follow()
        finally:
            if self._notices is not None:
                self._notices.close()

    def _follow(self) -> None:
        failing = False
        while self._wait():
            try:
                self.sync()
            except EmDashError as exc:
                # The database is down or the runtime is closing: the next round retries.
                # Said once per outage, not once a second.
                if not failing:
                    log.warning("[registry] cannot follow the site's plugin registry: %s", exc)
                failing = True
                continue
            except Exception:
                log.exception("[registry] following the site's plugin registry failed")
                continue
            if failing:
                log.warning("[registry] following the site's plugin registry again")
                failing = False
