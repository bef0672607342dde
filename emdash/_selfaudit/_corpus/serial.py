"""Escape class ``serial`` (docs/escape-corpus.md 088-090): serialisation and introspection modules, and the wire.

``pickle``/``marshal``/``ctypes``/``gc``/``inspect``/``sys`` are never importable. Results
cross to the host as JSON only (a plugin-controlled pickle would run code in the host),
and the host treats every frame from a worker as hostile: forged or malformed frames end
the worker, never the host.
"""

from __future__ import annotations

from typing import Any

from . import P, Payload


def _import(module: str, evidence: str, source: str, ref: str = "") -> Payload:
    return P(
        f"import_{module}",
        f"import {module} ({evidence})",
        source,
        f"""
        def handler(event, ctx):
            import {module}
            return "OK imported {module}: " + repr({module})
        """,
        "runtime_denied",
        "SandboxViolation",
        ref=ref,
    )


# The forged-frame payloads run with the language layer bypassed: the worker's channel is
# fd 0 and the serve loop is blocked in the middle of this very call. Each writes something
# a compromised worker could send; the host must treat it as a protocol violation, kill the
# worker, report it, and keep serving. Nothing may reach on_host_call.
_FRAME = r"""
import socket
import struct

def frame(body):
    return struct.pack(">I", len(body)) + body

# The way the serve loop itself writes (sendto on fd 0, flags 0): the allowlist refuses
# write(). detach(): the socket object must not try to close the channel.
chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)
chan.sendall(DATA)
chan.detach()
# Stay in the call: the serve loop must not send its own result frame after ours.
import time
time.sleep(60)
result = "OK the host accepted the forged frame"
"""


def _forged(
    name: str, technique: str, data: str, error: str = "WorkerCrashed", **kw: Any
) -> Payload:
    return P(
        name,
        technique,
        "own variant of 090"
        if "ref" not in kw
        else "corpus 090; docs/escape-corpus.md, API mapping (identity bound host-side)",
        _FRAME.replace("DATA", data),
        "runtime_denied",
        error,
        mode="raw-worker",
        **kw,
    )


PAYLOADS: list[Payload] = [
    _import("pickle", "deserialisation gadgets", "corpus 088", ref="088"),
    P(
        "copyreg_dispatch_gadget",
        "register a reducer in copyreg.dispatch_table and return an instance: RCE if the host "
        "ever pickles or unpickles worker output",
        "corpus 089; docs/design.md, _shared (results are JSON)",
        """
        class Gadget:
            pass

        def handler(event, ctx):
            try:
                import copyreg
                copyreg.dispatch_table[Gadget] = lambda g: (str, ("AUDIT-PICKLE",))
            except Exception:
                pass
            return Gadget()
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("not JSON-serialisable",),
        ref="089",
    ),
    _forged(
        "forged_ipc_frames",
        "a host_call frame for another call id that names another plugin",
        'frame(b\'{"op":"host_call","id":999999,"method":"kv/get","params":{"key":"secret"},'
        '"plugin":"@@VICTIM_ID@@"}\')',
        ref="090",
    ),
    # -- our own variants ----------------------------------------------------------------
    _import("marshal", "code objects from bytes", "own variant of 088"),
    _import("ctypes", "raw memory and syscalls", "own variant of 088"),
    _import("gc", "gc.get_objects() walks the whole heap", "own variant of 088"),
    _import("inspect", "frames and globals of any function", "own variant of 088"),
    _import("sys", "sys.modules, sys._getframe", "own variant of 088"),
    _import("subprocess", "process creation", "own variant of 088"),
    _import("socket", "raw network access", "own variant of 088"),
    P(
        "result_set_not_json",
        "return a set (not JSON): the result must be refused, never converted by guessing",
        "own; results are plain JSON",
        """
        def handler(event, ctx):
            return {"OK", "set"}
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("not JSON-serialisable",),
    ),
    P(
        "result_bytes_not_json",
        "return bytes (not JSON)",
        "own; results are plain JSON",
        """
        def handler(event, ctx):
            return b"OK bytes"
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("not JSON-serialisable",),
    ),
    P(
        "result_self_referencing",
        "return a list that contains itself (a serialiser without a depth limit recurses forever)",
        "own; bounded, recursion-safe result serialisation",
        """
        def handler(event, ctx):
            a = ["OK"]
            a.append(a)
            return a
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    _forged(
        "frame_pickle_payload",
        "a frame whose body is a pickle (posix.system), not JSON",
        'frame(b"\\x80\\x04\\x95\\x1d\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x8c\\x05posix'
        '\\x94\\x8c\\x06system\\x94")',
    ),
    _forged(
        "frame_length_4gib",
        "a length prefix of almost 4 GiB: the host must refuse, not allocate",
        'struct.pack(">I", 0xFFFFFFF0) + b"{"',
    ),
    _forged(
        "frame_deep_json",
        "a result frame nested 100 000 levels deep (parser recursion)",
        'frame(b\'{"op":"result","id":1,"value":\' + b"[" * 100000 + b"]" * 100000 + b"}")',
    ),
    _forged(
        "frame_slowloris",
        "announce a 100-byte frame and never send it: only the wall clock ends the call",
        'struct.pack(">I", 100) + b"{"',
        error="WallTimeExceeded",
        limits={"cpu_ms": 50, "memory_mb": 64, "wall_ms": 500, "subrequests": 10},
    ),
]
