"""mypy sees the runtime's services as their classes: ``rt.content.create(...)`` is checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import emdash

mypy_api = pytest.importorskip("mypy.api")

SNIPPET = """\
from typing import Any, assert_type

import emdash
from emdash._services._comments import CommentService
from emdash._services._content import ContentService
from emdash._services._cron import CronService
from emdash._services._email import EmailPipeline
from emdash._services._media import MediaService
from emdash._services._page import PageService

with emdash.Runtime() as rt:
    assert_type(rt.content, ContentService)
    assert_type(rt.media, MediaService)
    assert_type(rt.comments, CommentService)
    assert_type(rt.email, EmailPipeline)
    assert_type(rt.cron, CronService)
    assert_type(rt.page, PageService)
    item = rt.content.create("posts", {"title": "t"})
    assert_type(item, dict[str, Any])
    rt.content.create(1, {})
"""


def test_mypy_checks_calls_on_the_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "uses_runtime.py"
    source.write_text(SNIPPET)
    monkeypatch.chdir(tmp_path)  # no project config: only the flags below apply
    monkeypatch.setenv("MYPYPATH", str(Path(emdash.__file__).resolve().parent.parent))
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--no-error-summary",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--python-version",
            "3.11",
            str(source),
        ]
    )
    errors = [line.split(": error: ", 1)[1] for line in out.splitlines() if ": error: " in line]
    assert errors == [
        'Argument 1 to "create" of "ContentService" has incompatible type "int"; '
        'expected "str"  [arg-type]',
    ], out + err
    assert status == 1
