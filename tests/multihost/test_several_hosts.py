"""Several hosts, one site: three real host processes on one PostgreSQL database.

Each host is ``tests/multihost/host_process.py`` in its own process (its own pool, its
own plugin pipeline, its own cron executor), driven over stdin/stdout. Every assertion
is on what the shared database holds; the only waits are for other hosts to catch up,
with generous deadlines that a slow machine does not reach.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
T = "2031-03-04T05:06:00+00:00"
T_PLUS_1S = "2031-03-04T05:06:01+00:00"
T_PLUS_11MIN = "2031-03-04T05:17:01+00:00"  # past the cron lease (10 minutes)


class Host:
    """One host process and its command channel."""

    def __init__(self, url: str, media: Path, *, block: bool = False) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        if block:
            env["EMDASH_TEST_BLOCK"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.multihost.host_process", url, str(media)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"host process ended: {self._stderr()}")
        return json.loads(line)["value"]

    def call(self, op: str, **args: Any) -> Any:
        self.send(op, **args)
        return self.answer()

    def wait_for_stderr(self, text: str) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if text in line:
                return
        raise AssertionError(f"host process ended before printing {text!r}")

    def _stderr(self) -> str:
        self.proc.kill()
        _, err = self.proc.communicate(timeout=30)
        return err[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("exit")
            except (AssertionError, OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def hosts(pg_database: str, tmp_path: Path) -> Iterator[Callable[..., Host]]:
    media = tmp_path / "shared-media"  # one directory every host shares
    media.mkdir()
    started: list[Host] = []

    def start(*, block: bool = False) -> Host:
        host = Host(pg_database, media, block=block)
        started.append(host)
        return host

    try:
        yield start
    finally:
        for host in started:
            host.close()


def together(hosts: list[Host], op: str, **args: Any) -> list[Any]:
    """The same command on every host at once; their answers in order."""
    for host in hosts:
        host.send(op, **args)
    answers: list[Any] = [None] * len(hosts)

    def read(i: int) -> None:
        answers[i] = hosts[i].answer()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_three_hosts_run_one_site(hosts: Callable[..., Host]) -> None:
    a, b, c = hosts(), hosts(), hosts()
    every = [a, b, c]
    # Started together: plugin:install fires once for the site.
    together(every, "add")
    assert a.call("kv", key="installs") == 1

    # A read-modify-write counter hit from every host at once: no update is lost, so the
    # counter is exactly the number of calls that succeeded.
    successes = together(every, "hit", times=20)
    assert sum(successes) > 0
    assert b.call("kv", key="n") == sum(successes)

    # A task due once runs once, whichever hosts tick.
    a.call("schedule", name="once", at=T)
    runs = together(every, "tick", now=T_PLUS_1S)
    assert sum(len(r) for r in runs) == 1
    assert c.call("kv", key="cron_once") == 1

    # Disabled on one host: the others follow the registry and stop running it.
    a.call("disable")
    deadline = time.monotonic() + 60
    while not (b.call("enabled") is False and c.call("enabled") is False):
        assert time.monotonic() < deadline, "the disable never reached the other hosts"
        time.sleep(0.2)
    before = a.call("kv", key="n")
    assert together([b, c], "hit", times=3) == [0, 0]
    assert a.call("kv", key="n") == before


def test_a_host_killed_mid_cron_does_not_lose_the_task(hosts: Callable[..., Host]) -> None:
    doomed, survivor = hosts(block=True), hosts()
    together([doomed, survivor], "add")
    doomed.call("schedule", name="slow", at=T)
    doomed.send("tick", now=T_PLUS_1S)  # claims the task, then blocks in its handler
    doomed.wait_for_stderr("CRON-SLOW-STARTED")
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    # Still leased to the dead host: not run twice while the lease lasts...
    assert survivor.call("tick", now=T_PLUS_1S) == []
    # ...and run once the lease has run out.
    assert survivor.call("tick", now=T_PLUS_11MIN) == [["counter", "slow"]]
    assert survivor.call("kv", key="slow_done") == 1
