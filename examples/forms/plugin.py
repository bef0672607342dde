"""Forms: a public route with a JSON-Schema input, unique indexes and a cron task.

- ``submit`` is public (no token needed). The host validates the input against the JSON
  Schema below *before* the handler runs, in both modes; bad input gets 400
  ``VALIDATION_ERROR`` and never reaches this code.
- ``submissions/list`` and ``submissions/delete`` are private (route names may contain ``/``).
- ``plugin:activate`` schedules a weekly ``cleanup`` task; the ``cron`` hook runs it.
- ``admin`` (private) serves the admin page ``/submissions`` (recent submissions and a form
  that blocks an address: ``submit`` then refuses it) and the dashboard widget ``recent``,
  in Block Kit built with ``emdash.blocks``. The settings page is the host's, generated from
  ``admin.settingsSchema``; the cleanup reads ``settings:retention_days`` from ``ctx.kv``.
"""

from datetime import UTC, datetime, timedelta

from emdash import PluginRouteError, RouteConfig, define_plugin
from emdash import blocks as bk

RETENTION_DAYS = 90  # unless the admin chose another in the settings

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
    if params["email"].strip().lower() in (ctx.kv.get("blocked") or []):
        raise PluginRouteError.forbidden("This address may not send messages")
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
    days = int(ctx.kv.get("settings:retention_days") or RETENTION_DAYS)
    cutoff = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    old = ctx.storage["submissions"].query(where={"createdAt": {"lt": cutoff}}, limit=100)
    ids = [item["id"] for item in old["items"]]
    removed = ctx.storage["submissions"].delete_many(ids) if ids else 0
    ctx.log.info("Old submissions removed", {"count": removed, "before": cutoff})
    return removed


# -- the admin ------------------------------------------------------------------------------

COLUMNS = [
    bk.column("email", "From"),
    bk.column("form", "Form", format="badge"),
    bk.column("message", "Message"),
    bk.column("createdAt", "Received", format="relative_time"),
]


def recent_rows(ctx, limit, cursor=None):
    page = ctx.storage["submissions"].query(
        order_by={"createdAt": "desc"}, limit=limit, cursor=cursor
    )
    rows = [
        {
            "email": item["data"]["email"],
            "form": item["data"]["form"],
            "message": item["data"]["message"][:200],
            "createdAt": item["data"]["createdAt"],
        }
        for item in page["items"]
    ]
    return rows, page.get("cursor")


def submissions_page(ctx, cursor=None):
    rows, next_cursor = recent_rows(ctx, 20, cursor)
    blocked = ctx.kv.get("blocked") or []
    contact = ctx.kv.get("settings:notify_email")
    return [
        bk.header("Form submissions"),
        bk.context("Contact: " + contact if contact else "No notify address set (see Settings)"),
        bk.table(
            COLUMNS,
            rows,
            page_action_id="more",
            next_cursor=next_cursor,
            empty_text="No submissions yet",
        ),
        per_form_chart(rows),
        bk.form(
            "block",
            [
                bk.text_input("email", "Address to block", placeholder="spam@example.com"),
                bk.radio("reason", "Reason", REASONS, initial_value="spam"),
                # Applies only for "other": the admin notes the condition under the field
                # and leaves the note out of the submitted values when it does not apply.
                bk.text_input(
                    "note", "Why", multiline=True, condition=bk.condition("reason", eq="other")
                ),
            ],
            submit="Block address",
            action_id="block",
        ),
        bk.fields([bk.field("Blocked addresses", ", ".join(blocked) or "none")]),
    ]


REASONS = [bk.option("Spam", "spam"), bk.option("Abuse", "abuse"), bk.option("Other", "other")]


def per_form_chart(rows):
    """Recent submissions per form, as a custom (chart-library options) bar chart: the
    admin draws it as an SVG with the numbers in a table."""
    counts = {}
    for row in rows:
        counts[row["form"]] = counts.get(row["form"], 0) + 1
    names = sorted(counts)
    return {
        "type": "chart",
        "config": {
            "chart_type": "custom",
            "options": {
                "title": {"text": "Recent submissions per form"},
                "xAxis": {"type": "category", "data": names},
                "yAxis": {"type": "value"},
                "series": [
                    {"name": "Submissions", "type": "bar", "data": [counts[n] for n in names]}
                ],
            },
        },
    }


def recent_widget(ctx):
    rows, _ = recent_rows(ctx, 5)
    return [
        bk.stats([bk.stat("Submissions", ctx.storage["submissions"].count())]),
        bk.table(COLUMNS[:2], rows, page_action_id="more", empty_text="Nothing yet"),
    ]


def admin(route_ctx, ctx):
    interaction = route_ctx["input"]
    kind = interaction["type"]
    if kind == "page_load" and interaction["page"] == "widget:recent":
        return bk.response(recent_widget(ctx))
    if kind == "form_submit" and interaction["action_id"] == "block":
        email = str(interaction["values"].get("email") or "").strip().lower()
        if "@" not in email:
            return bk.response(
                submissions_page(ctx), toast=bk.toast("Give an email address to block", "error")
            )
        blocked = ctx.kv.get("blocked") or []
        if email not in blocked:
            ctx.kv.set("blocked", blocked + [email])
        # The admin already refused any reason the form did not offer.
        reason = interaction["values"].get("reason") or "spam"
        return bk.response(
            submissions_page(ctx), toast=bk.toast("Blocked " + email + " (" + reason + ")")
        )
    if kind == "block_action" and interaction["action_id"] == "more":
        cursor = (interaction.get("value") or {}).get("cursor")
        return bk.response(submissions_page(ctx, cursor))
    return bk.response(submissions_page(ctx))


plugin = define_plugin(
    hooks={"plugin:activate": on_activate, "cron": on_cron},
    routes={
        "admin": admin,
        "submit": RouteConfig(submit, public=True, input=SUBMISSION_SCHEMA),
        "submissions/list": list_submissions,
        "submissions/delete": delete_submission,
    },
)
