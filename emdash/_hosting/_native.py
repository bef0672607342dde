"""Hosting a plugin in-process: the native (trusted) implementation of the plugin-host interface.

A :class:`NativePluginHost` loads the plugin's code with :mod:`emdash._hosting._loader`, reads its
module-level ``plugin`` and runs handlers with a fresh ``ctx`` per invocation, built by
:func:`emdash._shared._context.make_context` around ``bridge.dispatch`` for this plugin. The bridge
therefore checks capabilities and scopes data for native plugins exactly as for sandboxed
ones; a trusted plugin *could* bypass it (it is ordinary Python in our process), which is
what "trusted" means.

Invocations:

- **Atomic.** Each runs inside ``store.invocation()``: a handler that raises (or times out)
  leaves no partial write.
- **Inline.** Every invocation runs on the thread that asked for it: no thread hop, so no
  cross-thread wake-up per call. Nested invocations (a handler's ctx call that fires
  another hook, e.g. ``ctx.content.create`` running ``content:beforeSave``) share that
  thread's store transaction instead of waiting for a lock it holds.
- **Timeouts** (hooks; routes have none). The invocation judges its own deadline: it
  commits only if the handler returned in time, so the outcome never depends on when
  another thread is scheduled. Past the deadline every ctx call raises. The process's one
  watchdog thread (:mod:`._watchdog`) acts only when a deadline passes while the handler
  still runs: it raises :class:`~._watchdog.HandlerDeadline` in the handler's thread
  between two bytecodes of *plugin* code (never inside a ctx call or other host code),
  again every 0.1 s while it keeps going. That stops a runaway Python loop; it does not
  stop a long C call (``time.sleep``, a blocking read), which sees it when it returns: the
  caller waits that long, then gets ``HookTimeoutError`` and the writes are rolled back.
  Sandboxed plugins do not have this caveat: their worker is killed.
- **The boundary.** When an invocation ends (returns, raises or times out), its ctx is
  closed: a plugin that kept the ctx (a thread, a generator's ``finally``) cannot use it
  later.
- ``async def`` handlers are run to completion on the calling thread with ``asyncio.run``
  (on a helper thread if an event loop already runs there).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from .._bridge._budget import CallBudget
from .._model._descriptor import PluginDescriptor
from .._shared._context import make_context
from .._shared._errors import (
    BridgeError,
    EmDashError,
    HookTimeoutError,
    ManifestError,
    PluginError,
    PluginRouteError,
    StorageError,
    clean_text,
)
from . import _watchdog
from ._loader import PluginCode, load_native
from ._outcome import InvokeResult

if TYPE_CHECKING:
    from .._bridge._dispatch import Bridge
    from .._store import Store

__all__ = ["NativePluginHost", "in_native_invocation"]

log = logging.getLogger("emdash.native")

_INF = float("inf")


def in_native_invocation() -> bool:
    """True inside a native handler (or anything it calls, on its thread)."""
    return _ACTIVE.get() is not None


class _Invocation:
    """State of one invocation, shared by its ctx, its caller and the watchdog.

    ``lock`` orders the watchdog's kick against the thread entering and leaving plugin code
    (``in_plugin``): an interrupt is only ever raised while plugin code runs.
    """

    __slots__ = (
        "audited",
        "closed",
        "deadline",
        "finished",
        "in_plugin",
        "kick_at",
        "kicks",
        "lock",
        "store_overran",
        "thread_id",
        "timed_out",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Whether the commit wrote the invocation's audit row (with its writes).
        self.audited = False
        self.closed = False
        self.finished = False
        self.timed_out = False
        self.deadline = _INF  # time.monotonic(); inf: no timeout
        self.kick_at = _INF
        self.thread_id = 0  # the thread running it (set when it has a timeout)
        self.in_plugin = False
        # The store-backed ctx call that failed with a StorageError after the deadline
        # passed while it waited (None: none did): the database held the handler.
        self.store_overran: str | None = None
        self.kicks = 0


def _leave_plugin(state: _Invocation) -> bool:
    """Mark ``state``'s thread as out of plugin code; True if it was in it."""
    with state.lock:
        was, state.in_plugin = state.in_plugin, False
        if state.kicks:
            _watchdog.clear_pending()
    return was


# The invocation whose plugin code runs in this context. A nested invocation sees it: the
# enclosing handler must not be interrupted while the nested one runs host code.
_ACTIVE: contextvars.ContextVar[_Invocation | None] = contextvars.ContextVar(
    "emdash_native_active", default=None
)


#: ctx calls that never wait on the site's database (their own waits are the plugin's).
_NOT_STORE = ("http/", "email/", "log")


class _Abandoned(Exception):
    """Raised inside a timed-out invocation's store scope so that it rolls back."""


class NativePluginHost:
    """Runs one plugin's handlers in this process (see the module docstring)."""

    def __init__(
        self,
        descriptor: PluginDescriptor,
        code: PluginCode,
        *,
        bridge: Bridge,
        store: Store,
        info: dict[str, Any],
        trusted: bool = True,
    ) -> None:
        """``trusted=False`` marks an untrusted plugin run natively by the ``sandbox=False``
        debugging bypass (it still gets no ``page:fragments``)."""
        self.plugin_id = descriptor.id
        self.descriptor = descriptor
        self.trusted = trusted
        self._bridge = bridge
        self._store = store
        self._info = info
        self._loaded = load_native(code, descriptor.id)
        self.definition = self._loaded.definition
        self.definition_meta: dict[str, Any] = self.definition.manifest()
        self._closed = False

    # -- the plugin-host interface -----------------------------------------------------

    def invoke_hook(self, name: str, event: Any, *, timeout_ms: int | None = None) -> InvokeResult:
        config = self.definition.hooks.get(name)
        if config is None:
            return InvokeResult(None)
        return self._run(config.handler, _detached(event), f"hook:{name}", timeout_ms)

    def invoke_route(
        self, name: str, route_ctx: dict[str, Any], *, timeout_ms: int | None = None
    ) -> InvokeResult:
        config = self.definition.routes.get(name)
        if config is None:
            raise PluginRouteError(
                "NOT_FOUND",
                f'Plugin route not found: "{self.plugin_id}/{clean_text(name, limit=200)}": '
                f"plugin {self.plugin_id} has no route of that name",
                404,
            )
        return self._run(config.handler, route_ctx, f"route:{name}", timeout_ms)

    def route_input_validator(self, name: str) -> Callable[[Any], Any] | None:
        """A validator for a route whose ``input`` is a pydantic model or a callable.

        JSON Schema inputs (plain dicts) are validated by the runtime from
        ``definition_meta`` in both modes, so they return ``None`` here. A pydantic model
        yields the validated model instance; a callable's return value is the new input.
        Either raises ``ValueError``/``TypeError`` (pydantic's ``ValidationError`` is a
        ``ValueError``) for bad input.
        """
        config = self.definition.routes.get(name)
        if config is None or config.input is None or type(config.input) is dict:
            return None
        spec = config.input
        validate = getattr(spec, "model_validate", None)
        if isinstance(spec, type) and callable(validate):
            return validate  # type: ignore[no-any-return]
        if callable(spec):
            return spec  # type: ignore[no-any-return]
        raise ManifestError(
            f"Plugin {self.plugin_id} route {name!r} has an input of type "
            f"{type(spec).__name__}; use a JSON Schema dict, a pydantic model or a callable",
            plugin_id=self.plugin_id,
        )

    def close(self) -> None:
        """Forget the plugin's modules (those loaded from files); further calls fail."""
        self._closed = True
        self._loaded.unload()

    def __repr__(self) -> str:
        mode = "trusted" if self.trusted else "untrusted, unsandboxed"
        return f"<NativePluginHost {self.plugin_id} {self.descriptor.version} ({mode})>"

    # -- running one invocation ----------------------------------------------------------

    def _run(
        self, handler: Callable[..., Any], arg: Any, operation: str, timeout_ms: int | None
    ) -> InvokeResult:
        if self._closed:
            raise PluginError(
                f"Plugin {self.plugin_id} was removed; it cannot run {operation}",
                plugin_id=self.plugin_id,
            )
        state = _Invocation()
        # Inline, on this thread: no hop, so no cross-thread wake-up per call. The deadline
        # is judged by the invocation itself (see _body), from the moment it was requested;
        # the watchdog only acts once it has passed (see _watchdog).
        parent = _ACTIVE.get()
        if timeout_ms is not None:
            state.deadline = time.monotonic() + timeout_ms / 1000
            state.thread_id = threading.get_ident()
        body = self._body(handler, arg, operation, state)
        # A nested invocation on this thread runs host code (the pipeline, the store) as far
        # as the enclosing handler is concerned: the enclosing one must not be interrupted
        # inside it. (A nested call through ctx already cleared the flag; a trusted handler
        # calling the runtime directly did not.)
        resume_parent = parent is not None and parent.thread_id == threading.get_ident()
        if resume_parent:
            assert parent is not None
            resume_parent = _leave_plugin(parent)
        if timeout_ms is not None:
            _watchdog.watchdog().watch(state)
        try:
            value, cpu = body()
        finally:
            state.closed = True
            if timeout_ms is not None:
                _watchdog.watchdog().unwatch(state)
            if resume_parent:
                assert parent is not None
                with parent.lock:
                    parent.in_plugin = True
        if state.timed_out:
            assert timeout_ms is not None
            if state.store_overran is not None:
                # Held past its timeout by the database (locked by another process or
                # connection, a stalled disk), not by its own code: storage's failure.
                raise self._storage_timeout(operation, timeout_ms, state.store_overran)
            raise self._timeout(operation, timeout_ms)
        return InvokeResult(value, cpu, audited=state.audited)

    def _body(
        self,
        handler: Callable[..., Any],
        arg: Any,
        operation: str,
        state: _Invocation,
    ) -> Callable[[], tuple[Any, float]]:
        """The invocation itself, run inline on the calling thread.

        It commits only if the handler returned before ``state.deadline``
        (``time.monotonic``) and the watchdog has not closed it; otherwise it rolls back
        and marks ``state`` timed out. ctx calls past the deadline are refused.
        """
        pid = self.plugin_id
        bridge = self._bridge
        deadline = state.deadline
        # Native plugins have no subrequest limit, but the per-invocation log-line cap holds.
        # It bounds host calls too (http.fetch).
        budget = CallBudget(None, deadline=None if deadline == _INF else deadline)

        # The first storage failure met by one of this invocation's ctx calls: when the
        # handler then fails, that failure is reported, not the plugin (as in the sandbox).
        storage_failure: list[StorageError] = []

        def call(method: str, params: dict[str, Any]) -> Any:
            # Host code from here on: the watchdog must not raise into the bridge or the
            # store, so the thread leaves "plugin code" before dispatching (under the lock
            # the watchdog checks it under) and re-enters it after.
            here = threading.get_ident() == state.thread_id
            with state.lock:
                if state.closed or time.monotonic() > deadline:
                    raise BridgeError(
                        f"Plugin {pid} made a ctx call ({method}) after its {operation} "
                        "invocation ended"
                        + (
                            " (it timed out)"
                            if state.timed_out or time.monotonic() > deadline
                            else ""
                        )
                        + "; a handler may only use ctx while it runs",
                        plugin_id=pid,
                    )
                if here:
                    state.in_plugin = False
            store_call = not method.startswith(_NOT_STORE)
            try:
                return bridge.dispatch(pid, method, params, budget=budget)
            except StorageError as exc:
                if not storage_failure:
                    storage_failure.append(exc)
                if store_call and time.monotonic() > deadline and state.store_overran is None:
                    # The database failed this call (locked past the busy timeout, a
                    # stalled disk) and the deadline passed while it waited: storage held
                    # the handler, not its own code. (A slow call that succeeds does not
                    # count: which of two limits a busy machine reaches first must not
                    # change the verdict.)
                    state.store_overran = method
                raise
            finally:
                # Back in plugin code. If the deadline passed during the call, the call's
                # own outcome stands (its deadline bounded it: http.fetch fails with
                # HttpAccessError); the watchdog's next kick, or the next ctx call, stops
                # the handler.
                if here:
                    with state.lock:
                        state.in_plugin = True

        def abandon() -> None:
            state.closed = state.timed_out = True
            log.warning(
                "Plugin %s finished %s after its timeout; its writes were rolled back",
                pid,
                operation,
            )

        def body() -> tuple[Any, float]:
            token = _ACTIVE.set(state)
            cpu_start = time.thread_time()
            try:
                # Native handlers are never re-run on a conflict: trusted code may act
                # outside ctx (its own network calls, files) where the host cannot see it.
                with self._store.invocation(pid, operation) as scope:
                    try:
                        with state.lock:
                            state.in_plugin = True
                        try:
                            value = _call_plugin(
                                handler, arg, make_context(call, self._info), pid, operation
                            )
                        finally:
                            # Inline, not a function call: a pending interrupt can only
                            # surface at a call or a loop, so once the flag is down (under
                            # the lock the watchdog kicks under) none can reach host code.
                            with state.lock:
                                state.in_plugin = False
                                if state.kicks:
                                    _watchdog.clear_pending()
                    except PluginError:
                        if not storage_failure:
                            raise
                        failure = storage_failure[0]
                        failure.plugin_id = pid
                        raise failure from None
                    with state.lock:
                        if state.closed or time.monotonic() > deadline:
                            abandon()
                            raise _Abandoned()  # roll back instead of committing
                        state.finished = True
                    if scope is not None:  # for the audit row written with the commit
                        scope.cpu_ms = (time.thread_time() - cpu_start) * 1000
                state.audited = scope is not None and scope.audited
            except _Abandoned:
                value = None
            except BaseException as exc:  # HandlerDeadline included: the scope rolled back
                with state.lock:
                    late = state.closed or time.monotonic() > deadline
                    if late and state.finished and isinstance(exc, StorageError):
                        # The handler returned in time and its commit waited on the
                        # database past the deadline (a write logged without speculation
                        # meets the lock only there): storage's failure, as when a ctx
                        # call waits on it, not a timeout of the plugin.
                        late = False
                    if late:
                        abandon()
                if not late:
                    raise
                value = None
            finally:
                _ACTIVE.reset(token)
            return value, (time.thread_time() - cpu_start) * 1000

        return body

    def _storage_timeout(self, operation: str, timeout_ms: int, method: str) -> StorageError:
        return StorageError(
            f"Storage failure: plugin {self.plugin_id}'s {operation} was still waiting for "
            f"the site database ({method}) when its {timeout_ms}ms timeout passed, so the "
            "database, not the plugin, held it: another process or connection kept the "
            "write lock (or the disk stalled). Its writes were rolled back. Retry, and if it "
            "persists look for a process keeping a long transaction open on the database.",
            plugin_id=self.plugin_id,
        )

    def _timeout(self, operation: str, timeout_ms: int) -> HookTimeoutError:
        return HookTimeoutError(
            f"Hook timeout after {timeout_ms}ms (plugin {self.plugin_id}, {operation}); the "
            "handler was interrupted (or returned late), its ctx calls past the deadline were "
            "refused and its writes rolled back. Raise the hook's timeout_ms if it needs longer.",
            plugin_id=self.plugin_id,
        )


def _detached(event: Any) -> Any:
    """A deep copy of a hook event, as a sandboxed plugin would receive it.

    A sandboxed handler gets the event through JSON, so mutating it in place changes
    nothing on the host: only what it returns counts. Native handlers get a copy too, so
    the same plugin behaves the same in both modes (and one plugin cannot tamper with the
    objects later handlers or the caller still hold).
    """
    try:
        return orjson.loads(orjson.dumps(event))
    except TypeError:  # a host passed non-JSON values (datetime...): keep them, still copied
        return copy.deepcopy(event)


def _call_plugin(handler: Callable[..., Any], arg: Any, ctx: Any, pid: str, operation: str) -> Any:
    """Call the handler; turn the plugin's own exceptions into PluginError."""
    try:
        value = handler(arg, ctx)
        if inspect.isawaitable(value):
            value = _run_awaitable(value)
        return value
    except StorageError as exc:
        # The site's storage failed under one of the plugin's calls: not the plugin's doing.
        exc.plugin_id = exc.plugin_id or pid
        raise
    except EmDashError:
        raise  # bridge errors and PluginRouteError keep their class, as in the sandbox
    except (Exception, SystemExit) as exc:  # SystemExit must not end a host thread
        kind = type(exc).__name__
        raise PluginError(
            f"Plugin {pid} raised {kind} during {operation}: {clean_text(str(exc))}",
            plugin_id=pid,
            hook=operation.removeprefix("hook:") if operation.startswith("hook:") else None,
            route=operation.removeprefix("route:") if operation.startswith("route:") else None,
            error_type=kind,
            traceback_text="".join(traceback.format_exception(exc)),
        ) from exc


def _run_awaitable(awaitable: Awaitable[Any]) -> Any:
    async def wrap() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrap())
    # An event loop already runs on this thread (an async handler's ctx call fired a nested
    # hook): asyncio cannot nest loops, so finish the coroutine on a helper thread.
    return _run_on_helper_thread(wrap())


def _run_on_helper_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    result: list[Any] = []
    error: list[BaseException] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(context.run(asyncio.run, coro))
        except BaseException as exc:  # handed back to the waiting thread below
            error.append(exc)

    thread = threading.Thread(target=target, name="emdash-native-async", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
