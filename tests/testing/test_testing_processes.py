"""Closing a harness leaves no fork server and no sandbox worker running.

Processes are found in /proc (every live process below this one), not through the
runtime's own bookkeeping, so a process the runtime forgot about would be caught too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from emdash.testing import HarnessFactory, PluginHarness

from .conftest import HELLO

Scan = Callable[[], dict[int, str]]
Check = Callable[[dict[int, str]], list[int]]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_close_stops_the_fork_server_and_every_worker(
    descendants: Scan, still_running: Check
) -> None:
    before = descendants()
    h = PluginHarness(HELLO)
    h.runtime.content.create("posts", {"title": "Hi"})
    assert len(h.route("recent")["events"]) == 1
    started = {p: s for p, s in descendants().items() if p not in before}

    servers = [p for p in started if _ppid(p) == os.getpid()]
    workers = [p for p in started if p not in servers]
    assert len(servers) == 1 and workers  # the fork server, and the workers it forked
    assert {_ppid(w) for w in workers} == set(servers)

    h.close()
    assert still_running(started) == []


def test_leaving_the_with_block_by_an_exception_closes_too(
    descendants: Scan, still_running: Check
) -> None:
    before = descendants()
    with pytest.raises(KeyError), PluginHarness(HELLO) as h:
        h.route("recent")
        started = {p: s for p, s in descendants().items() if p not in before}
        raise KeyError("the test failed")
    assert started and h.closed
    assert still_running(started) == []


def test_a_native_harness_starts_no_process(descendants: Scan) -> None:
    before = descendants()
    with PluginHarness(HELLO, sandbox=False) as h:
        h.runtime.content.create("posts", {"title": "Hi"})
        assert len(h.route("recent")["events"]) == 1
        assert set(descendants()) == set(before)


def test_the_factory_closes_every_harness_it_made(
    tmp_path: Path, descendants: Scan, still_running: Check
) -> None:
    factory = HarnessFactory(tmp_path)
    before = descendants()
    made = [factory(HELLO), factory(HELLO), factory(HELLO, sandbox=False)]
    for h in made:
        h.route("recent")
    started = {p: s for p, s in descendants().items() if p not in before}
    # Two sandboxed harnesses: two fork servers, each with its workers.
    assert len([p for p in started if _ppid(p) == os.getpid()]) == 2
    assert [Path(h.database).name for h in made] == [
        "emdash-harness-1.db",
        "emdash-harness-2.db",
        "emdash-harness-3.db",
    ]
    factory.close_all()
    assert [h.closed for h in made] == [True, True, True]
    assert still_running(started) == []
    # Databases in the test's directory are kept for inspection.
    assert all(Path(h.database).exists() for h in made)
