"""Webhook notifier: outbound HTTP under an allowlist, a hook config, KV settings.

Settings live in the plugin's KV store under ``settings:`` (``settings:url`` and
``settings:secret_header``); set them through the private ``settings`` route. Each delivery
attempt is stored with its status, so the ``status`` route can count them.

The after-hooks use ``error_policy="continue"``: a webhook that is down must never fail the
content save that triggered it. A refused or failed request is recorded as a ``failed``
delivery; anything unexpected (a timeout) is recorded by the host in the hook outcome and
the audit log.
"""

import json
from datetime import UTC, datetime

from emdash import HookConfig, PluginRouteError, define_plugin


def notify(ctx, action, payload):
    url = ctx.kv.get("settings:url")
    if not url:
        ctx.log.debug("No webhook url configured; skipping", {"action": action})
        return None
    now = datetime.now(UTC).isoformat()
    headers = {"content-type": "application/json"}
    secret = ctx.kv.get("settings:secret_header")
    if secret:
        headers["x-webhook-secret"] = secret
    body = json.dumps({"action": action, "payload": payload, "sentAt": now})
    record = {"action": action, "timestamp": now, "url": url}
    try:
        response = ctx.http.fetch(url, method="POST", headers=headers, body=body)
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = str(exc)
        ctx.storage["deliveries"].put("delivery-" + now, record)
        # Not re-raised: a failed invocation rolls back its writes, and this record is the
        # point. Unexpected errors (a timeout, say) still fail the hook, under "continue".
        ctx.log.error("Webhook delivery failed", {"url": url, "error": str(exc)})
        return "failed"
    record["status"] = "delivered" if response.ok else "rejected"
    record["httpStatus"] = response.status
    ctx.storage["deliveries"].put("delivery-" + now, record)
    return record["status"]


def on_save(event, ctx):
    content = event["content"]
    notify(
        ctx,
        "saved",
        {"collection": event["collection"], "id": content["id"], "isNew": event["isNew"]},
    )


def on_delete(event, ctx):
    notify(ctx, "deleted", {"collection": event["collection"], "id": event["id"]})


def settings_route(route_ctx, ctx):
    """POST {"url": "https://hooks.example.com/...", "secret_header": "..."}; GET reads."""
    params = route_ctx["input"]
    if route_ctx["request"]["method"] in ("POST", "PUT", "PATCH"):
        if not isinstance(params, dict):
            raise PluginRouteError.bad_request("Send a JSON object with url and secret_header")
        url = params.get("url")
        if url is not None and (not isinstance(url, str) or not url.startswith("https://")):
            raise PluginRouteError.bad_request("url must be an https:// URL")
        for key in ("url", "secret_header"):
            if key in params:
                if params[key] is None:
                    ctx.kv.delete("settings:" + key)
                else:
                    ctx.kv.set("settings:" + key, str(params[key]))
    values = {}
    for entry in ctx.kv.list("settings:"):
        # Secrets are write-only: report that one is set, never its value.
        values[entry["key"]] = (
            "(set)" if entry["key"] == "settings:secret_header" else entry["value"]
        )
    return {"settings": values}


def status_route(route_ctx, ctx):
    deliveries = ctx.storage["deliveries"]
    return {
        "delivered": deliveries.count({"status": "delivered"}),
        "rejected": deliveries.count({"status": "rejected"}),
        "failed": deliveries.count({"status": "failed"}),
    }


plugin = define_plugin(
    hooks={
        "content:afterSave": HookConfig(
            on_save, priority=210, timeout_ms=10000, error_policy="continue"
        ),
        "content:afterDelete": HookConfig(
            on_delete, priority=210, timeout_ms=10000, error_policy="continue"
        ),
    },
    routes={"settings": settings_route, "status": status_route},
)
