"""Family rules: chain, veto, middleware, notify, observe, collect, cron, and misuse."""

from __future__ import annotations

from typing import Any

import pytest

from emdash import EmDashError, HookConfig, NotFoundError, PluginError
from emdash._runtime._runtime import Runtime

from .conftest import AddPlugin

SAVE = {"content": {"title": "Hi"}, "collection": "posts", "isNew": True}


# -- chain ------------------------------------------------------------------------------


def test_chain_hands_each_result_to_the_next_handler(rt: Runtime, add: AddPlugin) -> None:
    seen: list[dict[str, Any]] = []

    def a(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        seen.append(event)
        return {**event["content"], "a": 1}

    def b(event: dict[str, Any], ctx: Any) -> None:
        seen.append(event)  # None: unchanged

    def c(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        seen.append(event)
        return {**event["content"], "c": 2}

    for pid, fn in (("a", a), ("b", b), ("c", c)):
        add(pid, hooks={"content:beforeSave": fn}, capabilities=["content:write"])
    outcome = rt.run_hook("content:beforeSave", SAVE)
    assert outcome.value == {"title": "Hi", "a": 1, "c": 2}
    assert [r.value for r in outcome.results] == [
        {"title": "Hi", "a": 1},
        {"title": "Hi", "a": 1},
        {"title": "Hi", "a": 1, "c": 2},
    ]
    assert seen[1] == {"content": {"title": "Hi", "a": 1}, "collection": "posts", "isNew": True}
    assert seen[2]["content"] == {"title": "Hi", "a": 1}
    assert outcome.ok and outcome.allowed and outcome.errors == []


def test_chain_key_of_media_before_upload_is_file(rt: Runtime, add: AddPlugin) -> None:
    add(
        "renamer",
        hooks={"media:beforeUpload": lambda e, ctx: {**e["file"], "name": "safe.png"}},
        capabilities=["media:write"],
    )
    outcome = rt.run_hook(
        "media:beforeUpload", {"file": {"name": "x y.png", "type": "image/png", "size": 3}}
    )
    assert outcome.value == {"name": "safe.png", "type": "image/png", "size": 3}


def test_chain_rejects_a_non_dict_result(rt: Runtime, add: AddPlugin) -> None:
    add("bad", hooks={"content:beforeSave": lambda e, ctx: "oops"}, capabilities=["content:write"])
    with pytest.raises(PluginError) as info:
        rt.run_hook("content:beforeSave", SAVE)
    assert str(info.value) == (
        'Plugin bad returned str from content:beforeSave; return a dict to replace "content", '
        "or None to keep it"
    )
    assert info.value.plugin_id == "bad"
    assert info.value.hook == "content:beforeSave"


def test_chain_continue_policy_keeps_the_value_and_goes_on(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise ValueError("nope")

    add(
        "flaky",
        hooks={"content:beforeSave": HookConfig(boom, priority=1, error_policy="continue")},
        capabilities=["content:write"],
    )
    add(
        "upper",
        hooks={"content:beforeSave": lambda e, ctx: {"title": e["content"]["title"].upper()}},
        capabilities=["content:write"],
    )
    outcome = rt.run_hook("content:beforeSave", SAVE)
    assert outcome.value == {"title": "HI"}
    assert [(r.plugin_id, r.success) for r in outcome.results] == [
        ("flaky", False),
        ("upper", True),
    ]
    assert not outcome.ok
    assert [str(e) for e in outcome.errors] == [
        "Plugin flaky raised ValueError during hook:content:beforeSave: nope"
    ]


# -- veto -------------------------------------------------------------------------------


def test_veto_only_false_vetoes_and_every_handler_runs(rt: Runtime, add: AddPlugin) -> None:
    ran: list[str] = []

    def returning(pid: str, value: Any) -> Any:
        def handler(event: dict[str, Any], ctx: Any) -> Any:
            ran.append(pid)
            return value

        return handler

    for pid, value in (("zero", 0), ("no", False), ("empty", ""), ("none", None), ("no2", False)):
        add(
            pid,
            hooks={"content:beforeDelete": returning(pid, value)},
            capabilities=["content:read"],
        )
    outcome = rt.run_hook(
        "content:beforeDelete", {"id": "c1", "collection": "posts", "permanent": False}
    )
    assert ran == ["zero", "no", "empty", "none", "no2"]
    assert outcome.value is False
    assert not outcome.allowed
    assert outcome.cancelled_by == "no"
    assert [r.value for r in outcome.results] == [True, False, True, True, False]


def test_veto_allows_when_nobody_returns_false(rt: Runtime, add: AddPlugin) -> None:
    add("fine", hooks={"content:beforeDelete": lambda e, ctx: []}, capabilities=["content:read"])
    outcome = rt.run_hook("content:beforeDelete", {"id": "c1", "collection": "posts"})
    assert outcome.value is True and outcome.allowed and outcome.cancelled_by is None


def test_veto_abort_policy_raises_the_handler_error(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise RuntimeError("db down")

    add("guard", hooks={"content:beforeDelete": boom}, capabilities=["content:read"])
    with pytest.raises(PluginError, match="^Plugin guard raised RuntimeError during "):
        rt.run_hook("content:beforeDelete", {"id": "c1", "collection": "posts"})


# -- middleware -------------------------------------------------------------------------

MAIL: dict[str, Any] = {"message": {"to": "a@b.c", "subject": "Hi", "text": "x"}, "source": "admin"}
EMAIL_EVENTS = ["hooks.email-events:register"]


def test_middleware_replaces_then_false_cancels_and_stops(rt: Runtime, add: AddPlugin) -> None:
    ran: list[str] = []

    def tag(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        ran.append("tag")
        return {**event["message"], "subject": "[site] " + event["message"]["subject"]}

    def stop(event: dict[str, Any], ctx: Any) -> bool:
        ran.append("stop:" + event["message"]["subject"])
        return False

    def never(event: dict[str, Any], ctx: Any) -> None:
        ran.append("never")

    add("tag", hooks={"email:beforeSend": HookConfig(tag, priority=1)}, capabilities=EMAIL_EVENTS)
    add("stop", hooks={"email:beforeSend": HookConfig(stop, priority=2)}, capabilities=EMAIL_EVENTS)
    add(
        "never",
        hooks={"email:beforeSend": HookConfig(never, priority=3)},
        capabilities=EMAIL_EVENTS,
    )
    outcome = rt.run_hook("email:beforeSend", MAIL)
    assert ran == ["tag", "stop:[site] Hi"]
    assert outcome.value is False
    assert outcome.cancelled_by == "stop"
    assert [r.plugin_id for r in outcome.results] == ["tag", "stop"]


def test_middleware_handlers_get_shallow_copies(rt: Runtime, add: AddPlugin) -> None:
    seen: list[dict[str, Any]] = []

    def strip(event: dict[str, Any], ctx: Any) -> None:
        del event["message"]["text"]  # a copy: without returning it, nothing changes

    def look(event: dict[str, Any], ctx: Any) -> None:
        seen.append(dict(event["message"]))

    add(
        "strip",
        hooks={"email:beforeSend": HookConfig(strip, priority=1)},
        capabilities=EMAIL_EVENTS,
    )
    add("look", hooks={"email:beforeSend": HookConfig(look, priority=2)}, capabilities=EMAIL_EVENTS)
    event = {"message": dict(MAIL["message"]), "source": "admin"}
    outcome = rt.run_hook("email:beforeSend", event)
    assert seen == [MAIL["message"]]
    assert event["message"] == MAIL["message"]
    assert outcome.value == MAIL["message"] and outcome.allowed


def test_middleware_on_whole_event_for_comment_before_create(rt: Runtime, add: AddPlugin) -> None:
    def annotate(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {**event, "metadata": {"checked": True}}

    add("annotate", hooks={"comment:beforeCreate": annotate}, capabilities=["users:read"])
    outcome = rt.run_hook("comment:beforeCreate", {"comment": {"body": "hi"}, "metadata": {}})
    assert outcome.value == {"comment": {"body": "hi"}, "metadata": {"checked": True}}


def test_middleware_rejects_other_results(rt: Runtime, add: AddPlugin) -> None:
    add("odd", hooks={"email:beforeSend": lambda e, ctx: 5}, capabilities=EMAIL_EVENTS)
    with pytest.raises(PluginError) as info:
        rt.run_hook("email:beforeSend", MAIL)
    assert str(info.value) == (
        'Plugin odd returned int from email:beforeSend; return a dict to replace "message", '
        "False to cancel, or None to keep it"
    )


# -- notify / observe / collect ---------------------------------------------------------


def test_notify_abort_policy_stops_and_raises(rt: Runtime, add: AddPlugin) -> None:
    ran: list[str] = []

    def boom(event: dict[str, Any], ctx: Any) -> None:
        ran.append("boom")
        raise KeyError("id")

    add(
        "first",
        hooks={"content:afterSave": HookConfig(boom, priority=1)},
        capabilities=["content:read"],
    )
    add(
        "second",
        hooks={"content:afterSave": lambda e, ctx: ran.append("second")},
        capabilities=["content:read"],
    )
    with pytest.raises(PluginError) as info:
        rt.run_hook("content:afterSave", SAVE)
    assert ran == ["boom"]
    assert info.value.error_type == "KeyError"


def test_notify_continue_policy_records_and_goes_on(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise KeyError("id")

    add(
        "first",
        hooks={"content:afterSave": HookConfig(boom, priority=1, error_policy="continue")},
        capabilities=["content:read"],
    )
    add(
        "second",
        hooks={"content:afterSave": lambda e, ctx: "ignored"},
        capabilities=["content:read"],
    )
    outcome = rt.run_hook("content:afterSave", SAVE)
    assert outcome.value is None
    assert [(r.plugin_id, r.success, r.value) for r in outcome.results] == [
        ("first", False, None),
        ("second", True, "ignored"),
    ]
    assert isinstance(outcome.results[0].error, PluginError)


def test_observe_never_raises_even_with_abort_policy(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise ValueError("observer broke")

    add(
        "watcher",
        hooks={"media:afterUpload": HookConfig(boom, error_policy="abort")},
        capabilities=["media:read"],
    )
    add("other", hooks={"media:afterUpload": lambda e, ctx: None}, capabilities=["media:read"])
    outcome = rt.run_hook("media:afterUpload", {"media": {"id": "m1"}})
    assert [(r.plugin_id, r.success) for r in outcome.results] == [
        ("watcher", False),
        ("other", True),
    ]
    assert [e.message for e in outcome.errors] == [
        "Plugin watcher raised ValueError during hook:media:afterUpload: observer broke"
    ]


def test_collect_gathers_and_flattens_contributions(rt: Runtime, add: AddPlugin) -> None:
    def fails(event: dict[str, Any], ctx: Any) -> None:
        raise ValueError("x")

    add(
        "one",
        hooks={
            "page:metadata": HookConfig(lambda e, ctx: {"kind": "meta", "name": "a"}, priority=1)
        },
    )
    add(
        "many",
        hooks={
            "page:metadata": HookConfig(
                lambda e, ctx: [{"kind": "meta", "name": "b"}, None, {"kind": "link", "rel": "x"}],
                priority=2,
            )
        },
    )
    add("none", hooks={"page:metadata": HookConfig(lambda e, ctx: None, priority=3)})
    add("fails", hooks={"page:metadata": HookConfig(fails, priority=4)})
    outcome = rt.run_hook("page:metadata", {"page": {"url": "/"}})
    assert outcome.value == [
        {"kind": "meta", "name": "a"},
        {"kind": "meta", "name": "b"},
        {"kind": "link", "rel": "x"},
    ]
    assert [r.success for r in outcome.results] == [True, True, True, False]


# -- cron and misuse --------------------------------------------------------------------


def test_cron_goes_to_the_owning_plugin_only(rt: Runtime, add: AddPlugin) -> None:
    got: list[tuple[str, Any]] = []
    add("owner", hooks={"cron": lambda e, ctx: got.append(("owner", e))})
    add("bystander", hooks={"cron": lambda e, ctx: got.append(("bystander", e))})
    event = {"name": "cleanup", "data": {"days": 7}, "scheduledAt": "2030-01-01T00:00:00.000Z"}
    result = rt.invoke_cron("owner", event)
    assert got == [("owner", event)]
    assert result.success and result.plugin_id == "owner" and result.error is None


def test_cron_without_handler_is_a_failed_result(rt: Runtime, add: AddPlugin) -> None:
    add("quiet")
    result = rt.invoke_cron("quiet", {"name": "x"})
    assert not result.success
    assert isinstance(result.error, NotFoundError)
    assert str(result.error) == (
        'Plugin "quiet" has no cron hook registered (or is not enabled); add a "cron" hook to '
        "handle its scheduled tasks"
    )


def test_cron_failure_is_reported_not_raised(rt: Runtime, add: AddPlugin) -> None:
    def boom(event: dict[str, Any], ctx: Any) -> None:
        raise OSError("disk")

    add("job", hooks={"cron": boom})
    result = rt.invoke_cron("job", {"name": "x"})
    assert not result.success
    assert isinstance(result.error, PluginError)
    assert result.error.message == "Plugin job raised OSError during hook:cron: disk"


def test_run_hook_refuses_unknown_and_single_target_hooks(rt: Runtime) -> None:
    with pytest.raises(
        EmDashError, match='^Unknown hook "content:nope". Valid hooks: plugin:install, '
    ):
        rt.run_hook("content:nope", {})
    with pytest.raises(EmDashError) as info:
        rt.run_hook("cron", {})
    assert str(info.value) == (
        'Hook "cron" is a cron hook and is not broadcast; use invoke_cron(plugin_id, event)'
    )
    with pytest.raises(EmDashError) as info:
        rt.run_hook("plugin:install", {})
    assert str(info.value) == (
        'Hook "plugin:install" is a lifecycle hook and is not broadcast; use enable_plugin / '
        "disable_plugin / remove_plugin"
    )
    with pytest.raises(EmDashError) as info:
        rt.pipeline.run_hook("email:deliver", {})
    assert str(info.value) == (
        'Hook "email:deliver" is an exclusive hook and is not broadcast; use '
        'invoke_exclusive("email:deliver", event)'
    )


def test_run_hook_checks_the_event_shape(rt: Runtime) -> None:
    with pytest.raises(
        EmDashError, match='^The event for "content:afterSave" must be a dict, got list$'
    ):
        rt.run_hook("content:afterSave", [])
    with pytest.raises(
        EmDashError, match='^The event for "content:beforeSave" must have a "content" key$'
    ):
        rt.run_hook("content:beforeSave", {"collection": "posts"})


def test_hook_without_handlers_is_an_empty_outcome(rt: Runtime) -> None:
    outcome = rt.run_hook("content:beforeSave", SAVE)
    assert outcome.value == {"title": "Hi"}
    assert outcome.results == [] and outcome.ok


def test_run_hook_for_one_plugin(rt: Runtime, add: AddPlugin) -> None:
    ran: list[str] = []
    add(
        "a",
        hooks={"content:afterSave": lambda e, ctx: ran.append("a")},
        capabilities=["content:read"],
    )
    add(
        "b",
        hooks={"content:afterSave": lambda e, ctx: ran.append("b")},
        capabilities=["content:read"],
    )
    add("life", hooks={"plugin:deactivate": lambda e, ctx: "bye"})
    outcome = rt.run_hook("content:afterSave", SAVE, plugin_id="b")
    assert ran == ["b"] and [r.plugin_id for r in outcome.results] == ["b"]
    life = rt.run_hook("plugin:deactivate", {}, plugin_id="life")
    assert life.value == "bye" and life.results[0].success
