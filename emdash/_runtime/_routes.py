"""Plugin routes on the host side: what ``Runtime.invoke_route`` does around the handler.

- :func:`check_route_schemas`: a plugin whose route declares an unusable input is refused
  at load, not at its first call;
- :func:`validate_route_input`: host-side input validation (JSON Schema in both modes;
  pydantic models and callables for native plugins);
- :func:`route_context`: the sanitised ``routeCtx`` a handler receives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .._bridge._ssrf import is_credential_header
from .._hosting._outcome import PluginHost
from .._shared._errors import PluginRouteError
from .._shared._route_input import MAX_DETAILS, check_input_schema, validate_input

__all__ = ["check_route_schemas", "route_context", "validate_route_input"]

# Request headers a plugin never sees: credentials, and the CSRF marker the host checks.
_SECRET_HEADERS = frozenset(
    {"cookie", "set-cookie", "authorization", "proxy-authorization", "x-emdash-request"}
)
_IP_RE = re.compile(r"^[\da-fA-F.:]+$")


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
    Access identity, anything :func:`is_credential_header` matches) and the CSRF marker are
    removed in *both* modes. ``user`` is only
    passed to private routes.
    """
    req = request or {}
    headers: dict[str, str] = {}
    raw = req.get("headers") or {}
    for key, item in raw.items() if isinstance(raw, Mapping) else raw:
        low = str(key).lower()
        # The same rule as the ASGI app's (hosts may call rt.invoke_route directly): named
        # credentials, and every header shaped like one (x-api-key, *-token, *-signature...).
        if low in _SECRET_HEADERS or is_credential_header(low):
            continue
        headers[low] = str(item)
    url = req.get("url")
    method = req.get("method")
    ip = req.get("ip")
    # A request URL is absolute (as a JS Request's always is), even when the site has no
    # URL configured (EmDash's default, which keeps ctx.url("/p") relative).
    origin = site["url"].rstrip("/") or "http://localhost"
    return {
        "input": value,
        "request": {
            "url": url
            if isinstance(url, str)
            else f"{origin}/_emdash/api/plugins/{plugin_id}/{name}",
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
