"""Bridge.dispatch: method catalogue, hostile params, budgets, logging."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from emdash._bridge._dispatch import METHODS, Bridge, CallBudget
from emdash._bridge._params import MAX_DEPTH, MAX_REQUEST_CHARS
from emdash._shared._errors import BridgeError, CapabilityError, SubrequestLimitExceeded

WIRE_METHODS = {
    "kv/get",
    "kv/set",
    "kv/delete",
    "kv/list",
    "kv/increment",
    "kv/compareAndSet",
    "storage/get",
    "storage/put",
    "storage/delete",
    "storage/exists",
    "storage/query",
    "storage/count",
    "storage/getMany",
    "storage/putMany",
    "storage/deleteMany",
    "content/get",
    "content/list",
    "content/create",
    "content/update",
    "content/delete",
    "content/createMany",
    "content/updateMany",
    "content/deleteMany",
    "taxonomy/list",
    "taxonomy/terms",
    "taxonomy/entryTerms",
    "media/get",
    "media/list",
    "media/upload",
    "media/delete",
    "users/get",
    "users/getByEmail",
    "users/list",
    "email/send",
    "cron/schedule",
    "cron/cancel",
    "cron/list",
    "http/fetch",
    "log",
}


def test_catalogue_is_exactly_the_wire_methods() -> None:
    assert set(METHODS) == WIRE_METHODS


@pytest.mark.parametrize("method", ["kv/nope", "../kv/get", "kv/get ", "KV/GET", "__class__", ""])
def test_unknown_methods(bridge: Bridge, method: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", method, {})
    assert str(info.value) == f"Unknown bridge method: {method}"
    assert info.value.plugin_id == "alpha"


def test_non_string_method(bridge: Bridge) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", ["kv/get"], {})  # type: ignore[arg-type]
    assert str(info.value) == "Unknown bridge method: list"


def test_unknown_plugin(bridge: Bridge) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("ghost", "kv/get", {"key": "k"})
    assert str(info.value) == "Unknown plugin: ghost"


def test_lookup_returning_another_plugin_is_refused(
    bridge: Bridge, descriptors: Any, store: Any, http_client: Any
) -> None:
    confused = Bridge(store=store, plugins=lambda pid: descriptors["alpha"], http=http_client)
    with pytest.raises(BridgeError, match="^Unknown plugin: beta$"):
        confused.dispatch("beta", "kv/get", {"key": "k"})


@pytest.mark.parametrize("params", [None, [], "key=k", 3])
def test_params_must_be_an_object(bridge: Bridge, params: Any) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", "kv/get", params)
    assert str(info.value) == "Bridge request body must be a JSON object"


class SneakyStr(str):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"key": SneakyStr("k")}, "Bridge request contains a SneakyStr, which is not JSON data"),
        ({"key": "k", "value": {1: "x"}}, "Bridge request has a non-string object key"),
        ({"key": "k", "value": (1, 2)}, "Bridge request contains a tuple, which is not JSON data"),
        ({"key": "k", "value": float("inf")}, "Bridge request contains NaN or Infinity (not JSON)"),
        ({"key": "k", "value": b"raw"}, "Bridge request contains a bytes, which is not JSON data"),
    ],
)
def test_params_must_be_exact_json_types(
    bridge: Bridge, store: Any, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", "kv/set", params)
    assert str(info.value) == message
    assert store.kv_entries.list("alpha") == []


def test_depth_and_size_caps(bridge: Bridge, store: Any) -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", "kv/set", {"key": "k", "value": deep})
    assert str(info.value) == f"Bridge request is nested too deeply (more than {MAX_DEPTH} levels)"
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", "kv/set", {"key": "k", "value": "x" * MAX_REQUEST_CHARS})
    assert (
        str(info.value) == f"Bridge request is too large (more than {MAX_REQUEST_CHARS} characters)"
    )
    assert store.kv_entries.list("alpha") == []


def test_store_caps_a_single_value_at_one_mib(bridge: Bridge) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", "kv/set", {"key": "k", "value": "x" * (1024 * 1024)})
    assert "is too large" in str(info.value)


# --- budget ------------------------------------------------------------------------------


def test_every_call_but_log_costs_one_subrequest(bridge: Bridge) -> None:
    budget = CallBudget(3)
    bridge.dispatch("alpha", "kv/set", {"key": "a", "value": 1}, budget=budget)
    bridge.dispatch("alpha", "log", {"level": "info", "msg": "free"}, budget=budget)
    with pytest.raises(BridgeError):  # a failing call still costs
        bridge.dispatch("alpha", "kv/get", {}, budget=budget)
    with pytest.raises(CapabilityError):  # so does a refused one
        bridge.dispatch("alpha", "content/get", {}, budget=budget)
    assert (budget.used, budget.exceeded) == (3, False)
    with pytest.raises(SubrequestLimitExceeded) as info:
        bridge.dispatch("alpha", "kv/get", {"key": "a"}, budget=budget)
    assert str(info.value) == (
        "Plugin alpha exceeded its subrequest limit of 3 calls during this invocation. Make "
        "fewer ctx calls per invocation or raise limits.subrequests in the plugin descriptor."
    )
    assert budget.exceeded
    # Still refused afterwards, and log still works.
    with pytest.raises(SubrequestLimitExceeded):
        bridge.dispatch("alpha", "kv/get", {"key": "a"}, budget=budget)
    bridge.dispatch("alpha", "log", {"level": "info", "msg": "still free"}, budget=budget)


def test_unlimited_budget_counts_without_refusing(bridge: Bridge) -> None:
    budget = CallBudget(None)
    for _ in range(25):
        bridge.dispatch("alpha", "kv/get", {"key": "a"}, budget=budget)
    assert (budget.used, budget.exceeded) == (25, False)


def test_http_fetch_costs_one_per_hop(bridge: Bridge, server: str) -> None:
    budget = CallBudget(10)
    result = bridge.dispatch("webany", "http/fetch", {"url": f"{server}/hop/2"}, budget=budget)
    assert result["status"] == 200
    assert budget.used == 3
    tight = CallBudget(2)
    with pytest.raises(SubrequestLimitExceeded):
        bridge.dispatch("webany", "http/fetch", {"url": f"{server}/hop/2"}, budget=tight)
    assert tight.exceeded


# --- log ---------------------------------------------------------------------------------


def test_log_levels_go_to_the_plugin_logger(bridge: Bridge, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="emdash.plugins")
    for level in ("debug", "info", "warn", "error"):
        assert bridge.dispatch("alpha", "log", {"level": level, "msg": f"{level} line"}) is None
    bridge.dispatch(
        "alpha", "log", {"level": "info", "msg": "with data", "data": {"id": 1, "t": "é"}}
    )
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        ("emdash.plugins.alpha", logging.DEBUG, "[plugin:alpha] debug line"),
        ("emdash.plugins.alpha", logging.INFO, "[plugin:alpha] info line"),
        ("emdash.plugins.alpha", logging.WARNING, "[plugin:alpha] warn line"),
        ("emdash.plugins.alpha", logging.ERROR, "[plugin:alpha] error line"),
        ("emdash.plugins.alpha", logging.INFO, '[plugin:alpha] with data {"id": 1, "t": "é"}'),
    ]


def test_log_escapes_control_characters(bridge: Bridge, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="emdash.plugins")
    bridge.dispatch(
        "alpha", "log", {"level": "info", "msg": "ok\n[plugin:beta] forged\x1b[31m\u2028x"}
    )
    assert caplog.records[-1].getMessage() == (
        "[plugin:alpha] ok\\x0a[plugin:beta] forged\\x1b[31m\\u2028x"
    )


def test_log_lines_are_capped_per_invocation(bridge: Bridge, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="emdash.plugins")
    budget = CallBudget(3, log_lines=3)
    for i in range(6):
        bridge.dispatch("alpha", "log", {"level": "info", "msg": f"line {i}"}, budget=budget)
    assert [r.getMessage() for r in caplog.records] == [
        "[plugin:alpha] line 0",
        "[plugin:alpha] line 1",
        "[plugin:alpha] line 2",
        "[plugin:alpha] more than 3 log lines in one invocation; dropping the rest",
    ]
    # Lines within the cap are free; each dropped one is charged as a subrequest.
    assert (budget.used, budget.log_dropped, budget.exceeded) == (3, 3, False)


def test_a_logging_loop_ends_with_the_subrequest_limit(bridge: Bridge) -> None:
    # A dropped line still costs the host a round trip: past log_lines + subrequests calls
    # the invocation fails, so a loop cannot keep the host busy until the wall limit.
    budget = CallBudget(2, log_lines=3)
    for i in range(5):
        bridge.dispatch("alpha", "log", {"level": "info", "msg": f"line {i}"}, budget=budget)
    with pytest.raises(SubrequestLimitExceeded, match="ctx.log calls past 3 lines count"):
        bridge.dispatch("alpha", "log", {"level": "info", "msg": "one more"}, budget=budget)
    assert budget.exceeded


def test_long_log_lines_are_truncated(bridge: Bridge, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="emdash.plugins")
    bridge.dispatch("alpha", "log", {"level": "info", "msg": "y" * 20000})
    assert caplog.records[-1].getMessage() == "[plugin:alpha] " + "y" * 8192 + "…[truncated]"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"level": "fatal", "msg": "m"},
            "Parameter level must be one of: debug, info, warn, error",
        ),
        ({"msg": "m"}, "Parameter level must be one of: debug, info, warn, error"),
        ({"level": "info"}, "Missing required string parameter: msg"),
        ({"level": "info", "msg": 3}, "Missing required string parameter: msg"),
    ],
)
def test_log_param_texts(bridge: Bridge, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge.dispatch("alpha", "log", params)
    assert str(info.value) == message


def test_custom_parent_logger(store: Any, descriptors: Any, http_client: Any, caplog: Any) -> None:
    parent = logging.getLogger("site.plugins")
    b = Bridge(store=store, plugins=descriptors.__getitem__, http=http_client, logger=parent)
    caplog.set_level(logging.INFO, logger="site.plugins")
    b.dispatch("alpha", "log", {"level": "info", "msg": "hi"})
    assert caplog.records[-1].name == "site.plugins.alpha"
