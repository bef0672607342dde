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

import errno
from typing import Any

__all__ = ["ALLOWED_ANY_ARGS", "CHANNEL_FD", "FD0_ONLY", "build_filter"]

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
