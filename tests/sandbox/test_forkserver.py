"""The fork server and its host-side client, driven directly (no supervisor)."""

from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import SandboxNotAvailableError, WorkerCrashed
from sandbox._forkclient import ForkServerClient
from sandbox._protocol import FrameReader, parse_worker_frame


def config(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "op": "config",
        "preludes": {},
        "expose": {},
        "worker_error_encoder": None,
        "worker_error_decoder": None,
        "allow_raw_exec": False,
        "max_frame_bytes": 65536,
    }
    base.update(overrides)
    return base


@pytest.fixture
def client() -> Iterator[ForkServerClient]:
    c = ForkServerClient(config())
    yield c
    c.close()


def ppid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def is_dead(pid: int) -> bool:
    """Gone, or a zombie (an orphan's zombie is reaped by init, whenever init gets to it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while not is_dead(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return is_dead(pid)


def test_the_fork_server_starts_clean(sb: SimpleNamespace) -> None:
    os.environ[sb.HOST_SECRET_VAR] = sb.HOST_SECRET
    with tempfile.NamedTemporaryFile() as secret_file:
        c = ForkServerClient(config())
        try:
            environ = Path(f"/proc/{c.pid}/environ").read_bytes().split(b"\0")
            names = sorted(item.split(b"=", 1)[0] for item in environ if item)
            assert names == [b"PATH", b"PYTHONPATH"]
            assert sb.HOST_SECRET.encode() not in Path(f"/proc/{c.pid}/environ").read_bytes()
            targets = [
                os.readlink(f"/proc/{c.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{c.pid}/fd")
            ]
            assert secret_file.name not in targets
            # stdin/stdout are /dev/null, stderr is the host's (for diagnostics), then the
            # control socket and the SIGCHLD wakeup pipe: nothing else
            stderr = os.readlink("/proc/self/fd/2")
            kinds = sorted(
                "null" if t == "/dev/null" else "stderr" if t == stderr else t.split(":")[0]
                for t in targets
            )
            assert kinds in (
                ["null", "null", "socket", "stderr"],  # before its main loop started
                ["null", "null", "pipe", "pipe", "socket", "stderr"],
            )
            assert Path(f"/proc/{c.pid}/cwd").resolve() == Path("/")
            assert os.getsid(c.pid) == c.pid  # its own session
        finally:
            c.close()


def test_fork_hands_over_a_channel_and_a_pidfd(client: ForkServerClient) -> None:
    proc = client.fork(64, 60)
    assert ppid_of(proc.pid) == client.pid
    ready = parse_worker_frame(
        FrameReader(proc.channel, 65536).read(time.monotonic() + 10),
        expect_id=None,
        allowed=frozenset({"ready"}),
    )
    assert ready.confinement["seccomp"] == "allowlist"  # type: ignore[union-attr]
    # neither descriptor may leak into processes the host starts later
    assert fcntl.fcntl(proc.channel.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert fcntl.fcntl(proc.pidfd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    # closing the channel ends the worker normally; the fork server reports it
    proc.channel.close()
    assert proc.exit.wait(10)
    assert (proc.exit.known, proc.exit.code, proc.exit.signal) == (True, 0, None)
    os.close(proc.pidfd)


def test_exit_reports_tell_signals_apart(client: ForkServerClient) -> None:
    proc = client.fork(64, 60)
    signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
    assert proc.exit.wait(10)
    assert (proc.exit.code, proc.exit.signal) == (None, signal.SIGKILL)
    proc.channel.close()
    os.close(proc.pidfd)


def test_close_kills_and_reaps_every_worker(sb: SimpleNamespace) -> None:
    c = ForkServerClient(config())
    procs = [c.fork(64, 60) for _ in range(3)]
    server = c.pid
    c.close()
    c.close()  # idempotent
    assert not sb.proc_exists(server)
    for proc in procs:
        assert not sb.proc_exists(proc.pid)
        assert proc.exit.is_set()
        proc.channel.close()
        os.close(proc.pidfd)
    assert sb.zombie_children() == []
    assert not c.is_alive()
    with pytest.raises(WorkerCrashed) as info:
        c.fork(64, 60)
    assert str(info.value) == "the sandbox fork server is not running"


def test_sigterm_stops_the_fork_server_and_its_workers(client: ForkServerClient) -> None:
    proc = client.fork(64, 60)
    os.kill(client.pid, signal.SIGTERM)
    assert proc.exit.wait(10)
    assert proc.exit.signal == signal.SIGKILL  # killed and reported before the server left
    assert wait_dead(proc.pid)
    deadline = time.monotonic() + 10
    while client.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not client.is_alive()
    proc.channel.close()
    os.close(proc.pidfd)


def test_a_dead_fork_server_makes_exits_unknowable(client: ForkServerClient) -> None:
    proc = client.fork(64, 60)
    os.kill(client.pid, signal.SIGKILL)
    assert proc.exit.wait(10)
    assert proc.exit.known is False
    # the worker does not outlive its fork server (parent-death signal)
    assert wait_dead(proc.pid)
    with pytest.raises(WorkerCrashed):
        client.fork(64, 60)
    proc.channel.close()
    os.close(proc.pidfd)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"preludes": {"bad": "def (:\n"}},
            'the sandbox fork server failed to start: SandboxError: Prelude module "bad" failed '
            "to load: SyntaxError: invalid syntax (<prelude bad>, line 1)",
        ),
        (
            {"worker_error_encoder": "nomodule:fn"},
            "the sandbox fork server failed to start: KeyError: 'No prelude module named "
            '"nomodule" (known: )\'',
        ),
        (
            {"preludes": {"m": "x = 1\n"}, "worker_error_decoder": "m:x"},
            "the sandbox fork server failed to start: ValueError: worker_error_decoder 'm:x' is "
            "not a function of a prelude module",
        ),
        (
            {"op": "hello"},
            "the sandbox fork server failed to start: ValueError: the first control frame must "
            "be the configuration",
        ),
    ],
)
def test_a_bad_configuration_is_a_clear_start_error(
    overrides: dict[str, Any], message: str, sb: SimpleNamespace
) -> None:
    with pytest.raises(SandboxNotAvailableError) as info:
        ForkServerClient(config(**overrides))
    assert str(info.value) == message
    assert sb.zombie_children() == []


def test_the_warm_up_bundle_is_accepted_and_runs_under_the_sandbox_rules() -> None:
    # The fork server swallows a failing warm-up (it only costs memory per worker): this is
    # where a rule change that refuses the bundle shows up.
    from sandbox import _compiler, _forkserver, _loader

    preludes = _loader.build_preludes({}, {})
    code = _compiler.compile_bundle({"warmup.py": _forkserver._WARMUP_SOURCE})
    module = _loader.load_bundle(code, "warmup.py", preludes=preludes)
    assert module.RESULT["count"] == 4
    assert module.run({"content": {"title": "a b"}, "n": [1]})["pairs"] == {"A": 0, "B": 1}


def test_a_killed_fork_server_is_seen_dead_and_reaped(client: ForkServerClient) -> None:
    # is_alive() asks the server's pidfd (without letting go of the GIL), after the flag
    # the control channel's reader sets at EOF; close() reaps it: no zombie is left.
    assert client.is_alive()
    server = client.pid
    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not client.is_alive()
    client.close()
    assert not Path(f"/proc/{server}").exists()  # reaped, not a zombie
