"""docs/testing-plugins.md's harness example, run as a plugin author's suite would run it
(an inner pytest session that gets the fixtures from the ``pytest11`` entry point)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing-plugins.md"
MARKER = re.compile(
    r"<!-- testing-doc-test: (?P<name>[\w.]+) -->\n```python\n(?P<body>.*?)\n```", re.S
)


def test_the_harness_example_runs_as_shown(pytester: pytest.Pytester) -> None:
    (block,) = MARKER.finditer(DOC.read_text())
    body = block["body"]
    # The one line a reader adapts: where the example plugins are.
    shown = 'EXAMPLES = Path("examples")'
    assert shown in body
    body = body.replace(shown, f"EXAMPLES = Path({str(ROOT / 'examples')!r})")
    pytester.makepyfile(**{block["name"].removesuffix(".py"): body})
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
