"""The tightened allowlist inside real, confined workers (issue 14: assume L1-L3 broke).

Each payload runs as plain Python with ctypes in a confined worker (``raw_exec_for_tests``:
the language layer bypassed, as if it had been broken) and makes raw system calls. Calls
and flags the serve loop never uses must be refused with EPERM, the exact variants it does
use must still pass the filter, and the worker must keep serving. The rest of the file is
the lifetime CPU backstop (``RLIMIT_CPU``): what it is set to, that a worker which disarms
its per-call timer still dies by it, and that an honest worker is replaced before it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyseccomp
import pytest

from sandbox import CpuLimitExceeded, SandboxLimits, Supervisor, WorkerPool
from sandbox._call import MIN_WORKER_CPU_S, WORKER_CPU_CALLS


def nr(name: str) -> int:
    return int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))


# Every argument is passed as a full 64-bit register (c_long): a Python int given to the
# variadic syscall() would be a 32-bit int with undefined upper bits, and the filter
# compares all 64. `page` is a private read-write page (the one mmap the filter allows).
HEAD = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def sc(number, *args):
    rc = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return "OK" if rc >= 0 else errno.errorcode[ctypes.get_errno()]

def new_page(prot=3, flags=0x22):
    return libc.syscall(ctypes.c_long(NR_MMAP), ctypes.c_long(0), ctypes.c_long(8192),
                        ctypes.c_long(prot), ctypes.c_long(flags), ctypes.c_long(-1),
                        ctypes.c_long(0))

def mapped(prot, flags):
    return "OK" if new_page(prot, flags) != -1 else errno.errorcode[ctypes.get_errno()]

page = new_page()
assert page > 0, errno.errorcode[ctypes.get_errno()]
scratch = ctypes.create_string_buffer(4096)  # zeroed; alive while `buf` is used
buf = ctypes.addressof(scratch)
"""

MSG_OOB = socket.MSG_OOB
PEEK_DONTWAIT = socket.MSG_PEEK | socket.MSG_DONTWAIT
MADV = {
    "MERGEABLE": 12,
    "DONTNEED": 4,
    "FREE": 8,
    "HUGEPAGE": 14,
    "DONTFORK": 10,
    "WIPEONFORK": 18,
    "WILLNEED": 3,
    "COLLAPSE": 25,
}


def refused_calls(host_pid: int) -> dict[str, str]:
    """name -> an expression (a call of ``sc``) that the filter must refuse."""
    # The CPU clock of another process: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), a
    # negative clockid_t sign-extended to 64 bits as the C library passes it.
    host_clock = ((~host_pid) << 3) | 2
    calls = {
        # the channel: MSG_OOB (CVE-2025-38236) and every flag the serve loop does not pass
        "send MSG_OOB": f"sc({nr('sendto')}, 0, buf, 1, {MSG_OOB}, 0, 0)",
        "recv MSG_OOB": f"sc({nr('recvfrom')}, 0, buf, 1, {MSG_OOB | socket.MSG_DONTWAIT}, 0, 0)",
        "recv MSG_OOB|MSG_PEEK|MSG_DONTWAIT": (
            f"sc({nr('recvfrom')}, 0, buf, 1, {MSG_OOB | PEEK_DONTWAIT}, 0, 0)"
        ),
        "send MSG_DONTWAIT": f"sc({nr('sendto')}, 0, buf, 0, {socket.MSG_DONTWAIT}, 0, 0)",
        "send MSG_NOSIGNAL": f"sc({nr('sendto')}, 0, buf, 0, {socket.MSG_NOSIGNAL}, 0, 0)",
        "recv MSG_PEEK (blocking)": f"sc({nr('recvfrom')}, 0, buf, 1, {socket.MSG_PEEK}, 0, 0)",
        "recv MSG_ERRQUEUE": (
            f"sc({nr('recvfrom')}, 0, buf, 1, {socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT}, 0, 0)"
        ),
        "recv MSG_TRUNC": (
            f"sc({nr('recvfrom')}, 0, buf, 1, {socket.MSG_TRUNC | PEEK_DONTWAIT}, 0, 0)"
        ),
        # garbage in the upper half: the kernel would truncate it to flags 0
        "send flags 1 << 32": f"sc({nr('sendto')}, 0, buf, 0, 1 << 32, 0, 0)",
        "recv flags MSG_OOB << 32 | peek": (
            f"sc({nr('recvfrom')}, 0, buf, 1, ({MSG_OOB} << 32) | {PEEK_DONTWAIT}, 0, 0)"
        ),
        "sendto with an address": f"sc({nr('sendto')}, 0, buf, 0, 0, buf, 16)",
        "send on fd 1 << 32": f"sc({nr('sendto')}, 1 << 32, buf, 0, 0, 0, 0)",
        "sendmsg on the channel": f"sc({nr('sendmsg')}, 0, buf, {MSG_OOB})",
        "recvmsg on the channel": f"sc({nr('recvmsg')}, 0, buf, {MSG_OOB | socket.MSG_DONTWAIT})",
        "read fd 0": f"sc({nr('read')}, 0, buf, 0)",
        "write fd 0": f"sc({nr('write')}, 0, buf, 0)",
        "close fd 0": f"sc({nr('close')}, 0)",
        "shutdown fd 0": f"sc({nr('shutdown')}, 0, 2)",
        "getsockopt fd 0": f"sc({nr('getsockopt')}, 0, 1, 7, buf, buf + 8)",
        # memory
        **{
            f"madvise {name}": f"sc({nr('madvise')}, page, 4096, {value})"
            for name, value in MADV.items()
        },
        "process_madvise": f"sc({nr('process_madvise')}, 0, buf, 1, 12, 0)",
        "mmap MAP_SHARED": "mapped(3, 0x21)",
        "mmap read-only": "mapped(1, 0x22)",
        "mmap PROT_NONE": "mapped(0, 0x22)",
        "mmap MAP_FIXED over the page": f"sc({nr('mmap')}, page, 4096, 3, 0x32, -1, 0)",
        "mmap MAP_HUGETLB": "mapped(3, 0x40022)",
        "mmap MAP_POPULATE": "mapped(3, 0x8022)",
        "mprotect read-only": f"sc({nr('mprotect')}, page, 4096, 1)",
        "pkey_mprotect": f"sc({nr('pkey_mprotect')}, page, 4096, 3, 0)",
        "mremap MREMAP_FIXED": f"sc({nr('mremap')}, page, 4096, 4096, 3, page + 4096)",
        "mremap MREMAP_DONTUNMAP": f"sc({nr('mremap')}, page, 4096, 4096, 5, 0)",
        "mremap in place": f"sc({nr('mremap')}, page, 8192, 4096, 0)",
        "mlock": f"sc({nr('mlock')}, page, 4096)",
        "mincore": f"sc({nr('mincore')}, page, 4096, buf)",
        "membarrier": f"sc({nr('membarrier')}, 0, 0, 0)",
        # locks: only the private wake is left
        "futex wait": f"sc({nr('futex')}, buf, 128, 1, 0)",
        "futex requeue": f"sc({nr('futex')}, buf, 3 | 128, 1, 0, buf + 8, 0)",
        "futex lock_pi": f"sc({nr('futex')}, buf, 6 | 128, 0, 0)",
        "futex wake, shared": f"sc({nr('futex')}, buf, 1, 1)",
        # clocks and timers
        "clock_gettime of the host's CPU clock": f"sc({nr('clock_gettime')}, {host_clock}, buf)",
        "clock_gettime THREAD_CPUTIME": f"sc({nr('clock_gettime')}, 3, buf)",
        "clock_gettime BOOTTIME": f"sc({nr('clock_gettime')}, 7, buf)",
        "clock_getres": f"sc({nr('clock_getres')}, 1, buf)",
        "clock_nanosleep REALTIME": f"sc({nr('clock_nanosleep')}, 0, 0, buf, 0)",
        "clock_nanosleep on a CPU clock": f"sc({nr('clock_nanosleep')}, 2, 0, buf, 0)",
        "nanosleep": f"sc({nr('nanosleep')}, buf, 0)",
        "getitimer": f"sc({nr('getitimer')}, 2, buf)",
        "setitimer REAL": f"sc({nr('setitimer')}, 0, 0, 0)",
        "timer_create": f"sc({nr('timer_create')}, 2, 0, buf)",
        "getrusage CHILDREN": f"sc({nr('getrusage')}, -1, buf)",
        "getrandom GRND_RANDOM": f"sc({nr('getrandom')}, buf, 8, 2)",
        "getrandom GRND_INSECURE": f"sc({nr('getrandom')}, buf, 8, 4)",
        # leaving and signals: exit would end only a thread; no handler to return from
        "exit (one thread)": f"sc({nr('exit')}, 0)",
        "rt_sigreturn": f"sc({nr('rt_sigreturn')})",
        "rt_sigprocmask": f"sc({nr('rt_sigprocmask')}, 0, 0, buf, 8)",
        "sigaltstack": f"sc({nr('sigaltstack')}, 0, buf)",
        "getpid": f"sc({nr('getpid')})",
        "sched_setaffinity": f"sc({nr('sched_setaffinity')}, 0, 8, buf)",
        "sched_setscheduler": f"sc({nr('sched_setscheduler')}, 0, 0, buf)",
    }
    for name in ("time", "gettimeofday"):  # x86_64 only (the vDSO answers them anyway)
        if nr(name) >= 0:
            calls[name] = f"sc({nr(name)}, 0, 0)"
    return calls


# The exact variants the serve loop uses must pass the filter (the kernel's own answer
# shows that: EAGAIN on the empty channel, success elsewhere).
ALLOWED_CALLS = {
    "recv MSG_PEEK|MSG_DONTWAIT (the spin probe)": (
        f"sc({nr('recvfrom')}, 0, buf, 1, {PEEK_DONTWAIT}, 0, 0)",
        "EAGAIN",
    ),
    "send flags 0, nothing": (f"sc({nr('sendto')}, 0, buf, 0, 0, 0, 0)", "OK"),
    "mmap private anonymous rw": ("mapped(3, 0x22)", "OK"),
    "mremap MREMAP_MAYMOVE": (f"sc({nr('mremap')}, page, 8192, 16384, 1)", "OK"),
    "munmap": (f"sc({nr('munmap')}, new_page(), 8192)", "OK"),
    "brk (query)": (f"sc({nr('brk')}, 0)", "OK"),
    "clock_gettime REALTIME": (f"sc({nr('clock_gettime')}, 0, buf)", "OK"),
    "clock_gettime MONOTONIC": (f"sc({nr('clock_gettime')}, 1, buf)", "OK"),
    "clock_gettime PROCESS_CPUTIME": (f"sc({nr('clock_gettime')}, 2, buf)", "OK"),
    "clock_nanosleep MONOTONIC, 0 s": (
        f"(ctypes.memset(buf, 0, 16), sc({nr('clock_nanosleep')}, 1, 0, buf, 0))[1]",
        "OK",
    ),
    "getrandom 0": (f"sc({nr('getrandom')}, buf, 8, 0)", "OK"),
    "getrandom GRND_NONBLOCK": (f"sc({nr('getrandom')}, buf, 8, 1)", "OK"),
    "getrusage SELF": (f"sc({nr('getrusage')}, 0, buf)", "OK"),
    "sched_yield": (f"sc({nr('sched_yield')})", "OK"),
    # nobody waits on it: the kernel wakes no one and says so
    "futex wake, private": (f"sc({nr('futex')}, buf, 129, 1)", "OK"),
}


def run(pool: WorkerPool, expression: str) -> Any:
    code = f"NR_MMAP = {nr('mmap')}\n" + HEAD + f"result = {expression}\n"
    return pool.raw_exec_for_tests(code).value


@pytest.fixture(scope="module")
def raw_pool(supervisor: Supervisor, sb: SimpleNamespace) -> Iterator[WorkerPool]:
    pool = supervisor.load("seccomp:raw", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    yield pool
    pool.close()


@pytest.mark.parametrize("name", list(refused_calls(1)))
def test_calls_the_serve_loop_never_makes_are_refused(
    name: str, raw_pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = raw_pool.worker_pids()
    assert run(raw_pool, refused_calls(os.getpid())[name]) == "EPERM"
    # Refused, not fatal: the same worker answers the next call.
    assert raw_pool.call("sbtest:echo", [name], on_host_call=sb.no_host_calls).value == name
    assert raw_pool.worker_pids() == [pid]


@pytest.mark.parametrize("name", list(ALLOWED_CALLS))
def test_the_serve_loops_own_variants_pass(
    name: str, raw_pool: WorkerPool, sb: SimpleNamespace
) -> None:
    expression, expected = ALLOWED_CALLS[name]
    assert run(raw_pool, expression) == expected
    assert raw_pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1


def test_madvise_mergeable_refused_on_the_workers_own_heap(raw_pool: WorkerPool) -> None:
    # KSM on memory the worker really uses (its Python heap), through the C library.
    code = (
        "import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "data = bytearray(1 << 20)\n"
        "start = (ctypes.addressof((ctypes.c_char * len(data)).from_buffer(data)) + 4095) & ~4095\n"
        "result = []\n"
        "for advice in (12, 4):  # MADV_MERGEABLE, MADV_DONTNEED\n"
        "    rc = libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(4096), ctypes.c_int(advice))\n"
        "    result.append('OK' if rc == 0 else errno.errorcode[ctypes.get_errno()])\n"
    )
    assert raw_pool.raw_exec_for_tests(code).value == ["EPERM", "EPERM"]


def test_msg_oob_through_the_socket_module_is_refused(raw_pool: WorkerPool) -> None:
    # The same through CPython's socket methods on the channel (what a payload would try
    # first), both directions.
    code = (
        "import errno, socket\n"
        "chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)\n"
        "result = []\n"
        "try:\n"
        "    for attempt in (lambda: chan.send(b'!', socket.MSG_OOB),\n"
        "                    lambda: chan.recv(1, socket.MSG_OOB | socket.MSG_DONTWAIT)):\n"
        "        try:\n            attempt()\n            result.append('OK')\n"
        "        except OSError as exc:\n            result.append(errno.errorcode[exc.errno])\n"
        "finally:\n    chan.detach()\n"
    )
    assert raw_pool.raw_exec_for_tests(code).value == ["EPERM", "EPERM"]


def test_the_worker_still_does_all_its_normal_work(
    supervisor: Supervisor, sb: SimpleNamespace
) -> None:
    # Load with init, calls, host calls (answers and errors), errors, 7 MiB frames both
    # ways, late finalizers, the CPU and memory limits: everything on one worker but the
    # limits, which replace it.
    # memory_mb well above what 7 MiB frames make the worker grow by (~30 MB): at the usual
    # 64 MB, the growth is near the recycle threshold (half the budget), and whether the
    # worker is recycled would depend on the allocator, not on what this test checks.
    limits = dataclasses.replace(sb.LIMITS, memory_mb=256)
    pool = supervisor.load(
        "seccomp:normal", sb.BUNDLE, sb.ENTRY, limits=limits, init=("sbtest:init", ["n"])
    )
    try:
        assert pool.init_result == {"tag": "n", "add": 5}
        (pid,) = pool.worker_pids()
        calls: list[str] = []

        def host(method: str, params: dict[str, Any]) -> Any:
            calls.append(method)
            if method == "fail":
                raise ValueError("no")
            return "y" * (7 << 20) if method == "big" else {"got": params}

        def call(fn: str, *args: Any) -> Any:
            return pool.call(fn, list(args), on_host_call=host).value

        assert call("sbtest:invoke", "add", 2, 2) == 4
        assert call("sbtest:ask_host", "kv/get", {"k": 1}) == {"ok": {"got": {"k": 1}}}
        assert call("sbtest:ask_host", "fail", {})["failed"]["message"] == "no"
        assert len(call("sbtest:ask_host", "big", {})["ok"]) == 7 << 20
        assert len(call("sbtest:echo", "z" * (7 << 20))) == 7 << 20
        assert len(call("sbtest:huge", 7 << 20)) == 7 << 20
        with pytest.raises(Exception, match="boom"):
            call("sbtest:raise_value_error", "boom")
        assert call("sbtest:leave_generator") == "returned"
        assert call("sbtest:late_report")[0].startswith("host calls are only possible")
        assert calls == ["kv/get", "fail", "big"]
        assert pool.worker_pids() == [pid]  # nothing above cost the worker its life
        source = (
            "import hashlib, json, random, re, secrets, time, uuid\n"
            "result = [hashlib.sha256(b'x').hexdigest()[:4], len(secrets.token_hex(4)),\n"
            "          len(str(uuid.uuid4())), random.Random().random() < 1,\n"
            "          re.sub('a+', 'b', 'caat'), time.process_time() > 0,\n"
            "          time.time() > 0, time.monotonic() > 0, json.loads('[1]')]\n"
            "time.sleep(0.001)\n"
        )
        assert pool.raw_exec_for_tests(source).value == [
            "2d71",
            8,
            36,
            True,
            "cbt",
            True,
            True,
            True,
            [1],
        ]
        assert pool.worker_pids() == [pid]
        with pytest.raises(CpuLimitExceeded):
            pool.raw_exec_for_tests("while True:\n    pass\n")
        assert call("sbtest:echo", "after") == "after"
    finally:
        pool.close()


# --- the lifetime CPU backstop (RLIMIT_CPU) ---------------------------------------------


def test_the_lifetime_budget_follows_the_limits() -> None:
    assert WORKER_CPU_CALLS == 1000 and MIN_WORKER_CPU_S == 60
    assert SandboxLimits().lifetime_cpu_s() == 60  # 2 s load + 1000 x 50 ms, the floor
    assert SandboxLimits(cpu_ms=250).lifetime_cpu_s() == 252
    assert SandboxLimits(cpu_ms=1001, load_cpu_ms=1).lifetime_cpu_s() == 1002  # rounded up
    assert SandboxLimits(cpu_ms=1, load_cpu_ms=1).lifetime_cpu_s() == 60  # the floor
    assert SandboxLimits(worker_cpu_s=7).lifetime_cpu_s() == 7
    for bad in (0, -1, 1.5, True):
        with pytest.raises(Exception, match="worker_cpu_s must be a positive int or None"):
            SandboxLimits(worker_cpu_s=bad)  # type: ignore[arg-type]


def cpu_rlimit(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max cpu time"):
            soft, hard = line[26:].split()[:2]
            return soft, hard
    raise AssertionError("no Max cpu time line")


def test_a_worker_that_disarms_its_cpu_timer_dies_at_its_lifetime_budget(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # Native code can disarm ITIMER_PROF (setitimer must stay allowed to arm it) and then
    # burn CPU forever; the wall limit is far away. RLIMIT_CPU ends it with SIGXCPU, and the
    # host reports a CPU limit of this call, then serves with a new worker. The host's CPU
    # watch would kill it first (tests/sandbox/test_cpu_watch.py): it is stopped here, as
    # if the host had stalled, to show the kernel's backstop holds on its own.
    sup = make_supervisor()
    sup._watch_stop.set()
    limits = SandboxLimits(cpu_ms=250, memory_mb=64, wall_ms=600_000, worker_cpu_s=1)
    pool = sup.load("seccomp:backstop", sb.BUNDLE, sb.ENTRY, limits=limits, pool_size=1)
    (pid,) = pool.worker_pids()
    assert cpu_rlimit(pid) == ("1", "2")
    assert pool.confinement["rlimit_cpu_s"] == "1"
    escape = "import signal\nsignal.setitimer(signal.ITIMER_PROF, 0)\nwhile True:\n    pass\n"
    with pytest.raises(CpuLimitExceeded) as info:
        pool.raw_exec_for_tests(escape)
    assert str(info.value) == (
        "the sandbox worker for seccomp:backstop used up its lifetime CPU budget of 1s (its "
        "per-call limit is 250ms) and was killed; a new worker replaces it"
    )
    assert getattr(info.value, "limit_ms", None) == 250
    assert not sb.proc_exists(pid)
    # It escaped its per-call limit: a crash for the back-off (the tests' back-off is 0 s).
    assert pool._crashes.count == 1
    assert pool.call("sbtest:echo", ["next"], on_host_call=sb.no_host_calls).value == "next"
    assert pool.worker_pids() != [pid]


def test_an_honest_worker_is_replaced_before_its_lifetime_budget(
    make_supervisor: Any, sb: SimpleNamespace
) -> None:
    # A call that stays within its own limit but takes the worker past half its lifetime
    # budget: the call succeeds, and the host replaces the worker right after it (a
    # replacement, not a crash), so the next call never meets the backstop.
    sup = make_supervisor()
    limits = SandboxLimits(cpu_ms=1800, memory_mb=64, wall_ms=600_000, worker_cpu_s=2)
    pool = sup.load("seccomp:retire", sb.BUNDLE, sb.ENTRY, limits=limits, pool_size=1)
    (pid,) = pool.worker_pids()
    epoch = pool.epoch
    burn = "import time\nwhile time.process_time() < 1.2:\n    pass\nresult = 'done'\n"
    assert pool.raw_exec_for_tests(burn).value == "done"
    assert pool.epoch == epoch + 1
    assert not sb.proc_exists(pid)
    assert pool.call("sbtest:echo", ["fresh"], on_host_call=sb.no_host_calls).value == "fresh"
    (new_pid,) = pool.worker_pids()
    assert new_pid != pid and cpu_rlimit(new_pid) == ("2", "3")
    assert pool._crashes.count == 0  # nothing was counted as a crash


def test_sigxcpu_is_the_signal_that_ends_it() -> None:
    # The host tells the backstop from other deaths by this signal; its default action
    # terminates (the worker cannot change it: rt_sigaction is refused).
    assert int(signal.SIGXCPU) == 24
