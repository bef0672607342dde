"""One watchdog thread for every native invocation with a timeout.

A native (trusted) handler runs inline on the thread that called ``run_hook``: no thread
hop, so no cross-thread wake-up per call. Its timeout is enforced in two ways:

- **ctx calls** check the deadline themselves (see ``_native``): past it they raise, and the
  invocation rolls back when the handler returns. This needs no other thread.
- **This watchdog** acts only when a deadline passes while the handler still runs: it closes
  the invocation (so its ctx refuses from then on) and, if the thread is executing the
  plugin's own Python code (not a ctx call, not host code), raises :class:`HandlerDeadline`
  in that thread with ``PyThreadState_SetAsyncExc``, again every :data:`RETRY_S` while it
  keeps running. CPython delivers such an exception between two bytecodes, so it stops a
  runaway Python loop; it cannot interrupt one long C call (``time.sleep``, a blocking
  read, a huge ``re`` match), which sees it only when the call returns.

Why one thread and not a timer per call: a timer per call is a thread start (or a wake-up of
a timer thread) per call, which is what the inline design removes. Registering costs a lock
and a dict insert; the watchdog is woken only when a new deadline is earlier than the time
it already plans to wake at, which under a steady stream of calls with equal timeouts is
never (each new deadline is later than the ones before). When nothing is registered it
lingers once, then sleeps until the next registration.

Why an asynchronous exception and not ``sys.settrace``/``sys.setprofile``: tracing costs on
every line or call of every handler, all the time; the exception costs nothing until a
deadline passes. Its hazard, an exception raised in the middle of host code (the store, the
bridge), is excluded by only raising it while the invocation's ``in_plugin`` flag says the
thread runs plugin code, under the invocation's lock, and by clearing a pending one before
the thread goes back into host code (see ``_native``).

The thread is a daemon: a handler that never returns keeps its caller's thread, never the
process.
"""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Protocol

__all__ = ["RETRY_S", "HandlerDeadline", "Watchdog", "clear_pending", "watchdog"]

# How often a handler that keeps running past its deadline (it caught the exception, or
# was in a C call) is interrupted again.
RETRY_S = 0.1
# How long the watchdog stays scheduled after the last registration before it sleeps
# until the next one (so a steady stream of calls never has to wake it).
LINGER_S = 1.0

# When the handler's thread is running host code of its own accord (a weakref callback or
# finalizer that the garbage collector started in the middle of plugin code, or a library
# routine of the standard library or of emdash), the kick waits this long and looks again.
SOON_S = 0.005

_INF = float("inf")

# Code whose frames an interrupt should not land in: the standard library and emdash's own
# packages. (A trusted plugin's third-party libraries are the plugin's code.)
_HOST_CODE = tuple(
    {
        str(Path(p).resolve())
        for p in (
            sysconfig.get_paths()["stdlib"],
            sysconfig.get_paths()["platstdlib"],
            Path(__file__).resolve().parents[1],  # emdash/
            Path(__file__).resolve().parents[2] / "sandbox",
        )
    }
)

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


class HandlerDeadline(BaseException):  # noqa: N818 - it is a signal, like KeyboardInterrupt
    """Raised inside a native handler that runs past its timeout.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that a handler's ``except
    Exception`` does not swallow it. The invocation turns it into ``HookTimeoutError``.
    """


class Watched(Protocol):
    """What the watchdog needs of an invocation (``_native._Invocation``)."""

    lock: threading.Lock
    deadline: float
    kick_at: float
    thread_id: int
    in_plugin: bool
    kicks: int
    closed: bool
    timed_out: bool
    finished: bool


def _raise_in(thread_id: int) -> None:
    # The class, not an instance: CPython instantiates it where it is raised.
    _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(HandlerDeadline))


def _in_host_code(thread_id: int) -> bool:
    """Whether the thread's innermost Python frame is host code (see ``_HOST_CODE``).

    The watchdog holds the GIL while it looks and raises, so the thread cannot move in
    between; what remains is the thread's very next instructions: if one of them starts a
    finalizer, the exception can still land there (it is then reported as unraisable and
    ignored, and the next kick follows RETRY_S later)."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return False
    return frame.f_code.co_filename.startswith(_HOST_CODE)


def clear_pending() -> None:
    """Drop a deadline exception raised in this thread and not yet delivered.

    Called by the invocation when it leaves plugin code after a kick, so that the exception
    cannot surface later inside host code (``None`` is passed as NULL: "clear").
    """
    _set_async_exc(ctypes.c_ulong(threading.get_ident()), None)


class Watchdog:
    """The process's one watchdog thread (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: dict[Watched, None] = {}
        self._wake_at = _INF  # when the thread will look next (inf: asleep until notified)
        self._registered = 0  # registrations since the thread last looked
        self._thread: threading.Thread | None = None

    def watch(self, state: Watched) -> None:
        """Start watching ``state`` (its ``deadline``, ``thread_id`` set)."""
        state.kick_at = state.deadline
        with self._cond:
            self._active[state] = None
            self._registered += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="emdash-native-watchdog", daemon=True
                )
                self._thread.start()
            elif state.deadline < self._wake_at:
                self._cond.notify()

    def unwatch(self, state: Watched) -> None:
        """Stop watching ``state``. Lock-free: a dict pop is atomic, and a state the loop
        already copied is skipped under its own lock once it is finished or closed."""
        self._active.pop(state, None)

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                nearest = _INF
                for state in list(self._active):
                    if state.kick_at <= now:
                        self._kick(state, now)
                    nearest = min(nearest, state.kick_at)
                if nearest == _INF and self._registered:
                    nearest = now + LINGER_S  # calls keep coming: stay scheduled
                self._registered = 0
                self._wake_at = nearest
                self._cond.wait(None if nearest == _INF else max(0.0, nearest - now))

    def _kick(self, state: Watched, now: float) -> None:
        state.kick_at = now + RETRY_S
        with state.lock:
            if state.finished:
                return
            # From now on every ctx call raises and the invocation rolls back on return.
            state.closed = state.timed_out = True
            if state.in_plugin:
                if _in_host_code(state.thread_id):
                    # Not now: the exception would be raised inside that code (and, in a
                    # finalizer, swallowed with its work cut short). Look again shortly.
                    state.kick_at = now + SOON_S
                    return
                state.kicks += 1
                _raise_in(state.thread_id)


_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """The process's watchdog (its thread starts with the first registration)."""
    return _WATCHDOG


def _after_fork_in_child() -> None:
    # A forked child (the sandbox's fork server) does not inherit the thread: a fresh
    # watchdog starts its own if the child ever registers an invocation.
    global _WATCHDOG
    _WATCHDOG = Watchdog()


os.register_at_fork(after_in_child=_after_fork_in_child)
