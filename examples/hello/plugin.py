"""Hello: the first plugin of EmDash's guide, in Python.

Runs unchanged natively (trusted) and in the sandbox: plain functions, no `_` names,
imports only from `emdash` and the shimmed standard library.
"""

from datetime import UTC, datetime

from emdash import define_plugin


def on_save(event, ctx):
    content = event["content"]
    ctx.log.info("Content saved", {"collection": event["collection"], "id": content["id"]})
    now = datetime.now(UTC).isoformat()
    # The timestamp alone could repeat within a clock tick; the content id makes it unique.
    ctx.storage["events"].put(
        "save-" + now + "-" + content["id"],
        {"timestamp": now, "collection": event["collection"], "contentId": content["id"]},
    )


def recent(route_ctx, ctx):
    page = ctx.storage["events"].query(order_by={"timestamp": "desc"}, limit=10)
    return {"events": page["items"]}


plugin = define_plugin(
    hooks={"content:afterSave": on_save},
    routes={"recent": recent},
)
