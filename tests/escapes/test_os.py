"""Escape class ``os`` (docs/escape-corpus.md 091-106): post-breakout code in a confined worker (raw-worker mode): files, environment, ptrace, sockets, exec, fork, signals, fds, seccomp gaps, rlimits, W+X memory.

Every payload runs against the real sandbox in a fresh runtime (see conftest.py); the
``stopped`` fixture checks the exact error, no OK evidence, the plugin, the victim plugin,
the database (also after the handler returned), the host process and the host log.
"""

from __future__ import annotations

from collections.abc import Callable

from emdash._selfaudit._corpus import Payload
from emdash._selfaudit._runner import AuditSession, PayloadResult

ESCAPE_CLASS = "os"


def test_os_payload_is_stopped(
    audit_session: AuditSession, payload: Payload, stopped: Callable[[PayloadResult], None]
) -> None:
    stopped(audit_session.run(payload))
