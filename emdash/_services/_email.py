"""The email pipeline (docs/plugin-reference.md, email hooks) and the built-in console provider.

``EmailPipeline.send(message, source=...)``:

1. recursion guard: a send started while another send is running in the same context
   (a ``contextvars`` flag) raises :class:`~emdash.EmailRecursionError`, so a plugin whose
   ``email:afterSend`` handler sends mail cannot loop forever;
2. validation of the message (EmDash's texts, plus a refusal of line breaks in ``to`` and
   ``subject``, which would let user data inject mail headers into an SMTP transport);
3. system mail (``source="system"``: magic links, invites, password recovery) skips
   ``email:beforeSend`` and ``email:afterSend`` so no plugin ever sees the tokens in it;
4. ``email:beforeSend`` middleware: ``False`` cancels (logged, the call returns normally),
   a dict replaces the message, which is validated again;
5. ``email:deliver`` on the selected provider only; none selected raises
   :class:`~emdash.EmailNotConfiguredError`, a provider failure is re-raised;
6. ``email:afterSend`` observers, errors logged.

:class:`ConsoleEmailProvider` is a small trusted plugin (``emdash-console-email``) for
development and the demo: it keeps the last 100 messages in memory and writes each one to
the log or, given a path, appends it as one JSON line to a file.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._shared._errors import EmailError, EmailNotConfiguredError, EmailRecursionError, EmDashError
from .._shared._plugin_api import HookConfig, PluginDefinition, define_plugin
from ._hook_runner import deadline_scope

if TYPE_CHECKING:
    from ._hook_runner import HookRunner

__all__ = [
    "CONSOLE_EMAIL_PLUGIN_ID",
    "ConsoleEmailProvider",
    "EmailPipeline",
    "validate_message",
]

log = logging.getLogger("emdash.email")

CONSOLE_EMAIL_PLUGIN_ID = "emdash-console-email"
NOT_CONFIGURED = (
    "No email provider is configured. Install and activate an email provider plugin, then "
    "select it in Settings > Email."
)
_MAX_FIELD = {"to": 998, "subject": 998, "text": 1_000_000, "html": 2_000_000}

# True while a send runs in this context. Native handlers run in worker threads; the
# pipeline runs them inside a copy of the caller's context, so the flag follows the call.
_sending: ContextVar[bool] = ContextVar("emdash_email_sending", default=False)


def validate_message(message: Any, *, plugin_id: str | None = None) -> dict[str, Any]:
    """Check a message and return a clean copy with only the known keys.

    ``to``, ``subject`` and ``text`` must be non-empty strings, ``html`` a string when
    present. ``plugin_id`` names the plugin that produced the message (a ``beforeSend``
    handler), so the error says whose output was wrong.
    """
    suffix = f' (returned by plugin "{plugin_id}")' if plugin_id else ""
    if type(message) is not dict:
        raise EmailError(
            f"Invalid email message: must be an object with to, subject and text{suffix}",
            plugin_id=plugin_id,
        )
    for key in ("to", "subject", "text"):
        value = message.get(key)
        if type(value) is not str or not value:
            raise EmailError(
                f"Invalid email message: '{key}' is required and must be a string{suffix}",
                plugin_id=plugin_id,
            )
    html = message.get("html")
    if html is not None and type(html) is not str:
        raise EmailError(
            f"Invalid email message: 'html' must be a string{suffix}", plugin_id=plugin_id
        )
    for key in ("to", "subject"):
        if "\r" in message[key] or "\n" in message[key]:
            raise EmailError(
                f"Invalid email message: '{key}' must not contain line breaks{suffix}",
                plugin_id=plugin_id,
            )
    clean = {k: message[k] for k in ("to", "subject", "text", "html") if message.get(k) is not None}
    for key, limit in _MAX_FIELD.items():
        if key in clean and len(clean[key]) > limit:
            raise EmailError(
                f"Invalid email message: '{key}' is longer than {limit} characters{suffix}",
                plugin_id=plugin_id,
            )
    return clean


@contextmanager
def _guard() -> Iterator[None]:
    if _sending.get():
        raise EmailRecursionError(
            "Recursive email send detected: an email was sent while another send was still "
            "running (from an email hook). Send follow-up mail from a cron task or a route "
            "instead."
        )
    token = _sending.set(True)
    try:
        yield
    finally:
        _sending.reset(token)


class AddPlugin(Protocol):
    """Adds a plugin to the site (``Runtime.add_plugin``): how the console provider joins."""

    def __call__(
        self, descriptor: dict[str, Any], source: PluginDefinition, trusted: bool
    ) -> object: ...


class EmailPipeline:
    """Sends email through the plugin hooks; available as ``rt.email``.

    ``add_plugin`` is used once, by :meth:`use_console_provider`, to add the built-in
    provider as a trusted plugin.
    """

    def __init__(self, hooks: HookRunner, *, add_plugin: AddPlugin) -> None:
        self._hooks = hooks
        self._add_plugin = add_plugin
        self._console: ConsoleEmailProvider | None = None

    def is_available(self) -> bool:
        """True when an ``email:deliver`` provider is selected."""
        return self._hooks.selected_provider("email:deliver") is not None

    def send(
        self, message: dict[str, Any], *, source: str = "admin", deadline: float | None = None
    ) -> None:
        """Send ``message`` (``{to, subject, text, html?}``) on behalf of ``source``.

        ``source`` is ``"system"`` for authentication mail, ``"admin"`` for mail an
        administrator sends, or the id of the plugin that called ``ctx.email.send``.
        ``deadline`` (``time.monotonic`` seconds): that plugin's invocation deadline; every
        email hook handler gets at most the time left until it. Returns normally when a
        ``beforeSend`` plugin cancels the message.
        """
        if type(source) is not str or not source:
            raise EmailError("Invalid email source: must be a non-empty string")
        with _guard(), deadline_scope(deadline):
            msg = validate_message(message)
            system = source == "system"
            if not system:
                outcome = self._hooks.run_hook(
                    "email:beforeSend", {"message": msg, "source": source}
                )
                if outcome.cancelled_by is not None or outcome.value is False:
                    log.info(
                        '[email] Email to "%s" cancelled by plugin "%s"',
                        msg["to"],
                        outcome.cancelled_by,
                    )
                    return
                msg = validate_message(outcome.value, plugin_id=_last_changer(outcome))
            delivered = self._hooks.invoke_exclusive(
                "email:deliver", {"message": msg, "source": source}
            )
            if delivered is None:
                raise EmailNotConfiguredError(NOT_CONFIGURED)
            if delivered.error is not None:
                raise delivered.error
            if not system:
                try:
                    self._hooks.run_hook("email:afterSend", {"message": msg, "source": source})
                except EmDashError as exc:  # observers never fail a delivered message
                    log.error("[email] email:afterSend failed: %s", exc)

    # -- console provider ---------------------------------------------------------------

    def use_console_provider(self, path: str | Path | None = None) -> ConsoleEmailProvider:
        """Register (once) and select the built-in console provider; return it.

        With ``path``, each message is appended to that file as one JSON line; without,
        it is written to the ``emdash.email`` log. The last 100 messages stay in
        ``provider.messages`` either way.
        """
        if self._console is None:
            provider = ConsoleEmailProvider(path)
            self._add_plugin(provider.descriptor(), source=provider.definition(), trusted=True)
            self._console = provider
        elif path is not None:
            self._console.path = Path(path)
        self._hooks.select_provider("email:deliver", CONSOLE_EMAIL_PLUGIN_ID)
        return self._console


def _last_changer(outcome: Any) -> str | None:
    """The last plugin whose beforeSend step succeeded (whose output we now validate)."""
    for result in reversed(getattr(outcome, "results", []) or []):
        if result.success:
            return str(result.plugin_id)
    return None


class ConsoleEmailProvider:
    """A development email transport: log or file, and the last 100 messages in memory."""

    MAX_KEPT = 100

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._messages: deque[dict[str, Any]] = deque(maxlen=self.MAX_KEPT)
        self._lock = threading.Lock()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The delivered messages, oldest first, each ``{message, source, sentAt}``."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    @staticmethod
    def descriptor() -> dict[str, Any]:
        return {
            "id": CONSOLE_EMAIL_PLUGIN_ID,
            "version": "1.0.0",
            "name": "Console email",
            "description": "Development email provider: logs messages, keeps the last 100",
            "capabilities": ["hooks.email-transport:register"],
        }

    def definition(self) -> PluginDefinition:
        return define_plugin(
            hooks={"email:deliver": HookConfig(handler=self._deliver, exclusive=True)}
        )

    def _deliver(self, event: dict[str, Any], ctx: Any) -> None:
        record = {
            "message": dict(event.get("message") or {}),
            "source": event.get("source"),
            "sentAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        line = json.dumps(record, ensure_ascii=False)
        if self.path is not None:
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        else:
            log.info("[email:console] %s", line)
        with self._lock:
            self._messages.append(record)
