"""Escape class ``class`` (docs/escape-corpus.md 045-052): metaclasses and dunder hooks, and str/dict subclasses lying to host validators.

Every payload runs against the real sandbox in a fresh runtime (see conftest.py); the
``stopped`` fixture checks the exact error, no OK evidence, the plugin, the victim plugin,
the database (also after the handler returned), the host process and the host log.
"""

from __future__ import annotations

from collections.abc import Callable

from emdash._selfaudit._corpus import Payload
from emdash._selfaudit._runner import AuditSession, PayloadResult

ESCAPE_CLASS = "class"


def test_class_payload_is_stopped(
    audit_session: AuditSession, payload: Payload, stopped: Callable[[PayloadResult], None]
) -> None:
    stopped(audit_session.run(payload))
