"""Escape class ``frame`` (docs/escape-corpus.md 023-029): frames and code objects (CVE-2023-37271), async frames, and generator code running after the handler returned.

Every payload runs against the real sandbox in a fresh runtime (see conftest.py); the
``stopped`` fixture checks the exact error, no OK evidence, the plugin, the victim plugin,
the database (also after the handler returned), the host process and the host log.
"""

from __future__ import annotations

from collections.abc import Callable

from emdash._selfaudit._corpus import Payload
from emdash._selfaudit._runner import AuditSession, PayloadResult

ESCAPE_CLASS = "frame"


def test_frame_payload_is_stopped(
    audit_session: AuditSession, payload: Payload, stopped: Callable[[PayloadResult], None]
) -> None:
    stopped(audit_session.run(payload))
