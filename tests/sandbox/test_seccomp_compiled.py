"""The allowlist as a precompiled BPF program (what workers load) equals libseccomp's load.

Workers install ``compile_filter(build_filter())`` with one prctl instead of letting
libseccomp generate the program in each of them. Here a fresh process probes the same
system calls under each way of loading, and the outcomes must be identical; the program
must also be byte for byte what libseccomp exports.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyseccomp
import pytest

from sandbox._seccomp import CompiledFilter, build_filter, compile_filter

ROOT = str(Path(__file__).resolve().parents[2])

PROBE = r"""
import ctypes, errno, json, mmap, os, resource, signal, socket, sys, time
from sandbox._seccomp import build_filter, compile_filter

HOW, NR = sys.argv[1], json.loads(sys.argv[2])
# fd 0 is a socket, the channel: the filter allows I/O on fd 0 only, the serve loop's way
chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl(38, 1, 0, 0, 0)  # no-new-privileges, as _confine sets it before loading
if HOW == "compiled":
    compile_filter(build_filter()).load()
else:
    build_filter().load()
out = {}

def probe(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    except (RuntimeError, ValueError) as exc:
        out[name] = type(exc).__name__

probe("getrandom", lambda: os.urandom(8))
probe("clock", time.monotonic)
probe("sleep", lambda: time.sleep(0.001))
probe("mmap rw", lambda: bytearray(1 << 24))  # glibc maps it: private, anonymous
probe("mmap shared", lambda: mmap.mmap(-1, 8192).close())
probe("getrusage", lambda: resource.getrusage(resource.RUSAGE_SELF))
probe("setitimer prof", lambda: signal.setitimer(signal.ITIMER_PROF, 0))
probe("setitimer real", lambda: signal.setitimer(signal.ITIMER_REAL, 0))
probe("send fd 0", lambda: chan.send(b""))
probe("write fd 0", lambda: os.write(0, b""))
probe("write fd 2", lambda: os.write(2, b"x"))
buf = ctypes.create_string_buffer(1)
for fd in (0, 1):  # the worker's spin: recvfrom(0, MSG_PEEK | MSG_DONTWAIT)
    rc = libc.recv(fd, buf, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    out[f"recv peek fd {fd}"] = "allowed" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
rc = libc.recv(0, buf, 1, socket.MSG_OOB | socket.MSG_DONTWAIT)
out["recv oob fd 0"] = "allowed" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
probe("mmap exec", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC))
probe("open", lambda: open("/etc/hostname"))
probe("stat", lambda: os.stat("/"))
probe("fork", os.fork)
probe("sigaction", lambda: signal.signal(signal.SIGPROF, signal.SIG_IGN))
probe("setrlimit", lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
for name, number in NR.items():
    rc = libc.syscall(number, 0, 0, 0, 0)
    out[name] = "allowed" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
chan.sendall(json.dumps(out).encode())
"""

RAW = (
    "sched_yield",
    "getpid",
    "socket",
    "connect",
    "ptrace",
    "bpf",
    "seccomp",
    "setuid",
    "kill",
    "prctl",
    "unshare",
    "openat",
    "clone3",
    "io_uring_setup",
)


def probe(how: str) -> tuple[int, dict[str, str]]:
    numbers = {name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in RAW}
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-c", PROBE, how, json.dumps(numbers)],
                stdin=theirs.fileno(),
                env={"PYTHONPATH": ROOT},
            )
        ours.settimeout(60)
        data = b""
        while chunk := ours.recv(65536):
            data += chunk
    return proc.wait(60), json.loads(data or b"{}")


def test_the_compiled_program_is_what_libseccomp_exports(tmp_path: Path) -> None:
    flt = build_filter()
    path = tmp_path / "filter.bpf"
    with open(path, "wb") as f:
        flt.export_bpf(f)
    compiled = compile_filter(flt)
    assert compiled.program == path.read_bytes()
    assert len(compiled.program) % 8 == 0 and len(compiled.program) > 8


def test_loading_the_compiled_program_behaves_exactly_like_libseccomp() -> None:
    code_lib, by_libseccomp = probe("libseccomp")
    code_bpf, compiled = probe("compiled")
    assert code_lib == code_bpf == 0
    assert compiled == by_libseccomp
    assert {k for k, v in compiled.items() if v == "allowed"} == {
        "getrandom",
        "clock",
        "sleep",
        "mmap rw",
        "getrusage",
        "setitimer prof",
        "send fd 0",
        "sched_yield",
    }
    # Past the filter (the kernel then finds nothing to read), unlike fd 1 or MSG_OOB.
    assert compiled["recv peek fd 0"] == "EAGAIN"
    assert compiled["recv peek fd 1"] == compiled["recv oob fd 0"] == "EPERM"
    assert compiled["write fd 0"] == compiled["mmap shared"] == "EPERM"
    assert compiled["openat"] == compiled["socket"] == compiled["prctl"] == "EPERM"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the x32 ABI exists on x86_64 only")
def test_foreign_abi_syscalls_kill_the_process_with_the_compiled_program() -> None:
    script = (
        "import ctypes, os\nfrom sandbox._seccomp import build_filter, compile_filter\n"
        "libc = ctypes.CDLL(None, use_errno=True)\nlibc.prctl(38, 1, 0, 0, 0)\n"
        "compile_filter(build_filter()).load()\n"
        "rc = libc.syscall(0x40000000 | 39)\n"
        "os._exit(ctypes.get_errno() if rc < 0 else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": ROOT}, timeout=60)
    assert proc.returncode == -signal.SIGSYS


def test_loading_fails_cleanly_without_no_new_privileges_when_unprivileged() -> None:
    # As nobody without no-new-privileges the kernel refuses a filter: load() raises
    # OSError (confine turns that into a ConfinementError), it does not carry on unfiltered.
    script = (
        "import ctypes, errno, os\nfrom sandbox._seccomp import build_filter, compile_filter\n"
        "flt = compile_filter(build_filter())\n"
        "os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
        "try:\n    flt.load()\nexcept OSError as exc:\n    os._exit(exc.errno)\nos._exit(0)\n"
    )
    if os.geteuid() != 0:
        pytest.skip("dropping to nobody needs root")
    proc = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": ROOT}, timeout=60)
    assert proc.returncode == 13  # EACCES


def test_a_program_must_be_whole_instructions() -> None:
    with pytest.raises(ValueError, match="whole 8-byte instructions, got 12 bytes"):
        CompiledFilter(b"\x00" * 12)
    with pytest.raises(ValueError, match="whole 8-byte instructions, got 0 bytes"):
        CompiledFilter(b"")
