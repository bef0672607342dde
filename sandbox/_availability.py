"""Can this host run the sandbox? (``sandbox.is_available()``)

The sandbox is only as good as its process layer, so every piece it cannot work without is
checked here, and the first missing one is named in ``reason``: Linux on x86_64 or aarch64
(the seccomp allowlist is written for those system-call tables), ``fork``, ``pidfd_open``
(the host kills workers through pidfds, which cannot hit a recycled pid), another process's
CPU clock readable with ``clock_gettime`` (the host measures every worker's CPU time from the
kernel and never falls back to what a worker reports about itself), pyseccomp with a
loadable libseccomp, and a kernel that supports seccomp filters. Landlock and namespaces are
best effort and do not make the sandbox unavailable; each worker records what it got.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import time
from typing import NamedTuple

__all__ = ["Availability", "is_available"]

SUPPORTED_MACHINES = ("x86_64", "aarch64")
# libseccomp API level 3 adds SCMP_ACT_LOG and KILL_PROCESS support detection; our filter
# uses KILL_PROCESS for foreign ABIs.
MIN_SECCOMP_API = 3
_PR_GET_SECCOMP = 21


class Availability(NamedTuple):
    """Whether sandboxing works here; ``reason`` says why not (or what was found).

    Its truth value is ``ok``: ``if sandbox.is_available():`` means what it reads. A plain
    two-item tuple is always true, which made that test pass on hosts that cannot sandbox.
    It still unpacks as ``ok, reason = sandbox.is_available()``.
    """

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok is True


@functools.cache
def is_available() -> Availability:
    """Check, once per process, whether workers can be confined on this host."""
    if sys.platform != "linux":
        return Availability(False, f"the sandbox needs Linux; this host runs {sys.platform}")
    machine = platform.machine()
    if machine not in SUPPORTED_MACHINES:
        return Availability(
            False, f"the sandbox supports x86_64 and aarch64; this host is {machine or 'unknown'}"
        )
    if not hasattr(os, "fork"):
        return Availability(False, "this Python has no os.fork")
    if not hasattr(os, "pidfd_open"):
        return Availability(False, "this Python has no os.pidfd_open (needs Python 3.9+)")
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return Availability(False, f"the kernel has no pidfd_open (needs Linux 5.3+): {exc}")
    try:
        # The clock id form the host uses for workers (by pid, see _handle.process_cpu_clock),
        # tried on this process.
        time.clock_gettime_ns((~os.getpid() << 3) | 2)
    except (OSError, AttributeError) as exc:
        return Availability(
            False,
            "the host cannot read a process's CPU clock by pid (clock_gettime), so it could "
            f"not measure its workers' CPU time: {exc}",
        )
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as exc:
        return Availability(False, f"pyseccomp or libseccomp cannot be loaded: {exc}")
    try:
        api = int(pyseccomp.get_api())
    except (NotImplementedError, OSError) as exc:
        return Availability(False, f"libseccomp is too old to report its API level: {exc}")
    if api < MIN_SECCOMP_API:
        return Availability(
            False,
            f"libseccomp/kernel seccomp API level is {api}; level {MIN_SECCOMP_API}+ is needed "
            "(Linux 4.14+ and libseccomp 2.4+)",
        )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return Availability(False, "the kernel was built without seccomp support")
    return Availability(True, f"Linux {platform.release()} {machine}, seccomp API level {api}")
