"""Escape class ``ctx`` (docs/escape-corpus.md 079-087): abusing held capabilities: other plugins' KV/storage, SSRF in every spelling and via redirect, CRLF, log injection, stale ctx, host objects as results.

Every payload runs against the real sandbox in a fresh runtime (see conftest.py); the
``stopped`` fixture checks the exact error, no OK evidence, the plugin, the victim plugin,
the database (also after the handler returned), the host process and the host log.
"""

from __future__ import annotations

from collections.abc import Callable

from emdash._selfaudit._corpus import Payload
from emdash._selfaudit._runner import AuditSession, PayloadResult

ESCAPE_CLASS = "ctx"


def test_ctx_payload_is_stopped(
    audit_session: AuditSession, payload: Payload, stopped: Callable[[PayloadResult], None]
) -> None:
    stopped(audit_session.run(payload))
