"""A route whose commit conflicted answers 409 CONFLICT, without the contended scope."""

from __future__ import annotations

import logging

import pytest

from emdash import ConflictError
from emdash._asgi._app import describe_error


def test_a_conflict_is_409_and_the_scope_stays_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    exc = ConflictError(
        "Plugin p could not commit its route:r invocation: kv/p/secret-key was changed",
        plugin_id="p",
        scope="kv/p/secret-key",
    )
    with caplog.at_level(logging.WARNING):
        status, body = describe_error(exc, "p", "r")
    assert status == 409
    assert body == {
        "code": "CONFLICT",
        "message": "The request conflicted with a concurrent change and was not applied; retry it",
    }
    assert any("kv/p/secret-key" in m for m in caplog.messages)
