"""Confinement of one freshly forked worker, applied before any sandboxed code exists in it.

:func:`confine` runs in the child right after the fork server forked it, in this order
(SECURITY.md; each step says why it sits where it does):

1. new session: the worker leaves the fork server's process group, so no terminal signal or
   group kill aimed at the host lands on it, and it cannot signal the host's group.
2. the channel to the host becomes fd 0 and every other descriptor is closed
   (``close_range``): the worker holds nothing it could misuse (inherited fds class).
3. empty environment: host secrets in variables never reach plugin code.
4. signals: SIGPROF back to its default action (the CPU limit *is* that default: the kernel
   terminates the process even while it is inside a long C call) and nothing blocked.
5. privileges: when the fork server runs as root, the worker becomes ``nobody`` (uid/gid
   65534, no supplementary groups), so file permissions and signal checks stop trusting it.
6. rlimits, soft == hard so they cannot be raised back: NPROC 0, FSIZE 0, CORE 0, MEMLOCK 0, and AS / DATA = the size the worker
   has right now + ``memory_mb``, so a too-big allocation raises MemoryError. And the
   lifetime CPU backstop, ``RLIMIT_CPU`` = ``cpu_s`` (hard one second above: the kernel
   sends SIGXCPU at the soft limit, whose default action ends the worker, and SIGKILL at
   the hard one). The per-call limit is ``ITIMER_PROF``, which native code can disarm
   (``setitimer`` must stay allowed to arm it); this one it cannot touch, so a broken-out
   worker gets at most ``cpu_s`` of CPU in its whole life, busy or idle.
7. ``PR_SET_NO_NEW_PRIVS``: nothing can gain privileges (also required by Landlock and an
   unprivileged seccomp filter).
8. new user and network namespaces (best effort): no network interface at all, and no
   capability over anything outside; then every capability is dropped, including the ones
   the new user namespace granted inside it.
9. parent-death signal and not dumpable. Both are *after* the credential changes above,
   which reset them. Not dumpable makes ``/proc/<pid>`` of the worker root-owned, so other
   processes of the same uid cannot ptrace it or read its memory.
10. Landlock (best effort): a ruleset that handles every filesystem right (and TCP, and
    abstract-socket and signal scoping where the ABI has them) with no rule allowing any,
    i.e. no filesystem access at all even if a seccomp gap existed. Then RLIMIT_NOFILE 1:
    fd 0 is the only descriptor that can ever exist (Landlock needed one more, briefly).
11. the seccomp allowlist (``_seccomp``), last, because it forbids the calls above.

Best-effort steps record what happened in the returned report (``{"landlock": "abi 7",
"userns": "yes", ...}``); the supervisor keeps it with the worker. The mandatory steps raise
:class:`ConfinementError`, and the worker then exits instead of running unconfined.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import socket
from typing import Any

from ._seccomp import CHANNEL_FD

__all__ = ["ConfinementError", "confine", "landlock_abi", "memory_baseline"]

NOBODY = 65534

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
# The same numbers on x86_64 and aarch64 (both use the generic table for these).
_SYS_CLOSE_RANGE = 436
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.unshare.restype = ctypes.c_int
_libc.capset.restype = ctypes.c_int


class ConfinementError(Exception):
    """A mandatory confinement step failed; the worker must not run anything."""


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise ConfinementError(f"{what} failed: {os.strerror(err)}")
    return result


def _prctl(option: int, arg: int, what: str) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), what)


def memory_baseline() -> tuple[int, int]:
    """(VmSize, VmData) of this process in bytes, from ``/proc/self/status``."""
    sizes = {"VmSize": 0, "VmData": 0}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in sizes:
                sizes[key] = int(rest.split()[0]) * 1024
    return sizes["VmSize"], sizes["VmData"]


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0 when there is none)."""
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(abi), 0)


def confine(
    channel: socket.socket, memory_mb: int, seccomp_filter: Any, parent: int, cpu_s: int
) -> dict[str, str]:
    """Confine the calling (freshly forked, single-threaded) process; see the module doc.

    ``channel`` is the worker's end of its socketpair; afterwards it is fd 0 and the object
    passed in is detached. ``parent`` is the fork server's pid, taken *before* the fork (if
    the fork server died before this runs, ``getppid()`` is already someone else).
    ``cpu_s`` is the worker's lifetime CPU budget in seconds. Returns the report of
    best-effort steps.
    """
    report: dict[str, str] = {}
    if os.getppid() != parent:
        raise ConfinementError("the fork server exited while the worker was starting")

    # 1. new session
    os.setsid()

    # 2. the channel becomes fd 0; nothing else stays open
    fd = channel.detach()
    if fd != CHANNEL_FD:
        os.dup2(fd, CHANNEL_FD, inheritable=False)
    if _libc.syscall(_SYS_CLOSE_RANGE, CHANNEL_FD + 1, 0xFFFFFFFF, 0) < 0:
        os.closerange(CHANNEL_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    # 3. empty environment: os.environ.clear() unsets each variable in the C environ too,
    # and the strings the kernel copied at exec time (/proc/<pid>/environ) are zeroed.
    os.environ.clear()
    _wipe_initial_environment()

    # 4. signals: default actions, nothing blocked, no wakeup fd left from the fork server
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGPROF, signal.SIGXCPU, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

    # The memory baseline is taken here, with the only fd at 0, before anything is limited.
    vm_size, vm_data = memory_baseline()

    # 5. privileges
    if os.geteuid() == 0 or os.getuid() == 0:
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
        except OSError as exc:
            raise ConfinementError(f"dropping root privileges failed: {exc}") from None
    report["uid"] = str(os.getuid())

    # 6. rlimits (soft == hard: a raised soft limit would need a higher hard one)
    budget = memory_mb * 1024 * 1024
    limits = {
        resource.RLIMIT_NPROC: 0,
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
        resource.RLIMIT_AS: vm_size + budget,
        resource.RLIMIT_DATA: vm_data + budget,
    }
    for which, value in limits.items():
        _setrlimit(which, value)
    report["rlimit_as_mb"] = str((vm_size + budget) >> 20)
    # soft < hard on purpose: SIGXCPU at the soft limit is a death the host can tell from
    # every other (SIGKILL at the hard limit is only the fallback). Raising the soft limit
    # towards the hard one needs setrlimit, which seccomp refuses before any code runs.
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    except (OSError, ValueError) as exc:
        raise ConfinementError(f"setrlimit(RLIMIT_CPU, {cpu_s}) failed: {exc}") from None
    report["rlimit_cpu_s"] = str(cpu_s)

    # 7. no new privileges, ever
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")

    # 8. namespaces (best effort: some kernels or container runtimes refuse them)
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        report["userns"] = report["netns"] = "yes"
    else:
        reason = os.strerror(ctypes.get_errno())
        report["userns"] = report["netns"] = f"no ({reason})"

    # The new user namespace gave this process every capability *inside* it. They reach
    # nothing outside, but nothing here needs them either: drop them all (bounding set
    # first, while CAP_SETPCAP is still held; then effective/permitted/inheritable).
    report["capabilities"] = _drop_capabilities()

    # 9. die with the fork server; not dumpable (after the credential changes, which reset
    # both). If the fork server already died before PDEATHSIG was set, stop now.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != parent:
        raise ConfinementError("the fork server exited while the worker was starting")
    _prctl(_PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")

    # 10. Landlock: handle every right, allow none
    report["landlock"] = _landlock_deny_all()

    # NOFILE only now: Landlock needed one more descriptor for its ruleset. From here on,
    # fd 0 is the only descriptor that can exist.
    _setrlimit(resource.RLIMIT_NOFILE, CHANNEL_FD + 1)

    # 11. seccomp, last
    try:
        seccomp_filter.load()
    except OSError as exc:
        raise ConfinementError(f"loading the seccomp filter failed: {exc}") from None
    report["seccomp"] = "allowlist"
    return report


def _wipe_initial_environment() -> None:
    """Zero the environment block the fork server received at exec (inherited memory)."""
    with open("/proc/self/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state) of proc(5); env_start and env_end are fields 50 and 51
    env_start, env_end = int(fields[47]), int(fields[48])
    if 0 < env_start < env_end:
        ctypes.memset(env_start, 0, env_end - env_start)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_capabilities() -> str:
    """Empty every capability set of this process; return "none" or why not."""
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) < 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability this kernel knows
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero: two 32-bit halves of each 64-bit set
    if _libc.capset(ctypes.byref(header), data) < 0:
        raise ConfinementError(f"capset failed: {os.strerror(ctypes.get_errno())}")
    return "none"


def _setrlimit(which: int, value: int) -> None:
    try:
        resource.setrlimit(which, (value, value))
    except (OSError, ValueError) as exc:
        raise ConfinementError(f"setrlimit({which}, {value}) failed: {exc}") from None


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def _landlock_deny_all() -> str:
    """Restrict this process to no filesystem access at all; return what was applied."""
    abi = landlock_abi()
    if abi < 1:
        return "unavailable"
    fs = (1 << 13) - 1  # ABI 1: execute, read/write files, read dirs, remove/make anything
    if abi >= 2:
        fs |= 1 << 13  # REFER: link/rename across directories
    if abi >= 3:
        fs |= 1 << 14  # TRUNCATE
    if abi >= 5:
        fs |= 1 << 15  # IOCTL_DEV
    attr = _RulesetAttr(fs, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = 0b11  # BIND_TCP, CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = 0b11  # abstract unix sockets and signals outside the domain
        size = 24
    ruleset = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return f"failed ({os.strerror(ctypes.get_errno())})"
    try:
        if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) < 0:
            return f"failed ({os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    return f"abi {abi}"
