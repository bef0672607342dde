"""The seccomp allowlist on its own: a fresh process loads only the filter and probes syscalls.

Confinement as a whole (rlimits, Landlock, namespaces) is tested in test_confine.py; here the
other layers are absent, so every refusal below is the filter's doing.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyseccomp

from sandbox._seccomp import ALLOWLIST, CHANNEL_FD, Check, build_filter

ROOT = str(Path(__file__).resolve().parents[2])


def nr(name: str) -> int:
    return int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))


PROBE = r"""
import ctypes, errno, json, mmap, os, resource, signal, socket, sys, threading, time
from sandbox._seccomp import build_filter

NR = json.loads(sys.argv[1])
# fd 0 is a socket, the channel: the filter allows I/O on fd 0 only, the serve loop's way
chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
page = mmap.mmap(-1, 4096)
page_addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
flt = build_filter()
flt.load()
out = {}

def probe(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    except (RuntimeError, ValueError) as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)

def raw(name, number, *args):
    rc = libc.syscall(number, *args)
    out[name] = "allowed" if rc >= 0 else errno.errorcode[ctypes.get_errno()]

def libc_call(name, fn, *args):
    rc = fn(*args)
    out[name] = "allowed" if rc >= 0 else errno.errorcode[ctypes.get_errno()]

def mapped(prot, flags):
    addr = libc.mmap(None, 8192, prot, flags, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")

# what the serve loop needs
probe("getrandom", lambda: os.urandom(8))
probe("clock", time.monotonic)
probe("sleep", lambda: time.sleep(0.001))
probe("mmap rw", lambda: mapped(3, 0x22))
probe("big alloc", lambda: bytearray(1 << 24))
probe("getrusage", lambda: resource.getrusage(resource.RUSAGE_SELF))
probe("setitimer prof", lambda: signal.setitimer(signal.ITIMER_PROF, 0))
probe("send fd 0", lambda: chan.send(b""))
# what it must not do
probe("setitimer real", lambda: signal.setitimer(signal.ITIMER_REAL, 0))
probe("write fd 0", lambda: os.write(0, b""))
probe("write fd 2", lambda: os.write(2, b"x"))
probe("send MSG_OOB", lambda: chan.send(b"x", socket.MSG_OOB))
probe("mmap shared", lambda: mmap.mmap(-1, 8192).close())
probe("open", lambda: open("/etc/hostname"))
probe("stat", lambda: os.stat("/"))
probe("listdir", lambda: os.listdir("/"))
probe("socket inet", lambda: socket.socket(socket.AF_INET))
probe("socket unix", lambda: socket.socket(socket.AF_UNIX))
probe("socketpair", socket.socketpair)
probe("fork", os.fork)
probe("thread", lambda: threading.Thread(target=print).start())
probe("execv", lambda: os.execv("/bin/true", ["true"]))
probe("memfd", lambda: os.memfd_create("x"))
probe("mmap exec", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC))
libc_call("mprotect exec", libc.mprotect, ctypes.c_void_p(page_addr), 4096, 7)
probe("setrlimit", lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
probe("sigaction", lambda: signal.signal(signal.SIGPROF, signal.SIG_IGN))
probe("sigprocmask", lambda: signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGPROF]))
libc_call("kill", libc.kill, int(sys.argv[2]), 0)
libc_call("prctl", libc.prctl, 4, 1, 0, 0, 0)
libc_call("unshare", libc.unshare, 0x10000000)
for name, number in NR.items():
    raw(name, number, 0, 0, 0, 0)
chan.sendall(json.dumps(out).encode())
"""

DENIED_RAW = (
    "io_uring_setup",
    "openat2",
    "execveat",
    "clone3",
    "ptrace",
    "process_vm_readv",
    "pidfd_open",
    "pidfd_getfd",
    "userfaultfd",
    "bpf",
    "perf_event_open",
    "keyctl",
    "mount",
    "setns",
    "seccomp",
    "socket",
    "connect",
    "tgkill",
    "setuid",
    "chroot",
)


def run_probe() -> tuple[int, dict[str, str]]:
    numbers = {name: nr(name) for name in DENIED_RAW}
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-c", PROBE, json.dumps(numbers), str(os.getpid())],
                stdin=theirs.fileno(),
                env={"PYTHONPATH": ROOT},
            )
        ours.settimeout(60)
        data = b""
        while chunk := ours.recv(65536):
            data += chunk
    return proc.wait(60), json.loads(data or b"{}")


def test_filter_allows_the_serve_loop_and_nothing_else() -> None:
    code, out = run_probe()
    assert code == 0
    allowed = {k for k, v in out.items() if v == "allowed"}
    assert allowed == {
        "getrandom",
        "clock",
        "sleep",
        "mmap rw",
        "big alloc",
        "getrusage",
        "setitimer prof",
        "send fd 0",
    }
    denied = {k: v for k, v in out.items() if v != "allowed"}
    assert denied == {
        **{
            name: "EPERM"
            for name in (
                "setitimer real",
                "write fd 0",
                "write fd 2",
                "send MSG_OOB",
                "mmap shared",
                "open",
                "stat",
                "listdir",
                "socket inet",
                "socket unix",
                "socketpair",
                "fork",
                "execv",
                "memfd",
                "mmap exec",
                "mprotect exec",
                "sigaction",
                "sigprocmask",
                "kill",
                "prctl",
                "unshare",
                *DENIED_RAW,
            )
        },
        "thread": "RuntimeError: can't start new thread",
        # CPython reports setrlimit's EPERM this way
        "setrlimit": "ValueError: not allowed to raise maximum limit",
    }


def test_foreign_abi_syscalls_kill_the_process() -> None:
    flt = build_filter()
    assert flt.get_attr(pyseccomp.Attr.ACT_DEFAULT) == pyseccomp.ERRNO(errno.EPERM)
    assert flt.get_attr(pyseccomp.Attr.ACT_BADARCH) == pyseccomp.KILL_PROCESS
    assert flt.exist_arch(pyseccomp.Arch.NATIVE)
    if platform.machine() == "x86_64":
        assert not flt.exist_arch(pyseccomp.Arch.X86) and not flt.exist_arch(pyseccomp.Arch.X32)
        # getpid through the x32 ABI (bit 30 set): libseccomp treats x32 as a foreign ABI
        # in an x86_64 filter, so the process is killed rather than refused
        script = (
            "import ctypes, os\nfrom sandbox._seccomp import build_filter\n"
            "libc = ctypes.CDLL(None, use_errno=True)\nbuild_filter().load()\n"
            "rc = libc.syscall(0x40000000 | 39)\n"
            "os._exit(ctypes.get_errno() if rc < 0 else 0)\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": ROOT}, timeout=60)
        assert proc.returncode == -signal.SIGSYS
    else:
        assert not flt.exist_arch(pyseccomp.Arch.ARM)


def test_the_allowlist_is_exactly_what_the_serve_loop_needs() -> None:
    # A tripwire: widening the allowlist must be a deliberate change to this test too.
    assert CHANNEL_FD == 0
    rules = {entry.syscall: entry.when for entry in ALLOWLIST}
    assert len(rules) == len(ALLOWLIST)  # one entry per call
    fd0 = Check(0, 0)
    no_address = Check(4, 0)
    assert rules == {
        "recvfrom": (
            (fd0, Check(3, 0), no_address),
            (fd0, Check(3, socket.MSG_PEEK | socket.MSG_DONTWAIT), no_address),
        ),
        "sendto": ((fd0, Check(3, 0), no_address),),
        "brk": (),
        "mmap": ((Check(2, 0x3), Check(3, 0x22)),),  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
        "munmap": (),
        "mremap": ((Check(3, 1),),),  # MREMAP_MAYMOVE
        "setitimer": ((Check(0, signal.ITIMER_PROF),),),
        "getrusage": ((Check(0, 0),),),  # RUSAGE_SELF
        "clock_gettime": ((Check(0, 0),), (Check(0, 1),), (Check(0, 2),)),
        "clock_nanosleep": ((Check(0, 1),),),  # CLOCK_MONOTONIC
        "getrandom": ((Check(2, 0),), (Check(2, os.GRND_NONBLOCK),)),
        "sched_yield": (),
        "futex": ((Check(1, 129),),),  # FUTEX_WAKE_PRIVATE
        "restart_syscall": (),
        "exit_group": (),
    }
    assert all(entry.why for entry in ALLOWLIST)


def test_security_md_lists_every_allowed_call() -> None:
    # The table readers see is the allowlist the filter is built from, call for call.
    text = (Path(ROOT) / "SECURITY.md").read_text()
    section = text[text.index("### The seccomp allowlist") :]
    section = section[: section.index("\n### ", 1)]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert listed == {entry.syscall for entry in ALLOWLIST}


def test_filter_rules_have_the_argument_checks(tmp_path: Path) -> None:
    # The textual dump shows the comparisons the BPF program makes.
    path = tmp_path / "filter.pfc"
    with open(path, "w") as f:
        build_filter().export_pfc(f)
    text = path.read_text()

    def rule(name: str) -> str:
        start = text.index(f"if ($syscall == {nr(name)})")
        return text[start : text.index("# ", start)]  # up to the next call's comment

    # exactly PROT_READ|PROT_WRITE and MAP_PRIVATE|MAP_ANONYMOUS, all 64 bits compared
    assert "if ($a2.hi32 == 0)\n      if ($a2.lo32 == 3)" in rule("mmap")
    assert "if ($a3.hi32 == 0)\n          if ($a3.lo32 == 34)" in rule("mmap")
    for name in ("recvfrom", "sendto", "getrusage"):
        assert "if ($a0.hi32 == 0)\n      if ($a0.lo32 == 0)" in rule(name)
    # flags: 0, or MSG_PEEK|MSG_DONTWAIT (66) for recvfrom; never anything with MSG_OOB
    assert "if ($a3.lo32 == 66)" in rule("recvfrom") and "if ($a3.lo32 == 0)" in rule("recvfrom")
    assert "if ($a3.lo32 == 66)" not in rule("sendto")
    assert "if ($a0.lo32 == 2)" in rule("setitimer")  # ITIMER_PROF only
    for name in (
        "openat",
        "socket",
        "clone",
        "execve",
        "rt_sigaction",
        "prlimit64",
        "read",
        "write",
        "close",
        "madvise",
        "mprotect",
        "sendmsg",
        "recvmsg",
        "rt_sigreturn",
        "exit",
    ):
        assert f"if ($syscall == {nr(name)})" not in text
    assert text.rstrip().endswith(
        "# default action\n  action ERRNO(1);\n# invalid architecture action\n"
        "action KILL_PROCESS;\n#\n# pseudo filter code end\n#"
    )
