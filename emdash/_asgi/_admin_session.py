"""Admin sign-in sessions: a server-side table keyed by a random cookie value.

Why server-side and not a signed token: signing out, expiry and a restart must end a
session for good. A signed cookie stays valid until it expires, whatever the server
forgets; a row in this table does not. The table lives in memory, so restarting
``emdash serve`` signs everyone out, which is what an operator expects of a dev server.

- The cookie holds 256 random bits; the table is keyed by their SHA-256, so a dump of the
  table (a debugger, a core file) holds nothing a browser could present.
- A session ends after ``idle_s`` without a request or ``max_age_s`` after sign-in,
  whichever comes first. Both are checked on every lookup against ``clock`` (monotonic:
  a wall-clock jump never revives or kills sessions).
- Each session has its own CSRF token, put in every form and compared in constant time
  on every POST (see :mod:`emdash._asgi._admin_app`).
- At most ``max_sessions`` live at once; signing in past that drops the oldest, so a
  client that signs in in a loop cannot grow the table without bound.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AdminSession", "SessionTable"]

DEFAULT_IDLE_S = 30 * 60.0
DEFAULT_MAX_AGE_S = 8 * 3600.0
DEFAULT_MAX_SESSIONS = 64
# Forms remembered per session (their field types, for converting a submission): enough
# for every page an administrator has open, bounded so a page that renders many forms
# cannot grow a session without limit.
MAX_FORMS = 256
# The validated blocks of the last pages shown (plugin and page -> blocks), so a refused
# submission (a value that was not offered) or a form refreshed to re-evaluate its field
# conditions is shown again without running the plugin. Each is at most one admin
# response (256 KiB as JSON, emdash._admin._blockkit), so a session holds a few MiB at most.
MAX_PAGES = 8


@dataclass
class AdminSession:
    """One signed-in browser."""

    key: str  # SHA-256 of the cookie value (hex)
    csrf: str
    created: float
    last_seen: float
    # One-shot notice shown on the next page (after a POST that redirects).
    flash: tuple[str, str] | None = None
    # form key -> {"fields": {action_id: type}, "submit": action_id}
    forms: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "<plugin>\n<page>" -> (render id, the blocks last shown there: validated, a copy)
    pages: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)

    def check_csrf(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.csrf.encode())

    def remember_form(self, key: str, spec: dict[str, Any]) -> None:
        self.forms.pop(key, None)
        self.forms[key] = spec
        while len(self.forms) > MAX_FORMS:
            self.forms.pop(next(iter(self.forms)))

    def remember_page(self, plugin_id: str, page: str, render: str, blocks: list[Any]) -> None:
        key = f"{plugin_id}\n{page}"
        self.pages.pop(key, None)
        self.pages[key] = (render, blocks)
        while len(self.pages) > MAX_PAGES:
            self.pages.pop(next(iter(self.pages)))

    def shown_page(self, plugin_id: str, page: str, render: Any) -> list[Any] | None:
        """The blocks of render ``render`` of that page, if it is still the last one shown
        there: a form's number only means something in the render that drew it (another
        tab may have shown the page since, with other forms)."""
        shown = self.pages.get(f"{plugin_id}\n{page}")
        if shown is None or not isinstance(render, str) or shown[0] != render:
            return None
        return shown[1]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


class SessionTable:
    """Thread-safe table of admin sessions (see the module docstring)."""

    def __init__(
        self,
        *,
        idle_s: float = DEFAULT_IDLE_S,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, AdminSession] = {}

    def create(self) -> tuple[str, AdminSession]:
        """A new session; returns ``(cookie value, session)``."""
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        session = AdminSession(_digest(cookie), secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            while len(self._rows) >= self.max_sessions:
                oldest = min(self._rows.values(), key=lambda s: s.created)
                del self._rows[oldest.key]
            self._rows[session.key] = session
        return cookie, session

    def get(self, cookie: str | None) -> AdminSession | None:
        """The live session for ``cookie`` (its idle clock restarts), or ``None``."""
        if not cookie or len(cookie) > 128:
            return None
        now = self.clock()
        with self._lock:
            session = self._rows.get(_digest(cookie))
            if session is None:
                return None
            if self._expired(session, now):
                del self._rows[session.key]
                return None
            session.last_seen = now
            return session

    def drop(self, session: AdminSession) -> None:
        with self._lock:
            self._rows.pop(session.key, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._rows)

    def _expired(self, session: AdminSession, now: float) -> bool:
        return now - session.last_seen > self.idle_s or now - session.created > self.max_age_s

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._rows.items() if self._expired(s, now)]:
            del self._rows[key]
