"""plain_params: the flat fast path gives the full walk's result and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from emdash._bridge import _params
from emdash._bridge._params import MAX_REQUEST_CHARS, plain_params
from emdash._shared._errors import BridgeError


class _Str(str):
    pass


def test_a_flat_object_is_copied_not_shared() -> None:
    params: dict[str, Any] = {"key": "count", "value": 6, "flag": True, "none": None}
    out = plain_params(params, "p")
    assert out == params and out is not params
    assert all(type(k) is str for k in out)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 2**63}, "outside the exact range"),
        ({"s": _Str("x")}, "not JSON data"),
        ({1: "x"}, "non-string object key"),
        ({"x": float("nan")}, "NaN"),
    ],
)
def test_what_the_fast_path_does_not_take_gets_the_full_walks_error(
    params: dict[Any, Any], message: str
) -> None:
    with pytest.raises(BridgeError, match=message):
        plain_params(params, "p")


def test_the_size_cap_holds_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # A smaller cap, so the test does not build a 16 MiB string: "key" + "abc" costs
    # 2 (the object) + 5 (the key) + 5 (the value) = 12 characters.
    monkeypatch.setattr(_params, "MAX_REQUEST_CHARS", 11)
    with pytest.raises(BridgeError, match="too large"):
        plain_params({"key": "abc"}, "p")
    monkeypatch.setattr(_params, "MAX_REQUEST_CHARS", 12)
    assert plain_params({"key": "abc"}, "p") == {"key": "abc"}
    assert MAX_REQUEST_CHARS == 16 * 1024 * 1024
