"""Per-plugin admission: how many calls of one plugin's routes run, and how many may wait.

Without it, every route shares the HTTP server's thread pool (anyio's, 40 threads by
default): a flood of callers of one slow public route holds every thread, each queuing for
one of that plugin's workers, and every *other* plugin's routes wait behind them. The gate
bounds each plugin on its own, before any thread or worker is taken:

- at most ``max_concurrency`` calls of the plugin's routes run at once (default: its worker
  pool size, ``Runtime(worker_pool_size=...)``, for a sandboxed plugin, so an admitted call
  never waits for a worker; :data:`TRUSTED_CONCURRENCY` for a trusted one, whose routes run
  on the calling thread with no timeout);
- at most ``max_queue`` more callers wait for a turn, first come first served (default:
  twice ``max_concurrency``). The HTTP app waits in its event loop, holding no thread; a
  direct ``rt.invoke_route`` caller waits in its own thread;
- a caller that finds the queue full is refused at once with :class:`PluginBusyError`
  (HTTP 503 with ``Retry-After``); one that waited ``queue_timeout_ms`` (default: the
  plugin's ``wall_ms``) without a turn is refused the same way.

Who pays: the plugin's own callers. Another plugin's calls never wait for this plugin's
slots. Refusals run no plugin code, write no audit row, and log one warning per plugin per
minute at most (a flood must not become a log flood).

Not gated: hooks (fired by host operations such as a content save, bounded by their own
``timeout_ms``; gating them could deadlock a route that saves content and fires its own
plugin's hook) and calls made from inside an invocation (already admitted: the outer call
holds the slot; waiting for a second slot of the same plugin could wait forever).

Raise the bounds per plugin with ``Runtime(admission={"<id>": {"max_concurrency": 4}})``,
``rt.admission.configure("<id>", max_concurrency=4, max_queue=16)`` or, for ``emdash
serve``, ``max_concurrency`` / ``max_queue`` / ``queue_timeout_ms`` in the plugin's
``[[plugins]]`` entry of ``emdash.toml``. More concurrency than the plugin has workers
only moves the waiting into threads; raise ``worker_pool_size`` with it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from .._shared._errors import EmDashError, PluginBusyError

__all__ = [
    "RETRY_AFTER_S",
    "TRUSTED_CONCURRENCY",
    "AdmissionControl",
    "AdmissionPolicy",
    "AdmissionSlot",
    "PluginGate",
]

log = logging.getLogger("emdash.admission")

TRUSTED_CONCURRENCY = 8
RETRY_AFTER_S = 1
_WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class AdmissionPolicy:
    """The bounds of one plugin's gate (see the module docstring for the defaults).

    ``max_concurrency``: calls running at once (>= 1). ``max_queue``: callers waiting for a
    turn (>= 0; 0 refuses whoever cannot run at once). ``queue_timeout_ms``: the longest a
    caller waits for a turn. ``retry_after_s``: the ``Retry-After`` a refusal suggests.
    """

    max_concurrency: int
    max_queue: int
    queue_timeout_ms: int
    retry_after_s: int = RETRY_AFTER_S

    def __post_init__(self) -> None:
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            # bool is an int: max_queue=True is a typo, not a bound.
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


_RANGES = {
    "max_concurrency": (1, 10_000),
    "max_queue": (0, 10_000),
    "queue_timeout_ms": (1, 3_600_000),
    "retry_after_s": (0, 3600),
}


class _Waiter:
    """One queued caller. ``granted`` flips (under the gate's lock) when a slot is handed
    to it; ``wake`` then tells it, from whichever thread released the slot."""

    __slots__ = ("event", "granted", "loop", "future")

    def __init__(self) -> None:
        self.granted = False
        self.event = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        self.event.set()
        if self.loop is not None and self.future is not None:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # the loop is closed: nobody is waiting there any more
                pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AdmissionSlot:
    """A turn to run one call of ``plugin_id``'s routes; :meth:`release` gives it back
    (idempotent). The HTTP app takes one in its event loop and hands it to
    ``Runtime.invoke_route(admitted=...)`` so the call is not admitted twice."""

    __slots__ = ("gate", "_released")

    def __init__(self, gate: PluginGate) -> None:
        self.gate = gate
        self._released = False

    @property
    def plugin_id(self) -> str:
        return self.gate.plugin_id

    @property
    def active(self) -> bool:
        return not self._released

    def release(self) -> None:
        self.gate._release(self)


class PluginGate:
    """The admission state of one plugin: thread-safe, usable from threads and event loops.

    A released slot is handed straight to the oldest waiter (``running`` stays the same), so
    a caller arriving at that moment cannot overtake the queue.
    """

    def __init__(self, plugin_id: str, policy: AdmissionPolicy) -> None:
        self.plugin_id = plugin_id
        self._policy = policy
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._refused = 0
        self._timed_out = 0
        self._last_warning = -_WARN_EVERY_S

    @property
    def policy(self) -> AdmissionPolicy:
        return self._policy

    def set_policy(self, policy: AdmissionPolicy) -> None:
        """Change the bounds; callers already queued keep their places, and a raised
        ``max_concurrency`` admits them at once."""
        with self._lock:
            self._policy = policy
            woken = self._grant_locked()
        for waiter in woken:
            waiter.wake()

    def stats(self) -> dict[str, int]:
        """``running``, ``queued``, and since the start ``refused`` (queue full) and
        ``timed_out`` (no turn within ``queue_timeout_ms``)."""
        with self._lock:
            return {
                "running": self._running,
                "queued": len(self._waiters),
                "refused": self._refused,
                "timed_out": self._timed_out,
            }

    # -- taking a turn -----------------------------------------------------------------

    def try_enter(self) -> AdmissionSlot | None:
        """A slot if one is free and nobody queues; else ``None`` (never waits)."""
        with self._lock:
            if self._running < self._policy.max_concurrency and not self._waiters:
                self._running += 1
                return AdmissionSlot(self)
        return None

    def enqueue(self) -> _Waiter:
        """Join the queue: the returned waiter is ``granted`` already if a slot was free.

        Raises :class:`PluginBusyError` at once when the queue is full.
        """
        waiter = _Waiter()
        with self._lock:
            policy = self._policy
            if self._running < policy.max_concurrency and not self._waiters:
                self._running += 1
                waiter.granted = True
                return waiter
            if len(self._waiters) >= policy.max_queue:
                self._refused += 1
                error = self._busy_locked("queue_full")
            else:
                self._waiters.append(waiter)
                return waiter
        raise error

    def withdraw(self, waiter: _Waiter, *, timed_out: bool) -> AdmissionSlot | None:
        """Leave the queue after a wait ended without a wake-up (timeout, disconnect,
        cancellation). If the slot was handed over in the meantime, it is returned: the
        caller owns it now and must use or release it."""
        with self._lock:
            if waiter.granted:
                return AdmissionSlot(self)
            try:
                self._waiters.remove(waiter)
            except ValueError:  # pragma: no cover - granted is set before removal
                pass
            if timed_out:
                self._timed_out += 1
        return None

    def granted_slot(self, waiter: _Waiter) -> AdmissionSlot:
        """The slot of a waiter that was granted one."""
        assert waiter.granted
        return AdmissionSlot(self)

    def timeout_error(self) -> PluginBusyError:
        with self._lock:
            return self._busy_locked("queue_timeout")

    @contextmanager
    def enter(self) -> Iterator[AdmissionSlot]:
        """Take a turn from a thread: wait (in this thread) up to ``queue_timeout_ms``."""
        waiter = self.enqueue()
        if not waiter.granted:
            waiter.event.wait(self._policy.queue_timeout_ms / 1000)
            slot = self.withdraw(waiter, timed_out=True)
            if slot is None:
                raise self.timeout_error()
        else:
            slot = self.granted_slot(waiter)
        try:
            yield slot
        finally:
            slot.release()

    async def enter_async(self, waiter: _Waiter) -> None:
        """Wait in the running asyncio loop until ``waiter`` is granted (no thread held).

        Cancellation (a timeout or a disconnect, by the caller's cancel scope) propagates;
        the caller then calls :meth:`withdraw`.
        """
        if waiter.granted:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            waiter.loop, waiter.future = loop, future
            granted = waiter.granted
        if not granted:
            await future

    # -- internals ---------------------------------------------------------------------

    def _release(self, slot: AdmissionSlot) -> None:
        with self._lock:
            # Under the lock: two threads releasing one slot give back one turn.
            if slot._released:
                return
            slot._released = True
            self._running -= 1
            woken = self._grant_locked()
        for waiter in woken:
            waiter.wake()

    def _grant_locked(self) -> list[_Waiter]:
        woken = []
        while self._waiters and self._running < self._policy.max_concurrency:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self._running += 1
            woken.append(waiter)
        return woken

    def _busy_locked(self, reason: str) -> PluginBusyError:
        policy = self._policy
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "Plugin %s is refusing route calls (%s): %d running, %d waiting; so far %d "
                "refused with a full queue and %d after waiting %d ms for a turn. Raise its "
                "max_concurrency / max_queue if this load is expected (logged once a minute "
                "at most).",
                self.plugin_id,
                reason.replace("_", " "),
                self._running,
                len(self._waiters),
                self._refused,
                self._timed_out,
                policy.queue_timeout_ms,
            )
        return PluginBusyError(
            self.plugin_id,
            reason=reason,
            running=self._running,
            max_concurrency=policy.max_concurrency,
            max_queue=policy.max_queue,
            queue_timeout_ms=policy.queue_timeout_ms,
            retry_after=policy.retry_after_s,
        )


class AdmissionControl:
    """The gates of one runtime, one per plugin id, created on first use.

    ``defaults(plugin_id)`` gives ``(max_concurrency, wall_ms)`` for a plugin without an
    explicit policy (the runtime knows whether it is sandboxed and its limits).
    """

    def __init__(
        self,
        defaults: Callable[[str], tuple[int, int]],
        overrides: Mapping[str, AdmissionPolicy | Mapping[str, Any]] | None = None,
    ) -> None:
        self._defaults = defaults
        self._lock = threading.Lock()
        self._gates: dict[str, PluginGate] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        for plugin_id, value in (overrides or {}).items():
            fields = value.__dict__ if isinstance(value, AdmissionPolicy) else dict(value)
            self._check_fields(plugin_id, fields)
            self._overrides[plugin_id] = dict(fields)

    def gate(self, plugin_id: str) -> PluginGate:
        """The plugin's gate (its policy resolved now if it is new)."""
        with self._lock:
            gate = self._gates.get(plugin_id)
            if gate is None:
                gate = PluginGate(
                    plugin_id, self._resolve(plugin_id, self._overrides.get(plugin_id, {}))
                )
                self._gates[plugin_id] = gate
            return gate

    def configure(self, plugin_id: str, **bounds: int | None) -> AdmissionPolicy:
        """Set some of ``max_concurrency``, ``max_queue``, ``queue_timeout_ms``,
        ``retry_after_s`` for one plugin (``None`` leaves a bound as it is); returns the
        policy now in force. Applies to callers already queued too."""
        fields = {k: v for k, v in bounds.items() if v is not None}
        self._check_fields(plugin_id, fields)
        with self._lock:
            merged = {**self._overrides.get(plugin_id, {}), **fields}
            policy = self._resolve(plugin_id, merged)  # refused: nothing changes
            self._overrides[plugin_id] = merged
            gate = self._gates.get(plugin_id)
        if gate is not None:
            gate.set_policy(policy)
        return policy

    def policy(self, plugin_id: str) -> AdmissionPolicy:
        return self.gate(plugin_id).policy

    def stats(self, plugin_id: str) -> dict[str, int]:
        return self.gate(plugin_id).stats()

    def forget(self, plugin_id: str) -> None:
        """Drop a removed plugin's gate (slots still out release on the old gate)."""
        with self._lock:
            self._gates.pop(plugin_id, None)

    def _resolve(self, plugin_id: str, fields: Mapping[str, int]) -> AdmissionPolicy:
        concurrency, wall_ms = self._defaults(plugin_id)
        concurrency = fields.get("max_concurrency", concurrency)
        high_queue = _RANGES["max_queue"][1]
        try:
            base = AdmissionPolicy(
                max_concurrency=concurrency,
                max_queue=min(2 * concurrency, high_queue),
                queue_timeout_ms=min(wall_ms, _RANGES["queue_timeout_ms"][1]),
            )
            return replace(base, **fields)
        except ValueError as exc:
            raise EmDashError(
                f"Invalid admission settings for plugin {plugin_id}: {exc}", plugin_id=plugin_id
            ) from None

    @staticmethod
    def _check_fields(plugin_id: str, fields: Mapping[str, Any]) -> None:
        known = set(_RANGES)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise EmDashError(
                f"Invalid admission settings for plugin {plugin_id}: unknown key {unknown[0]!r}"
                f" (known: {', '.join(sorted(known))})",
                plugin_id=plugin_id,
            )
        try:
            replace(AdmissionPolicy(1, 0, 1), **fields)
        except ValueError as exc:
            raise EmDashError(
                f"Invalid admission settings for plugin {plugin_id}: {exc}", plugin_id=plugin_id
            ) from None
