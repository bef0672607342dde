import pytest

from emdash import CapabilityError, PluginRouteError, StorageQueryError
from emdash._shared._errors import BridgeError, clean_text, error_from_wire, error_to_wire


def test_capability_error_text_starts_with_the_emdash_wording() -> None:
    err = CapabilityError("content:read", plugin_id="hello")
    assert str(err).startswith("Missing capability: content:read")
    assert 'plugin "hello"' in str(err)
    assert (err.capability, err.plugin_id) == ("content:read", "hello")


def test_round_trip_keeps_class_and_fields() -> None:
    for original in (
        CapabilityError("media:write"),
        PluginRouteError("CONFLICT", "dup", 409, {"k": [1, 2]}),
        StorageQueryError(
            "Cannot query on non-indexed field 'x'.", field="x", suggestion="Add it."
        ),
    ):
        rebuilt = error_from_wire(error_to_wire(original))
        assert type(rebuilt) is type(original)
        assert str(rebuilt) == str(original)
    route = error_from_wire(error_to_wire(PluginRouteError("CONFLICT", "dup", 409, {"k": 1})))
    assert isinstance(route, PluginRouteError)
    assert (route.code, route.status, route.details) == ("CONFLICT", 409, {"k": 1})


def test_only_our_own_classes_are_flagged_ours() -> None:
    class CapabilityError(Exception):  # a plugin borrowing the name
        pass

    class MyRouteError(PluginRouteError):
        pass

    assert error_to_wire(CapabilityError("x"))["ours"] is False
    assert error_to_wire(BridgeError("x"))["ours"] is True
    assert error_to_wire(ValueError("x")) == {"type": "ValueError", "message": "x", "ours": False}
    sub = error_to_wire(MyRouteError("GONE", "gone", 410))
    assert (sub["type"], sub["ours"], sub["code"], sub["status"]) == (
        "PluginRouteError",
        True,
        "GONE",
        410,
    )


@pytest.mark.parametrize(
    "data",
    [None, [], {"type": 1, "message": 2}, {"type": "Nope", "message": "m"}, {"type": "KeyError"}],
)
def test_hostile_wire_data_becomes_a_bridge_error(data: object) -> None:
    assert type(error_from_wire(data)) is BridgeError


def test_route_error_fields_are_validated() -> None:
    err = error_from_wire(
        {
            "type": "PluginRouteError",
            "message": "m",
            "code": "bad code\r\n",
            "status": 200,
            "details": {"f": object(), "ok": [1, "a"]},
        }
    )
    assert isinstance(err, PluginRouteError)
    assert (err.code, err.status, err.details) == ("ROUTE_ERROR", 400, {"f": None, "ok": [1, "a"]})


def test_messages_from_the_wire_have_control_characters_escaped() -> None:
    err = error_from_wire({"type": "BridgeError", "message": "a\r\nb\x1b[2J\u2028" + "x" * 5000})
    text = str(err)
    assert text.startswith("a\\x0d\\x0ab\\x1b[2J\\u2028x")
    # 4000 characters of the original survive (9 escaped ones, 3991 x), then "..."
    assert text.endswith("x" * 3991 + "...")


def test_clean_text_can_keep_newlines() -> None:
    assert clean_text("line1\nline2\r\x07", keep_newlines=True) == "line1\nline2\\x0d\\x07"
    assert clean_text("ünïcode ok") == "ünïcode ok"


def test_route_error_details_are_reduced_to_plain_json_when_encoded() -> None:
    from collections import Counter

    class Lying(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise AssertionError("plugin code must not run while encoding")

    wire = error_to_wire(
        PluginRouteError("X", "m", 400, {"a": Lying(k=1), "c": Counter("ab"), "ok": [1]})
    )
    assert wire["details"] == {"a": None, "c": None, "ok": [1]}


def test_clean_text_cuts_before_it_escapes() -> None:
    # A message of nothing but control characters costs the cleaner only `limit` characters
    # of work however long it is: the result is bounded by the limit, not by the input.
    hostile = "\x7f\x1b\n" * 3_000_000
    out = clean_text(hostile, limit=8192)
    assert out.endswith("...")
    assert len(out) <= 4 * 8192 + 3  # each escape is \\xNN: four characters
    assert "\x1b" not in out and "\n" not in out
