"""Confinement of real workers: what a post-breakout payload can do (escape class ``os``).

Each payload runs as plain Python in a confined worker (``raw_exec_for_tests``: the language
layer is bypassed, as if it had been broken) and reports what it achieved. Every attempt
must fail with EPERM, and the supervisor must keep serving afterwards. The rest of the file
inspects a live worker from outside through /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyseccomp
import pytest

from sandbox import SandboxViolation, Supervisor, WorkerPool

ROOT = str(Path(__file__).resolve().parents[2])

PAYLOAD_HEAD = """
import ctypes, errno, os, resource, signal, socket, subprocess
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def attempt(fn):
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    except (ValueError, RuntimeError) as exc:
        return type(exc).__name__ + ": " + str(exc)
    return "OK"

def sys_attempt(rc):
    return "OK" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
"""


def nr(name: str) -> int:
    return int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))


def payloads(host_pid: int, server_pid: int) -> dict[str, tuple[str, str]]:
    """name -> (code that sets `result`, the expected result)."""
    perm = "EPERM"
    return {
        "read /etc/passwd": ("result = attempt(lambda: open('/etc/passwd').read())", perm),
        "write a file": ("result = attempt(lambda: open('/tmp/sbx-escape', 'w').write('x'))", perm),
        "list directories": ("result = attempt(lambda: os.listdir('/'))", perm),
        "probe a path with stat": ("result = attempt(lambda: os.stat('/etc/passwd'))", perm),
        "tcp socket": ("result = attempt(lambda: socket.socket(socket.AF_INET))", perm),
        "unix socket": ("result = attempt(lambda: socket.socket(socket.AF_UNIX))", perm),
        "packet socket": (
            "result = attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))",
            perm,
        ),
        "connect on the channel": (
            "addr = (ctypes.c_char * 110)(*b'\\x01\\x00/tmp/x')\n"
            "result = sys_attempt(libc.connect(0, addr, 110))",
            perm,
        ),
        "execve": ("result = attempt(lambda: os.execv('/bin/sh', ['sh', '-c', 'true']))", perm),
        "subprocess": ("result = attempt(lambda: subprocess.run(['true']))", perm),
        "fork": ("result = attempt(os.fork)", perm),
        "clone": (f"result = sys_attempt(libc.syscall({nr('clone')}, 17, 0, 0, 0, 0))", perm),
        "kill the fork server": (f"result = attempt(lambda: os.kill({server_pid}, 9))", perm),
        "kill the host": (f"result = attempt(lambda: os.kill({host_pid}, 9))", perm),
        "ptrace the host": (f"result = sys_attempt(libc.ptrace(16, {host_pid}, 0, 0))", perm),
        "raise RLIMIT_AS": (
            "result = attempt(lambda: resource.setrlimit(resource.RLIMIT_AS, "
            "(resource.RLIM_INFINITY, resource.RLIM_INFINITY)))",
            "ValueError: not allowed to raise maximum limit",
        ),
        "io_uring_setup": (
            f"result = sys_attempt(libc.syscall({nr('io_uring_setup')}, 8, 0))",
            perm,
        ),
        "memfd_create": ("result = attempt(lambda: os.memfd_create('x'))", perm),
        "openat2": (f"result = sys_attempt(libc.syscall({nr('openat2')}, -100, b'/', 0, 0))", perm),
        "pidfd_open the host": (
            f"result = sys_attempt(libc.syscall({nr('pidfd_open')}, {host_pid}, 0))",
            perm,
        ),
        "read /proc/<ppid>/mem": (
            f"result = attempt(lambda: open('/proc/{server_pid}/mem', 'rb'))",
            perm,
        ),
        "unshare": ("result = sys_attempt(libc.unshare(0x10000000))", perm),
        "executable memory": (
            "import mmap\nresult = attempt(lambda: mmap.mmap(-1, 4096, "
            "prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC))",
            perm,
        ),
        "ignore SIGPROF": (
            "result = attempt(lambda: signal.signal(signal.SIGPROF, signal.SIG_IGN))",
            perm,
        ),
        "block SIGPROF": (
            "result = attempt(lambda: signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGPROF]))",
            perm,
        ),
        "start a thread": (
            "import threading\nresult = attempt(lambda: threading.Thread(target=id, args=(1,)).start())",
            "RuntimeError: can't start new thread",
        ),
    }


@pytest.fixture(scope="module")
def raw_pool(supervisor: Supervisor, sb: SimpleNamespace) -> Any:
    pool = supervisor.load("confine:raw", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS, pool_size=1)
    yield pool
    pool.close()


@pytest.mark.parametrize("name", list(payloads(0, 0)))
def test_escape_attempt_is_refused(
    name: str, raw_pool: WorkerPool, supervisor: Supervisor, sb: SimpleNamespace
) -> None:
    assert supervisor.server_pid is not None
    code, expected = payloads(os.getpid(), supervisor.server_pid)[name]
    result = raw_pool.raw_exec_for_tests(PAYLOAD_HEAD + code, on_host_call=sb.no_host_calls)
    assert result.value == expected
    # The worker survived its refusal and the supervisor keeps serving.
    assert (
        raw_pool.call("sbtest:echo", ["still here"], on_host_call=sb.no_host_calls).value
        == "still here"
    )
    assert supervisor.is_healthy()


def test_the_environment_is_empty(raw_pool: WorkerPool, sb: SimpleNamespace) -> None:
    code = PAYLOAD_HEAD + (
        "env_c = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, 'environ')\n"
        "c_vars = []\n"
        "i = 0\n"
        "while env_c[i] is not None:\n"
        "    c_vars.append(env_c[i].decode())\n"
        "    i += 1\n"
        "result = {'os.environ': dict(os.environ), 'C environ': c_vars,"
        " '/proc/self/environ': attempt(lambda: open('/proc/self/environ', 'rb').read())}"
    )
    result = raw_pool.raw_exec_for_tests(code)
    assert result.value == {"os.environ": {}, "C environ": [], "/proc/self/environ": "EPERM"}


def test_no_descriptor_but_the_channel(raw_pool: WorkerPool) -> None:
    # Seen from outside: fd 0 is the only descriptor. From inside, close() is refused
    # outright (it is not on the allowlist), so it cannot even tell open from closed.
    code = (
        "import errno, os\nresult = set()\nfor fd in range(0, 256):\n"
        "    try:\n        os.close(fd)\n        result.add('closed')\n"
        "    except OSError as exc:\n        result.add(errno.errorcode[exc.errno])\n"
        "result = sorted(result)\n"
    )
    assert raw_pool.raw_exec_for_tests(code).value == ["EPERM"]
    (pid,) = raw_pool.worker_pids()
    assert os.listdir(f"/proc/{pid}/fd") == ["0"]


def test_the_worker_heap_holds_nothing_from_the_host(raw_pool: WorkerPool) -> None:
    # The workers are forked from a fork server that never held host objects: a dict that
    # exists only in the host (the test process) is not among the worker's objects.
    marker = f"host-only-{os.getpid()}-{id(raw_pool)}"
    host_only = {marker: "secret"}
    code = (
        "import gc\n"
        f"wanted = {marker[::-1]!r}[::-1]\n"
        "result = sum(1 for o in gc.get_objects() if type(o) is dict and wanted in o)\n"
    )
    assert raw_pool.raw_exec_for_tests(code).value == 0
    assert host_only[marker] == "secret"


def test_live_worker_seen_from_outside(pool: WorkerPool, sb: SimpleNamespace) -> None:
    pid = pool.worker_pids()[0]
    status = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":\t" in line
    )
    assert status["Uid"].split() == ["65534"] * 4
    assert status["Gid"].split() == ["65534"] * 4
    assert status["Groups"].strip() == ""
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[caps] == "0000000000000000"
    # not dumpable: its /proc files belong to root although the worker runs as nobody
    assert os.stat(f"/proc/{pid}/status").st_uid == 0
    # a session of its own
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[3]) == pid  # session id
    # its own network and user namespaces
    for ns in ("net", "user"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    # the environment block the fork server got at exec is zeroed in the worker
    assert set(Path(f"/proc/{pid}/environ").read_bytes()) <= {0}
    assert os.listdir(f"/proc/{pid}/fd") == ["0"]
    assert pool.confinement == {
        "uid": "65534",
        "rlimit_as_mb": pool.confinement["rlimit_as_mb"],
        "rlimit_cpu_s": str(sb.LIMITS.lifetime_cpu_s()),
        "userns": "yes",
        "netns": "yes",
        "capabilities": "none",
        "landlock": pool.confinement["landlock"],
        "seccomp": "allowlist",
    }
    assert pool.confinement["landlock"].startswith("abi ")


def test_rlimits_are_set_with_soft_equal_to_hard(pool: WorkerPool, sb: SimpleNamespace) -> None:
    pid = pool.worker_pids()[0]
    limits = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        limits[name] = (soft, hard)
    assert limits["Max open files"] == ("1", "1")
    assert limits["Max processes"] == ("0", "0")
    assert limits["Max file size"] == ("0", "0")
    assert limits["Max core file size"] == ("0", "0")
    assert limits["Max locked memory"] == ("0", "0")
    soft_as, hard_as = map(int, limits["Max address space"])
    assert soft_as == hard_as
    assert soft_as >> 20 == int(pool.confinement["rlimit_as_mb"])
    # AS = the worker's size when it was forked + memory_mb: more than the budget alone
    assert soft_as > sb.LIMITS.memory_mb << 20
    soft_data, hard_data = map(int, limits["Max data size"])
    assert soft_data == hard_data > sb.LIMITS.memory_mb << 20
    # The lifetime CPU backstop: SIGXCPU at the soft limit, SIGKILL one second later.
    # LIMITS: the load budget + 1000 calls of the per-call budget, in whole seconds.
    cpu_s = sb.LIMITS.lifetime_cpu_s()
    assert cpu_s == max(60, -(-(sb.LIMITS.load_cpu_ms + 1000 * sb.LIMITS.cpu_ms) // 1000))
    assert limits["Max cpu time"] == (str(cpu_s), str(cpu_s + 1))


LANDLOCK_PROBE = r"""
import errno, os
from sandbox import _confine
abi = _confine.landlock_abi()
report = _confine._landlock_deny_all()
results = [report]
for attempt in (lambda: open('/etc/hostname').read(), lambda: os.listdir('/'),
                lambda: open('/tmp/sbx-landlock', 'w')):
    try:
        attempt()
        results.append('OK')
    except OSError as exc:
        results.append(errno.errorcode[exc.errno])
print(abi, *results)
"""


def test_landlock_alone_denies_all_filesystem_access() -> None:
    # Without seccomp (which would answer EPERM first), Landlock answers EACCES.
    proc = subprocess.run(
        [sys.executable, "-c", LANDLOCK_PROBE],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ROOT},
        timeout=60,
    )
    abi, report, *results = proc.stdout.split()
    assert int(abi) >= 1
    assert report == "abi" and results[0] == abi
    assert results[1:] == ["EACCES", "EACCES", "EACCES"]


def test_a_foreign_abi_syscall_kills_the_worker_cleanly(
    raw_pool: WorkerPool, supervisor: Supervisor, sb: SimpleNamespace
) -> None:
    # getpid through the x32 ABI on x86_64: seccomp kills the process (SIGSYS), and the
    # supervisor reports a violation, not a crash. Elsewhere the number is just unknown.
    code = PAYLOAD_HEAD + "result = sys_attempt(libc.syscall(0x40000000 | 39))\n"
    if os.uname().machine == "x86_64":
        with pytest.raises(SandboxViolation) as info:
            raw_pool.raw_exec_for_tests(code)
        assert str(info.value) == (
            "the sandbox worker for confine:raw was killed for a forbidden system call"
        )
    else:
        assert raw_pool.raw_exec_for_tests(code).value == "EPERM"
    assert raw_pool.is_healthy()
    assert raw_pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1
