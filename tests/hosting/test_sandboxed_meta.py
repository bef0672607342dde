"""What a worker reports about its plugin's hooks and routes is hostile input to the host.

A worker that was taken over can report anything; ``_validate_meta`` is where the host
decides what it believes. These are unit tests of that decision (the worker side is tested
through real workers in tests/runtime and tests/escapes).
"""

from __future__ import annotations

from typing import Any

import pytest

from emdash import ManifestError
from emdash._hosting._sandboxed import _validate_meta

ROUTE = {"public": False, "input": None, "permission": None, "cache_control": None}


def _routes(name: Any) -> dict[str, Any]:
    return {"hooks": {}, "routes": {name: dict(ROUTE)}}


@pytest.mark.parametrize(
    "name",
    [
        "x\nCRITICAL emdash.auth token accepted",
        "x\x1b[2J",
        "x\r",
        "",
        "-starts-with-dash",
        "a" * 129,
        "caf\u00e9",
    ],
)
def test_a_forged_route_name_is_refused_and_never_echoed_raw(name: str) -> None:
    with pytest.raises(ManifestError) as info:
        _validate_meta(_routes(name), "forger")
    message = str(info.value)
    assert message.startswith("Plugin forger reported an invalid definition: route name ")
    assert not any(ch in message for ch in "\n\r\x1b")
    assert len(message) < 200


def test_a_valid_route_name_is_kept() -> None:
    meta = _validate_meta(_routes("admin/settings_v2"), "fine")
    assert meta["routes"] == {"admin/settings_v2": ROUTE}


def test_a_hook_name_in_an_error_is_escaped() -> None:
    with pytest.raises(ManifestError) as info:
        _validate_meta({"hooks": {"x\n[forged]": {}}, "routes": {}}, "forger")
    assert "\n" not in str(info.value)
