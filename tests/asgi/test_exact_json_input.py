"""Anonymous input that the exact-JSON rule refuses is a 400 before any plugin runs.

Issue row: anonymous request bodies with integers beyond 64 bits, deep nesting or lone
surrogates reached the plugin (or its worker's encoder), and came back as a 500, an ERROR
line and an audit row blamed on the plugin. Here, with the real runtime in both modes
(a real forked worker for "sandboxed"), each such body is answered 400 ``INVALID_INPUT``;
the plugin's route never ran (no audit row for it), and nothing was logged at ERROR.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from emdash._runtime._runtime import Runtime
from emdash.asgi import EmDashASGI

from .conftest import API, call

BAD_BODIES = [
    pytest.param(
        b'{"n": 18446744073709551617}', "outside the exact range", id="int-beyond-64-bits"
    ),
    pytest.param(b'{"n": 9223372036854775808}', "outside the exact range", id="int-beyond-int64"),
    pytest.param(b"[" * 200 + b"]" * 200, "nested more than 64 levels", id="200-deep"),
    pytest.param(b"[" * 2000 + b"]" * 2000, "nested", id="2000-deep"),
    pytest.param(b'{"s": "\\ud800"}', "lone surrogate", id="lone-surrogate"),
    pytest.param(b'{"\\udc00": 1}', "lone surrogate", id="lone-surrogate-key"),
    pytest.param(b'{"x": NaN}', "NaN", id="nan"),
]


def _audit_rows(runtime: Runtime) -> list[dict[str, Any]]:
    runtime.store.audit_records.flush()
    return runtime.store.audit_records.list(limit=1000, plugin_id="probe")


@pytest.mark.parametrize(("body", "problem"), BAD_BODIES)
def test_anonymous_body_the_encoder_cannot_carry_is_400_not_blamed_on_the_plugin(
    app: EmDashASGI,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    problem: str,
) -> None:
    before = len(_audit_rows(runtime))
    with caplog.at_level(logging.WARNING):
        response = call(
            app,
            "POST",
            f"{API}/probe/public-echo",
            token=None,
            content=body,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert problem in error["message"]
    # The route never ran: no audit row for the plugin, no log line at ERROR or above.
    assert len(_audit_rows(runtime)) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_input_at_the_edges_of_the_rule_reaches_the_plugin(app: EmDashASGI) -> None:
    body = (
        b'{"big": 9223372036854775807, "small": -9223372036854775808, "deep": '
        + (b"[" * 60 + b"]" * 60)
        + b', "emoji": "\\ud83d\\ude00"}'
    )
    response = call(
        app,
        "POST",
        f"{API}/probe/public-echo",
        token=None,
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    got = response.json()["data"]["input"]
    assert got["big"] == 2**63 - 1 and got["small"] == -(2**63)
    assert got["emoji"] == "\U0001f600"


def test_invalid_json_is_still_no_input(app: EmDashASGI) -> None:
    """EmDash's behaviour is kept: a body that is not JSON at all is ``undefined``."""
    response = call(
        app,
        "POST",
        f"{API}/probe/public-echo",
        token=None,
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["data"]["input"] is None
