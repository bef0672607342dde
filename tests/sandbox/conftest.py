"""Fixtures for the process layer: a real supervisor, real forked workers, real seccomp.

The prelude below is a tiny stand-in for the host application's shared modules (emdash's
``_worker_dispatch`` and ``_errors``): trusted code, given as source text, that the fork
server builds once and every worker calls as ``fn(entry_module, host_call, *args)``. It lets
these tests exercise init, host calls and error encoding without emdash.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import SandboxLimits, Supervisor, WorkerPool

PRELUDE = '''
import ctypes
import time

from sandbox._errors import SandboxViolation


class HostFailure(Exception):
    """What host_call raises in the worker when the host answered with an error."""

    def __init__(self, data):
        super().__init__(data.get("message", ""))
        self.data = data


def encode_error(exc):
    out = {"type": type(exc).__name__, "message": str(exc), "encoder": "sbtest"}
    # Like emdash's route errors: data of the exception itself goes into the description.
    if hasattr(exc, "details"):
        out["details"] = exc.details
    return out


def decode_error(data):
    return HostFailure(data)


def _get(entry, name):
    return entry[name] if isinstance(entry, dict) else getattr(entry, name)


def init(entry, host_call, tag):
    return {"tag": tag, "add": _get(entry, "add")(2, 3)}


def init_calls_host(entry, host_call):
    return host_call("during-load", {})


def invoke(entry, host_call, name, *args):
    return _get(entry, name)(*args)


def echo(entry, host_call, value):
    return value


def ask_host(entry, host_call, method, params):
    try:
        return {"ok": host_call(method, params)}
    except HostFailure as exc:
        return {"failed": exc.data}
    except SandboxViolation as exc:
        return {"violation": str(exc)}


def raise_value_error(entry, host_call, text):
    raise ValueError(text)


def raise_violation(entry, host_call):
    raise SandboxViolation("not allowed here")


def exit_worker(entry, host_call):
    raise SystemExit(3)


def unserialisable(entry, host_call):
    return {"x": object()}


def huge(entry, host_call, size):
    return "x" * size


LATE = []


def suspended_in_a_cycle(host_call):
    """A generator suspended in a try/finally that calls the host, in a reference cycle
    (only the collector frees it)."""

    def gen():
        try:
            yield 1
        finally:
            try:
                host_call("late", {})
                LATE.append("host_call worked")
            except SandboxViolation as exc:
                LATE.append(str(exc))

    g = gen()
    next(g)
    cycle = [g]
    cycle.append(cycle)
    return cycle


def leave_generator(entry, host_call):
    """Return while a generator is suspended in a try/finally that calls the host.

    The generator sits in a reference cycle, so only the collector frees it: the worker
    collects after the call, when no call is active, and the late host_call must fail.
    """
    suspended_in_a_cycle(host_call)
    return "returned"


def late_report(entry, host_call):
    return list(LATE)


KEPT = []


def keep_generator(entry, host_call):
    """leave_generator's generator, but kept reachable: it survives the collection."""
    leave_generator(entry, host_call)
    KEPT.append(suspended_in_a_cycle(host_call))
    return "kept"


def drop_generator(entry, host_call):
    """Make the kept cycle garbage; this call itself leaves nothing else behind."""
    KEPT.clear()
    return "dropped"


def leave_garbage(entry, host_call):
    """Leave a plain reference cycle (no finalizer) for the collector."""
    cycle = []
    cycle.append(cycle)
    return "left"


STASHED = []


def stash_host_call(entry, host_call):
    STASHED.append(host_call)
    return "stashed"


def use_stashed_host_call(entry, host_call):
    try:
        STASHED[-1]("stale", {})
        return "the stale host_call worked"
    except SandboxViolation as exc:
        return {"stale": str(exc), "current": host_call("fresh", {})}


def sleep_then_call(entry, host_call, seconds):
    time.sleep(seconds)
    host_call("effect", {"after": seconds})
    return "slept"


def wait_for_host(entry, host_call):
    return host_call("wait", {})


def crash(entry, host_call):
    ctypes.string_at(0)


def escape_during_load(entry, host_call):
    # What native code that broke out during a load could do: no timer, CPU forever.
    import signal
    signal.setitimer(signal.ITIMER_PROF, 0)
    while True:
        pass
'''

BUNDLE = {"plugin.py": "def add(a, b):\n    return a + b\n"}
ENTRY = "plugin.py"

# Small limits keep the suite fast; the CPU budget leaves room for a loaded CI machine.
LIMITS = SandboxLimits(cpu_ms=250, memory_mb=64, wall_ms=5_000)

# Set in the host before the fork server starts: no worker may ever see it.
HOST_SECRET_VAR = "SANDBOX_TEST_HOST_SECRET"
HOST_SECRET = "host-secret-" + "7c1e0d"


def _host_error_encoder(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "from": "host"}


def _new_supervisor(**overrides: Any) -> Supervisor:
    options: dict[str, Any] = {
        "preludes": {"sbtest": PRELUDE},
        "worker_error_encoder": "sbtest:encode_error",
        "worker_error_decoder": "sbtest:decode_error",
        "host_error_encoder": _host_error_encoder,
        "allow_raw_exec_for_tests": True,
        "backoff_base_s": 0.0,
    }
    options.update(overrides)
    return Supervisor(**options)


@pytest.fixture(scope="session")
def sb() -> SimpleNamespace:
    """The shared test data: bundle, entry, limits, prelude and small helpers."""
    return SimpleNamespace(
        BUNDLE=BUNDLE,
        ENTRY=ENTRY,
        LIMITS=LIMITS,
        PRELUDE=PRELUDE,
        HOST_SECRET_VAR=HOST_SECRET_VAR,
        HOST_SECRET=HOST_SECRET,
        no_host_calls=_no_host_calls,
        proc_exists=_proc_exists,
        zombie_children=_zombie_children,
    )


@pytest.fixture(scope="module")
def supervisor() -> Iterator[Supervisor]:
    """One fork server per test module (starting one costs a fresh interpreter).

    The host secret is in the host's environment while it starts.
    """
    saved = os.environ.get(HOST_SECRET_VAR)
    os.environ[HOST_SECRET_VAR] = HOST_SECRET
    sup = _new_supervisor()
    try:
        sup.start()
    finally:
        if saved is None:
            del os.environ[HOST_SECRET_VAR]
        else:
            os.environ[HOST_SECRET_VAR] = saved
    yield sup
    sup.close()


@pytest.fixture
def make_supervisor() -> Iterator[Callable[..., Supervisor]]:
    """Factory for supervisors with other settings; all are closed after the test."""
    made: list[Supervisor] = []

    def make(**overrides: Any) -> Supervisor:
        sup = _new_supervisor(**overrides)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.close()


@pytest.fixture
def pool(supervisor: Supervisor, request: pytest.FixtureRequest) -> Iterator[WorkerPool]:
    """A fresh pool (own key, own crash bookkeeping) loaded with BUNDLE and init."""
    pool = supervisor.load(
        f"test:{request.node.name}", BUNDLE, ENTRY, limits=LIMITS, init=("sbtest:init", ["t"])
    )
    yield pool
    pool.close()


def _no_host_calls(method: str, params: dict[str, Any]) -> Any:
    raise AssertionError(f"unexpected host call {method} {params}")


def _proc_exists(pid: int) -> bool:
    """True while /proc/<pid> exists (a zombie counts: it is not reaped yet)."""
    return os.path.exists(f"/proc/{pid}")


def _zombie_children() -> list[int]:
    """Pids of this process's children that are zombies."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(name))
    return found
