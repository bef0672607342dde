"""The README's plugin walkthrough, extracted and run exactly as a reader would run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: (?P<path>[\w./-]+) -->\n```\w*\n(?P<body>.*?)\n```", re.S)


def walkthrough_files() -> dict[str, str]:
    return {m["path"]: m["body"] + "\n" for m in MARKER.finditer(README.read_text())}


def test_the_walkthrough_has_the_three_blocks_and_the_plugin_is_short() -> None:
    files = walkthrough_files()
    assert sorted(files) == ["run.py", "word-count/emdash-plugin.toml", "word-count/plugin.py"]
    # The README promises "a plugin in 20 lines" (the descriptor and the code together).
    plugin_lines = [
        line
        for name in ("word-count/emdash-plugin.toml", "word-count/plugin.py")
        for line in files[name].splitlines()
        if line.strip()
    ]
    assert len(plugin_lines) <= 20


def test_the_walkthrough_runs_sandboxed_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    for name, text in walkthrough_files().items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    # The emdash CLI checks the plugin the way the README suggests, before it is installed.
    check = subprocess.run(
        [sys.executable, "-m", "emdash.cli", "check", "word-count"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("OK: word-count 0.1.0 (1 files, ")
    run = subprocess.run(
        [sys.executable, "run.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "3\n{'words': 3}\n"
    assert (tmp_path / "site.db").is_file()
