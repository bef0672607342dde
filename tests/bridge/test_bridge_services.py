"""Email, cron and HTTP through the bridge; the ctx object end to end over a real bridge."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from emdash._bridge._dispatch import Bridge, CallBudget
from emdash._shared._context import HttpResponse, make_context
from emdash._shared._errors import (
    BridgeError,
    CapabilityError,
    EmailNotConfiguredError,
    HttpAccessError,
    SubrequestLimitExceeded,
)

MESSAGE = {"to": "a@b.test", "subject": "Hi", "text": "Body"}


# --- email -------------------------------------------------------------------------------


def test_email_send_passes_the_host_known_plugin_id_as_source(bridge: Bridge, email: Any) -> None:
    message = {**MESSAGE, "html": "<p>Body</p>", "source": "system"}
    assert bridge.dispatch("mailer", "email/send", {"message": message}) is None
    assert email.sent == [(message, "mailer")]


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (None, "email/send requires message with to, subject, and text"),
        ("hi", "email/send requires message with to, subject, and text"),
        (
            {"to": "a@b.test", "subject": "Hi"},
            "email/send requires message with to, subject, and text",
        ),
        ({**MESSAGE, "to": ["a@b.test"]}, "email/send requires message with to, subject, and text"),
        ({**MESSAGE, "html": 1}, "email/send requires message with to, subject, and text"),
    ],
)
def test_email_message_shape(bridge: Bridge, email: Any, message: Any, text: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("mailer", "email/send", {"message": message})
    assert str(info.value) == text
    assert email.sent == []


def test_email_not_configured(
    bridge: Bridge, email: Any, store: Any, descriptors: Any, http_client: Any
) -> None:
    email.available = False
    with pytest.raises(EmailNotConfiguredError) as info:
        bridge.dispatch("mailer", "email/send", {"message": MESSAGE})
    assert str(info.value) == "Email is not configured. No email provider is available."
    no_email = Bridge(store=store, plugins=descriptors.__getitem__, http=http_client)
    with pytest.raises(
        EmailNotConfiguredError, match="^Email is not configured. No email provider is available.$"
    ):
        no_email.dispatch("mailer", "email/send", {"message": MESSAGE})
    assert email.sent == []


def test_email_capability_comes_before_shape(bridge: Bridge, email: Any) -> None:
    with pytest.raises(CapabilityError) as info:
        bridge.dispatch("alpha", "email/send", {"message": "garbage"})
    assert info.value.capability == "email:send"
    assert email.sent == []


# --- cron --------------------------------------------------------------------------------


def test_cron_calls_are_scoped_by_plugin_id(bridge: Bridge, cron: Any) -> None:
    bridge.dispatch(
        "alpha", "cron/schedule", {"name": "daily", "schedule": "@daily", "data": {"n": 1}}
    )
    bridge.dispatch(
        "alpha",
        "cron/schedule",
        {"name": "once", "schedule": "2030-01-01T00:00:00Z", "pluginId": "beta"},
    )
    bridge.dispatch("beta", "cron/cancel", {"name": "daily"})
    listed = bridge.dispatch("alpha", "cron/list", {})
    assert listed == [
        {
            "name": "t",
            "schedule": "@daily",
            "nextRunAt": "2030-01-01T00:00:00.000Z",
            "lastRunAt": None,
        }
    ]
    assert cron.calls == [
        ("schedule", "alpha", "daily", "@daily", {"n": 1}),
        ("schedule", "alpha", "once", "2030-01-01T00:00:00Z", None),
        ("cancel", "beta", "daily"),
        ("list", "alpha"),
    ]


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("cron/schedule", {"schedule": "@daily"}, "Missing required string parameter: name"),
        ("cron/schedule", {"name": "x"}, "Missing required string parameter: schedule"),
        ("cron/cancel", {"name": 1}, "Missing required string parameter: name"),
    ],
)
def test_cron_param_texts(
    bridge: Bridge, cron: Any, method: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", method, params)
    assert str(info.value) == message
    assert cron.calls == []


def test_cron_without_a_scheduler(store: Any, descriptors: Any, http_client: Any) -> None:
    b = Bridge(store=store, plugins=descriptors.__getitem__, http=http_client)
    with pytest.raises(BridgeError) as info:
        b.dispatch("alpha", "cron/list", {})
    assert str(info.value) == "Cron is not available on this host: the runtime has no scheduler"


# --- http --------------------------------------------------------------------------------


def test_http_fetch_through_the_bridge(bridge: Bridge, server: str) -> None:
    result = bridge.dispatch(
        "web",
        "http/fetch",
        {
            "url": f"{server}/echo",
            "init": {
                "method": "POST",
                "headers": [["X-A", "1"], ["X-A", "2"]],
                "bodyType": "string",
                "body": "héllo",
            },
        },
    )
    assert (result["status"], result["statusText"]) == (200, "OK")
    assert [p for p in result["headers"] if p[0] == "x-multi"] == [
        ["x-multi", "1"],
        ["x-multi", "2"],
    ]
    echoed = json.loads(base64.b64decode(result["bodyBase64"]))
    assert echoed["method"] == "POST"
    assert echoed["body"] == "héllo".encode().decode("latin-1")
    assert [v for k, v in echoed["headers"] if k == "x-a"] == ["1", "2"]


def test_http_fetch_base64_body(bridge: Bridge, server: str) -> None:
    raw = bytes(range(256))
    result = bridge.dispatch(
        "web",
        "http/fetch",
        {
            "url": f"{server}/echo",
            "init": {"method": "PUT", "bodyType": "base64", "body": base64.b64encode(raw).decode()},
        },
    )
    assert json.loads(base64.b64decode(result["bodyBase64"]))["body"] == raw.decode("latin-1")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Missing required string parameter: url"),
        ({"url": "http://127.0.0.1/", "init": "GET"}, "http/fetch: init must be an object"),
        (
            {"url": "http://127.0.0.1/", "init": {"method": 1}},
            "http/fetch: init.method must be a string",
        ),
        (
            {"url": "http://127.0.0.1/", "init": {"redirect": "never"}},
            'http/fetch: init.redirect must be "follow", "error", or "manual"',
        ),
        (
            {"url": "http://127.0.0.1/", "init": {"headers": {"a": "b"}}},
            "http/fetch: init.headers must be an array of [name, value] pairs",
        ),
        (
            {"url": "http://127.0.0.1/", "init": {"headers": [["a", 1]]}},
            "http/fetch: init.headers must be an array of [name, value] pairs",
        ),
        (
            {
                "url": "http://127.0.0.1/",
                "init": {"method": "POST", "bodyType": "formdata", "body": "x"},
            },
            'http/fetch: init.bodyType must be "string" or "base64"',
        ),
        (
            {"url": "http://127.0.0.1/", "init": {"method": "POST", "body": 5}},
            "http/fetch: string/base64 body must be a string",
        ),
        (
            {
                "url": "http://127.0.0.1/",
                "init": {"method": "POST", "bodyType": "base64", "body": "!!"},
            },
            "http/fetch: base64 body is not valid base64",
        ),
    ],
)
def test_http_fetch_param_texts(bridge: Bridge, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("web", "http/fetch", params)
    assert str(info.value) == message


def test_http_fetch_policy_applies(bridge: Bridge, server: str) -> None:
    with pytest.raises(HttpAccessError) as info:
        bridge.dispatch("web", "http/fetch", {"url": "http://example.com/"})
    assert (
        str(info.value)
        == 'Plugin "web" is not allowed to fetch from host "example.com". Allowed hosts: 127.0.0.1'
    )
    with pytest.raises(HttpAccessError) as info:
        bridge.dispatch("webany", "http/fetch", {"url": "http://10.0.0.1/"})
    assert (
        str(info.value)
        == 'Plugin "webany": blocked fetch to "10.0.0.1": 10.0.0.1 is not a public address'
    )


# --- ctx over a real bridge ----------------------------------------------------------------


def ctx_for(bridge: Bridge, pid: str, budget: CallBudget | None = None) -> Any:
    d = bridge._plugins(pid)
    info = {
        "plugin": {"id": d.id, "version": d.version},
        "capabilities": d.capabilities,
        "storage": list(d.storage),
        "site": {
            "name": "Test",
            "url": "https://site.test",
            "locale": "en",
            "trailingSlash": "ignore",
        },
    }
    return make_context(lambda m, p: bridge.dispatch(pid, m, p, budget=budget), info)


def test_ctx_end_to_end(bridge: Bridge, server: str, store: Any) -> None:
    budget = CallBudget(20)
    ctx = ctx_for(bridge, "alpha", budget)
    ctx.kv.set("settings:colour", "blue")
    assert ctx.kv.get("settings:colour") == "blue"
    assert ctx.kv.list("settings:") == [{"key": "settings:colour", "value": "blue"}]
    ctx.storage["events"].put("e1", {"type": "save", "timestamp": 1})
    ctx.storage.events.put_many([{"id": "e2", "data": {"type": "save", "timestamp": 2}}])
    assert ctx.storage.events.get_many(["e1", "e2"]) == {
        "e1": {"type": "save", "timestamp": 1},
        "e2": {"type": "save", "timestamp": 2},
    }
    page = ctx.storage.events.query(where={"type": "save"}, order_by={"timestamp": "desc"}, limit=1)
    assert [i["id"] for i in page["items"]] == ["e2"]
    assert ctx.storage.events.count({"type": "save"}) == 2
    assert store.plugin_documents.get("alpha", "events", "e1") == {"type": "save", "timestamp": 1}
    with pytest.raises(CapabilityError) as info:
        ctx.content.get("posts", "x")
    assert str(info.value).startswith("Missing capability: content:read")
    with pytest.raises(CapabilityError):
        ctx.http.fetch(f"{server}/echo")
    assert budget.used == 10

    web = ctx_for(bridge, "web")
    response = web.http.fetch(f"{server}/echo", method="POST", json={"a": 1})
    assert isinstance(response, HttpResponse) and response.ok
    echoed = response.json()
    assert echoed["body"] == '{"a": 1}'
    assert ["content-type", "application/json"] in echoed["headers"]
    assert response.headers.get_all("X-Multi") == ["1", "2"]


def test_ctx_budget_error_reaches_the_plugin(bridge: Bridge) -> None:
    budget = CallBudget(1)
    ctx = ctx_for(bridge, "alpha", budget)
    ctx.kv.get("a")
    with pytest.raises(SubrequestLimitExceeded):
        ctx.kv.get("b")
    assert budget.exceeded
