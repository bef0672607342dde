"""The emdash error tree.

One root, shallow branches. Every message names the plugin (when there is one) and says what
to do about it. The exact EmDash wire texts (``Missing capability: content:read``, the
wall-time sentence...) are kept as the *start* of the message so substring checks written
against EmDash keep working.

    EmDashError
    ├── ManifestError            a descriptor / plugin definition is invalid
    ├── ConfigError              the site config file (emdash.toml) is invalid
    ├── CapabilityError          "Missing capability: <cap>"
    ├── StorageQueryError        query on a non-indexed field, bad filter...
    ├── InvalidCursorError       "Invalid pagination cursor: ..."
    ├── HttpAccessError          host not allowed, SSRF block, too many redirects...
    ├── BridgeError              malformed bridge call (bad parameters, unknown method)
    │   └── CronScheduleError    invalid cron task name or schedule
    ├── NotFoundError            the thing a call refers to does not exist
    ├── QuotaExceededError       a per-plugin quota (stored bytes/rows...) would be passed
    ├── DeleteBlockedError       a content:beforeDelete handler vetoed a delete
    ├── CommentRejectedError     a comment was refused (by a plugin or the site's settings)
    ├── InvalidPageContextError  rt.page was handed a page context that is not one
    ├── EmailError
    │   ├── EmailNotConfiguredError
    │   └── EmailRecursionError
    ├── PluginError              the plugin raised; carries plugin id, hook/route, traceback
    ├── PluginRouteError         code, message, status (raised by route handlers on purpose)
    ├── HookTimeoutError         "Hook timeout after <n>ms"
    ├── PluginBusyError          a plugin's route admission is full (HTTP 503, Retry-After)
    ├── StorageError             the site database or media directory failed (not a plugin)
    │   └── ConflictError        an invocation's reads changed before it committed
    └── SandboxError             (also a sandbox.SandboxError)
        ├── SandboxViolation
        │   └── CompileError
        ├── CpuLimitExceeded
        ├── MemoryLimitExceeded
        ├── WallTimeExceeded
        ├── SubrequestLimitExceeded
        ├── SandboxNotAvailableError
        └── SandboxUnavailableError

This module imports only the standard library and ``sandbox._errors``: it is also loaded,
as source, into sandbox workers, so that a plugin sees the very same classes (and messages)
in both modes.
"""

from __future__ import annotations

import re
from typing import Any

import sandbox._errors as _sb

__all__ = [
    "BridgeError",
    "CapabilityError",
    "CommentRejectedError",
    "CompileError",
    "ConfigError",
    "ConflictError",
    "CpuLimitExceeded",
    "CronScheduleError",
    "DeleteBlockedError",
    "EmDashError",
    "EmailError",
    "EmailNotConfiguredError",
    "EmailRecursionError",
    "HookTimeoutError",
    "HttpAccessError",
    "InvalidCursorError",
    "InvalidPageContextError",
    "ManifestError",
    "MemoryLimitExceeded",
    "NotFoundError",
    "PluginBusyError",
    "PluginError",
    "PluginRouteError",
    "QuotaExceededError",
    "SandboxError",
    "SandboxNotAvailableError",
    "SandboxUnavailableError",
    "SandboxViolation",
    "StorageError",
    "StorageQueryError",
    "SubrequestLimitExceeded",
    "WallTimeExceeded",
    "clean_text",
    "passes_through",
    "error_from_wire",
    "error_to_wire",
]


class EmDashError(Exception):
    """Root of every error emdash raises.

    ``plugin_id`` is set whenever the error is about one plugin.
    """

    def __init__(self, message: str, *, plugin_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.plugin_id = plugin_id


class ManifestError(EmDashError):
    """A plugin descriptor or definition is invalid. The message lists what to fix."""


class ConfigError(EmDashError):
    """The site configuration file (emdash.toml) is missing, unreadable or invalid."""


class CapabilityError(EmDashError):
    """A ctx call needs a capability the plugin did not declare."""

    def __init__(self, capability: str, *, plugin_id: str | None = None) -> None:
        who = f'plugin "{plugin_id}"' if plugin_id else "the plugin"
        super().__init__(
            f"Missing capability: {capability} ({who} must declare "
            f'"{capability}" in its descriptor\'s capabilities to do this)',
            plugin_id=plugin_id,
        )
        self.capability = capability


class StorageQueryError(EmDashError):
    """A storage query used a field or filter the collection does not support."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        suggestion: str | None = None,
        plugin_id: str | None = None,
    ) -> None:
        full = f"{message} {suggestion}" if suggestion else message
        super().__init__(full, plugin_id=plugin_id)
        self.field = field
        self.suggestion = suggestion


class InvalidCursorError(EmDashError):
    """A pagination cursor was not one this store issued."""


class HttpAccessError(EmDashError):
    """An outbound request was refused by policy (allowlist, SSRF, scheme, redirects)."""


class BridgeError(EmDashError):
    """A bridge call was malformed: unknown method or bad parameters."""


class NotFoundError(EmDashError):
    """The item a call refers to does not exist."""


class QuotaExceededError(EmDashError):
    """A write would take the plugin past one of its per-plugin quotas; nothing was written.

    ``quota`` names the quota (``stored_bytes``, ``stored_rows``...), ``limit`` is its
    value for this plugin. Quotas are set by the site operator (``Runtime(quotas=...)``,
    ``[quotas]`` in emdash.toml), never by the plugin itself.
    """

    def __init__(
        self,
        message: str,
        *,
        plugin_id: str | None = None,
        quota: str | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(message, plugin_id=plugin_id)
        self.quota = quota
        self.limit = limit


class EmailError(EmDashError):
    """Sending email failed."""


class EmailNotConfiguredError(EmailError):
    """No email provider is selected."""


class EmailRecursionError(EmailError):
    """An email send was started from inside another send."""


# --- refusals of host operations (the services' own errors) --------------------------


class DeleteBlockedError(EmDashError):
    """A ``content:beforeDelete`` handler returned ``False`` (code ``DELETE_BLOCKED``)."""

    code = "DELETE_BLOCKED"
    status = 400

    def __init__(self, plugin_ids: list[str]) -> None:
        super().__init__(
            f"Delete blocked by plugin hook (vetoed by {', '.join(plugin_ids)})",
            plugin_id=plugin_ids[0] if plugin_ids else None,
        )
        self.plugin_ids = list(plugin_ids)


class CommentRejectedError(EmDashError):
    """A comment was refused: by a plugin (``COMMENT_REJECTED``) or by the site's settings
    (``COMMENTS_DISABLED``, ``COMMENTS_CLOSED``). ``status`` is the HTTP status to answer."""

    def __init__(
        self,
        code: str = "COMMENT_REJECTED",
        message: str = "Comment was rejected",
        *,
        status: int = 403,
        plugin_id: str | None = None,
    ) -> None:
        super().__init__(message, plugin_id=plugin_id)
        self.code = code
        self.status = status


class CronScheduleError(BridgeError):
    """A cron task name or schedule is invalid (the message is EmDash's text).

    A :class:`BridgeError` because it is how ``ctx.cron.schedule`` reports bad
    parameters: sandboxed and trusted plugins can both catch it as ``BridgeError``.
    """


class InvalidPageContextError(EmDashError):
    """The page context handed to ``rt.page`` is not a JSON object with a string ``url``."""


# --- what plugin code did ----------------------------------------------------------


class PluginError(EmDashError):
    """The plugin's own code raised.

    ``hook`` or ``route`` names what was running; ``error_type`` is the class name of the
    original exception and ``traceback_text`` the plugin-side traceback (for sandboxed plugins
    it comes from the worker and is plain text, never an object).
    """

    def __init__(
        self,
        message: str,
        *,
        plugin_id: str | None = None,
        hook: str | None = None,
        route: str | None = None,
        error_type: str | None = None,
        traceback_text: str | None = None,
    ) -> None:
        super().__init__(message, plugin_id=plugin_id)
        self.hook = hook
        self.route = route
        self.error_type = error_type
        self.traceback_text = traceback_text


class PluginRouteError(EmDashError):
    """Raised by a route handler to answer with a specific code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details

    @classmethod
    def bad_request(cls, message: str, details: Any = None) -> PluginRouteError:
        return cls("BAD_REQUEST", message, 400, details)

    @classmethod
    def unauthorized(cls, message: str = "Unauthorized") -> PluginRouteError:
        return cls("UNAUTHORIZED", message, 401)

    @classmethod
    def forbidden(cls, message: str = "Forbidden") -> PluginRouteError:
        return cls("FORBIDDEN", message, 403)

    @classmethod
    def not_found(cls, message: str = "Not found") -> PluginRouteError:
        return cls("NOT_FOUND", message, 404)

    @classmethod
    def conflict(cls, message: str, details: Any = None) -> PluginRouteError:
        return cls("CONFLICT", message, 409, details)

    @classmethod
    def internal(cls, message: str = "Internal error") -> PluginRouteError:
        return cls("INTERNAL_ERROR", message, 500)


class HookTimeoutError(EmDashError):
    """A hook handler ran longer than its ``timeout_ms`` ("Hook timeout after <n>ms")."""


class PluginBusyError(EmDashError):
    """A route call of this plugin was refused by its admission gate, before any plugin code
    ran: its queue was full (``reason="queue_full"``) or the caller waited
    ``queue_timeout_ms`` without a turn (``"queue_timeout"``). Retry after ``retry_after``
    seconds, or raise the plugin's ``max_concurrency`` / ``max_queue``. Over HTTP: 503
    ``PLUGIN_BUSY`` with ``Retry-After``."""

    code = "PLUGIN_BUSY"
    status = 503

    def __init__(
        self,
        plugin_id: str,
        *,
        reason: str,
        running: int,
        max_concurrency: int,
        max_queue: int,
        queue_timeout_ms: int,
        retry_after: int,
    ) -> None:
        what = (
            f"its {max_queue} queue places are taken"
            if reason == "queue_full"
            else f"no turn came within {queue_timeout_ms} ms"
        )
        super().__init__(
            f"Plugin {plugin_id} is busy: {running} of its route calls are running "
            f"(max_concurrency={max_concurrency}) and {what} (max_queue={max_queue}). "
            f"Retry in {retry_after} s, or raise this plugin's max_concurrency / max_queue "
            "if this load is expected.",
            plugin_id=plugin_id,
        )
        self.reason = reason
        self.retry_after = retry_after

    @property
    def public_message(self) -> str:
        """What an anonymous HTTP client is told (no configuration details)."""
        return f"Plugin {self.plugin_id} is busy; retry in {self.retry_after} s"


class StorageError(EmDashError):
    """The site's storage failed: the SQLite database (locked, full, read-only, damaged,
    not emdash's) or the media directory. The message says what happened and what to do.

    Never the plugin's fault: when it happens while a plugin's call is being served, the
    error keeps this class (it is not wrapped in :class:`PluginError`) and is audited as a
    storage failure. ``plugin_id`` is the plugin whose call was being served, if any.
    """


class ConflictError(StorageError):
    """An invocation could not commit: something it read (``scope``, e.g.
    ``kv/<plugin>/<key>``) was changed by another invocation or process after it read it,
    and the invocation could not be re-run (it had effects outside the database, or its
    re-runs were used up). Nothing of the invocation was kept; the message names the plugin
    and the scope and says what to do (retry; for counters use ``ctx.kv.increment``).
    """

    def __init__(
        self, message: str, *, plugin_id: str | None = None, scope: str | None = None
    ) -> None:
        super().__init__(message, plugin_id=plugin_id)
        self.scope = scope


class SandboxError(EmDashError, _sb.SandboxError):
    """Root of sandbox failures (also catchable as ``sandbox.SandboxError``)."""


class SandboxViolation(SandboxError, _sb.SandboxViolation):
    """The plugin attempted a forbidden import, builtin, attribute, file or socket access."""


class CompileError(SandboxViolation, _sb.CompileError):
    """The plugin's source was refused at compile time; ``errors`` lists every problem."""

    def __init__(
        self, message: str, errors: list[str] | None = None, *, plugin_id: str | None = None
    ) -> None:
        SandboxViolation.__init__(self, message, plugin_id=plugin_id)
        self.errors = list(errors or [])


class CpuLimitExceeded(SandboxError, _sb.CpuLimitExceeded):
    """The invocation used more CPU time than ``cpu_ms``."""


class MemoryLimitExceeded(SandboxError, _sb.MemoryLimitExceeded):
    """The worker grew past ``memory_mb``."""


class WallTimeExceeded(SandboxError, _sb.WallTimeExceeded):
    """The invocation exceeded ``wall_ms``; its worker was killed, so nothing runs later."""


class SubrequestLimitExceeded(SandboxError, _sb.SubrequestLimitExceeded):
    """The invocation made more bridge calls than ``subrequests`` allows."""


class SandboxNotAvailableError(SandboxError, _sb.SandboxNotAvailableError):
    """This host cannot sandbox plugins; the message says why and what to do."""


class SandboxUnavailableError(SandboxError, _sb.SandboxUnavailableError):
    """The plugin's sandbox crashed too often recently; calls fail until it recovers."""


# --- crossing the worker boundary ------------------------------------------------------
#
# Errors travel between host and worker as plain JSON objects. This table is the one
# allowlist of what crosses: only the classes named here are rebuilt from the wire
# (anything else becomes a PluginError or a BridgeError), so a plugin cannot make the host
# raise an arbitrary class, and nothing but strings and numbers crosses over.
#
# The flag says whether the host re-raises the class *as itself* when a sandboxed plugin
# lets it escape its handler (what native mode does: a trusted plugin that does not catch
# CapabilityError propagates it). Three classes cross only from host to worker: a
# HookTimeoutError or SandboxViolation that a worker claims escaped its handler describes
# a limit the *host* enforces, and a StorageError a failure of the *host's* storage, so
# the host never takes a worker's word for them.

_WIRE_CLASSES: dict[str, tuple[type[EmDashError], bool]] = {
    cls.__name__: (cls, passes)
    for cls, passes in (
        (ManifestError, True),
        (CapabilityError, True),
        (StorageQueryError, True),
        (InvalidCursorError, True),
        (HttpAccessError, True),
        (BridgeError, True),
        (NotFoundError, True),
        (QuotaExceededError, True),
        (EmailError, True),
        (EmailNotConfiguredError, True),
        (EmailRecursionError, True),
        (PluginRouteError, True),
        (SubrequestLimitExceeded, True),
        (HookTimeoutError, False),
        (SandboxViolation, False),
        # A sandboxed plugin can catch a storage failure as StorageError; when one escapes
        # its handler the host reports the failure its own bridge saw, never the worker's
        # claim (a plugin must not be able to pass its own errors off as storage's).
        (StorageError, False),
        (ConflictError, False),
    )
}


def passes_through(type_name: str) -> bool:
    """Whether an error of this class name that escaped a sandboxed handler is re-raised as
    that class (see ``_WIRE_CLASSES``) rather than wrapped in a :class:`PluginError`."""
    entry = _WIRE_CLASSES.get(type_name)
    return entry is not None and entry[1]


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """Describe an exception as a small JSON object (type name, message, a few fields).

    In a worker this describes what escaped the plugin's handler. ``ours`` is true only for
    instances of *our own* classes: a plugin-defined class that merely borrows one of those
    names (``class CapabilityError(Exception)``) keeps its name but not the flag, so the
    host never rebuilds it as a bridge or limit error the plugin did not actually get.
    """
    kind = type(exc).__name__
    ours = type(exc) is _OWN_NAMES.get(kind)
    if isinstance(exc, PluginRouteError):
        # Subclasses too: answering with a code and status is what a route error is for,
        # and the host validates both.
        kind, ours = "PluginRouteError", True
    out: dict[str, Any] = {"type": kind, "message": str(exc), "ours": ours}
    if isinstance(exc, PluginRouteError):
        # _plain: details are plugin data; only exact JSON types cross (a dict subclass
        # with a lying items() must not run plugin code while the frame is encoded).
        out.update(code=exc.code, status=exc.status, details=_plain(exc.details))
    elif type(exc) is CapabilityError:
        out["capability"] = exc.capability
    elif type(exc) is StorageQueryError:
        out.update(field=exc.field, suggestion=exc.suggestion)
    elif type(exc) is QuotaExceededError:
        out.update(quota=exc.quota, limit=exc.limit)
    if isinstance(exc, EmDashError) and exc.plugin_id:
        out["plugin_id"] = exc.plugin_id
    return out


# Every class of this module by name (the error tree is flat in names: no duplicates).
_OWN_NAMES: dict[str, type[BaseException]] = {
    cls.__name__: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, EmDashError)
}

_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


# C0/C1 controls, DEL and the Unicode line/paragraph separators: what lets untrusted text
# forge log lines (CR/LF, U+2028) or drive the operator's terminal (ESC sequences).
# Lone surrogates (\ud800-\udfff) too: they have no UTF-8 form, so a line holding one
# fails wherever it is written (a log handler, the audit table, a response body).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(
    text: str, *, limit: int = 4000, keep_newlines: bool = False, ellipsis: str = "..."
) -> str:
    """Make text from untrusted code safe to log and print: control characters escaped.

    The one cleaner for plugin-written text (error messages, tracebacks, log lines, audit
    fields). It cuts to ``limit`` characters *before* escaping, so its cost is bounded by
    ``limit`` whatever the plugin sent (an escape is at most 6 characters: the result is at
    most ``6 * limit`` plus the ellipsis). ``keep_newlines`` keeps ``\\n`` (for tracebacks,
    which the log indents).
    """
    cut = text[:limit]
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    out = pattern.sub(_escape_control, cut)
    return out + ellipsis if len(text) > limit else out


def error_from_wire(data: Any, *, plugin_id: str | None = None) -> EmDashError:
    """Rebuild an error described by :func:`error_to_wire`; unknown types become ``BridgeError``.

    ``data`` is hostile when it comes from a worker: every field is type-checked and the
    message is truncated.
    """
    if not isinstance(data, dict):
        return BridgeError("Malformed error from the other side", plugin_id=plugin_id)
    kind = data.get("type")
    message = data.get("message")
    if not isinstance(message, str):
        message = "Unknown error"
    message = clean_text(message)
    entry = _WIRE_CLASSES.get(kind) if isinstance(kind, str) else None
    cls = entry[0] if entry is not None else None
    if cls is CapabilityError:
        cap = data.get("capability")
        err: EmDashError = CapabilityError(
            cap if isinstance(cap, str) else "?", plugin_id=plugin_id
        )
        err.args = (message,)
        err.message = message
        return err
    if cls is PluginRouteError:
        code = data.get("code")
        status = data.get("status")
        return PluginRouteError(
            code
            if isinstance(code, str) and 0 < len(code) <= 64 and set(code) <= _CODE_CHARS
            else "ROUTE_ERROR",
            message,
            status if type(status) is int and 400 <= status <= 599 else 400,
            _plain(data.get("details")),
        )
    if cls is StorageQueryError:
        field = data.get("field")
        err = StorageQueryError(
            message, field=field if isinstance(field, str) else None, plugin_id=plugin_id
        )
        suggestion = data.get("suggestion")
        err.suggestion = clean_text(suggestion) if isinstance(suggestion, str) else None
        return err
    if cls is QuotaExceededError:
        quota, limit = data.get("quota"), data.get("limit")
        return QuotaExceededError(
            message,
            plugin_id=plugin_id,
            quota=clean_text(quota, limit=64) if isinstance(quota, str) else None,
            limit=limit if type(limit) is int else None,
        )
    if cls is not None:
        return cls(message, plugin_id=plugin_id)
    return BridgeError(message, plugin_id=plugin_id)


def _plain(value: Any, depth: int = 0) -> Any:
    """Keep only JSON-shaped data (exact builtin types), dropping anything else."""
    if depth > 20:
        return None
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [_plain(v, depth + 1) for v in value]
    if type(value) is dict:
        return {k: _plain(v, depth + 1) for k, v in value.items() if type(k) is str}
    return None
