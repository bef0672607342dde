"""Audit trail: lifecycle hooks, content after-hooks, indexed storage and a paged log route.

Each entry gets a sequence number from the plugin's KV store (``state:seq``); the storage
collection declares it as a unique index, so two entries can never share a position.
"""

from datetime import UTC, datetime

from emdash import PluginRouteError, define_plugin

ACTIONS = ("install", "activate", "deactivate", "save", "delete", "publish", "unpublish")


def record(ctx, action, collection, item_id, extra):
    seq = (ctx.kv.get("state:seq") or 0) + 1
    ctx.kv.set("state:seq", seq)
    entry = {
        "seq": seq,
        "action": action,
        "collection": collection,
        "itemId": item_id,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    entry.update(extra)
    ctx.storage["entries"].put("entry-" + str(seq).zfill(10), entry)
    return entry


def on_install(event, ctx):
    record(ctx, "install", None, None, {})


def on_activate(event, ctx):
    record(ctx, "activate", None, None, {})


def on_deactivate(event, ctx):
    record(ctx, "deactivate", None, None, {})


def on_uninstall(event, ctx):
    # The host deletes our data after this hook when deleteData is true; just say goodbye.
    ctx.log.info("Audit trail uninstalled", {"deleteData": event.get("deleteData")})


def on_save(event, ctx):
    record(ctx, "save", event["collection"], event["content"]["id"], {"isNew": event["isNew"]})


def on_delete(event, ctx):
    record(ctx, "delete", event["collection"], event["id"], {"permanent": event["permanent"]})


def on_publish(event, ctx):
    record(ctx, "publish", event["collection"], event["content"]["id"], {})


def on_unpublish(event, ctx):
    record(ctx, "unpublish", event["collection"], event["content"]["id"], {})


def log_route(route_ctx, ctx):
    """The trail, newest first. Input: action?, collection?, limit? (1-100), cursor?."""
    params = route_ctx["input"] or {}
    if not isinstance(params, dict):
        raise PluginRouteError.bad_request("Input must be an object")
    where = {}
    action = params.get("action")
    if action is not None:
        if action not in ACTIONS:
            raise PluginRouteError.bad_request("Unknown action: " + str(action))
        where["action"] = action
    if params.get("collection") is not None:
        where["collection"] = str(params["collection"])
    try:
        limit = int(params.get("limit", 20))
    except (TypeError, ValueError):
        raise PluginRouteError.bad_request("limit must be a number") from None
    if limit < 1 or limit > 100:
        raise PluginRouteError.bad_request("limit must be between 1 and 100")
    page = ctx.storage["entries"].query(
        where=where, order_by={"seq": "desc"}, limit=limit, cursor=params.get("cursor")
    )
    return {
        "entries": [item["data"] for item in page["items"]],
        "cursor": page.get("cursor"),
        "total": ctx.storage["entries"].count(where),
    }


plugin = define_plugin(
    hooks={
        "plugin:install": on_install,
        "plugin:activate": on_activate,
        "plugin:deactivate": on_deactivate,
        "plugin:uninstall": on_uninstall,
        "content:afterSave": on_save,
        "content:afterDelete": on_delete,
        "content:afterPublish": on_publish,
        "content:afterUnpublish": on_unpublish,
    },
    routes={"log": log_route},
)
