"""The reference docs agree with the code: generated regions are fresh, links resolve.

The generated regions of ``docs/`` are rendered from the code's own tables (hooks catalog,
capabilities, bridge methods, ctx classes, descriptor model, builtins, shims, escape corpus)
and from restricted-Python examples that the real compiler and guards check. If a region
differs from what the code renders now, the docs describe something the runtime no longer
does: the failure says to run ``make docs``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from emdash._docgen import DOCS, REGIONS, GeneratedRegionError, render_file
from emdash._docgen._rules import RULES
from emdash._docgen._tables import AT_LIMIT
from emdash._model._descriptor import Limits

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", DOCS)
def test_generated_regions_match_the_code(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    fresh = render_file(text, name)
    assert fresh == text, (
        f"{name}: a generated region differs from what the code's tables give now; "
        "run `make docs` (python -m emdash._docgen) and commit the result"
    )


def test_every_region_is_used_exactly_once_across_the_docs() -> None:
    used: list[str] = []
    for name in DOCS:
        used += re.findall(
            r"^<!-- generated:([a-z0-9-]+) -->$", (ROOT / name).read_text(), re.MULTILINE
        )
    assert sorted(used) == sorted(REGIONS)


def test_prose_outside_the_markers_is_kept_and_regions_are_rewritten() -> None:
    text = "intro\n<!-- generated:aliases -->\nstale\n<!-- /generated:aliases -->\noutro\n"
    out = render_file(text)
    assert out.startswith("intro\n<!-- generated:aliases -->\n| Deprecated name")
    assert out.endswith("\n<!-- /generated:aliases -->\noutro\n")
    assert "stale" not in out
    assert render_file(out) == out


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- generated:nope -->\n<!-- /generated:nope -->\n", "unknown generated region 'nope'"),
        ("<!-- generated:aliases -->\nx\n", "is not closed"),
        ("<!-- /generated:aliases -->\n", "has no opening marker"),
        (
            "<!-- generated:aliases -->\n<!-- /generated:aliases -->\n" * 2,
            "appears twice",
        ),
    ],
)
def test_malformed_markers_are_errors_that_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(GeneratedRegionError, match=problem) as caught:
        render_file(text, "docs/x.md")
    assert str(caught.value).startswith("docs/x.md:")


def test_every_limit_says_what_happens_at_it() -> None:
    # A new [limits] key cannot reach the docs without its consequence.
    assert set(AT_LIMIT) == set(Limits.model_fields)


def test_the_language_examples_cover_the_rules_authors_meet_most() -> None:
    titles = " ".join(rule.title for rule in RULES)
    for needle in ("self.n += 1", "__eq__", "async def", "str.format", "import os", "super()"):
        assert needle in titles


def test_check_mode_reports_stale_docs_and_changes_nothing(tmp_path: Path) -> None:
    for name in DOCS:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((ROOT / name).read_text())
    stale = tmp_path / DOCS[0]
    before = stale.read_text().replace(
        "<!-- /generated:hooks -->", "stale\n<!-- /generated:hooks -->"
    )
    stale.write_text(before)
    done = subprocess.run(
        [sys.executable, "-m", "emdash._docgen", "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1
    assert "run `make docs`" in done.stderr and DOCS[0] in done.stderr
    assert stale.read_text() == before


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("name", [*DOCS, "README.md", "docs/design.md", "docs/resource-model.md"])
def test_relative_links_resolve_inside_the_repository(name: str) -> None:
    path = ROOT / name
    for target in _LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{name} links outside the repository: {target}"
        assert resolved.exists(), f"{name} links to a missing file: {target}"


def test_the_readme_links_the_reference_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in DOCS:
        assert f"({name})" in readme, f"README.md does not link {name}"


# References to design notes that live outside this repository. The docs in docs/ carry what
# a reader needs; code and docs point there. Spelled in pieces so this file does not match.
_OUTSIDE = re.compile(
    "|".join(
        [
            r"spec/",
            "escape" + "-classes",
            "sandbox" + "-contract",
            "plugin" + r"-api(\.md| §| section)",
            r"\bspec §",
            r"\bspec section",
            r"\(spec \d{3}",
            r"\.\./shared",
            "/work" + "/shared",
            "shared" + "/spec",
            "DESIGN" + r"\.md",
            r"\bthe spec\b",
        ]
    )
)
# CHANGELOG.md keeps history as it was written; semver.org's URL contains "spec/".
_SCANNED = ("emdash", "sandbox", "stdlib_shims", "tests", "examples", "benchmarks", "docs", ".ci")


def _repository_texts() -> list[Path]:
    paths = [p for top in _SCANNED for p in (ROOT / top).rglob("*") if p.is_file()]
    paths += [p for p in ROOT.glob("*.md") if p.name != "CHANGELOG.md"]
    paths += [ROOT / "Makefile", ROOT / "pyproject.toml"]
    return [p for p in paths if "__pycache__" not in p.parts and p.suffix != ".pyc"]


def test_code_and_docs_never_refer_to_design_notes_outside_the_repository() -> None:
    found = []
    for path in _repository_texts():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            line = line.replace("semver.org/spec/", "")
            if _OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, (
        "references to design notes outside the repository; point to docs/plugin-reference.md, "
        "docs/restricted-python.md or docs/escape-corpus.md instead:\n" + "\n".join(found)
    )
