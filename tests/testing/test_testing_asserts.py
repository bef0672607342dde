"""assert_capability_denied and assert_vetoed on real outcomes, and their failure messages."""

from __future__ import annotations

import pytest

from emdash import CAPABILITIES, CapabilityError, EmDashError, ManifestError
from emdash.testing import HarnessFactory, assert_capability_denied, assert_vetoed

from .conftest import HELLO, WritePlugin

READER_SOURCE = """
    from emdash import HookConfig, define_plugin


    def latest(route_ctx, ctx):
        return ctx.content.list("posts", limit=1)


    def authors(event, ctx):
        ctx.kv.set("authors", ctx.users.list(limit=1))


    def fine(route_ctx, ctx):
        return {"ok": True}


    def boom(route_ctx, ctx):
        raise ValueError("not a capability problem")


    plugin = define_plugin(
        hooks={"content:afterSave": HookConfig(authors, error_policy="continue")},
        routes={"latest": latest, "fine": fine, "boom": boom},
    )
"""

# The reader's routes without its hook: a capability override that drops content:read would
# refuse the hook at load (as emdash plugins add would), before any route could be denied.
READER_ROUTES_SOURCE = READER_SOURCE.replace(
    'hooks={"content:afterSave": HookConfig(authors, error_policy="continue")},', ""
)

GUARD_SOURCE = """
    from emdash import define_plugin


    def guard(event, ctx):
        return event["id"] != "protected"


    def gatekeeper(event, ctx):
        return "spam" not in event["comment"]["body"]


    plugin = define_plugin(
        hooks={"content:beforeDelete": guard, "comment:beforeCreate": gatekeeper}
    )
"""

MISSING_READ = (
    'Missing capability: content:read (plugin "reader" must declare "content:read" in its '
    "descriptor's capabilities to do this)"
)
SAVE = {"content": {"id": "c1", "title": "T"}, "collection": "posts", "isNew": True}
DELETE = {"id": "protected", "collection": "posts", "permanent": False}


def test_a_capability_override_is_denied_in_routes(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    path = write_plugin("reader", READER_ROUTES_SOURCE, capabilities=["content:read"])
    assert plugin_harness(path, sandbox=both_modes).route("latest")["items"] == []

    h = plugin_harness(path, sandbox=both_modes, capabilities=[])
    assert h.descriptor.capabilities == []
    err = assert_capability_denied(lambda: h.route("latest"), "content:read")
    assert isinstance(err, CapabilityError)
    assert str(err) == MISSING_READ and err.plugin_id == "reader"
    # A deprecated alias names the same capability.
    assert assert_capability_denied(lambda: h.route("latest"), "read:content") is not None
    # An exception object works too.
    with pytest.raises(CapabilityError) as caught:
        h.route("latest")
    assert assert_capability_denied(caught.value, "content:read") is caught.value


def test_a_denial_inside_a_hook_is_found_in_the_outcome(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    path = write_plugin("reader", READER_SOURCE, capabilities=["content:read", "users:read"])
    allowed = plugin_harness(path, sandbox=both_modes)
    assert allowed.hook("content:afterSave", SAVE).ok
    assert allowed.kv["authors"] == {"items": []}

    h = plugin_harness(path, sandbox=both_modes, capabilities=["content:read"])
    outcome = h.hook("content:afterSave", SAVE)  # error_policy="continue": recorded
    assert not outcome.ok
    err = assert_capability_denied(outcome, "users:read")
    assert str(err) == (
        'Missing capability: users:read (plugin "reader" must declare "users:read" in its '
        "descriptor's capabilities to do this)"
    )
    assert assert_capability_denied(outcome.results[0], "users:read") == err
    assert "authors" not in h.kv  # the failed invocation's writes were rolled back


def test_a_gated_hook_is_not_a_denial_and_the_message_says_so(
    plugin_harness: HarnessFactory, write_plugin: WritePlugin
) -> None:
    path = write_plugin("reader", READER_SOURCE, capabilities=["content:read"])
    # The hook's own capability dropped: refused at load, as emdash plugins add refuses it.
    with pytest.raises(ManifestError) as refused:
        plugin_harness(path, sandbox=False, capabilities=["users:read"])
    assert 'hook content:afterSave needs capability "content:read"' in str(refused.value)
    h = plugin_harness(path, sandbox=False)
    outcome = h.hook("content:afterUnpublish", {"content": {"id": "c1"}, "collection": "posts"})
    assert outcome.results == []
    with pytest.raises(AssertionError) as caught:
        assert_capability_denied(outcome, "content:read")
    assert str(caught.value) == (
        "Expected content:read to be denied, but no handler ran for content:afterUnpublish: "
        "the plugin has no handler for it (a hook whose own required capability is missing is "
        "refused when the plugin loads, never denied at run time); call something the handler "
        "does with ctx instead."
    )


def test_capability_denied_failure_messages(
    plugin_harness: HarnessFactory, write_plugin: WritePlugin
) -> None:
    path = write_plugin("reader", READER_ROUTES_SOURCE, capabilities=["content:read", "users:read"])
    h = plugin_harness(path, sandbox=False, capabilities=[])
    with pytest.raises(AssertionError) as caught:
        assert_capability_denied(lambda: h.route("fine"), "content:read")
    assert str(caught.value) == (
        "Expected CapabilityError for content:read, but nothing was denied: "
        "the call returned {'ok': True}"
    )
    with pytest.raises(AssertionError) as caught:
        assert_capability_denied(lambda: h.route("latest"), "content:write")
    assert str(caught.value) == (
        f"Expected CapabilityError for content:write, got CapabilityError: {MISSING_READ}"
    )
    with pytest.raises(AssertionError) as caught:
        assert_capability_denied(lambda: h.route("boom"), "content:read")
    assert str(caught.value).startswith(
        "Expected CapabilityError for content:read, got PluginError: "
    )
    assert "not a capability problem" in str(caught.value)
    full = plugin_harness(
        write_plugin("full", READER_SOURCE, capabilities=["content:read", "users:read"]),
        sandbox=False,
    )
    with pytest.raises(AssertionError) as caught:
        assert_capability_denied(full.hook("content:afterSave", SAVE), "users:read")
    assert str(caught.value).startswith(
        "Expected CapabilityError for users:read, but nothing was denied: "
        "got HookOutcome('content:afterSave', value=None, results=[HookResult('full', ok,"
    )
    with pytest.raises(EmDashError) as usage:
        assert_capability_denied(lambda: None, "content:everything")
    assert str(usage.value) == (
        'Unknown capability "content:everything". Valid capabilities: ' + ", ".join(CAPABILITIES)
    )
    with pytest.raises(EmDashError) as usage:
        assert_capability_denied("content:read", "content:read")  # type: ignore[arg-type]
    assert str(usage.value) == "Pass an outcome, an exception or a callable, not str"


def test_a_veto_is_asserted_on_the_hook_outcome(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    h = plugin_harness(
        write_plugin("guard", GUARD_SOURCE, capabilities=["content:read", "users:read"]),
        sandbox=both_modes,
    )
    outcome = h.hook("content:beforeDelete", DELETE)
    assert outcome.value is False and outcome.cancelled_by == "guard"
    assert_vetoed(outcome, by="guard")
    assert_vetoed(outcome)

    allowed = h.hook("content:beforeDelete", {**DELETE, "id": "ordinary"})
    with pytest.raises(AssertionError) as caught:
        assert_vetoed(allowed, by="guard")
    assert str(caught.value).startswith(
        "Expected content:beforeDelete to be vetoed by 'guard', but every handler allowed it: "
        "[HookResult('guard', ok, value=True,"
    )

    # Middleware hooks: a False cancels, and that counts as a veto.
    comment = {"comment": {"body": "spam spam"}, "metadata": {}}
    assert_vetoed(h.hook("comment:beforeCreate", comment), by="guard")


def test_a_vetoed_delete_and_a_rejected_comment_count_as_vetoes(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    guard = write_plugin(
        "guard",
        GUARD_SOURCE.replace('event["id"] != "protected"', "False"),
        capabilities=["content:read", "users:read"],
    )
    h = plugin_harness(guard, sandbox=both_modes)
    item = h.runtime.content.create("posts", {"title": "keep me"})
    assert_vetoed(lambda: h.runtime.content.delete("posts", item["id"]), by="guard")
    kept = h.runtime.store.content_items.get("posts", item["id"])
    assert kept is not None and kept["deletedAt"] is None
    with pytest.raises(AssertionError) as caught:
        assert_vetoed(lambda: h.runtime.content.delete("posts", item["id"]), by="someone-else")
    assert str(caught.value) == "Expected a veto by 'someone-else', but it was vetoed by 'guard'"

    h.runtime.content.publish("posts", item["id"])
    assert_vetoed(
        lambda: h.runtime.comments.create(
            "posts", item["id"], author_name="Ann", author_email=None, body="spam!"
        ),
        by="guard",
    )


def test_veto_failure_messages(plugin_harness: HarnessFactory) -> None:
    h = plugin_harness(HELLO, sandbox=False)
    with pytest.raises(AssertionError) as caught:
        assert_vetoed(lambda: h.route("recent"), by="plugin-hello")
    assert str(caught.value) == (
        "Expected a veto by 'plugin-hello', but the call returned {'events': []}"
    )
    with pytest.raises(AssertionError) as caught:
        assert_vetoed(lambda: h.route("missing"))
    assert (
        str(caught.value)
        == "Expected a veto, but it raised PluginRouteError: Plugin route not found: "
        '"plugin-hello/missing": plugin plugin-hello has no route of that name (its routes: '
        "recent)"
    )
