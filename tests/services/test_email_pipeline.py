"""rt.email: validation, system mail, beforeSend middleware, the exclusive transport,
afterSend, the recursion guard and the built-in console provider."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import emdash
from emdash import EmailError, EmailNotConfiguredError, PluginError
from emdash._services._email import CONSOLE_EMAIL_PLUGIN_ID, NOT_CONFIGURED, validate_message

EVENTS = ["hooks.email-events:register"]
TRANSPORT = ["hooks.email-transport:register"]
MSG = {"to": "ann@example.com", "subject": "Hello", "text": "Hi Ann"}

OBSERVER = """
def before(event, ctx):
    record("before", event)

def after(event, ctx):
    record("after", event)

plugin = define_plugin(hooks={"email:beforeSend": before, "email:afterSend": after})
"""


def sent(provider: Any) -> list[dict[str, Any]]:
    return [{"message": m["message"], "source": m["source"]} for m in provider.messages]


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("to: x", "Invalid email message: must be an object with to, subject and text"),
        (
            {"subject": "s", "text": "t"},
            "Invalid email message: 'to' is required and must be a string",
        ),
        (
            {"to": "a@b", "subject": "", "text": "t"},
            "Invalid email message: 'subject' is required and must be a string",
        ),
        (
            {"to": "a@b", "subject": "s", "text": 5},
            "Invalid email message: 'text' is required and must be a string",
        ),
        (
            {"to": "a@b", "subject": "s", "text": "t", "html": ["<b>"]},
            "Invalid email message: 'html' must be a string",
        ),
        (
            {"to": "a@b", "subject": "s\r\nBcc: all@x", "text": "t"},
            "Invalid email message: 'subject' must not contain line breaks",
        ),
        (
            {"to": "a@b\nc@d", "subject": "s", "text": "t"},
            "Invalid email message: 'to' must not contain line breaks",
        ),
    ],
)
def test_validation_texts(message: Any, text: str) -> None:
    with pytest.raises(EmailError) as exc:
        validate_message(message)
    assert str(exc.value) == text


def test_validation_keeps_only_known_keys() -> None:
    assert validate_message({**MSG, "html": "<p>x</p>", "bcc": "all@x"}) == {
        **MSG,
        "html": "<p>x</p>",
    }
    with pytest.raises(EmailError) as exc:
        validate_message({"to": "a"}, plugin_id="rewriter")
    assert str(exc.value) == (
        "Invalid email message: 'subject' is required and must be a string "
        '(returned by plugin "rewriter")'
    )


# --- delivery -------------------------------------------------------------------------


def test_no_provider(rt: emdash.Runtime, plugins: Any) -> None:
    observer = plugins.add("observer", OBSERVER, capabilities=EVENTS)
    assert rt.email.is_available() is False
    with pytest.raises(EmailNotConfiguredError) as exc:
        rt.email.send(MSG)
    assert (
        str(exc.value)
        == NOT_CONFIGURED
        == (
            "No email provider is configured. Install and activate an email provider plugin, "
            "then select it in Settings > Email."
        )
    )
    assert observer.tags() == ["before"]  # the message never reached afterSend


def test_invalid_message_runs_no_hook(rt: emdash.Runtime, plugins: Any) -> None:
    observer = plugins.add("observer", OBSERVER, capabilities=EVENTS)
    provider = rt.email.use_console_provider()
    with pytest.raises(EmailError):
        rt.email.send({"to": "a@b", "subject": "s"})
    assert observer.tags() == [] and provider.messages == []


def test_console_provider_round_trip(rt: emdash.Runtime, plugins: Any) -> None:
    observer = plugins.add("observer", OBSERVER, capabilities=EVENTS)
    provider = rt.email.use_console_provider()
    assert rt.email.is_available() is True
    assert rt.selected_provider("email:deliver") == CONSOLE_EMAIL_PLUGIN_ID
    rt.email.send({**MSG, "html": "<p>Hi</p>"})  # returns nothing; raising would fail
    message = {**MSG, "html": "<p>Hi</p>"}
    assert sent(provider) == [{"message": message, "source": "admin"}]
    assert provider.messages[0]["sentAt"].endswith("Z")
    assert observer.records("before") == [{"message": message, "source": "admin"}]
    assert observer.records("after") == [{"message": message, "source": "admin"}]
    assert rt.email.use_console_provider() is provider  # registered once


def test_console_provider_file_and_last_hundred(rt: emdash.Runtime, tmp_path: Path) -> None:
    path = tmp_path / "mail.jsonl"
    provider = rt.email.use_console_provider(path)
    for i in range(105):
        rt.email.send({**MSG, "subject": f"n{i}"}, source="system")
    assert len(provider.messages) == 100
    assert provider.messages[0]["message"]["subject"] == "n5"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 105
    assert lines[-1]["message"] == {**MSG, "subject": "n104"}
    assert lines[-1]["source"] == "system"


def test_system_mail_skips_before_and_after_send(rt: emdash.Runtime, plugins: Any) -> None:
    observer = plugins.add("observer", OBSERVER, capabilities=EVENTS)
    provider = rt.email.use_console_provider()
    rt.email.send({**MSG, "text": "your magic link: secret-token"}, source="system")
    assert observer.tags() == []
    assert sent(provider) == [
        {"message": {**MSG, "text": "your magic link: secret-token"}, "source": "system"}
    ]


def test_before_send_rewrites_and_cancels(
    rt: emdash.Runtime, plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plugins.add(
        "footer",
        """
        def before(event, ctx):
            msg = event["message"]
            if "unsubscribe" in msg["to"]:
                return False
            return {**msg, "text": msg["text"] + "\\n-- sent by emdash"}
        plugin = define_plugin(hooks={"email:beforeSend": HookConfig(before, priority=10)})
        """,
        capabilities=EVENTS,
    )
    observer = plugins.add("observer", OBSERVER, capabilities=EVENTS)
    provider = rt.email.use_console_provider()
    rt.email.send(MSG, source="emdash-comments")
    rewritten = {**MSG, "text": "Hi Ann\n-- sent by emdash"}
    assert sent(provider) == [{"message": rewritten, "source": "emdash-comments"}]
    assert observer.records("before") == [{"message": rewritten, "source": "emdash-comments"}]

    with caplog.at_level(logging.INFO, logger="emdash.email"):
        rt.email.send({**MSG, "to": "unsubscribed@example.com"})
    assert '[email] Email to "unsubscribed@example.com" cancelled by plugin "footer"' in (
        caplog.text
    )
    assert len(provider.messages) == 1
    assert len(observer.records("after")) == 1  # the cancelled mail fired nothing more


def test_before_send_result_is_validated(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "breaker",
        """
        plugin = define_plugin(hooks={"email:beforeSend":
                                      lambda e, c: {"to": e["message"]["to"]}})
        """,
        capabilities=EVENTS,
    )
    provider = rt.email.use_console_provider()
    with pytest.raises(EmailError) as exc:
        rt.email.send(MSG)
    assert str(exc.value) == (
        "Invalid email message: 'subject' is required and must be a string "
        '(returned by plugin "breaker")'
    )
    assert exc.value.plugin_id == "breaker"
    assert provider.messages == []


def test_after_send_errors_are_not_raised(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "grumpy",
        """
        def after(event, ctx):
            raise RuntimeError("after boom")
        plugin = define_plugin(hooks={"email:afterSend": after})
        """,
        capabilities=EVENTS,
    )
    provider = rt.email.use_console_provider()
    rt.email.send(MSG)
    assert len(provider.messages) == 1


def test_custom_provider_selection_and_failure(rt: emdash.Runtime, plugins: Any) -> None:
    smtp = plugins.add(
        "smtp",
        """
        def deliver(event, ctx):
            record("deliver", event)
            if event["message"]["to"] == "bounce@example.com":
                raise ConnectionError("SMTP server said 550")
        plugin = define_plugin(hooks={"email:deliver": HookConfig(deliver, exclusive=True)})
        """,
        capabilities=TRANSPORT,
    )
    assert rt.selected_provider("email:deliver") == "smtp"  # the only provider
    rt.email.send(MSG, source="forms")
    assert smtp.records("deliver") == [{"message": MSG, "source": "forms"}]
    with pytest.raises(PluginError) as exc:
        rt.email.send({**MSG, "to": "bounce@example.com"})
    assert exc.value.plugin_id == "smtp"
    assert "SMTP server said 550" in str(exc.value)

    # use_console_provider() selects the console transport; switching back is explicit.
    console = rt.email.use_console_provider()
    assert rt.selected_provider("email:deliver") == CONSOLE_EMAIL_PLUGIN_ID
    rt.select_provider("email:deliver", "smtp")
    rt.email.send(MSG)
    assert console.messages == [] and len(smtp.records("deliver")) == 3


def test_recursive_send_is_refused(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "looper",
        """
        def after(event, ctx):
            try:
                ctx.email.send({"to": "x@example.com", "subject": "again", "text": "loop"})
            except Exception as exc:
                record("error", [type(exc).__name__, str(exc)])
        plugin = define_plugin(hooks={"email:afterSend": after})
        """,
        capabilities=[*EVENTS, "email:send"],
    )
    provider = rt.email.use_console_provider()
    rt.email.send(MSG)
    assert len(provider.messages) == 1
    log = plugins.root / "plugins" / "looper" / "events.jsonl"
    [row] = [json.loads(line) for line in log.read_text().splitlines()]
    assert row["value"][0] == "EmailRecursionError"
    assert row["value"][1].startswith("Recursive email send detected")
    # The guard is released afterwards: the next send works.
    rt.email.send(MSG)
    assert len(provider.messages) == 2


def test_ctx_email_send_uses_the_plugin_id_as_source(rt: emdash.Runtime, plugins: Any) -> None:
    plugins.add(
        "notifier",
        """
        def notify(route_ctx, ctx):
            ctx.email.send({"to": "ann@example.com", "subject": "Hello", "text": "Hi Ann"})
            return "ok"
        plugin = define_plugin(routes={"notify": notify})
        """,
        capabilities=["email:send"],
    )
    provider = rt.email.use_console_provider()
    assert rt.invoke_route("notifier", "notify") == "ok"
    assert sent(provider) == [{"message": MSG, "source": "notifier"}]


def test_bad_source(rt: emdash.Runtime) -> None:
    with pytest.raises(EmailError) as exc:
        rt.email.send(MSG, source="")
    assert str(exc.value) == "Invalid email source: must be a non-empty string"


def test_email_hooks_run_no_longer_than_the_sending_invocation_has_left(
    rt: emdash.Runtime,
) -> None:
    # A sandboxed provider that would spin for a minute (its own limits allow it), reached
    # through ctx.email.send from a route whose invocation has one second.
    rt.add_plugin(
        {
            "id": "slowmail",
            "capabilities": TRANSPORT,
            "limits": {"cpu_ms": 60_000, "wall_ms": 60_000},
        },
        source={
            "plugin.py": (
                "from emdash import define_plugin, HookConfig\n"
                "def deliver(event, ctx):\n"
                "    while True:\n"
                "        pass\n"
                "plugin = define_plugin(hooks={'email:deliver': HookConfig("
                "deliver, exclusive=True, timeout_ms=60000)})\n"
            )
        },
    )
    rt.add_plugin(
        {"id": "notifier", "capabilities": ["email:send"], "limits": {"wall_ms": 1000}},
        source={
            "plugin.py": (
                "from emdash import define_plugin\n"
                "def notify(route_ctx, ctx):\n"
                "    ctx.email.send({'to': 'ann@example.com', 'subject': 'Hi', 'text': 'Hi'})\n"
                "    return 'sent'\n"
                "plugin = define_plugin(routes={'notify': notify})\n"
            )
        },
    )
    with pytest.raises(emdash.EmDashError):
        rt.invoke_route("notifier", "notify")
    [row] = [r for r in rt.audit_log(plugin_id="slowmail") if r["name"] == "email:deliver"]
    # The provider was stopped by the sender's deadline (at most its 1000 ms), not by its
    # own 60 s: the host did not spend a minute on the sender's behalf.
    assert row["outcome"] == "timeout"
    [bound] = [int(n) for n in re.findall(r"after (\d+)ms", row["error"])]
    assert 0 < bound <= 1000
