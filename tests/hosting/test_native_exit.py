"""A runaway trusted handler never keeps the Python process from exiting."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import emdash
from emdash import HookConfig, define_plugin


def spin(event, ctx):
    while True:  # never returns by itself: the watchdog interrupts it past its timeout
        pass


rt = emdash.Runtime({database!r})
rt.add_plugin(
    {{"id": "spinner", "capabilities": ["content:read"]}},
    source=define_plugin(hooks={{"content:afterSave": HookConfig(spin, timeout_ms=50, error_policy="continue")}}),
    trusted=True,
)
outcome = rt.run_hook(
    "content:afterSave",
    {{"content": {{"id": "c1"}}, "collection": "posts", "isNew": True}},
)
print("timed out:", type(outcome.results[0].error).__name__, flush=True)
if {close!r}:
    rt.close()
print("exiting", flush=True)
"""


@pytest.mark.parametrize("close", [True, False], ids=["closed", "left-open"])
def test_the_process_exits_with_a_handler_still_spinning(tmp_path: Path, close: bool) -> None:
    code = textwrap.dedent(CHILD).format(database=str(tmp_path / "site.db"), close=close)
    # The timeout only keeps a regression from hanging the suite; it is not a measurement.
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["timed out: HookTimeoutError", "exiting"]
