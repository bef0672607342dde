"""Pieces of :mod:`emdash._runtime._runtime` kept apart to keep that module readable.

- :class:`PluginInfo`: what ``rt.get_plugin`` / ``rt.plugins()`` return;
- route plumbing: host-side input validation (JSON Schema in both modes; pydantic models
  and callables for native plugins), the sanitised ``routeCtx``;
- the lazy cron/email adapters handed to the bridge before those services exist;
- small helpers (site defaults, exclusive outcome as a hook outcome).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult, PluginHost
from .._shared._errors import BridgeError, PluginRouteError
from .._shared._route_input import MAX_DETAILS, check_input_schema, validate_input

if TYPE_CHECKING:
    from .._model._descriptor import PluginDescriptor
    from ._runtime import Runtime

__all__ = [
    "LazyCron",
    "LazyEmail",
    "PluginInfo",
    "as_outcome",
    "check_route_schemas",
    "route_context",
    "site_info",
    "validate_route_input",
]

# Request headers a plugin never sees: credentials, and the CSRF marker the host checks.
_SECRET_HEADERS = frozenset(
    {"cookie", "set-cookie", "authorization", "proxy-authorization", "x-emdash-request"}
)
_IP_RE = re.compile(r"^[\da-fA-F.:]+$")
_DEFAULT_SITE = {"name": "", "url": "http://localhost", "locale": "en", "trailingSlash": "ignore"}


class PluginInfo(Mapping[str, Any]):
    """One added plugin: its descriptor, host and state.

    Attribute access (``plugin_id``, ``descriptor``, ``host``, ``trusted``, ``sandboxed``,
    ``enabled``, ``definition_meta``) for host code, and a read-only mapping view
    (``id``, ``version``, ``mode``, ``trusted``, ``enabled``, ``capabilities``, ``hooks``,
    ``routes``) that serialises as plain JSON for listings.
    """

    def __init__(self, host: PluginHost, *, sandboxed: bool, enabled: bool) -> None:
        self.host = host
        self.sandboxed = sandboxed
        self.enabled = enabled

    @property
    def plugin_id(self) -> str:
        return self.host.plugin_id

    @property
    def descriptor(self) -> PluginDescriptor:
        return self.host.descriptor

    @property
    def trusted(self) -> bool:
        return self.host.trusted

    @property
    def definition_meta(self) -> dict[str, Any]:
        return self.host.definition_meta

    def _data(self) -> dict[str, Any]:
        d = self.descriptor
        mode = "sandboxed" if self.sandboxed else ("trusted" if self.trusted else "unsandboxed")
        return {
            "id": d.id,
            "version": d.version,
            "mode": mode,
            "trusted": self.trusted,
            "enabled": self.enabled,
            "capabilities": list(d.capabilities),
            "hooks": sorted(self.definition_meta.get("hooks", {})),
            "routes": sorted(self.definition_meta.get("routes", {})),
        }

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"<PluginInfo {self._data()}>"


# -- routes -------------------------------------------------------------------------------


def check_route_schemas(host: PluginHost) -> None:
    """Refuse a plugin whose route declares an invalid input (at load, not per call).

    Sandboxed plugins' schemas are checked (and later applied) in their worker; see
    ``_route_input`` for why the host never evaluates them.
    """
    if _validated_in_worker(host):
        return
    for name, meta in host.definition_meta.get("routes", {}).items():
        host.route_input_validator(name)  # raises ManifestError for an unusable input
        schema = meta.get("input")
        if type(schema) is dict:
            check_input_schema(host.plugin_id, name, schema)


def _validated_in_worker(host: PluginHost) -> bool:
    return bool(getattr(host, "validates_route_input", False))


def validate_route_input(host: PluginHost, name: str, meta: dict[str, Any], value: Any) -> Any:
    """Validate a route's input on the host; return the (possibly converted) input.

    Raises ``PluginRouteError("VALIDATION_ERROR", "Invalid request body", 400, details)``
    where ``details`` is a list of ``{"path": [...], "message": str}``.
    """
    if _validated_in_worker(host):
        return value
    schema = meta.get("input")
    if type(schema) is dict:
        validate_input(schema, value)
        return value
    check = host.route_input_validator(name)
    if check is None:
        return value
    try:
        return check(value)
    except PluginRouteError:
        raise
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise PluginRouteError(
            "VALIDATION_ERROR", "Invalid request body", 400, _validation_details(exc)
        ) from None


def _validation_details(exc: Exception) -> list[dict[str, Any]]:
    errors: Callable[..., Any] | None = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return [
                {"path": [str(p) for p in e.get("loc", ())], "message": str(e.get("msg", ""))}
                for e in errors()[:MAX_DETAILS]
            ]
        except Exception:  # a foreign .errors(): fall back to the message
            pass
    return [{"path": [], "message": str(exc)}]


def route_context(
    *,
    value: Any,
    request: dict[str, Any] | None,
    user: dict[str, Any] | None,
    public: bool,
    site: dict[str, str],
    plugin_id: str,
    name: str,
) -> dict[str, Any]:
    """The ``routeCtx`` a handler receives: ``{input, request, requestMeta, user}``.

    Header names are lower-cased, and credentials (cookies, authorization, Cloudflare
    Access identity) and the CSRF marker are removed in *both* modes. ``user`` is only
    passed to private routes.
    """
    req = request or {}
    headers: dict[str, str] = {}
    raw = req.get("headers") or {}
    for key, item in raw.items() if isinstance(raw, Mapping) else raw:
        low = str(key).lower()
        if low in _SECRET_HEADERS or low.startswith("cf-access-"):
            continue
        headers[low] = str(item)
    url = req.get("url")
    method = req.get("method")
    ip = req.get("ip")
    return {
        "input": value,
        "request": {
            "url": url if isinstance(url, str)
            else f"{site['url'].rstrip('/')}/_emdash/api/plugins/{plugin_id}/{name}",
            "method": method.upper() if isinstance(method, str) else "POST",
            "headers": headers,
        },
        "requestMeta": {
            "ip": ip if isinstance(ip, str) and _IP_RE.match(ip) else None,
            "userAgent": headers.get("user-agent") or None,
            "referer": headers.get("referer") or None,
            "geo": None,
        },
        "user": None if public else user,
    }


# -- services the bridge needs before they exist ---------------------------------------------


class LazyCron:
    """Hands bridge cron calls to ``rt.cron``, built on first use."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def _cron(self) -> Any:
        try:
            return self._rt.cron
        except AttributeError as exc:
            raise BridgeError(f"ctx.cron is not available: {exc}") from None

    def schedule(self, plugin_id: str, name: str, schedule: str, data: Any) -> Any:
        return self._cron().schedule(plugin_id, name, schedule, data)

    def cancel(self, plugin_id: str, name: str) -> Any:
        return self._cron().cancel(plugin_id, name)

    def list(self, plugin_id: str) -> Any:
        return self._cron().list(plugin_id)


class LazyEmail:
    """Hands bridge email calls to ``rt.email``, built on first use."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def is_available(self) -> bool:
        try:
            email = self._rt.email
        except AttributeError:
            return False
        return bool(email.is_available())

    def send(self, message: dict[str, Any], *, source: str = "admin") -> None:
        self._rt.email.send(message, source=source)


# -- small helpers ------------------------------------------------------------------------


def as_outcome(name: str, outcome: ExclusiveOutcome | None) -> HookOutcome:
    """An exclusive provider's result in the shape ``run_hook`` returns."""
    if outcome is None:
        return HookOutcome(name, None, [])
    result = HookResult(
        outcome.plugin_id, outcome.error is None, outcome.result, outcome.error,
        outcome.duration_ms,
    )
    return HookOutcome(name, outcome.result, [result])


def site_info(site: dict[str, Any] | None) -> dict[str, str]:
    """``{name, url, locale, trailingSlash}`` with defaults; ``trailing_slash`` accepted."""
    out = dict(_DEFAULT_SITE)
    for key, value in (site or {}).items():
        key = "trailingSlash" if key == "trailing_slash" else key
        if key in out and isinstance(value, str):
            out[key] = value
    return out
