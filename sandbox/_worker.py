"""The worker: confines itself, then serves load / call requests from the host on fd 0.

A worker is forked from the fork server (``_forkserver``) and serves exactly one bundle of
code. Its life:

1. :func:`worker_main` confines the process (``_confine``: rlimits, namespaces, Landlock,
   seccomp allowlist) and reports ``ready``.
2. ``load``: compile the bundle (``_compiler.compile_bundle``), load it
   (``_loader.load_bundle``), run the host's optional ``init`` prelude function.
3. ``call`` (repeatedly): run prelude ``fn(entry_module, host_call, *args)``.

Per operation the worker arms ``ITIMER_PROF`` with the CPU budget. SIGPROF keeps its default
action, so the kernel terminates the worker when the budget runs out, even inside one long C
call (``10**10**7``); there is no handler in Python that sandboxed code could delay or catch.

The invocation boundary (escape class ``frame``: generator ``finally`` and ``__del__`` run
late). ``host_call`` works only while an operation is *active*. When the called function
returns, the worker marks the operation inactive, drops every reference it holds to the
call's objects and runs ``gc.collect()`` when the call left any container object alive
(automatic collection is disabled, so it cannot happen at a random moment inside a later
call). Finalizers therefore run now, still under
the CPU timer, and any ``host_call`` they make raises ``SandboxViolation``; the host refuses
frames for a call id that is not current anyway. Only then is the result sent.

Nothing here trusts the host less than itself, but nothing here is a security boundary
either: code that broke out of the language layer owns this process. The boundary is the
host (``_pool``), which treats every frame from here as hostile.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import resource
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ._confine import confine
from ._errors import CompileError, RemoteError, SandboxViolation
from ._jsonrule import INT_MAX, INT_MIN, MAX_DEPTH
from ._protocol import HEADER, ChannelClosed, FrameTooLarge, SpinWait
from ._seccomp import CHANNEL_FD

__all__ = [
    "EXIT_CONFINEMENT",
    "EXIT_INTERNAL",
    "EXIT_MEMORY",
    "EXIT_PROTOCOL",
    "MAX_JSON_DEPTH",
    "WorkerRuntime",
    "plain_json",
    "worker_main",
]

# Exit codes the host understands (anything else is reported as a crash).
EXIT_CONFINEMENT = 70  # a mandatory confinement step failed: nothing ran
EXIT_PROTOCOL = 71  # the host sent something this worker does not understand
EXIT_MEMORY = 72  # out of memory even for reporting MemoryError
EXIT_INTERNAL = 73  # a bug in the serve loop itself

MAX_TEXT = 4000
MAX_TRACEBACK = 16000

# JSON in the worker is the standard library's, not orjson: a worker runs right under its
# memory limit, and orjson dereferences NULL (SIGSEGV) when an allocation fails, where json
# raises MemoryError. The host decodes with orjson; the format is the same. NaN and infinity
# are refused (they are not JSON).
_BAD_JSON = (TypeError, ValueError, RecursionError)

#: Deepest nesting of lists/dicts a value sent to the host may have: the exact-JSON rule's
#: bound (``_jsonrule.MAX_DEPTH``), which the host holds every frame to. A worker that sent
#: more would be killed as a protocol violation; refusing here makes it the plugin's clear
#: ``SandboxViolation`` instead, and the worker serves on.
MAX_JSON_DEPTH = MAX_DEPTH

# One encoder for the worker's life (stateless between calls: encode() starts afresh).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# A JSON string literal for an exact str, as the encoder above writes it (no ASCII escaping).
_json_str: Callable[[str], str] = (
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)
# The standard library's C encoder, made once with the settings of _ENCODER: what
# JSONEncoder.encode makes anew on every call (with two Python calls around it). No cycle
# check (markers None): it only ever sees plain_json's copies, which are fresh, acyclic and
# at most MAX_JSON_DEPTH deep; the C encoder's own recursion guard stays.
_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
_C_ENCODE: Any = (
    _MAKE_ENCODER(None, _not_json, _json_str, None, ":", ",", False, False, False)
    if _MAKE_ENCODER is not None
    else None
)


def _encode_plain(value: Any) -> str:
    """JSON text of a value ``plain_json`` made (exact builtins, acyclic, bounded depth)."""
    if _C_ENCODE is None:  # pragma: no cover - CPython always has the C encoder
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


_PLAIN_LEAVES = (str, int, float, bool, type(None))
_INFINITY = float("inf")


def plain_json(value: Any) -> Any:
    """A copy of ``value`` made only of exact ``dict``/``list``/``str``/``int``/``float``/
    ``bool``/``None``; ``TypeError``/``ValueError`` for anything that is not JSON, or not
    exact JSON (the rule of ``_jsonrule``, which the host enforces on every frame): nested
    deeper than :data:`MAX_JSON_DEPTH`, an integer outside int64, a key that is not a
    string, two keys equal as strings. (Lone surrogates are refused by the UTF-8 encoding.)

    Why a copy: json's encoder calls methods of what it encodes - ``items()`` of a dict
    subclass, ``__iter__`` of a list subclass. Anything sandboxed code can reach might be
    such an object with a method the plugin chose (a Counter with ``c.items = spin`` did it:
    the worker encoded error frames after disarming the CPU timer, so ``spin`` ran without
    a limit). This function decides by ``type(x) is``, reads containers through the base
    type's C methods (``dict.items(x)``, ``list.copy(x)``), and converts str/int/float
    subclasses with the base type's own conversion (``str.__str__(x)`` copies the character
    data), so no code of the value runs and whatever it claims about itself stays in the
    worker. Encoding the copy runs only the interpreter's code for builtin types.
    """
    return _plain(value, 0, set())


def _plain(value: Any, depth: int, open_ids: set[int]) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return _checked_int(value)
    if kind is float:
        if value != value or value in (_INFINITY, -_INFINITY):
            raise ValueError("Out of range float values are not JSON compliant")
        return value
    if issubclass(kind, _PLAIN_LEAVES):  # bool and NoneType cannot be subclassed
        if issubclass(kind, str):
            return str.__str__(value)
        if issubclass(kind, int):
            return _checked_int(int.__int__(value))
        return _plain(float.__float__(value), depth, open_ids)
    if depth >= MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    marker = id(value)
    if marker in open_ids:
        raise ValueError("Circular reference detected")
    open_ids.add(marker)
    try:
        if issubclass(kind, dict):
            return _plain_dict(value, kind, depth, open_ids)
        if issubclass(kind, list):
            items: Any = list.copy(value)
        elif issubclass(kind, tuple):
            items = tuple.__getitem__(value, slice(None))  # an exact tuple for a subclass
        else:
            raise TypeError(f"Object of type {kind.__name__} is not JSON serializable")
        return [_plain(item, depth + 1, open_ids) for item in items]
    finally:
        open_ids.discard(marker)


def _checked_int(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        # Beyond int64 the host's decoder would turn it into a float (or refuse it).
        raise ValueError(
            f"an integer of {len(str(abs(value))) if value.bit_length() < 4000 else 'thousands of'}"
            " digits is outside the exact range [-2**63, 2**63 - 1]; send it as a string"
        )
    return value


def _plain_dict(value: Any, kind: type, depth: int, open_ids: set[int]) -> dict[str, Any]:
    if issubclass(kind, collections.OrderedDict):
        # Its order lives in its own list (move_to_end); read through the C type's methods.
        pairs: Any = [
            (key, dict.__getitem__(value, key)) for key in collections.OrderedDict.keys(value)
        ]
    else:
        pairs = dict.items(value)
    out: dict[str, Any] = {}
    for key, item in pairs:
        key_kind = type(key)
        if key_kind is not str:
            # json would write 1, 1.0, True and None keys as strings: {1: "a", "1": "b"}
            # would then reach the host with a duplicate key and one value silently lost.
            if not issubclass(key_kind, str):
                raise TypeError(
                    f"keys must be str, not {key_kind.__name__} (convert them yourself, so "
                    "that two keys cannot collide)"
                )
            key = str.__str__(key)
        if key in out:
            raise ValueError(f"duplicate object key {key[:40]!r}")
        out[key] = _plain(item, depth + 1, open_ids)
    return out


def _flat_params(params: Any) -> dict[str, Any] | None:
    """A copy of a flat request (an exact dict of exact-str keys to str, bool, None or
    int64 values: ``kv.get``, ``kv.set`` of a scalar), or None for anything else, which
    takes ``_plain``'s full walk (and its errors). Reads through ``dict.items`` and decides
    by ``type(x) is``, like ``_plain``: no code of the plugin runs."""
    if type(params) is not dict:
        return None
    out: dict[str, Any] = {}
    for key, value in dict.items(params):
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is str or kind is bool or value is None:
            out[key] = value
        elif kind is int and INT_MIN <= value <= INT_MAX:
            out[key] = value
        else:
            return None
    return out


def _dumps(obj: Any) -> bytes:
    # strict UTF-8: a lone surrogate is refused
    return _encode_plain(plain_json(obj)).encode("utf-8")


# The C scanner of the standard decoder, called directly: json.loads(bytes) adds
# Python-level encoding detection, and JSONDecoder.decode two more Python calls and two
# whitespace regex matches, on every request (~3 us of ~5 here).
# (scan_once is set in JSONDecoder.__init__ and missing from typeshed's stub.)
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009


class _Requests:
    """The worker's end of its channel, reading: the host's frames, whole, one at a time.

    What ``_protocol.FrameReader`` does for a blocking reader without a deadline, written
    out for the one use a worker has (two Python calls and a copy less per frame):

    * the declared length is checked against the cap before anything is allocated for
      the body;
    * the payload is decoded by the C scanner directly (``_SCAN``), stricter than
      ``json.loads``: no whitespace before or after the value (the host's encoder writes
      none); a lone surrogate passes the UTF-8 decoding, as the standard decoder would
      let it;
    * before it sleeps in ``recv`` the reader busy-waits as ``_protocol.SpinWait``
      decides, so the host's send finds this process awake. During a host call that wait
      runs under the CPU timer like everything else here: it is charged to the call,
      never exempt from its limit.

    Errors: ``ChannelClosed`` at EOF, ``FrameTooLarge``, ``ValueError`` for a payload that
    is not exactly one JSON value; the callers turn anything but ``ChannelClosed`` (and
    ``MemoryError``) into an exit.
    """

    __slots__ = ("_buf", "_max", "_recv", "_sock", "_spin_answer", "_spin_request", "spin_allowed")

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        # The socket has no timeout and never gets one (worker_main makes it; settimeout
        # would need fcntl, which seccomp refuses): with one, CPython would poll before
        # every recv, which a worker may not, whatever the spin's MSG_DONTWAIT probe says.
        self._sock = sock
        self._recv = sock.recv
        self._max = max_bytes
        self._buf = bytearray()
        # Two kinds of wait, each with its own measurements (SpinWait): the answer to a host
        # call comes in tens of microseconds, the next request after the host has finished
        # the call (its commit included) and started another, often far later. Measured
        # together, the long waits' misses turned spinning off for the short ones.
        self._spin_request = SpinWait()
        self._spin_answer = SpinWait()
        #: False while the host has more calls in flight than may spin (the call frame's
        #: ``spin``, see _pool.CPUS_PER_SPINNING_CALL): then every CPU has work, and a
        #: spinning worker takes one from another call.
        self.spin_allowed = True

    def read(self, answer: bool = False) -> Any:
        """The next frame's value; ``answer``: it answers this worker's host call."""
        buf = self._buf
        while True:
            have = len(buf)
            if have >= _HEADER_SIZE:
                (length,) = _unpack_header(buf)
                if length > self._max:
                    raise FrameTooLarge(length, self._max)
                end = _HEADER_SIZE + length
                if have >= end:
                    text = buf[_HEADER_SIZE:end].decode("utf-8", "surrogatepass")
                    del buf[:end]
                    try:
                        value, stop = _SCAN(text, 0)
                    except StopIteration:
                        raise ValueError("the frame does not start with a JSON value") from None
                    if stop != len(text):
                        raise ValueError("extra data after the frame's JSON value")
                    return value
            if not self.spin_allowed:  # straight to sleep, and nothing to learn from it
                try:
                    chunk = self._recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    chunk = b""
                if not chunk:
                    raise ChannelClosed("the host closed the channel")
                buf += chunk
                continue
            waiter = self._spin_answer if answer else self._spin_request
            started = _monotonic()
            budget = waiter.budget()
            if budget:
                waiter.spin_blocking(self._sock, started, budget)
            try:
                chunk = self._recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            waiter.record(_monotonic() - started)
            if not chunk:
                raise ChannelClosed("the host closed the channel")
            buf += chunk


_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
_monotonic = time.monotonic


def _frame(obj: Any, max_bytes: int) -> bytes:
    payload = _dumps(obj)
    if len(payload) > max_bytes:
        raise FrameTooLarge(len(payload), max_bytes)
    return HEADER.pack(len(payload)) + payload


@dataclass(frozen=True)
class WorkerRuntime:
    """Everything the fork server prepared once, inherited by every worker it forks."""

    preludes: Any  # the language layer's Preludes: .get(module_name) -> module
    compile_bundle: Callable[..., Any]
    load_bundle: Callable[..., Any]
    error_encoder: Callable[[BaseException], Any] | None
    error_decoder: Callable[[Any], Any] | None
    seccomp_filter: Any
    max_frame_bytes: int
    allow_raw_exec: bool


def worker_main(
    channel: socket.socket, memory_mb: int, rt: WorkerRuntime, parent: int, cpu_s: int
) -> NoReturn:
    """Entry point in the forked child; never returns (always ``os._exit``).

    ``parent`` is the fork server's pid: the worker must not outlive it (see ``confine``).
    ``cpu_s`` is its lifetime CPU budget (``RLIMIT_CPU``).
    """
    # No automatic collection from here on: finalizers of sandboxed objects must run only
    # where the serve loop decides (between calls, with no call active).
    gc.disable()
    # Nothing may write to the host's terminal, and print()/unraisable-exception reports
    # become no-ops (they do nothing when the stream is None). The original objects stay
    # referenced as sys.__stdout__ etc. so their file descriptors are not closed under us.
    sys.stdin = sys.stdout = sys.stderr = None
    try:
        report = confine(channel, memory_mb, rt.seccomp_filter, parent, cpu_s)
    except BaseException:
        os._exit(EXIT_CONFINEMENT)
    code = EXIT_INTERNAL
    try:
        # family/type/proto given explicitly, so the socket module does not depend on
        # learning them: it still asks getsockname (strace shows it), which the allowlist
        # refuses and CPython ignores.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=CHANNEL_FD)
        _Server(sock, rt).serve(report)
        code = 0
    except MemoryError:
        code = EXIT_MEMORY
    except _ProtocolExit:
        code = EXIT_PROTOCOL
    except BaseException:
        code = EXIT_INTERNAL
    os._exit(code)


class _ProtocolExit(BaseException):
    """The host channel is unusable or the host broke protocol: leave at once."""


def _max_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# The CPU reading at the start of an operation: the same process-wide clock getrusage sums
# (clock_gettime(CLOCK_PROCESS_CPUTIME_ID)), without building a 16-field struct_rusage.
_process_cpu = time.process_time


def _safe_text(exc: object, limit: int = MAX_TEXT) -> str:
    try:
        text = str(exc)
        # str() passes a str subclass from __str__ through; keep only its character data.
        return str.__str__(text)[:limit]
    except BaseException:
        return "<unprintable exception>"


def _plain_error_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of an error description that are plain JSON, as a plain copy.

    A field that is not (say, ``details`` an encoder copied from the exception) is left
    out rather than losing the whole error: ``type``, ``message`` and ``traceback`` are
    exact strs (``describe`` makes sure), so the host still learns what happened.
    """
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if type(key) is not str:
            continue
        try:
            out[key] = plain_json(value)
        except _BAD_JSON:
            continue
    return out


class _Server:
    """The serve loop; one instance per worker."""

    def __init__(self, sock: socket.socket, rt: WorkerRuntime) -> None:
        self.sock = sock
        self.rt = rt
        self.reader = _Requests(sock, rt.max_frame_bytes)
        self.active: int | None = None  # id of the call in progress, if any
        self.phase = "idle"
        self.entry: Any = None
        self.loaded = False
        self.functions: dict[str, Callable[..., Any]] = {}

    def make_host_call(self, cid: int) -> Callable[[str, dict[str, Any]], Any]:
        """The ``host_call`` given to operation ``cid``, valid only while it runs.

        One function per operation, not one per worker: a ctx (or a generator holding one)
        stashed by sandboxed code and used in a *later* call must not act as that later
        call (escape class ``ctx``: revoke capabilities at the end of the invocation). It is
        a plain closure (not a bound method, not functools.partial), so the object given to
        sandboxed code has no public attribute leading back to the server.
        """
        server = self

        def host_call(method: str, params: dict[str, Any]) -> Any:
            return server.host_call(cid, method, params)

        return host_call

    # -- channel ------------------------------------------------------------------------

    def send_raw(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
        except OSError:
            raise _ProtocolExit from None

    def serve(self, report: dict[str, str]) -> None:
        ready = {"op": "ready", "rss_kb": _max_rss_kb(), "confinement": report}
        self.send_raw(_frame(ready, self.rt.max_frame_bytes))
        run = self.run
        while run():
            pass

    # -- operations: each returns the body run() runs, holding only what the body needs ----

    def load_body(self, msg: dict[str, Any]) -> Callable[[], Any]:
        cid, files, entry, init = msg["id"], msg.get("files"), msg.get("entry"), msg.get("init")
        if type(files) is not dict or type(entry) is not str:
            raise _ProtocolExit
        if init is not None and (type(init) is not list or len(init) != 2):
            raise _ProtocolExit

        def body() -> Any:
            code = self.rt.compile_bundle(files)
            self.entry = self.rt.load_bundle(code, entry, preludes=self.rt.preludes)
            if init is None:
                return None
            fn = self.resolve(init[0])
            args = init[1] if type(init[1]) is list else []
            return fn(self.entry, self.make_host_call(cid), *args)

        return body

    def raw_body(self, msg: dict[str, Any]) -> Callable[[], Any]:
        """Test-only: run plain Python (no language layer) under the same confinement."""
        cid, source = msg["id"], msg.get("source")
        if type(source) is not str:
            raise _ProtocolExit
        return lambda: self.raw_exec(cid, source)

    def raw_exec(self, cid: int, source: str) -> Any:
        namespace: dict[str, Any] = {"__name__": "__raw__", "host_call": self.make_host_call(cid)}
        exec(compile(source, "<raw>", "exec"), namespace)
        return namespace.get("result")

    def resolve(self, name: Any) -> Callable[..., Any]:
        """Find prelude function ``"module:function"`` (only prelude modules are reachable)."""
        cached = self.functions.get(name) if type(name) is str else None
        if cached is not None:
            return cached
        if type(name) is not str or name.count(":") != 1:
            raise SandboxViolation(f"function name must look like 'module:function', got {name!r}")
        module_name, fn_name = name.split(":")
        try:
            module = self.rt.preludes.get(module_name)
        except Exception:
            module = None
        fn = getattr(module, fn_name, None) if module is not None else None
        if not callable(fn):
            raise SandboxViolation(f"no prelude function {name}")
        self.functions[name] = fn
        return self.functions[name]

    # -- running one operation ----------------------------------------------------------

    def run(self) -> bool:
        """Read the host's next request, run it and send its outcome; False when the host
        closed the channel (a normal end).

        The request is read here, not passed in: no frame of the serve loop holds it while
        the operation runs, so the collection check below sees only what the call left.

        No code of the plugin may run once the CPU timer is disarmed. So, while it is still
        armed: the result is converted to plain JSON and encoded; an error is described and
        converted to plain JSON (``plain_json`` runs no method of what it copies); every
        local that refers to the call's objects is dropped; and the garbage the call left
        is collected, running generator ``finally`` blocks (plugin classes cannot define
        ``__del__``) under what is left of the call's budget. What remains after the
        disarm is plain data owned by this function.
        """
        try:
            msg = self.reader.read()
        except ChannelClosed:
            return False
        except MemoryError:
            raise  # the request itself does not fit: worker_main exits with EXIT_MEMORY
        except Exception:
            raise _ProtocolExit from None
        if type(msg) is not dict or type(msg.get("id")) is not int:
            raise _ProtocolExit
        cid, op, cpu_ms = msg["id"], msg.get("op"), msg.get("cpu_ms")
        # A call runs its prelude function directly (below), not through a closure: a
        # closure's cells would be young containers held by this frame (see the collection
        # check) and cost an object per call.
        body: Callable[[], Any] | None = None
        fn_name: Any = None
        args: Any = None
        if op == "call" and self.loaded:
            fn_name, args = msg.get("fn"), msg.get("args")
            if type(args) is not list:
                raise _ProtocolExit
            # The host says whether spinning pays now: for this call's host-call answers
            # and for the wait for its next request.
            self.reader.spin_allowed = msg.get("spin") is not False
            ok_op, phase = "result", "call"
        elif op == "load" and not self.loaded:
            body, ok_op, phase = self.load_body(msg), "loaded", "load"
        elif op == "raw_exec" and self.rt.allow_raw_exec:
            body, ok_op, phase = self.raw_body(msg), "result", "call"
        else:
            raise _ProtocolExit
        if type(cpu_ms) is not int or cpu_ms <= 0:
            raise _ProtocolExit
        del msg
        cpu_start = _process_cpu()
        # Host calls are allowed only during a call (not while loading).
        self.active = cid if phase == "call" else None
        self.phase = phase
        signal.setitimer(signal.ITIMER_PROF, cpu_ms / 1000.0)
        payload: bytes | None = None
        kind = "ok"
        message = ""
        errors: list[str] | None = None  # not an empty list: a young container (see below)
        data: dict[str, Any] | None = None
        value: Any = None
        try:
            if body is None:
                fn = self.functions.get(fn_name) if type(fn_name) is str else None
                if fn is None:
                    fn = self.resolve(fn_name)
                value = fn(self.entry, self.make_host_call(cid), *args)
                # Most hooks return nothing: no copy, no encoder.
                payload = b"null" if value is None else self.encode_value(value)
            else:
                payload = self.encode_value(body())
        except MemoryError:
            # Nothing here may allocate: the traceback still holds the frames (and whatever
            # filled the memory) until this block ends.
            kind = "memory"
        except CompileError as exc:
            kind, message, errors = "compile", _safe_text(exc), [_safe_text(e) for e in exc.errors]
        except SandboxViolation as exc:
            kind, message = "violation", _safe_text(exc)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the worker goes on
            kind, data = "remote", self.describe(exc)
        finally:
            # The invocation is over: late code (finalizers, generator `finally`) may still
            # run below, but it can no longer reach the host.
            self.active = None
            self.phase = "idle"
        # Nothing of the call's stays referenced from here on.
        body = args = value = None
        error: dict[str, Any] | None = None
        if kind == "memory":
            error = {"op": "error", "kind": "memory", "message": "MemoryError"}
        elif kind == "remote":
            error = {"op": "error", "kind": "remote", "data": _plain_error_data(data)}
        elif kind == "compile":
            error = {"op": "error", "kind": "compile", "message": message, "errors": errors or []}
        elif kind == "violation":
            error = {"op": "error", "kind": "violation", "message": message}
        del data  # the error encoder's output may still hold objects of the call
        # Collect only when the call left container objects alive: garbage with a
        # finalizer (a suspended generator in a cycle) is always such an object, and one
        # that is still in the youngest generation unless this worker survived a collection
        # since it was made. No frame of the serve loop holds the request (see serve), so
        # after a call that left nothing behind the youngest generation is empty and the
        # collection (a walk over every young and old object) is skipped. Garbage in older
        # generations (made reachable in an earlier call, dropped in this one) waits for
        # the next collection, which runs here too: between calls, with no call active.
        if error is not None or gc.get_objects(0):
            gc.collect()
        signal.setitimer(signal.ITIMER_PROF, 0)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss_kb = usage.ru_maxrss
        # The two readings come from one clock (the kernel's process CPU time), read by two
        # calls: a difference below zero would only be rounding, never reported.
        used_ms = round(max(usage.ru_utime + usage.ru_stime - cpu_start, 0.0) * 1000.0, 3)
        if error is None and payload is not None:
            # The value is already JSON: splice it into the envelope instead of re-encoding.
            # The envelope is formatted directly: ok_op is one of two constants, cid and
            # rss_kb are ints, cpu_ms a finite float, whose repr is what json writes.
            key = b'"init":' if ok_op == "loaded" else b'"value":'
            envelope = (
                (f'{{"op":"{ok_op}","id":{cid},"cpu_ms":{used_ms!r},"rss_kb":{rss_kb},').encode()
                + key
                + payload
                + b"}"
            )
            try:
                self.sock.sendall(HEADER.pack(len(envelope)) + envelope)
            except OSError:
                raise _ProtocolExit from None
            if phase == "load":
                self.loaded = True
                # The loaded modules live as long as the worker: move them out of the
                # collector's sight so the per-call collection only scans what calls create.
                gc.freeze()
            return True
        report = {"id": cid, "cpu_ms": used_ms, "rss_kb": rss_kb}
        try:
            encoded = _frame({**(error or {}), **report}, self.rt.max_frame_bytes)
        except (*_BAD_JSON, FrameTooLarge):
            # Too large (the error data is plain JSON already, see _plain_error_data).
            fallback = {"type": "Exception", "message": "the error could not be reported"}
            encoded = _frame(
                {"op": "error", "kind": "remote", "data": fallback, **report},
                self.rt.max_frame_bytes,
            )
        self.send_raw(encoded)
        return True

    def encode_value(self, value: Any) -> bytes:
        """JSON for a result; refusals are violations (the host never sees a bad frame)."""
        if value is None:  # most hooks return nothing: skip the copy and the encoder
            return b"null"
        try:
            payload = _dumps(value)
        except _BAD_JSON as exc:
            raise SandboxViolation(f"the result is not JSON-serialisable: {exc}") from None
        # Room for the envelope around the value.
        limit = self.rt.max_frame_bytes - 256
        if len(payload) > limit:
            raise SandboxViolation(
                f"the result is too large ({len(payload)} bytes of JSON; the limit is {limit})"
            )
        return payload

    def describe(self, exc: BaseException) -> dict[str, Any]:
        """Plain-JSON description of an escaping exception (host's encoder + traceback)."""
        data: dict[str, Any] | None = None
        if self.rt.error_encoder is not None:
            try:
                encoded = self.rt.error_encoder(exc)
                if type(encoded) is dict:
                    data = dict(encoded)
            except BaseException:
                data = None
        if data is None:
            data = {"type": type(exc).__name__, "message": _safe_text(exc)}
        if type(data.get("type")) is not str:
            data["type"] = type(exc).__name__
        if type(data.get("message")) is not str:
            data["message"] = _safe_text(exc)
        try:
            text = "".join(traceback.format_exception(exc))
        except BaseException:
            text = ""
        data["traceback"] = text[-MAX_TRACEBACK:]
        return data

    # -- host calls ---------------------------------------------------------------------

    def host_call(self, cid: int, method: str, params: dict[str, Any]) -> Any:
        """Send ``{"op": "host_call"}`` for operation ``cid`` and block for the answer."""
        if self.phase == "load":
            raise SandboxViolation("host calls are not available while the code is loading")
        if self.active is None:
            raise SandboxViolation(
                "host calls are only possible while a call is running; this code ran after "
                "its call had returned"
            )
        if cid != self.active:
            raise SandboxViolation(
                "this host_call (or a ctx built on it) belongs to an earlier call that has "
                "returned; use the one the current call was given"
            )
        if not isinstance(method, str) or not method:
            raise SandboxViolation("host_call method must be a non-empty string")
        if not isinstance(params, dict):
            raise SandboxViolation("host_call params must be a dict")
        # The envelope is this function's own: only the two values from sandboxed code are
        # copied to plain JSON (params one level down, as inside the envelope), not the
        # envelope around them; it is formatted directly (cid is this worker's own int).
        # method may be a str subclass: its characters only.
        method = str.__str__(method)
        try:
            plain = _flat_params(params)
            if plain is None:
                plain = _plain(params, 1, set())
            payload = (
                f'{{"op":"host_call","id":{cid},"method":{_json_str(method)},'
                f'"params":{_encode_plain(plain)}}}'
            ).encode()
            if len(payload) > self.rt.max_frame_bytes:
                raise FrameTooLarge(len(payload), self.rt.max_frame_bytes)
            frame = HEADER.pack(len(payload)) + payload
        except FrameTooLarge as exc:
            raise SandboxViolation(
                f"host call {method[:100]!r} is too large ({exc.size} bytes; the limit is "
                f"{exc.limit})"
            ) from None
        except _BAD_JSON as exc:
            raise SandboxViolation(
                f"host call {method[:100]!r} has parameters that are not JSON-serialisable: {exc}"
            ) from None
        del plain
        # From here on sandboxed code is on the call stack: a failure of the channel ends
        # the process at once (os._exit), so that code cannot catch it and carry on.
        try:
            self.sock.sendall(frame)
            reply = self.reader.read(answer=True)
        except MemoryError:
            os._exit(EXIT_MEMORY)  # the host's answer does not fit in what is left
        except BaseException:
            os._exit(EXIT_PROTOCOL)
        if type(reply) is not dict or reply.get("id") != cid:
            os._exit(EXIT_PROTOCOL)
        # Exactly three keys: op and id are there (checked), so the third must be the one
        # named (no set built per reply).
        op = reply.get("op")
        if op == "host_result" and len(reply) == 3 and "value" in reply:
            return reply["value"]
        if op == "host_error" and len(reply) == 3 and "error" in reply:
            raise self.decode_error(reply["error"])
        os._exit(EXIT_PROTOCOL)

    def decode_error(self, data: Any) -> BaseException:
        """The exception ``host_call`` raises for a host-side error (host's decoder)."""
        if type(data) is not dict:
            data = {"type": "Exception", "message": "the host reported a malformed error"}
        if self.rt.error_decoder is not None:
            try:
                exc = self.rt.error_decoder(data)
                if isinstance(exc, BaseException):
                    return exc
            except Exception:
                pass
        return RemoteError(data)
