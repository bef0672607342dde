"""Forms: a public route with a JSON-Schema input, unique indexes and a cron task.

- ``submit`` is public (no token needed). The host validates the input against the JSON
  Schema below *before* the handler runs, in both modes; bad input gets 400
  ``VALIDATION_ERROR`` and never reaches this code.
- ``submissions/list`` and ``submissions/delete`` are private (route names may contain ``/``).
- ``plugin:activate`` schedules a weekly ``cleanup`` task; the ``cron`` hook runs it.
"""

from datetime import UTC, datetime, timedelta

from emdash import PluginRouteError, RouteConfig, define_plugin

RETENTION_DAYS = 90

SUBMISSION_SCHEMA = {
    "type": "object",
    "required": ["form", "email", "message"],
    "additionalProperties": False,
    "properties": {
        "form": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"},
        "name": {"type": "string", "maxLength": 200},
        "email": {"type": "string", "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+$"},
        "message": {"type": "string", "minLength": 1, "maxLength": 5000},
    },
}


def fingerprint(params):
    words = " ".join(params["message"].lower().split())
    return params["form"] + "|" + params["email"].strip().lower() + "|" + words


def submit(route_ctx, ctx):
    params = route_ctx["input"]
    submissions = ctx.storage["submissions"]
    key = fingerprint(params)
    if submissions.count({"fingerprint": key}) > 0:
        raise PluginRouteError.conflict("This message was already received")
    now = datetime.now(UTC).isoformat()
    submission_id = "sub-" + now
    submissions.put(
        submission_id,
        {
            "form": params["form"],
            "name": params.get("name") or "",
            "email": params["email"].strip(),
            "message": params["message"],
            "fingerprint": key,
            "createdAt": now,
        },
    )
    return {"id": submission_id, "received": True}


def list_submissions(route_ctx, ctx):
    params = route_ctx["input"] or {}
    where = {}
    if params.get("form"):
        where["form"] = params["form"]
    page = ctx.storage["submissions"].query(
        where=where, order_by={"createdAt": "desc"}, limit=50, cursor=params.get("cursor")
    )
    return {
        "submissions": [dict(item["data"], id=item["id"]) for item in page["items"]],
        "cursor": page.get("cursor"),
    }


def delete_submission(route_ctx, ctx):
    params = route_ctx["input"] or {}
    if not isinstance(params.get("id"), str):
        raise PluginRouteError.bad_request("Give the id of the submission to delete")
    if not ctx.storage["submissions"].delete(params["id"]):
        raise PluginRouteError.not_found("No such submission: " + params["id"])
    return {"deleted": params["id"]}


def on_activate(event, ctx):
    ctx.cron.schedule("cleanup", schedule="@weekly")


def on_cron(event, ctx):
    if event["name"] != "cleanup":
        return None
    cutoff = (datetime.now(UTC) - timedelta(days=RETENTION_DAYS)).isoformat()
    old = ctx.storage["submissions"].query(where={"createdAt": {"lt": cutoff}}, limit=100)
    ids = [item["id"] for item in old["items"]]
    removed = ctx.storage["submissions"].delete_many(ids) if ids else 0
    ctx.log.info("Old submissions removed", {"count": removed, "before": cutoff})
    return removed


plugin = define_plugin(
    hooks={"plugin:activate": on_activate, "cron": on_cron},
    routes={
        "submit": RouteConfig(submit, public=True, input=SUBMISSION_SCHEMA),
        "submissions/list": list_submissions,
        "submissions/delete": delete_submission,
    },
)
