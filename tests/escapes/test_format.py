"""Escape class ``format`` (docs/escape-corpus.md 030-039): format-string traversal (CVE-2023-41039, CVE-2024-47532, CVE-2026-76825) and host-side formatting of plugin text.

Every payload runs against the real sandbox in a fresh runtime (see conftest.py); the
``stopped`` fixture checks the exact error, no OK evidence, the plugin, the victim plugin,
the database (also after the handler returned), the host process and the host log.
"""

from __future__ import annotations

from collections.abc import Callable

from emdash._selfaudit._corpus import Payload
from emdash._selfaudit._runner import AuditSession, PayloadResult

ESCAPE_CLASS = "format"


def test_format_payload_is_stopped(
    audit_session: AuditSession, payload: Payload, stopped: Callable[[PayloadResult], None]
) -> None:
    stopped(audit_session.run(payload))
