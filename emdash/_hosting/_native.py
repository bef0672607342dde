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
- **Timeouts.** A hook runs on a shared thread pool and the caller waits at most its
  ``timeout_ms``. Python cannot stop a running thread, so a timed-out handler *keeps
  running* in the background until it returns by itself. What we guarantee instead: past
  its deadline every ctx call raises, and when it finishes its store scope is rolled back,
  so it has no later side effects through ctx. (It can still hold the store's write lock
  until it ends, if it had written before the deadline.) The invocation itself judges
  the deadline (it commits only if it returned in time), so the outcome never depends on
  when the waiting thread is scheduled. Sandboxed plugins do not have this caveat: their
  worker is killed. Routes have no timeout and run on the calling thread.
- **Nested invocations** (a handler's ctx call that fires another hook, e.g.
  ``ctx.content.create`` running ``content:beforeSave``) run on the *calling* thread,
  inline, so they share that thread's store transaction instead of waiting for a lock it
  holds. Their timeout is checked when they return: a nested handler that overran is
  reported as timed out and its writes are rolled back, but it is not interrupted.
- **The boundary.** When an invocation ends (returns, raises or times out), its ctx is
  closed: a plugin that kept the ctx (a thread, a generator's ``finally``) cannot use it
  later.
- ``async def`` handlers are run to completion on the pool thread with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
from ._loader import PluginCode, load_native
from ._outcome import InvokeResult

if TYPE_CHECKING:
    from .._bridge._dispatch import Bridge
    from .._store import Store

__all__ = ["NativePluginHost", "in_native_invocation"]

log = logging.getLogger("emdash.native")

# True while plugin code of a native invocation runs in this context (copied into pool
# threads with the rest of the context). Nested invocations see it and run inline.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "emdash_native_active", default=False
)


def in_native_invocation() -> bool:
    """True inside a native handler (or anything it calls, on its thread)."""
    return _ACTIVE.get()


class _Invocation:
    """Open/closed state of one invocation, shared by its ctx and the waiting caller."""

    __slots__ = ("audited", "closed", "finished", "lock", "timed_out")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Whether the commit wrote the invocation's audit row (with its writes).
        self.audited = False
        self.closed = False
        self.finished = False
        self.timed_out = False


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
        executor: concurrent.futures.ThreadPoolExecutor,
        trusted: bool = True,
        inline: Callable[[], bool] | None = None,
    ) -> None:
        """``trusted=False`` marks an untrusted plugin run natively by the ``sandbox=False``
        debugging bypass (it still gets no ``page:fragments``). ``inline`` tells whether the
        current thread is already inside an invocation (of any mode), in which case
        handlers run on this thread."""
        self.plugin_id = descriptor.id
        self.descriptor = descriptor
        self.trusted = trusted
        self._bridge = bridge
        self._store = store
        self._info = info
        self._executor = executor
        self._inline = inline
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
        nested = _ACTIVE.get() or (self._inline is not None and self._inline())
        # The deadline is judged by the invocation itself (see _body), from the moment it
        # was requested, so the outcome never depends on when the waiting thread wakes up.
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        body = self._body(handler, arg, operation, state, deadline)
        if timeout_ms is None or nested:
            # Inline: nothing can interrupt the handler; its deadline is checked on return.
            try:
                value, cpu = body()
            finally:
                state.closed = True
        else:
            future = self._executor.submit(contextvars.copy_context().run, body)
            try:
                value, cpu = future.result(timeout=timeout_ms / 1000)
            except concurrent.futures.TimeoutError:
                with state.lock:
                    finished = state.finished
                    if not finished:
                        state.closed = state.timed_out = True
                if finished:
                    # It returned in time and is committing: wait for that to complete.
                    value, cpu = future.result()
            finally:
                state.closed = True
        if state.timed_out:
            assert timeout_ms is not None
            raise self._timeout(operation, timeout_ms)
        return InvokeResult(value, cpu, audited=state.audited)

    def _body(
        self,
        handler: Callable[..., Any],
        arg: Any,
        operation: str,
        state: _Invocation,
        deadline: float | None,
    ) -> Callable[[], tuple[Any, float]]:
        """The invocation itself, run on a pool thread or inline.

        It commits only if the handler returned before ``deadline`` (``time.monotonic``)
        and the caller has not given up; otherwise it rolls back and marks ``state`` timed
        out. ctx calls past the deadline are refused.
        """
        pid = self.plugin_id
        bridge = self._bridge
        # Native plugins have no subrequest limit, but the per-invocation log-line cap holds.
        budget = CallBudget(None, deadline=deadline)  # bounds host calls too (http.fetch)

        # The first storage failure met by one of this invocation's ctx calls: when the
        # handler then fails, that failure is reported, not the plugin (as in the sandbox).
        storage_failure: list[StorageError] = []

        def expired() -> bool:
            return deadline is not None and time.monotonic() > deadline

        def call(method: str, params: dict[str, Any]) -> Any:
            if state.closed or expired():
                raise BridgeError(
                    f"Plugin {pid} made a ctx call ({method}) after its {operation} "
                    "invocation ended"
                    + (" (it timed out)" if state.timed_out or expired() else "")
                    + "; a handler may only use ctx while it runs",
                    plugin_id=pid,
                )
            try:
                return bridge.dispatch(pid, method, params, budget=budget)
            except StorageError as exc:
                if not storage_failure:
                    storage_failure.append(exc)
                raise

        def abandon() -> None:
            state.closed = state.timed_out = True
            log.warning(
                "Plugin %s finished %s after its timeout; its writes were rolled back",
                pid,
                operation,
            )

        def body() -> tuple[Any, float]:
            token = _ACTIVE.set(True)
            cpu_start = time.thread_time()
            try:
                # Native handlers are never re-run on a conflict: trusted code may act
                # outside ctx (its own network calls, files) where the host cannot see it.
                with self._store.invocation(pid, operation) as scope:
                    try:
                        value = _call_plugin(
                            handler, arg, make_context(call, self._info), pid, operation
                        )
                    except PluginError:
                        if not storage_failure:
                            raise
                        failure = storage_failure[0]
                        failure.plugin_id = pid
                        raise failure from None
                    with state.lock:
                        if state.closed or expired():
                            abandon()
                            raise _Abandoned()  # roll back instead of committing
                        state.finished = True
                    if scope is not None:  # for the audit row written with the commit
                        scope.cpu_ms = (time.thread_time() - cpu_start) * 1000
                state.audited = scope is not None and scope.audited
            except _Abandoned:
                value = None
            except BaseException:
                with state.lock:
                    late = state.closed or expired()
                    if late:
                        abandon()  # already rolled back by the scope
                if not late:
                    raise
                value = None
            finally:
                _ACTIVE.reset(token)
            return value, (time.thread_time() - cpu_start) * 1000

        return body

    def _timeout(self, operation: str, timeout_ms: int) -> HookTimeoutError:
        return HookTimeoutError(
            f"Hook timeout after {timeout_ms}ms (plugin {self.plugin_id}, {operation}); the "
            "handler cannot be stopped and finishes in the background, but its ctx calls are "
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
