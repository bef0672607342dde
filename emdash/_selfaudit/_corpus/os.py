"""Escape class ``os`` (docs/escape-corpus.md 091-106): what post-breakout code can do to the machine.

These payloads assume the language layer has already fallen: they are plain Python run in a
confined worker with the language layer bypassed (``raw-worker`` mode, like codejail's
process tests). Only L5 stands: process construction (setsid, fd 0 only, empty
environment, uid nobody, rlimits with soft == hard, no-new-privs, namespaces, Landlock) and
the seccomp allowlist, whose default action is ``EPERM`` -- so a denied system call shows up
as ``PermissionError`` in the payload. Each payload assigns ``result`` only when the attack
worked.
"""

from __future__ import annotations

from . import DEFAULT_LIMITS, Expect, P, Payload

# Shared preamble: raw system calls by number through ctypes (already imported by the
# worker's own confinement code, so `import ctypes` needs no file access). A failing call
# raises OSError(errno), which Python maps to PermissionError for EPERM/EACCES.
_SYSCALL = r"""
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {
    "x86_64": {"openat2": 437, "io_uring_setup": 425, "execveat": 322, "memfd_create": 319,
               "pidfd_open": 434, "pidfd_getfd": 438, "clone3": 435, "userfaultfd": 323,
               "bpf": 321, "process_vm_readv": 310, "unshare": 272, "setns": 308,
               "mount": 165, "ptrace": 101, "perf_event_open": 298, "keyctl": 250,
               "prlimit64": 302, "getpid": 39},
    "aarch64": {"openat2": 437, "io_uring_setup": 425, "execveat": 281, "memfd_create": 279,
                "pidfd_open": 434, "pidfd_getfd": 438, "clone3": 435, "userfaultfd": 282,
                "bpf": 280, "process_vm_readv": 270, "unshare": 97, "setns": 268,
                "mount": 40, "ptrace": 117, "perf_event_open": 241, "keyctl": 219,
                "prlimit64": 261, "getpid": 172},
}["@@ARCH@@"]

def syscall(name, *args):
    nr = NR[name] if isinstance(name, str) else name
    r = libc.syscall(ctypes.c_long(nr), *args)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return r
"""


def _raw(
    name: str,
    technique: str,
    source: str,
    body: str,
    error: str = "PermissionError",
    *,
    expect: Expect = "os_denied",
    ref: str = "",
    limits: dict[str, int] | None = None,
) -> Payload:
    """A raw-worker payload; ``body`` may use the ``syscall`` helper of the preamble."""
    return P(
        name,
        technique,
        source,
        _SYSCALL + body,
        expect,
        error,
        mode="raw-worker",
        ref=ref,
        limits=dict(limits or DEFAULT_LIMITS),
    )


PAYLOADS: list[Payload] = [
    _raw(
        "read_etc_passwd",
        "open('/etc/passwd').read()",
        "corpus 091; codejail test_read_etc_passwd",
        """
result = "OK " + open("/etc/passwd").read()[:60]
""",
        ref="091",
    ),
    _raw(
        "write_file",
        "create and write a file the host watches (and FSIZE 0 behind it)",
        "corpus 092; codejail test_cant_write_files / large temp files",
        """
with open("@@CANARY_FILE@@", "w") as f:
    f.write("AUDIT written by a worker")
result = "OK wrote @@CANARY_FILE@@"
""",
        ref="092",
    ),
    _raw(
        "list_other_sandboxes",
        "os.listdir of /, /tmp, /proc, .. (find other sandboxes and host files)",
        "corpus 093; codejail test_find_other_sandboxes",
        """
seen = os.listdir("/tmp") + os.listdir("/proc") + os.listdir("/")
result = "OK listed " + str(len(seen)) + " entries"
""",
        ref="093",
    ),
    _raw(
        "environment_variables",
        "look for the host's canary variable in os.environ / os.environb",
        "corpus 094; codejail test_cant_see_environment_variables",
        """
rev = "@@CANARY_TOKEN_REVERSED@@"
names = list(os.environ.items()) + [(k.decode("latin-1"), v.decode("latin-1"))
                                    for k, v in os.environb.items()]
for k, v in names:
    if rev in (k + "=" + v)[::-1]:
        result = "OK host environment visible: " + k
        break
else:
    raise LookupError("DENIED the environment is empty: " + str(len(names)) + " variables")
""",
        error="LookupError",
        ref="094",
    ),
    _raw(
        "parent_memory",
        "open /proc/<host pid>/mem and read the host's memory",
        "corpus 095",
        """
with open("/proc/@@HOST_PID@@/mem", "rb") as f:
    result = "OK opened the host's memory: " + repr(f.read(8))
""",
        ref="095",
    ),
    _raw(
        "ptrace_host",
        "ptrace(PTRACE_ATTACH, host pid) by raw syscall",
        "corpus 095 (ptrace)",
        """
syscall("ptrace", 16, @@HOST_PID@@, 0, 0)
result = "OK attached to the host with ptrace"
""",
    ),
    _raw(
        "tcp_socket_to_canary",
        "socket(AF_INET) and connect to the host's canary server",
        "corpus 096; codejail test_cant_use_network",
        """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("127.0.0.1", @@CANARY_PORT@@))
result = "OK connected to the canary"
""",
        ref="096",
    ),
    _raw(
        "unix_abstract_socket",
        "socket(AF_UNIX) and connect to an abstract-namespace socket the host listens on",
        "corpus 096 (AF_UNIX incl. abstract)",
        """
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0@@ABSTRACT_NAME@@")
result = "OK reached the host's abstract socket"
""",
    ),
    _raw(
        "packet_socket",
        "socket(AF_PACKET, SOCK_RAW): raw link-layer access",
        "corpus 096 (AF_PACKET); codejail test_cant_use_raw_network",
        """
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
result = "OK raw packet socket"
""",
    ),
    _raw(
        "exec_shell",
        "execv('/bin/sh', ...) to run a shell that writes the canary file",
        "corpus 097",
        """
os.execv("/bin/sh", ["sh", "-c", "echo @@CANARY_TOKEN@@ > @@CANARY_FILE@@"])
""",
        ref="097",
    ),
    _raw(
        "fork_bomb",
        "while True: os.fork()",
        "corpus 098; codejail test_cant_fork",
        """
children = 0
while children < 1000:
    if os.fork() == 0:
        os._exit(0)
    children += 1
result = "OK forked " + str(children) + " children"
""",
        ref="098",
    ),
    _raw(
        "start_thread",
        "_thread.start_new_thread: a thread would outlive the call (clone with thread flags)",
        "corpus 099",
        """
import _thread
_thread.start_new_thread(lambda: None, ())
result = "OK started a thread"
""",
        error="RuntimeError",
        ref="099",
    ),
    _raw(
        "signal_the_host",
        "os.kill(host pid, SIGCONT): signalling the supervisor (SIGCONT is harmless if it lands)",
        "corpus 100",
        """
import signal
os.kill(@@HOST_PID@@, signal.SIGCONT)
result = "OK signalled the host"
""",
        ref="100",
    ),
    _raw(
        "inherited_fds",
        "probe fds 1..1023 with close() (EBADF would tell closed from open; refused)",
        "corpus 101",
        """
found = []
for fd in range(1, 1024):
    try:
        os.close(fd)
        found.append(fd)
    except OSError:
        pass
if found:
    result = "OK inherited descriptors: " + repr(found)
else:
    raise LookupError("DENIED only the channel (fd 0) is open")
""",
        error="LookupError",
        ref="101",
    ),
    _raw(
        "seccomp_gap_openat2",
        "openat2(AT_FDCWD, '/etc/passwd') by raw syscall number",
        "corpus 102; seccomp denylist gaps",
        """
how = (ctypes.c_uint64 * 3)(0, 0, 0)
fd = syscall("openat2", -100, b"/etc/passwd", ctypes.byref(how), 24)
result = "OK openat2 returned fd " + str(fd)
""",
        ref="102",
    ),
    _raw(
        "rlimit_raise",
        "prlimit64(0, RLIMIT_AS, {inf, inf}): raise the memory limit back up",
        "corpus 103",
        """
new = (ctypes.c_uint64 * 2)(2**64 - 1, 2**64 - 1)
syscall("prlimit64", 0, 9, ctypes.byref(new), None)
result = "OK raised RLIMIT_AS"
""",
        ref="103",
    ),
    _raw(
        "sigprof_ignore_setsid_double_fork",
        "ignore SIGPROF/SIGXCPU, setsid, double fork, then spin: must still be killed on CPU",
        "corpus 104; codejail test_cant_use_too_much_cpu",
        """
import signal
for sig in (signal.SIGPROF, signal.SIGXCPU):
    try:
        signal.signal(sig, signal.SIG_IGN)
    except OSError:
        pass
try:
    os.setsid()
except OSError:
    pass
try:
    if os.fork() == 0 and os.fork() == 0:
        pass
except OSError:
    pass
while True:
    pass
""",
        error="CpuLimitExceeded",
        expect="contained",
        ref="104",
    ),
    _raw(
        "gc_over_forked_heap",
        "gc.get_objects(): look for the host's canary token and the victim's secret in the heap",
        "corpus 105",
        """
import gc
gc.unfreeze()
needles = ["@@CANARY_TOKEN_REVERSED@@", "@@VICTIM_SECRET_REVERSED@@"]
hits = []
for o in gc.get_objects():
    if isinstance(o, dict):
        items = list(o.keys()) + list(o.values())
    elif isinstance(o, (list, tuple)):
        items = list(o)
    else:
        items = [o]
    for s in items:
        if isinstance(s, str) and len(s) < 1000000:
            r = s[::-1]
            for n in needles:
                if n in r:
                    hits.append(n[::-1][:6])
if hits:
    result = "OK found host data in the worker heap: " + repr(hits[:5])
else:
    raise LookupError("DENIED the worker heap holds no host or victim data")
""",
        error="LookupError",
        ref="105",
        limits={"cpu_ms": 5000, "memory_mb": 128, "wall_ms": 15000, "subrequests": 10},
    ),
    _raw(
        "wx_memory_mmap",
        "mmap(PROT_READ|PROT_WRITE|PROT_EXEC): writable and executable memory for shellcode",
        "corpus 106",
        """
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
addr = libc.mmap(None, 4096, 7, 0x22, -1, 0)
if addr in (None, 2**64 - 1):
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))
result = "OK W+X page at " + hex(addr)
""",
        ref="106",
    ),
    # -- our own variants ----------------------------------------------------------------
    _raw(
        "crash_the_worker",
        "dereference address 1 (SIGSEGV): the host reports it and keeps serving",
        "own; corpus 106 second half; codejail test_crash_cpython",
        """
ctypes.string_at(1, 8)
result = "OK survived a segfault"
""",
        error="WorkerCrashed",
    ),
    _raw(
        "mprotect_to_executable",
        "mmap a RW page (allowed) then mprotect it to RWX",
        "own variant of 106",
        """
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
addr = libc.mmap(None, 4096, 3, 0x22, -1, 0)
if libc.mprotect(addr, 4096, 7) != 0:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))
result = "OK page made executable"
""",
    ),
    _raw(
        "memfd_create",
        "os.memfd_create: an anonymous file (fexecve staging, fd smuggling)",
        "own; corpus 102 list",
        """
fd = os.memfd_create("audit")
result = "OK memfd " + str(fd)
""",
    ),
    _raw(
        "pidfd_open_host",
        "pidfd_open(host pid), then pidfd_getfd to steal the host's descriptors",
        "own; corpus 102 list",
        """
pfd = syscall("pidfd_open", @@HOST_PID@@, 0)
stolen = syscall("pidfd_getfd", pfd, 3, 0)
result = "OK stole host fd " + str(stolen)
""",
    ),
    _raw(
        "io_uring_setup",
        "io_uring_setup: file and network I/O that bypasses per-syscall filtering",
        "own; corpus 102 list",
        """
params = (ctypes.c_uint8 * 120)()
fd = syscall("io_uring_setup", 4, ctypes.byref(params))
result = "OK io_uring fd " + str(fd)
""",
    ),
    _raw(
        "execveat_shell",
        "execveat(AT_FDCWD, '/bin/sh') by raw syscall",
        "own; corpus 102 list",
        """
argv = (ctypes.c_char_p * 2)(b"/bin/sh", None)
envp = (ctypes.c_char_p * 1)(None)
syscall("execveat", -100, b"/bin/sh", argv, envp, 0)
result = "OK execveat returned"
""",
    ),
    _raw(
        "unshare_user_namespace",
        "unshare(CLONE_NEWUSER): become root in a fresh namespace",
        "own; corpus 102 list",
        """
syscall("unshare", 0x10000000)
result = "OK new user namespace"
""",
    ),
    _raw(
        "bpf_and_userfaultfd",
        "bpf() and userfaultfd(): kernel attack surface used by real exploits",
        "own; corpus 102 list",
        """
try:
    syscall("userfaultfd", 0)
    result = "OK userfaultfd"
except PermissionError:
    attr = (ctypes.c_uint8 * 128)()
    syscall("bpf", 0, ctypes.byref(attr), 128)
    result = "OK bpf map"
""",
    ),
    _raw(
        "keyctl_keyring",
        "keyctl(KEYCTL_GET_KEYRING_ID, session): read the session keyring",
        "own; corpus 102 list",
        """
syscall("keyctl", 0, -3, 0)
result = "OK session keyring reachable"
""",
    ),
    _raw(
        "x32_abi_syscall",
        "an x32-ABI system call (nr | 0x40000000): a second syscall table an x86_64 allowlist "
        "does not describe; the filter kills the process",
        "own; corpus 102 (x32 ABI)",
        """
libc.syscall(ctypes.c_long(0x40000000 | NR["getpid"]))
result = "OK x32 syscall returned"
""",
        error="SandboxViolation",
    ),
    _raw(
        "process_vm_readv_host",
        "process_vm_readv on the host pid",
        "own; corpus 095 family",
        """
buf = ctypes.create_string_buffer(8)
local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = (ctypes.c_void_p * 2)(0x400000, 8)
syscall("process_vm_readv", @@HOST_PID@@, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
result = "OK read host memory"
""",
    ),
    _raw(
        "sleep_forever",
        "clock_nanosleep (allowed: harmless) for an hour: no CPU used, only the wall clock can "
        "end it, and it must (the worker is killed, not abandoned)",
        "own; docs/resource-model.md (wall time by a host-side deadline that kills the worker)",
        """
import time
time.sleep(3600)
result = "OK slept"
""",
        error="WallTimeExceeded",
        expect="contained",
        limits={"cpu_ms": 50, "memory_mb": 64, "wall_ms": 500, "subrequests": 10},
    ),
    _raw(
        "ioctl_on_channel",
        "ioctl on the channel socket (SIOCGIFCONF: list the host's network interfaces)",
        "own; ioctl is not on the allowlist",
        """
buf = ctypes.create_string_buffer(4096)
if libc.ioctl(0, 0x8912, buf) != 0:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))
result = "OK ioctl answered"
""",
    ),
]
