"""The seccomp allowlist a worker installs as the last step of its confinement.

Deny by default: every system call not listed here fails with ``EPERM``, so sandboxed code
sees a clean, deterministic ``PermissionError`` and the supervisor stays up. The list is
what the worker's serve loop needs *after* confinement and nothing more: the interpreter
is already initialised, every module it may import is already imported (imports would need
``open``), and the only file descriptor is the channel to the host, which the worker holds
as fd 0 (see ``_confine``).

The list assumes the language layer has already fallen: a worker running arbitrary native
code gets exactly these calls, with these arguments. It was cut to what real workers do
(``strace -f`` of the sandbox, context, hook and shim test suites plus a heavy workload:
hooks, host calls, 8 MiB frames both ways, ``MemoryError``, the spin-wait probe), and every
call is pinned to the argument values seen there wherever seccomp can compare them (it sees
registers, never memory behind pointers). Each entry of :data:`ALLOWLIST` says why.

What is deliberately absent, and why (escape classes ``os`` and ``dos``):

- ``open``/``openat``/``openat2``/``creat``/``*stat*``/``access``/``readlink``: no files, and
  no probing which files exist (``stat`` works without ``open``).
- ``read``/``write``/``close``/``sendmsg``/``recvmsg``/``socket``/``connect``/``shutdown``: the
  channel is used through ``recvfrom``/``sendto`` only (CPython's ``socket.recv`` and
  ``sendall``), on fd 0 only, with exactly the flags the serve loop passes. ``MSG_OOB`` in
  particular is refused: out-of-band data on a unix stream socket is the path of
  CVE-2025-38236 (a use-after-free in ``unix_stream_read_generic``), and nothing here needs it.
- ``clone``/``clone3``/``fork``/``vfork``/``execve``/``execveat``: no processes, no threads
  (``RLIMIT_NPROC`` = 0 is the second lock on this door). With one thread there is never a
  lock to wait for, so of ``futex`` (a large kernel surface: requeue, PI, waitv) only the
  private wake is left, which glibc's ``pthread_once`` issues after every first-time
  initialisation and treats as fatal when it fails (found by the probe process of
  ``test_seccomp``: abort, then SIGSEGV).
- ``kill``/``tkill``/``tgkill``/``pidfd_*``/``ptrace``/``process_vm_*``: the worker cannot
  signal or inspect anyone, not even itself (it has no reason to).
- ``rt_sigaction``/``rt_sigprocmask``/``sigaltstack``/``rt_sigreturn``: the CPU limits are
  the *default* actions of SIGPROF and SIGXCPU; a worker that could ignore or block them
  would escape them. No handler is ever installed (``SigCgt`` of a worker is 0), so there
  is never a handler to return from either.
- ``setrlimit``/``prlimit64``/``prctl``/``seccomp``/``unshare``/``setns``/``mount``: the
  confinement cannot be loosened or re-entered.
- ``io_uring_*``/``memfd_create``/``userfaultfd``/``bpf``/``perf_event_open``/``keyctl``:
  large kernel attack surface, never needed by Python code.
- ``mprotect``/``pkey_mprotect``, and ``mmap`` with anything but private anonymous
  read-write memory: no new executable memory (``W+X`` class), no shared or file mappings.
- ``madvise``: no advice at all. CPython's allocator never gives any and glibc's gives
  ``MADV_DONTNEED`` only for thread arenas (there are no threads) and ``malloc_trim``
  (never called), ignoring failures; ``MADV_MERGEABLE`` (KSM: a cross-process side channel
  on page contents) and the rest are kernel surface the worker has no use for.
- ``getitimer``/``gettimeofday``/``time``/``clock_getres``/``nanosleep``/``exit``: unused
  (CPython asks ``clock_gettime``/``clock_nanosleep``; leaving is ``exit_group``).

Only the native architecture is accepted. A system call made through another ABI (``int
0x80`` i386 calls, x32 calls with bit 30 set) kills the process (``ACT_BADARCH``): those
tables have different numbers, and an allowlist written for one ABI means nothing in another.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOWLIST",
    "CHANNEL_FD",
    "Allowed",
    "Check",
    "CompiledFilter",
    "build_filter",
    "compile_filter",
]

# The worker's only file descriptor: the socket to the host (``_confine`` moves it here).
CHANNEL_FD = 0

# The constants below have the same values on x86_64 and aarch64 (the asm-generic ones).
_PROT_READ_WRITE = 0x1 | 0x2
_MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20
_MREMAP_MAYMOVE = 1
_MSG_PEEK_DONTWAIT = 0x02 | 0x40  # MSG_PEEK | MSG_DONTWAIT
_ITIMER_PROF = 2
_RUSAGE_SELF = 0
_CLOCK_REALTIME = 0
_CLOCK_MONOTONIC = 1
_CLOCK_PROCESS_CPUTIME_ID = 2
_GRND_NONBLOCK = 1
_FUTEX_WAKE_PRIVATE = 1 | 128  # FUTEX_WAKE | FUTEX_PRIVATE_FLAG


@dataclass(frozen=True)
class Check:
    """Argument ``arg`` (0-based) of the call must equal ``value``, all 64 bits of it.

    Comparing the whole register (not its low half) also refuses a value with garbage in
    the upper bits, which the kernel would truncate to an allowed-looking ``int``.
    """

    arg: int
    value: int


@dataclass(frozen=True)
class Allowed:
    """One allowed system call: allowed when *any* entry of ``when`` holds (each entry is a
    conjunction of :class:`Check`); an empty ``when`` means any arguments."""

    syscall: str
    when: tuple[tuple[Check, ...], ...]
    why: str


def _fd0(*checks: Check) -> tuple[Check, ...]:
    return (Check(0, CHANNEL_FD), *checks)


#: The whole allowlist. SECURITY.md has the same table for readers (a test keeps them equal).
ALLOWLIST: tuple[Allowed, ...] = (
    # --- the channel to the host ---------------------------------------------------------
    Allowed(
        "recvfrom",
        (
            # socket.recv(n): flags 0, no source address (the channel is connected)
            _fd0(Check(3, 0), Check(4, 0)),
            # the spin-wait probe (_protocol.SpinWait.spin_blocking): one byte, peek only
            _fd0(Check(3, _MSG_PEEK_DONTWAIT), Check(4, 0)),
        ),
        "reading frames from the host: socket.recv and the spin-wait probe",
    ),
    Allowed(
        "sendto",
        (_fd0(Check(3, 0), Check(4, 0)),),  # socket.sendall: flags 0, no address
        "sending frames to the host: socket.sendall",
    ),
    # --- memory --------------------------------------------------------------------------
    Allowed(
        "brk",
        (),
        "glibc malloc's main heap (grows and shrinks it); only moves the own data segment",
    ),
    Allowed(
        "mmap",
        ((Check(2, _PROT_READ_WRITE), Check(3, _MAP_PRIVATE_ANONYMOUS)),),
        "pymalloc arenas and glibc's large blocks: private anonymous read-write memory only",
    ),
    Allowed("munmap", (), "returning arenas and large blocks; only unmaps the own memory"),
    Allowed(
        "mremap",
        ((Check(3, _MREMAP_MAYMOVE),),),
        "glibc realloc of a large block (growing frame buffers, lists, bytes); never FIXED",
    ),
    # --- the CPU limit and the usage report ------------------------------------------------
    Allowed(
        "setitimer",
        ((Check(0, _ITIMER_PROF),),),
        "arming and disarming the per-call CPU timer",
    ),
    Allowed(
        "getrusage",
        ((Check(0, _RUSAGE_SELF),),),
        "the CPU time and peak RSS each call reports (own process only)",
    ),
    # --- clocks, entropy, scheduling --------------------------------------------------------
    Allowed(
        "clock_gettime",
        tuple(
            (Check(0, clock),)
            for clock in (_CLOCK_REALTIME, _CLOCK_MONOTONIC, _CLOCK_PROCESS_CPUTIME_ID)
        ),
        "time.time/monotonic/perf_counter (when the vDSO cannot answer) and "
        "time.process_time; never another process's CPU clock",
    ),
    Allowed(
        "clock_nanosleep",
        ((Check(0, _CLOCK_MONOTONIC),),),
        "time.sleep in trusted preludes (plugins have no sleep); the wall deadline bounds it",
    ),
    Allowed(
        "getrandom",
        ((Check(2, 0),), (Check(2, _GRND_NONBLOCK),)),
        "os.urandom (secrets, uuid4, hashing salts) and random.Random() seeding",
    ),
    Allowed("sched_yield", (), "the spin-wait for the host's next frame yields the CPU each turn"),
    # --- the C library -------------------------------------------------------------------
    Allowed(
        "futex",
        ((Check(1, _FUTEX_WAKE_PRIVATE),),),
        "glibc's pthread_once wakes waiters after a first-time initialisation (there are "
        "none) and aborts if that fails; waiting, requeueing and PI operations are refused",
    ),
    Allowed(
        "restart_syscall",
        (),
        "the kernel resumes an interrupted clock_nanosleep with it (after a stop/continue)",
    ),
    Allowed("exit_group", (), "leaving (os._exit)"),
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

    for entry in ALLOWLIST:
        # Skip calls this architecture does not have.
        if sc.resolve_syscall(sc.Arch.NATIVE, entry.syscall) < 0:
            continue
        # Several rules for one call are alternatives (libseccomp ORs them); the checks of
        # one rule must all hold.
        for checks in entry.when or ((),):
            flt.add_rule(sc.ALLOW, entry.syscall, *(sc.Arg(c.arg, sc.EQ, c.value) for c in checks))
    # The calls of every frame and every spin turn are checked first (a priority hint to
    # libseccomp's generator; it changes the order of the tests, not what they allow).
    for name in ("recvfrom", "sendto", "sched_yield"):
        flt.syscall_priority(name, 255)
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
