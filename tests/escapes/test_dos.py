"""Escape class ``dos`` (docs/escape-corpus.md 107-120): CPU, memory, wall-clock, output and host-call bombs: each ends with its limit error and the worker is replaced.

Every payload runs against the real sandbox in a fresh runtime (see conftest.py); the
``stopped`` fixture checks the error (for these bombs: a stop by any limit, since which one
trips first depends on the machine's load, with that limit's message), no OK evidence, the
plugin, the victim plugin, the database (also after the handler returned), the host
process and the host log.
"""

from __future__ import annotations

from collections.abc import Callable

from emdash._selfaudit._corpus import Payload
from emdash._selfaudit._runner import AuditSession, PayloadResult

ESCAPE_CLASS = "dos"


def test_dos_payload_is_stopped(
    audit_session: AuditSession, payload: Payload, stopped: Callable[[PayloadResult], None]
) -> None:
    stopped(audit_session.run(payload))
