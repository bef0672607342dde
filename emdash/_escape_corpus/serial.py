"""Escape class ``serial`` (spec 088-090): serialisation and introspection modules, and the wire.

``pickle``/``marshal``/``ctypes``/``gc``/``inspect``/``sys`` are never importable. Results
cross to the host as JSON only (a plugin-controlled pickle would run code in the host),
and the host treats every frame from a worker as hostile: forged or malformed frames end
the worker, never the host.
"""

from __future__ import annotations

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


# The forged-frame payload runs with the language layer bypassed: the worker's channel is fd
# 0 and the serve loop is blocked in the middle of this very call. Every frame below is
# something a compromised worker could send; the host must treat each as a protocol
# violation, kill the worker, report it, and keep serving.
_FORGED_FRAMES = r'''
import os
import struct

def frame(body):
    return struct.pack(">I", len(body)) + body

# 1. a frame claiming a length of 4 GiB (the host must not try to allocate it)
# 2. a host_call for another call id, "as" another plugin
# 3. a result frame that is a pickle, not JSON
forged = [
    frame(b'{"op":"host_call","id":999999,"method":"kv/get","params":{"key":"secret"},'
          b'"plugin":"@@VICTIM_ID@@"}'),
    frame(b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94"),
    struct.pack(">I", 0xFFFFFFF0) + b"{",
]
for data in forged:
    os.write(0, data)
result = "OK forged frames were accepted"
'''

PAYLOADS: list[Payload] = [
    _import("pickle", "deserialisation gadgets", "corpus 088", ref="088"),
    P(
        "copyreg_dispatch_gadget",
        "register a reducer in copyreg.dispatch_table and return an instance: RCE if the host "
        "ever pickles or unpickles worker output",
        "corpus 089; DESIGN.md section 8 (results are JSON)",
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
    P(
        "forged_ipc_frames",
        "write forged frames on the worker's channel: another call id and plugin, a pickle, "
        "a 4 GiB length prefix",
        "corpus 090; sandbox-contract section 8 (identity bound host-side)",
        _FORGED_FRAMES,
        "runtime_denied",
        "WorkerCrashed",
        mode="raw-worker",
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
]
