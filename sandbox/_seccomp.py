"""The seccomp allowlist a worker installs as the last step of its confinement.

Deny by default: every system call not listed here fails with ``EPERM``, so sandboxed code
sees a clean, deterministic ``PermissionError`` and the supervisor stays up. The list is
what the worker's serve loop needs *after* confinement and nothing more: the interpreter
is already initialised, every module it may import is already imported (imports would need
``open``), and the only file descriptor is the channel to the host, which the worker holds
as fd 0 (see ``_confine``).

What is deliberately absent, and why (escape classes ``os`` and ``dos``):

- ``open``/``openat``/``openat2``/``creat``/``*stat*``/``access``/``readlink``: no files, and
  no probing which files exist (``stat`` works without ``open``).
- ``socket``/``socketpair``/``connect``/``bind``/``sendmsg``/``recvmsg``: no new channels;
  the host channel needs only ``read``/``write``/``recvfrom``/``sendto``, and those are
  allowed on fd 0 only.
- ``clone``/``clone3``/``fork``/``vfork``/``execve``/``execveat``: no processes, no threads
  (``RLIMIT_NPROC`` = 0 is the second lock on this door).
- ``kill``/``tkill``/``tgkill``/``pidfd_*``/``ptrace``/``process_vm_*``: the worker cannot
  signal or inspect anyone, not even itself (it has no reason to).
- ``rt_sigaction``/``rt_sigprocmask``/``sigaltstack``: the CPU limit is the *default* action
  of SIGPROF; a worker that could ignore or block SIGPROF would escape it.
- ``setrlimit``/``prlimit64``/``prctl``/``seccomp``/``unshare``/``setns``/``mount``: the
  confinement cannot be loosened or re-entered.
- ``io_uring_*``/``memfd_create``/``userfaultfd``/``bpf``/``perf_event_open``/``keyctl``:
  large kernel attack surface, never needed by Python code.
- ``mmap``/``mprotect`` with ``PROT_EXEC``: no new executable memory, so a memory-safety bug
  in the interpreter cannot be turned into injected machine code easily (``W+X`` class).

Only the native architecture is accepted. A system call made through another ABI (``int
0x80`` i386 calls, x32 calls with bit 30 set) kills the process (``ACT_BADARCH``): those
tables have different numbers, and an allowlist written for one ABI means nothing in another.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from typing import Any

__all__ = [
    "ALLOWED_ANY_ARGS",
    "CHANNEL_FD",
    "FD0_ONLY",
    "CompiledFilter",
    "build_filter",
    "compile_filter",
]

# The worker's only file descriptor: the socket to the host (``_confine`` moves it here).
CHANNEL_FD = 0

_PROT_EXEC = 0x4
_ITIMER_PROF = 2
_RUSAGE_SELF = 0

# I/O, but only on the channel. ``read``/``write`` are what the C library may use for a
# socket; ``recvfrom``/``sendto`` are what CPython's socket.recv/sendall use.
FD0_ONLY = ("read", "write", "recvfrom", "sendto")

# Allowed with any arguments. Each line says why the serve loop needs it.
ALLOWED_ANY_ARGS = (
    # memory management: the allocator (pymalloc arenas, glibc malloc) and MemoryError paths
    "brk",
    "munmap",
    "mremap",
    "madvise",
    # the C library's locks (uncontended with one thread, but glibc may still call it)
    "futex",
    # clocks and sleeping (time.time, time.monotonic, time.sleep; vDSO usually, syscall
    # fallback otherwise). Sleeping is harmless: the host's wall deadline bounds it.
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "clock_nanosleep",
    "nanosleep",
    "restart_syscall",
    "sched_yield",
    # returning from a signal handler (none are installed, but the kernel may need it)
    "rt_sigreturn",
    # entropy for random.Random() seeding and hash randomisation
    "getrandom",
    # the worker closes objects that wrap file descriptors; closing is never a capability
    "close",
    # leaving
    "exit",
    "exit_group",
)


def build_filter() -> Any:
    """Build (but do not load) the worker's filter; the fork server builds it once.

    Loading happens in each worker (``filter.load()``) after everything else is in place,
    because the filter also forbids the calls the earlier steps of confinement make.
    Returns a ``pyseccomp.SyscallFilter``.
    """
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    # Any syscall from a foreign ABI (i386 via int 0x80, x32) ends the process: our numbers
    # only mean what we think they mean for the native ABI.
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    # No-new-privileges is set by _confine already; libseccomp would set it again.
    flt.set_attr(sc.Attr.CTL_NNP, 1)

    def allow(name: str, *args: Any) -> None:
        # Skip calls this architecture does not have (aarch64 has no `time`, for example).
        if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:
            return
        flt.add_rule(sc.ALLOW, name, *args)

    for name in ALLOWED_ANY_ARGS:
        allow(name)
    for name in FD0_ONLY:
        allow(name, sc.Arg(0, sc.EQ, CHANNEL_FD))
    # Mapping memory, but never executable memory.
    allow("mmap", sc.Arg(2, sc.MASKED_EQ, _PROT_EXEC, 0))
    allow("mprotect", sc.Arg(2, sc.MASKED_EQ, _PROT_EXEC, 0))
    # The per-call CPU timer (ITIMER_PROF only) and the usage report (own process only).
    allow("setitimer", sc.Arg(0, sc.EQ, _ITIMER_PROF))
    allow("getitimer", sc.Arg(0, sc.EQ, _ITIMER_PROF))
    allow("getrusage", sc.Arg(0, sc.EQ, _RUSAGE_SELF))
    return flt


# --- the filter as a ready BPF program ---------------------------------------------------

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFilter(ctypes.Structure):
    """``struct sock_filter``: one classic-BPF instruction (8 bytes)."""

    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    """``struct sock_fprog``: the program handed to the kernel."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class CompiledFilter:
    """The allowlist as the BPF program libseccomp generates for it, loaded with one call.

    ``libseccomp``'s ``seccomp_load`` generates the program from its rule database every
    time it is called: in every worker, after the fork. That generation allocated and
    wrote ~0.4 MiB of the worker's memory (copy-on-write pages it then owned) and took CPU
    at each worker start. :func:`compile_filter` runs it once, in the fork server, through
    ``seccomp_export_bpf`` (the same generator, writing the program out instead of loading
    it); :meth:`load` then installs exactly those instructions with
    ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``, which is what ``seccomp_load`` does for
    this filter: no TSYNC, LOG or SPEC_ALLOW flag is set on it, and no-new-privileges,
    which it would also set, is set by ``_confine`` before this runs (the kernel refuses
    an unprivileged filter without it).
    """

    def __init__(self, program: bytes) -> None:
        if not program or len(program) % ctypes.sizeof(_SockFilter):
            raise ValueError(
                f"a BPF program is whole 8-byte instructions, got {len(program)} bytes"
            )
        count = len(program) // ctypes.sizeof(_SockFilter)
        if count > 0xFFFF:
            raise ValueError(f"a BPF program has at most 65535 instructions, got {count}")
        self.program = program
        # Built here, in the fork server: a worker only passes the pointer to the kernel.
        self._instructions = (_SockFilter * count).from_buffer_copy(program)
        self._fprog = _SockFprog(
            count, ctypes.cast(self._instructions, ctypes.POINTER(_SockFilter))
        )
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._prctl.restype = ctypes.c_int

    def load(self) -> None:
        """Install the filter in this process (for good: filters cannot be removed)."""
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0):
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))


def compile_filter(flt: Any) -> CompiledFilter:
    """The BPF program of a ``pyseccomp.SyscallFilter`` (see :class:`CompiledFilter`)."""
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return CompiledFilter(out.read())
