"""The escape suite: every payload of ``emdash._selfaudit._corpus`` against the real sandbox.

Each ``test_<class>.py`` sets ``ESCAPE_CLASS`` and parametrises one test over that class's
payloads. The module-scoped ``audit_session`` is an :class:`emdash._selfaudit._runner.AuditSession`: a
fresh ``Runtime`` on a real SQLite file with real sandbox workers, a sandboxed victim plugin
holding a secret in KV and storage, a canary HTTP server, an abstract-socket canary and a
capture of the host log. ``stopped`` asserts, check by check, that a payload was stopped the
way docs/escape-corpus.md requires (for resource bombs: by a limit, whichever trips first).

Known holes (payloads the current build does not stop as specified) are marked
``xfail(strict=True)`` with the reason, in :data:`KNOWN_HOLES`: the test still runs every
assertion, the suite shows them as XFAIL, and the day the hole is closed the XPASS fails the
run until the mark is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emdash._selfaudit._corpus import Payload, payloads_for
from emdash._selfaudit._runner import AuditSession, PayloadResult

# payload name -> why it is not stopped as docs/escape-corpus.md requires (and which layer should stop it)
KNOWN_HOLES: dict[str, str] = {}


def escape_params(klass: str) -> list[Any]:
    """``pytest.param`` per payload of ``klass``, with the known holes marked."""
    params = []
    for payload in payloads_for(klass):
        marks = []
        if payload.name in KNOWN_HOLES:
            marks.append(pytest.mark.xfail(reason=KNOWN_HOLES[payload.name], strict=True))
        params.append(pytest.param(payload, id=payload.name, marks=marks))
    return params


@pytest.fixture(scope="module")
def audit_session(request: pytest.FixtureRequest) -> Iterator[AuditSession]:
    klass: str = request.module.ESCAPE_CLASS
    with AuditSession(klass) as session:
        yield session


def _assert_stopped(result: PayloadResult) -> None:
    p: Payload = result.payload
    why = result.describe()
    # Nothing got out: no OK evidence, no canary touched, no file, no process.
    assert result.failures_of("escape") == [], why
    assert result.failures_of("harness") == [], why
    # The error class (and plugin-side exception type) docs/escape-corpus.md requires; for a resource
    # bomb, or where the expected outcome is itself a limit stop, a stop by any limit (which
    # limit trips first can depend on the machine's load). Returning is never a stop.
    assert result.error_name is not None, why
    assert p.accepts(result.error_name, result.error_type), why
    assert result.failures_of("error") == [], why
    # The message names the plugin, carries the expected parts and is bounded.
    assert result.failures_of("message") == [], why
    # The plugin answers again (a killed worker was replaced).
    assert result.failures_of("plugin") == [], why
    # Another plugin (the victim) and its KV/storage are untouched.
    assert result.failures_of("victim") == [], why
    # The database is what it was before the attack, also after the follow-up calls that
    # look for effects landing after the handler returned.
    assert result.failures_of("database") == [], why
    # The host process: environment, cwd, core functions, supervisor health.
    assert result.failures_of("host") == [], why
    # The host log: no injected lines, no formatted plugin text, no late lines, no flood.
    assert result.failures_of("log") == [], why
    assert result.passed, why


@pytest.fixture
def stopped() -> Callable[[PayloadResult], None]:
    """Assert that one payload's result shows it stopped exactly as specified."""
    return _assert_stopped


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``payload`` over the module's ``ESCAPE_CLASS``."""
    if "payload" in metafunc.fixturenames and hasattr(metafunc.module, "ESCAPE_CLASS"):
        metafunc.parametrize("payload", escape_params(metafunc.module.ESCAPE_CLASS))
