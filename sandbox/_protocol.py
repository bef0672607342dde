"""Framing and message shapes for the host <-> worker and host <-> fork server channels.

A frame is a 4-byte big-endian length followed by that many bytes of JSON (orjson on the
host, the standard library in workers, see ``_worker``). JSON, and never pickle: everything
a worker sends is hostile input, and unpickling it would run code chosen by the plugin
inside the host (escape class ``serial``). Every frame is capped in size
in both directions, so a worker cannot make the host allocate without bound; the payload of
a worker frame is also held to the exact-JSON rule (``_jsonrule``: 64 levels, int64), the
bound the worker side applies before sending; and the host
validates the exact shape of every worker frame (:func:`parse_worker_frame`) before acting
on it: a frame that is not exactly one of the shapes below is a protocol violation, and the
supervisor kills the worker.

Worker -> host (``id`` is the id of the operation the host started)::

    {"op": "ready", "rss_kb": int, "confinement": {str: str}}
    {"op": "loaded", "id": int, "init": JSON, "cpu_ms": num, "rss_kb": int}
    {"op": "host_call", "id": int, "method": str, "params": {..}}
    {"op": "result", "id": int, "value": JSON, "cpu_ms": num, "rss_kb": int}
    {"op": "error", "id": int, "kind": "remote", "data": {..}, "cpu_ms": num, "rss_kb": int}
    {"op": "error", "id": int, "kind": "violation" | "memory", "message": str, ...cpu/rss}
    {"op": "error", "id": int, "kind": "compile", "message": str, "errors": [str], ...cpu/rss}

Host -> worker::

    {"op": "load", "id": int, "files": {str: str}, "entry": str, "init": [fn, [args]] | null,
     "cpu_ms": int}
    {"op": "call", "id": int, "fn": "module:function", "args": [..], "cpu_ms": int}
    {"op": "raw_exec", "id": int, "source": str, "cpu_ms": int}      (test-only, opt-in)
    {"op": "host_result", "id": int, "value": JSON}
    {"op": "host_error", "id": int, "error": {..}}
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ._errors import WorkerCrashed
from ._jsonrule import MAX_DEPTH, NotExactJSON, check_decoded

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "ChannelClosed",
    "ErrorFrame",
    "FrameReader",
    "FrameTooLarge",
    "HostCallFrame",
    "LoadedFrame",
    "ProtocolError",
    "ReadyFrame",
    "ResultFrame",
    "SpinWait",
    "encode_frame",
    "parse_worker_frame",
    "send_frame",
]

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024

# Longest texts the host keeps from a worker's error report. The frame cap already bounds
# memory; these keep logs and exception messages readable when a plugin pads them.
MAX_MESSAGE_CHARS = 4000
MAX_TRACEBACK_CHARS = 16000
MAX_METHOD_CHARS = 200
MAX_COMPILE_ERRORS = 200


class ProtocolError(WorkerCrashed):
    """The other side sent something that is not a valid frame (the worker gets killed)."""


class ChannelClosed(ProtocolError):
    """The other side closed the channel (usually: the process died)."""


class FrameTooLarge(ProtocolError):
    """A frame is over the size cap; ``size`` is its length and ``limit`` the cap."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


def encode_frame(obj: Any, max_bytes: int) -> bytes:
    """Serialise ``obj`` as one frame; raises ``TypeError`` or :class:`FrameTooLarge`."""
    payload = orjson.dumps(obj)
    if len(payload) > max_bytes:
        raise FrameTooLarge(len(payload), max_bytes)
    return HEADER.pack(len(payload)) + payload


def send_frame(sock: socket.socket, obj: Any, max_bytes: int) -> None:
    """Encode and send one frame (blocking, or bounded by the socket's timeout).

    MSG_NOSIGNAL: a peer that died must raise EPIPE here, never SIGPIPE (a host application
    may have restored SIGPIPE's default action, which would kill it).
    """
    sock.sendall(encode_frame(obj, max_bytes), socket.MSG_NOSIGNAL)


class FrameReader:
    """Reads frames from a stream socket, with a size cap and an optional deadline.

    Bytes are buffered so a frame costs one ``recv`` in the common case. The declared length
    is checked *before* anything is allocated for the body, so a hostile 4 GiB header costs
    the host nothing. ``loads`` decodes a payload: orjson on the host, the standard
    library's json in workers (orjson crashes instead of raising MemoryError when an
    allocation fails, and a worker runs right under its memory limit).

    ``nonblocking=True`` (the supervisor's end of a worker channel) puts the socket in
    non-blocking mode for good and waits in ``poll`` against the deadline instead of setting
    a socket timeout before every read: a frame that is already there costs one ``recv``
    and no other system call. Such a reader may also busy-wait briefly before it sleeps
    (``read(spin=True)``, see :class:`SpinWait`).

    ``spin=True`` (a worker's end: blocking, and no ``poll`` under seccomp) busy-waits the
    same way before every read without a deadline, probing with ``MSG_DONTWAIT``.

    ``quick`` (non-blocking readers): an object whose ``recv()`` reads what is there
    without releasing the GIL (``_quickio.QuickIO``); used by reads that do not spin,
    i.e. while other host threads are calling workers too.
    """

    __slots__ = ("_buf", "_loads", "_max", "_poller", "_quick", "_sock", "_spin", "last_size")

    def __init__(
        self,
        sock: socket.socket,
        max_bytes: int,
        loads: Callable[[bytes], Any] = orjson.loads,
        *,
        nonblocking: bool = False,
        spin: bool = False,
        quick: Any = None,
    ) -> None:
        self._sock = sock
        self._quick = quick
        self._max = max_bytes
        self._loads = loads
        self._buf = bytearray()
        self.last_size = 0  # the last frame's length (the host sizes a call's CPU slack by it)
        self._poller: Any = None
        self._spin = SpinWait() if nonblocking or spin else None
        if nonblocking:
            sock.setblocking(False)
            # One poll object for the reader's life, not one per wait. (poll, not select:
            # descriptors above 1023 are common in busy hosts.)
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)

    def has_buffered_frame(self) -> bool:
        """True when a whole frame is already buffered (``select`` cannot see it)."""
        if len(self._buf) < HEADER.size:
            return False
        length: int = HEADER.unpack_from(self._buf)[0]
        return length > self._max or len(self._buf) >= HEADER.size + length

    def has_buffered_bytes(self) -> bool:
        """True when anything at all is buffered (a worker must send nothing unasked)."""
        return bool(self._buf)

    def readable(self) -> bool:
        """True when the socket has unread bytes or is at EOF, without reading them
        (non-blocking readers only)."""
        return bool(self._poller.poll(0))

    def read(
        self, deadline: float | None = None, *, spin: bool = False, quick: bool = False
    ) -> Any:
        """Return the next frame's decoded JSON.

        ``deadline`` is a ``time.monotonic()`` value; past it, ``TimeoutError`` is raised.
        Raises :class:`ChannelClosed` on EOF, :class:`FrameTooLarge` or
        :class:`ProtocolError` on a bad frame. ``spin`` (non-blocking readers only) allows
        a short busy-wait before sleeping; ``quick``: read what is there without releasing
        the GIL (other host threads are calling workers too).
        """
        fill = self._fill if self._poller is None else self._fill_nonblocking
        header_needed = HEADER.size
        while len(self._buf) < header_needed:
            fill(deadline, spin, quick)
        (length,) = HEADER.unpack_from(self._buf)
        if length > self._max:
            raise FrameTooLarge(length, self._max)
        while len(self._buf) < HEADER.size + length:
            fill(deadline, spin, quick)
        payload = bytes(self._buf[HEADER.size : HEADER.size + length])
        del self._buf[: HEADER.size + length]
        self.last_size = length
        try:
            return self._loads(payload)
        except ValueError as exc:  # orjson.JSONDecodeError, json's, UnicodeDecodeError
            raise ProtocolError(f"frame is not valid JSON ({exc})") from None

    def _fill(self, deadline: float | None, spin: bool, quick: bool) -> None:
        waiter = self._spin
        started = 0.0
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed while waiting for a frame")
            self._sock.settimeout(remaining)
        else:
            if self._sock.gettimeout() is not None:
                # A read with a deadline left a timeout on the socket: without this, a read
                # that has no deadline would raise TimeoutError once that old timeout ran
                # out, and the spin's MSG_DONTWAIT probe would sleep in poll() first (a
                # socket with a timeout always polls before it reads; workers have no poll).
                self._sock.settimeout(None)
            if waiter is not None:
                started = time.monotonic()
                budget = waiter.budget()
                if budget:
                    waiter.spin_blocking(self._sock, started, budget)
        try:
            chunk = self._sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if waiter is not None and deadline is None:
            waiter.record(time.monotonic() - started)
        if not chunk:
            raise ChannelClosed("the other side closed the channel")
        self._buf += chunk

    def _fill_nonblocking(self, deadline: float | None, spin: bool, quick: bool) -> None:
        # Straight to waiting: right after a send the answer is not there yet, and the wait
        # asks poll() first anyway (recv on an empty socket raises, which costs more).
        chunk = self._wait(deadline, spin, quick)
        if not chunk:
            raise ChannelClosed("the other side closed the channel")
        self._buf += chunk

    def _recv(self, quick: bool = False) -> bytes | None:
        """What one non-blocking recv got: bytes, ``b""`` at EOF, None if nothing (yet)."""
        if quick and self._quick is not None:
            return self._quick.recv()  # type: ignore[no-any-return]
        try:
            return self._sock.recv(65536)
        except BlockingIOError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return b""

    def _wait(self, deadline: float | None, spin: bool, quick: bool) -> bytes:
        """Nothing was there: spin a little if that has been paying off, then sleep in
        ``poll`` until bytes arrive or the deadline passes."""
        waiter = self._spin
        assert waiter is not None
        started = time.monotonic()
        budget = waiter.budget() if spin else 0.0
        if budget:
            chunk = waiter.spin(self, started, budget, deadline, quick)
            if chunk is not None:
                return chunk
        while True:
            if deadline is None:
                timeout_ms = -1
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("deadline passed while waiting for a frame")
                # Rounded up: poll(0) would busy-loop through the last fraction of a ms.
                timeout_ms = int(remaining * 1000) + 1
            if not self._poller.poll(timeout_ms):
                continue  # the timeout: check the deadline again
            chunk = self._recv(quick)
            if chunk is not None:
                if spin:  # a wait that could not spin says nothing about either policy
                    waiter.record(time.monotonic() - started)
                return chunk


# The spin's probe flags as a plain int: or-ing the two enum members builds a new
# socket.MsgFlag through enum's Python code, ~1 us per spin in a worker.
_PEEK_NOWAIT = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)

# On a VM a sleeping thread costs 20-30 us to wake up (an inter-processor interrupt and an
# exit from the CPU's idle state), on each side of every round trip; a side that is still
# awake when the other's frame arrives saves it. How long to stay awake is measured per
# channel (SpinWait): there is no constant budget, only this ceiling on what any one spin
# may burn, whatever the channel's history says (and so on what an honest worker uses while
# idle: the pool's IDLE_CPU_MS is many times this).
SPIN_CAP_S = 500e-6
# The step of the running medians (SpinWait): each wait moves them up or down by this
# fraction, so they follow a change of workload within a few dozen waits and one outlier,
# however long, moves them by one step.
MEDIAN_STEP = 1 / 16


# While spinning pays, one wait in this many sleeps, so that the sleeping mean stays current.
EXPLORE_EVERY = 16
# While it does not, spinning is measured again after this many waits at first, then after
# twice as many each time it still does not pay, up to MAX_EXPLORE_GAP: on loaded cores a
# spin can cost a whole scheduler slice (its sched_yield hands the CPU to another process),
# so measuring it often would cost more than it ever saves.
MAX_EXPLORE_GAP = 4096
# Spinning is measured in runs of this many spun waits, whose plain mean then replaces the
# spun mean. One spun wait per try, folded into a running mean, was too little: once the
# spun mean was high (a few slow waits while the host warmed up) a single try moved it by
# an eighth of the way, the tries got rarer each time, and the channel slept for thousands
# of waits where spinning paid (seen on the 2-core VM: a worker sleeping between calls in
# about half the benchmark runs, its spun mean 270 us against 190 us slept, while the
# occasional spun wait took 110-150 us).
EXPLORE_RUN = 8
# The weight of the newest wait in the running means (1/8).
MEAN_WEIGHT = 0.125
# A wait counts in the running means as at most this many typical waits (see record):
# enough to tell a policy that costs more on average (on loaded cores a spun wait that
# loses its CPU for a slice is 10-100x typical, and stays well above the slept mean), too
# little for one outlier to decide for thousands of waits.
OUTLIER_FACTOR = 4.0


class SpinWait:
    """Adaptive busy-wait for the next bytes on a socket, one per kind of wait.

    Spinning pays only when the answer comes soon *and* the other side runs on another CPU
    meanwhile; on loaded cores the spinner takes the CPU the other side needs (or yields it
    to another process for a whole slice), and waits get longer. So the decision and the
    budget are measured, not set, for each kind of wait (a worker keeps one for the answers
    to its host calls and one for its next request: they differ by an order of magnitude):

    - ``typical``: a running median of the answer times, from the start of a wait to the
      arrival of the bytes. A spin lasts at most twice that (the typical answer with room
      for jitter); where answers take longer than :data:`SPIN_CAP_S` / 2 nothing spins
      (there a wake-up is a small part of the wait).
    - ``spun`` / ``slept``: the mean wait under each policy: means, not medians, because
      what decides is the expected cost, tail included (each wait counted as at most
      :data:`OUTLIER_FACTOR` typical ones, so one preemption cannot decide for thousands
      of waits). It spins while spun waits are shorter on average (where it pays) and
      sleeps once they are not (loaded or single cores, or when the scheduler put both
      ends on one CPU). While spinning, one wait in :data:`EXPLORE_EVERY` sleeps to keep
      ``slept`` current (a running mean). While sleeping, spinning is measured afresh by
      a run of :data:`EXPLORE_RUN` spun waits, first after :data:`EXPLORE_EVERY` waits,
      then after a gap that doubles each time spinning still does not pay (up to
      :data:`MAX_EXPLORE_GAP`); the run's mean replaces ``spun``.
    - back-off: a spin that used up its budget without an answer turns spinning off for
      the next 1, 2, 4 ... 256 waits; a spin that gets its answer resets that.

    The first wait sleeps and measures; a run of spun waits follows it.
    """

    __slots__ = (
        "gap",
        "next_try",
        "penalty",
        "run_left",
        "run_sum",
        "skip",
        "slept",
        "spinning",
        "spun",
        "turn",
        "typical",
    )

    def __init__(self) -> None:
        self.typical = 0.0  # seconds; 0.0: nothing measured yet
        self.spun = 0.0
        self.slept = 0.0
        self.spinning = False  # the policy of the wait in progress
        self.turn = 0
        self.gap = EXPLORE_EVERY
        self.next_try = 0
        self.skip = 0
        self.penalty = 0
        self.run_left = 0  # spun waits still to come in the measuring run
        self.run_sum = 0.0

    def budget(self) -> float:
        """How long the wait starting now may spin (seconds); 0.0: sleep at once."""
        spin = 2.0 * self.typical
        self.turn += 1
        if self.skip:
            self.skip -= 1
            spin = 0.0
        elif spin > SPIN_CAP_S or self.slept == 0.0:
            spin = 0.0  # long answers, or sleeping not measured yet
        elif self.run_left:
            pass  # measuring spinning
        elif self.spun == 0.0:
            self._start_run()  # spinning never measured
        elif self.spun < self.slept:  # spinning pays
            self.gap = EXPLORE_EVERY
            if self.turn % EXPLORE_EVERY == 0:
                spin = 0.0
        elif self.turn < self.next_try:
            spin = 0.0
        else:  # it did not pay: measure it again now
            self._start_run()
        self.spinning = spin > 0.0
        return spin

    def _start_run(self) -> None:
        """A run of spun waits from now on; the next run (if this one says spinning does not
        pay) comes after the current gap, and the gap after it is twice as long. The first
        run too: otherwise a new channel where spinning costs would, with ``next_try`` still
        0, start a second run right after the first."""
        self.run_left, self.run_sum = EXPLORE_RUN, 0.0
        self.next_try = self.turn + self.gap
        self.gap = min(2 * self.gap, MAX_EXPLORE_GAP)

    def record(self, waited: float) -> None:
        """Feed one wait's duration (start of the wait to the bytes' arrival).

        ``typical`` is a running median: one step up or down by a fixed fraction of itself.
        Robust where a mean is not: on a shared machine one wait in a few hundred is a
        preemption of milliseconds, which would drag a running mean far above the typical
        wait; here it moves the estimate by one step, as any other wait above it does.
        ``spun``/``slept`` are running means (EWMA), the expected cost, tail included up
        to :data:`OUTLIER_FACTOR` typical waits. (Written out, not called: this runs once
        per frame on both ends of every channel.)"""
        typical = self.typical
        if typical == 0.0:
            self.typical = waited
        elif waited > typical:
            self.typical = typical * (1.0 + MEDIAN_STEP)
        elif waited < typical:
            self.typical = typical * (1.0 - MEDIAN_STEP)
        # The means take the tail into account, but not without bound: a wait longer than
        # OUTLIER_FACTOR typical ones (a preemption, a page fault, another process's
        # burst) counts as that long. Unclipped, one 5 ms wait during a spin moves the spun
        # mean by 600 us, above the slept one: spinning turns off, and since spun waits are
        # then measured only when exploring, it can stay off for thousands of waits.
        if typical and waited > OUTLIER_FACTOR * typical:
            waited = OUTLIER_FACTOR * typical
        if self.spinning:
            if self.run_left:
                self.run_sum += waited
                self.run_left -= 1
                if not self.run_left:  # the run's EXPLORE_RUN waits are all in
                    self.spun = self.run_sum / EXPLORE_RUN
            else:
                mean = self.spun
                self.spun = waited if mean == 0.0 else mean + (waited - mean) * MEAN_WEIGHT
        else:
            mean = self.slept
            self.slept = waited if mean == 0.0 else mean + (waited - mean) * MEAN_WEIGHT

    def spin(
        self,
        reader: FrameReader,
        started: float,
        budget: float,
        deadline: float | None,
        quick: bool,
    ) -> bytes | None:
        """Bytes (``b""`` at EOF) if some arrived within ``budget`` seconds, else None.

        Each turn yields the CPU first (``sched_yield``): when the worker was woken on this
        very CPU, it runs now instead of after the spin. Turns ask whether the socket is
        readable rather than try ``recv`` (a failed ``recv`` raises, which costs more than
        the system call), without letting go of the GIL when the reader has a ``quick``
        object. The yield lets go of the GIL, also in a ``quick`` spin (other host threads
        are calling workers too; the pool spins then only from 4 CPUs on, see
        ``_pool.CPUS_PER_SPINNING_CALL``): a thread that yields its CPU to another process
        may not get it back for a scheduler slice, and if it held the GIL meanwhile every
        other host thread would wait that slice too. Measured on the 2-core VM with two
        calls allowed to spin, 2 host threads, no-op hooks/s, keeping / releasing the GIL:
        idle 13.6-14.6 / 10.2-14.1 k/s, next to two busy loops 2.5-7.5 / 3.9-6.7 k/s.
        """
        end = started + budget
        if deadline is not None and deadline < end:
            end = deadline
        if reader._quick is not None:
            check = reader._quick.readable
        else:
            poll = reader._poller.poll

            def check() -> bool:
                return bool(poll(0))

        monotonic = time.monotonic
        yield_cpu = os.sched_yield
        while True:
            yield_cpu()
            if check():
                chunk = reader._recv(quick)
                if chunk is None:
                    continue
                self.record(monotonic() - started)
                self.penalty = 0
                return chunk
            now = monotonic()
            if now >= end:
                self._missed(now - started)
                return None

    def spin_blocking(self, sock: socket.socket, started: float, budget: float) -> bool:
        """Busy-wait on a *blocking* socket until it is readable (or at EOF) or ``budget``
        seconds are spent; the caller's recv then returns at once or sleeps. True when
        the spin got its answer (bytes, EOF or an error for the caller's recv to report).

        Probes with a one-byte ``MSG_PEEK | MSG_DONTWAIT`` recv (no ``poll`` in a worker),
        which consumes nothing; each turn yields the CPU first, as :meth:`spin` does. The
        socket must have no timeout (``FrameReader`` clears one): with a timeout, CPython
        polls before every recv, whatever the flags.
        """
        end = started + budget
        probe = sock.recv
        flags = _PEEK_NOWAIT
        monotonic = time.monotonic
        yield_cpu = os.sched_yield
        while True:
            yield_cpu()
            try:
                probe(1, flags)
            except BlockingIOError:
                now = monotonic()
                if now >= end:
                    self._missed(now - started)
                    return False
                continue
            except OSError:
                pass  # a broken channel: the caller's recv reports it
            self.penalty = 0
            return True

    def _missed(self, waited: float) -> None:
        # The wait goes on in a sleep, whose end records the whole wait: nothing to
        # record here.
        self.penalty = min(max(1, self.penalty * 2), 256)
        self.skip = self.penalty


# --- worker frames, as the host sees them ----------------------------------------------
#
# Parsing is exact: the set of keys must match, every field has an exact builtin type. JSON
# decoding already turned the worker's objects into plain dict/list/str/int/float/bool/None
# (a `str` subclass with a lying `__eq__` cannot survive the process boundary); what remains
# is to refuse shapes the host does not expect, so no later code has to be defensive.
#
# JSON decoding does not bound everything, though: orjson decodes 1024 levels of nesting
# (and integers beyond int64) that the host's own encoder then refuses, so the payload fields
# (a result, host-call params, the load reply, error data) are also held to the exact-JSON
# rule of ``_jsonrule``: at most MAX_DEPTH levels, int64 integers. The same rule is what the
# worker side applies before sending (``emdash._shared``), so a worker running our code never
# trips this; one that does was taken over, and is killed like any other protocol violation.


@dataclass(frozen=True, slots=True)
class ReadyFrame:
    """The worker finished confining itself; ``confinement`` records what was applied."""

    rss_kb: int
    confinement: dict[str, str]


@dataclass(frozen=True, slots=True)
class LoadedFrame:
    """The bundle loaded and ``init`` (if any) returned ``init``."""

    init: Any
    cpu_ms: float
    rss_kb: int


@dataclass(frozen=True, slots=True)
class HostCallFrame:
    """The code in the worker called ``host_call(method, params)``."""

    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResultFrame:
    """The call returned ``value``."""

    value: Any
    cpu_ms: float
    rss_kb: int


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The operation failed; ``kind`` says how (remote, violation, memory, compile)."""

    kind: str
    message: str
    data: dict[str, Any]
    errors: list[str]
    cpu_ms: float
    rss_kb: int


WorkerFrame = ReadyFrame | LoadedFrame | HostCallFrame | ResultFrame | ErrorFrame

_USAGE_KEYS = {"cpu_ms", "rss_kb"}
_SHAPES: dict[str, set[str]] = {
    "ready": {"op", "rss_kb", "confinement"},
    "loaded": {"op", "id", "init"} | _USAGE_KEYS,
    "host_call": {"op", "id", "method", "params"},
    "result": {"op", "id", "value"} | _USAGE_KEYS,
}
_ERROR_SHAPES: dict[str, set[str]] = {
    "remote": {"op", "id", "kind", "data"} | _USAGE_KEYS,
    "violation": {"op", "id", "kind", "message"} | _USAGE_KEYS,
    "memory": {"op", "id", "kind", "message"} | _USAGE_KEYS,
    "compile": {"op", "id", "kind", "message", "errors"} | _USAGE_KEYS,
}


def parse_worker_frame(obj: Any, *, expect_id: int | None, allowed: frozenset[str]) -> WorkerFrame:
    """Validate one decoded worker frame; raise :class:`ProtocolError` unless it is exact.

    ``allowed`` is the set of ``op`` values valid in the current state, ``expect_id`` the id
    of the operation in flight (frames for any other id are forged or late, and refused).
    """
    # `type(x) is T`, never isinstance: after JSON decoding there are no subclasses, and
    # `bool` (a subclass of int) must not pass for an id or a size.
    if type(obj) is not dict:
        raise ProtocolError("frame is not a JSON object")
    op = obj.get("op")
    if type(op) is not str or op not in allowed:
        raise ProtocolError(f"unexpected frame op {_show(op)}")
    if op == "error":
        kind = obj.get("kind")
        if type(kind) is not str or kind not in _ERROR_SHAPES:
            raise ProtocolError(f"unknown error kind {_show(kind)}")
        shape = _ERROR_SHAPES[kind]
    else:
        shape = _SHAPES[op]
    # Exact key sets: an extra key is not ignored, because a worker that sends fields the
    # protocol does not have is not running our serve loop any more.
    if obj.keys() != shape:  # a keys view compares as a set, without building one
        raise ProtocolError(f"{op} frame has keys {sorted(obj)}, expected {sorted(shape)}")
    if "id" in shape and (type(obj["id"]) is not int or obj["id"] != expect_id):
        raise ProtocolError(f"{op} frame for call id {_show(obj['id'])}, expected {expect_id}")
    if op == "ready":
        return ReadyFrame(_rss(obj), _confinement(obj["confinement"]))
    if op == "host_call":
        method, params = obj["method"], obj["params"]
        if type(method) is not str or not 0 < len(method) <= MAX_METHOD_CHARS:
            raise ProtocolError("host_call method must be a non-empty string")
        if type(params) is not dict:
            raise ProtocolError("host_call params must be a JSON object")
        _exact(params, "host_call params")
        return HostCallFrame(method, params)
    cpu_ms, rss_kb = _cpu(obj), _rss(obj)
    if op == "loaded":
        _exact(obj["init"], "load reply")
        return LoadedFrame(obj["init"], cpu_ms, rss_kb)
    if op == "result":
        _exact(obj["value"], "result")
        return ResultFrame(obj["value"], cpu_ms, rss_kb)
    return _error_frame(obj, cpu_ms, rss_kb)


def _exact(value: Any, what: str, *, ints: bool = True) -> None:
    """Hold a payload field to the exact-JSON rule (depth, int64), or ``ProtocolError``."""
    if value is None or type(value) in (str, bool, float):
        return  # the common scalar results: nothing to walk (orjson yields no surrogates)
    try:
        # strings=False: orjson refuses lone surrogates while decoding, so none are left.
        check_decoded(value, max_depth=MAX_DEPTH, ints=ints, strings=False)
    except NotExactJSON as exc:
        raise ProtocolError(f"{what} breaks the exact-JSON rule: {exc}") from None


def _error_frame(obj: dict[str, Any], cpu_ms: float, rss_kb: int) -> ErrorFrame:
    kind = obj["kind"]
    if kind == "remote":
        data = obj["data"]
        if type(data) is not dict:
            raise ProtocolError("remote error data must be a JSON object")
        # Depth only: error details are re-encoded by the stdlib json (any integer).
        _exact(data, "error data", ints=False)
        data = dict(data)
        for key, cap in (("message", MAX_MESSAGE_CHARS), ("traceback", MAX_TRACEBACK_CHARS)):
            text = data.get(key)
            if key in data and type(text) is not str:
                raise ProtocolError(f"remote error {key} must be a string")
            if type(text) is str and len(text) > cap:
                # Keep the end of a traceback (where the error is), the start of a message.
                data[key] = text[-cap:] if key == "traceback" else text[:cap]
        # Only type/message/traceback are checked here; the host application decides which
        # other fields and which type names it recognises (RemoteError.data stays hostile).
        if type(data.get("type")) is not str:
            raise ProtocolError("remote error type must be a string")
        message = data.get("message", "")
        return ErrorFrame(kind, message, data, [], cpu_ms, rss_kb)
    message = obj["message"]
    if type(message) is not str:
        raise ProtocolError(f"{kind} error message must be a string")
    errors: list[str] = []
    if kind == "compile":
        raw = obj["errors"]
        if type(raw) is not list or not all(type(e) is str for e in raw):
            raise ProtocolError("compile errors must be a list of strings")
        errors = [e[:MAX_MESSAGE_CHARS] for e in raw[:MAX_COMPILE_ERRORS]]
    return ErrorFrame(kind, message[:MAX_MESSAGE_CHARS], {}, errors, cpu_ms, rss_kb)


def _cpu(obj: dict[str, Any]) -> float:
    value = obj["cpu_ms"]
    if type(value) not in (int, float) or not 0 <= value < 1e12:
        raise ProtocolError("cpu_ms must be a non-negative number")
    return float(value)


def _rss(obj: dict[str, Any]) -> int:
    value = obj["rss_kb"]
    if type(value) is not int or not 0 <= value < 1 << 48:
        raise ProtocolError("rss_kb must be a non-negative integer")
    return int(value)


def _confinement(value: Any) -> dict[str, str]:
    if type(value) is not dict or len(value) > 32:
        raise ProtocolError("confinement report must be a small JSON object")
    out: dict[str, str] = {}
    for key, text in value.items():
        if type(text) is not str or len(key) > 64 or len(text) > 500:
            raise ProtocolError("confinement report entries must be short strings")
        out[key] = text
    return out


def _show(value: Any) -> str:
    """A short, safe rendering of a hostile value for an error message."""
    if type(value) is str:
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if value is None or type(value) in (int, float, bool):
        return repr(value)[:40]
    return f"<{type(value).__name__}>"
