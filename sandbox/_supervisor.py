"""The supervisor: the host's entry point to the sandbox, one per runtime.

Which process runs this: the host (any of its threads; the supervisor's state is under one
lock). It owns the host side of the fork server (``_forkclient``), the worker pools, one
per loaded bundle (``_pool``), and the crash bookkeeping for both.

The fork server is started by :meth:`Supervisor.start` (or the first load) and started again
by the next request once it has died: at once after one death, so a single death costs only
the calls in flight on its workers (they die with it: PDEATHSIG, by design, so nothing the
sandbox started outlives it), and under the same back-off as workers only when it dies again
within the window. Its deaths are never counted against a plugin. ``epoch`` counts its starts,
so a pool can tell that an idle worker was made by a fork server that is gone (and so is gone
itself, whatever its socket says yet).

The supervisor also runs the CPU watch: one daemon thread (started by the first load, for
every open pool, from its first load on) that every ``_pool.WATCH_INTERVAL_S`` has each pool read its workers' CPU time
from the kernel and kill those that use CPU while idle or beyond their call's budget.

Crash bookkeeping (:class:`_CrashTracker`, one per pool and one for the fork server), with the
default settings: after crash *n* no new worker (fork server) starts for ``1, 2, 4 ... 30`` s;
more than 5 crashes within 60 s and the pool (every pool) refuses calls with
``SandboxUnavailableError`` until the window has passed (EmDash logged "will run unsandboxed"
here and then failed; we fail closed and say so). A pool's workers stopped by an enforced
limit (CPU time, memory, wall time) count too, once more than ``limit_kill_allowance`` (3) of
them fall within the window: each replacement costs the host a fork and a re-run of the
plugin's module code, so a plugin that always exceeds its limit is backed off like one that
crashes, and while backed off its calls fail at once, without a fork.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ._call import InFlight, OnLoad, SandboxLimits
from ._errors import (
    SandboxError,
    SandboxNotAvailableError,
    SandboxUnavailableError,
    WorkerCrashed,
)
from ._forkclient import ForkedProcess, ForkServerClient
from ._pool import WATCH_INTERVAL_S, LoadSpec, WorkerPool, spin_call_limit
from ._protocol import DEFAULT_MAX_FRAME_BYTES

__all__ = ["Supervisor"]

log = logging.getLogger("sandbox")


def _default_host_error(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc)}


# What each kind of limit kill is called in the back-off message.
_LIMIT_NAMES = {"cpu": "CPU-time limit", "memory": "memory limit", "wall": "wall-time limit"}


class _CrashTracker:
    """Exponential backoff and the give-up window (EmDash's scheduleRestart, per pool).

    Two kinds of events replace a worker: crashes (``record()``) and *limit kills*
    (``record("cpu" | "memory" | "wall")``: the worker was stopped by an enforced limit).
    Why limit kills count at all: every replacement forks a worker and re-runs the plugin's
    module-level code (up to ``load_cpu_ms`` of CPU), so a plugin whose handler always
    exceeds its 50 ms limit made the host pay a fork and a load per invocation. The first
    ``allowance`` limit kills within a window cost nothing (an occasional limit hit is not
    punished); each one after that counts like a crash, so the same back-off and the same
    give-up window apply. ``clock`` is ``time.monotonic`` (tests move it forward instead
    of sleeping through a window).
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        base_s: float,
        max_s: float,
        allowance: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self.base_s, self.max_s = limit, window_s, base_s, max_s
        self.allowance, self.clock = allowance, clock
        self.count = 0  # crashes, and limit kills beyond the allowance, in this window
        self.limit_kills = 0  # every limit kill in this window
        self.cause = "crash"  # what the last counted event was
        self.window_start: float | None = None
        self.last = 0.0

    def _roll(self, now: float) -> None:
        if self.window_start is not None and now - self.window_start > self.window_s:
            self.window_start, self.count, self.limit_kills = None, 0, 0

    def record(self, cause: str = "crash") -> None:
        """Count a crash (``"crash"``) or a limit kill (``"cpu"``, ``"memory"``, ``"wall"``;
        the fork server's tracker records its deaths as ``"exit"``, the first one free)."""
        now = self.clock()
        self._roll(now)
        if self.window_start is None:
            self.window_start = now
        if cause != "crash":
            self.limit_kills += 1
            if self.limit_kills <= self.allowance:
                return
        self.count += 1
        self.last = now
        self.cause = cause

    def retry_in(self) -> float | None:
        """Seconds until a new worker may start (None: it may now)."""
        now = self.clock()
        self._roll(now)
        if self.window_start is None or self.count == 0:
            return None
        if self.count > self.limit:
            return max(0.0, self.window_start + self.window_s - now)
        delay = min(self.base_s * 2 ** (self.count - 1), self.max_s)
        return self.last + delay - now if now < self.last + delay else None

    def blocked(self, key: str) -> str | None:
        """Why no new worker may start now, or None."""
        now = self.clock()
        self._roll(now)
        if self.window_start is None or self.count == 0:
            return None
        limit_name = _LIMIT_NAMES.get(self.cause)
        if limit_name is None:
            what, fix = "crashed", "Fix the cause (see the earlier errors)"
        else:
            what = f"was killed {self.limit_kills} times by its {limit_name}"
            fix = f"Make the plugin stay within its {limit_name} or raise that limit"
        if self.count > self.limit:
            wait = self.window_start + self.window_s - now
            if limit_name is None:
                return (
                    f"the sandbox worker for {key} crashed {self.count} times within "
                    f"{self.window_s:g} seconds; calls fail for another {wait:.0f}s. Fix the "
                    "cause (see the earlier errors) or restart the host to retry sooner."
                )
            return (
                f"the sandbox worker for {key} {what} within {self.window_s:g} seconds "
                f"(repeated {limit_name} kills); no new worker starts and calls fail for "
                f"another {wait:.0f}s. {fix}, or restart the host to retry sooner."
            )
        delay = min(self.base_s * 2 ** (self.count - 1), self.max_s)
        if now < self.last + delay:
            retry = f"{(self.last + delay - now) * 1000:.0f}ms"
            if limit_name is None:
                return (
                    f"the sandbox worker for {key} crashed; restarting in {retry} "
                    f"(attempt {self.count}/{self.limit})"
                )
            return (
                f"the sandbox worker for {key} {what} within {self.window_s:g} seconds "
                f"(repeated {limit_name} kills); backing off: a new worker starts in "
                f"{retry} (attempt {self.count}/{self.limit}). {fix}."
            )
        return None


class Supervisor:
    """Owns the fork server and the worker pools; the host's entry point to the sandbox.

    ``preludes`` are trusted modules given as source text (``{"pkg.mod": source}``), built
    once in the fork server; ``expose`` maps names sandboxed code may import to prelude
    modules. ``worker_error_encoder``/``worker_error_decoder`` name prelude functions
    (``"module:function"``) that turn a worker-side exception into a JSON dict and a host
    error dict back into the exception ``host_call`` raises; ``host_error_encoder`` turns an
    exception raised by ``on_host_call`` into that dict. The remaining keyword arguments
    tune the crash bookkeeping and the frame cap (tests shorten the backoff):
    ``limit_kill_allowance`` is how many limit kills per pool and window cost nothing
    before they count like crashes (0: every one counts), ``clock`` the monotonic clock the
    bookkeeping reads (tests move it forward instead of sleeping through a window).
    """

    def __init__(
        self,
        *,
        preludes: dict[str, str] | None = None,
        expose: dict[str, str] | None = None,
        worker_error_encoder: str | None = None,
        worker_error_decoder: str | None = None,
        host_error_encoder: Callable[[BaseException], dict[str, Any]] | None = None,
        allow_raw_exec_for_tests: bool = False,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        crash_limit: int = 5,
        crash_window_s: float = 60.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        start_timeout_s: float = 60.0,
        limit_kill_allowance: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        preludes = dict(preludes or {})
        expose = dict(expose or {})
        for name, mapping in (("preludes", preludes), ("expose", expose)):
            if not all(type(k) is str and type(v) is str for k, v in mapping.items()):
                raise SandboxError(f"{name} must map str to str")
        for name, value in (
            ("worker_error_encoder", worker_error_encoder),
            ("worker_error_decoder", worker_error_decoder),
        ):
            if value is not None and (type(value) is not str or value.count(":") != 1):
                raise SandboxError(f"{name} must look like 'module:function', got {value!r}")
        if type(max_frame_bytes) is not int or max_frame_bytes < 4096:
            raise SandboxError("max_frame_bytes must be an int of at least 4096")
        self.allow_raw_exec_for_tests = bool(allow_raw_exec_for_tests)
        self.max_frame_bytes = max_frame_bytes
        self._config = {
            "op": "config",
            "preludes": preludes,
            "expose": expose,
            "worker_error_encoder": worker_error_encoder,
            "worker_error_decoder": worker_error_decoder,
            "allow_raw_exec": self.allow_raw_exec_for_tests,
            "max_frame_bytes": max_frame_bytes,
        }
        self._host_error_encoder = host_error_encoder or _default_host_error
        if type(limit_kill_allowance) is not int or limit_kill_allowance < 0:
            raise SandboxError("limit_kill_allowance must be a non-negative int")
        self._crash_args = (crash_limit, crash_window_s, backoff_base_s, backoff_max_s)
        self._limit_kill_allowance = limit_kill_allowance
        self._clock = clock
        self._start_timeout_s = start_timeout_s
        self._lock = threading.RLock()
        self._client: ForkServerClient | None = None
        # One death of the fork server within the window is free: the next request starts
        # a new one at once (an operator's kill or the OOM killer must not make every
        # sandboxed plugin unavailable for seconds); repeated deaths back off like crashes.
        self._server_crashes = _CrashTracker(*self._crash_args, allowance=1, clock=clock)
        self._epoch = 0  # bumps with every fork server start
        self._pools: dict[str, WorkerPool] = {}
        self._closed = False
        self._inflight = InFlight(spin_call_limit())
        # The CPU watch: one thread for every pool (see _pool: idle and busy workers' CPU
        # time, read from the kernel every WATCH_INTERVAL_S). Started by the first load.
        self._watch_stop = threading.Event()
        self._watched: set[WorkerPool] = set()  # every open pool, including one loading
        self._watch_thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the fork server (idempotent; ``load`` calls it too)."""
        self._ensure_server()

    def close(self) -> None:
        """Close every pool and stop the fork server (SIGTERM, then SIGKILL); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pools = list(self._pools.values())
            self._pools.clear()
            client, self._client = self._client, None
            watcher, self._watch_thread = self._watch_thread, None
        self._watch_stop.set()
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(5.0)
        for pool in pools:
            pool._close(f"the sandbox supervisor was closed, so the sandbox for {pool.key} is too")
        if client is not None:
            client.close()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def is_healthy(self) -> bool:
        """True while the fork server runs and the supervisor is open."""
        with self._lock:
            return not self._closed and self._client is not None and self._client.is_alive()

    @property
    def epoch(self) -> int:
        """Bumps every time a fork server starts; workers of an older one are stale."""
        return self._epoch

    @property
    def server_pid(self) -> int | None:
        """Pid of the running fork server (diagnostics and tests)."""
        with self._lock:
            return self._client.pid if self._client is not None else None

    # -- loading ------------------------------------------------------------------------

    def load(
        self,
        key: str,
        files: dict[str, str],
        entry: str,
        *,
        limits: SandboxLimits,
        pool_size: int = 2,
        init: tuple[str, list[Any]] | None = None,
        fresh_worker: bool = False,
        on_load: OnLoad | None = None,
    ) -> WorkerPool:
        """Compile and load ``files`` in a fresh worker and return the pool serving them.

        The bundle is compiled *in the worker* (a ``CompileError`` propagates). ``init``
        (``("module:function", args)``) runs once per worker after loading as
        ``fn(entry_module, host_call, *args)``; the first worker's JSON result is
        ``pool.init_result``. Loading a key again with the same arguments returns the same
        pool; with different ones it replaces it (the old handle is then closed).
        ``fresh_worker``: every call gets a new worker, killed after that one call (for the
        most hostile code: nothing of one call survives into the next; costs a fork and a
        load per call). ``on_load`` is told what each worker's load cost (a
        :class:`LoadReport`, the first load included), in the thread that started it; it is
        not part of what decides whether a pool is reused (a reused pool reports to the
        newest callback).
        """
        if type(key) is not str or not key:
            raise SandboxError("key must be a non-empty str")
        if type(files) is not dict or not all(
            type(k) is str and type(v) is str for k, v in files.items()
        ):
            raise SandboxError(f"files for {key} must map file names to source text")
        if type(entry) is not str or not entry:
            raise SandboxError(f"entry for {key} must be a non-empty str")
        if not isinstance(limits, SandboxLimits):
            raise SandboxError(f"limits for {key} must be a SandboxLimits")
        if type(pool_size) is not int or pool_size < 1:
            raise SandboxError(f"pool_size for {key} must be a positive int")
        if init is not None and (
            not isinstance(init, tuple)
            or len(init) != 2
            or type(init[0]) is not str
            or init[0].count(":") != 1
            or not isinstance(init[1], list)
        ):
            raise SandboxError(f"init for {key} must be ('module:function', [args])")
        # A copy of files: a caller changing its dict later changes neither the pool nor the
        # comparison that decides whether a later load may reuse it.
        if type(fresh_worker) is not bool:
            raise SandboxError(f"fresh_worker for {key} must be a bool")
        spec = LoadSpec(dict(files), entry, limits, pool_size, init, fresh_worker)
        with self._lock:
            existing = self._pools.get(key)
        if existing is not None and existing._spec == spec and existing._closed_reason is None:
            existing.on_load = on_load
            return existing
        self.start()
        pool = WorkerPool(self, key, spec, on_load)
        # Watched from its first load on: the load runs the plugin's code (init) too.
        self._start_watch()
        with self._lock:
            self._watched.add(pool)
        try:
            pool._start_first()
        except BaseException:
            with self._lock:
                self._watched.discard(pool)
            raise
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                old, self._pools[key] = self._pools.get(key), pool
        if closed:
            pool._close(f"the sandbox supervisor was closed, so the sandbox for {key} is too")
            raise SandboxUnavailableError("the sandbox supervisor is closed")
        if old is not None and old is not pool:
            old._close(
                f"the sandbox for {key} was replaced by a newer load; use the handle that "
                "load returned"
            )
        return pool

    # -- internals used by pools ----------------------------------------------------------

    def _start_watch(self) -> None:
        with self._lock:
            if self._closed or self._watch_thread is not None:
                return
            self._watch_thread = threading.Thread(
                target=self._watch_loop, name="sandbox-cpu-watch", daemon=True
            )
            self._watch_thread.start()

    def _watch_loop(self) -> None:
        """Every WATCH_INTERVAL_S, each pool checks its workers' CPU time (``_pool``)."""
        while not self._watch_stop.wait(WATCH_INTERVAL_S):
            with self._lock:
                pools = list(self._watched)
            for pool in pools:
                try:
                    pool._watch()
                except Exception:
                    # Never let one bad look end the watch (the lifetime RLIMIT_CPU is the
                    # backstop, but the watch is what bounds a breakout to milliseconds).
                    log.exception("the sandbox CPU watch failed for %s", pool.key)

    def _new_crash_tracker(self) -> _CrashTracker:
        """A pool's tracker: limit kills count, after the allowance."""
        return _CrashTracker(
            *self._crash_args, allowance=self._limit_kill_allowance, clock=self._clock
        )

    def _encode_host_error(self, exc: Exception) -> dict[str, Any]:
        try:
            data = self._host_error_encoder(exc)
            if type(data) is dict:
                return data
        except Exception:
            pass
        return _default_host_error(exc)

    def _ensure_server(self) -> tuple[ForkServerClient, int]:
        from ._availability import is_available

        with self._lock:
            if self._closed:
                raise SandboxUnavailableError("the sandbox supervisor is closed")
            if self._client is not None and self._client.is_alive():
                return self._client, self._epoch
            if self._client is not None:
                # The fork server died under us (its workers died with it).
                log.warning(
                    "the sandbox fork server (pid %d) died; starting a new one (the calls "
                    "in flight on its workers failed)",
                    self._client.pid,
                )
                self._client.close()
                self._client = None
                self._server_crashes.record("exit")
            blocked = self._server_crashes.blocked("the fork server")
            if blocked is not None:
                raise SandboxUnavailableError(blocked)
            availability = is_available()
            if not availability.ok:
                raise SandboxNotAvailableError(availability.reason)
            self._client = ForkServerClient(self._config, start_timeout=self._start_timeout_s)
            self._epoch += 1
            return self._client, self._epoch

    def _server_alive(self) -> bool:
        """True while the current fork server runs (no lock: read by every checkout that
        finds idle workers; a stale answer only costs the one call that races a death)."""
        client = self._client
        return client is not None and client.is_alive()

    def _fork(self, memory_mb: int, cpu_s: int) -> tuple[ForkedProcess, int]:
        """A new worker and the epoch of the fork server that made it."""
        client, epoch = self._ensure_server()
        try:
            return client.fork(memory_mb, cpu_s), epoch
        except WorkerCrashed:
            if client.is_alive():
                raise
        # The fork server died while we asked: one fresh attempt with a new one.
        client, epoch = self._ensure_server()
        return client.fork(memory_mb, cpu_s), epoch

    def _forget(self, pool: WorkerPool) -> None:
        with self._lock:
            self._watched.discard(pool)
            if self._pools.get(pool.key) is pool:
                del self._pools[pool.key]
