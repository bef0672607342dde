"""Route input schemas: checked and applied by the host for trusted plugins, and inside the
worker — under the plugin's own limits — for sandboxed ones (see emdash/_route_input.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emdash

TEMPLATE = """
from emdash import define_plugin, RouteConfig

def echo(route_ctx, ctx):
    return route_ctx["input"]

plugin = define_plugin(routes={{"echo": RouteConfig(echo, public=True, input={schema})}})
"""


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[emdash.Runtime]:
    with emdash.Runtime(tmp_path / "site.db") as runtime:
        yield runtime


def _add(
    rt: emdash.Runtime, schema: str, *, trusted: bool, limits: dict[str, int] | None = None
) -> None:
    descriptor: dict[str, Any] = {"id": "echo"}
    if limits:
        descriptor["limits"] = limits
    rt.add_plugin(descriptor, source={"plugin.py": TEMPLATE.format(schema=schema)}, trusted=trusted)


@pytest.mark.parametrize("trusted", [True, False], ids=["native", "sandboxed"])
def test_invalid_schemas_are_refused_at_load_in_both_modes(
    rt: emdash.Runtime, trusted: bool
) -> None:
    with pytest.raises(emdash.ManifestError) as info:
        _add(rt, '{"type": "string", "minLength": -1}', trusted=trusted)
    assert str(info.value) == (
        "Plugin echo route 'echo' declares an invalid JSON Schema input: "
        "-1 is less than the minimum of 0"
    )


@pytest.mark.parametrize("trusted", [True, False], ids=["native", "sandboxed"])
def test_validation_errors_are_the_same_in_both_modes(rt: emdash.Runtime, trusted: bool) -> None:
    _add(
        rt,
        '{"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}},'
        ' "patternProperties": {"^x": {"type": "string"}}, "required": ["n"]}',
        trusted=trusted,
    )
    assert rt.invoke_route("echo", "echo", input={"n": 2, "x1": "s"}) == {"n": 2, "x1": "s"}
    with pytest.raises(emdash.PluginRouteError) as info:
        rt.invoke_route("echo", "echo", input={"n": 9, "x1": 1})
    assert (info.value.code, info.value.status, str(info.value)) == (
        "VALIDATION_ERROR",
        400,
        "Invalid request body",
    )
    assert info.value.details == [
        {"path": ["n"], "message": "9 is greater than the maximum of 3"},
        {"path": ["x1"], "message": "1 is not of type 'string'"},
    ]


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        # catastrophic backtracking: with re on the host this would hold the GIL for minutes
        ('{"type": "string", "pattern": "^(a|aa)+$"}', "a" * 60 + "b"),
        # uniqueItems over unorderable items is quadratic
        ('{"type": "array", "uniqueItems": True}', [{"n": i} for i in range(4000)]),
    ],
    ids=["redos-pattern", "quadratic-unique-items"],
)
def test_expensive_schemas_only_spend_the_plugins_own_cpu(
    rt: emdash.Runtime, schema: str, value: object
) -> None:
    _add(rt, schema, trusted=False, limits={"cpu_ms": 50})
    with pytest.raises(emdash.CpuLimitExceeded) as info:
        rt.invoke_route("echo", "echo", input=value)
    assert str(info.value).startswith("Plugin echo exceeded CPU limit of 50ms during route:echo")
    # the worker was replaced: the next call is served normally
    with pytest.raises(emdash.PluginRouteError):
        rt.invoke_route("echo", "echo", input=7)


def test_a_self_referencing_schema_fails_in_the_worker_not_the_host(rt: emdash.Runtime) -> None:
    _add(rt, '{"$ref": "#"}', trusted=False)
    with pytest.raises(emdash.EmDashError) as info:
        rt.invoke_route("echo", "echo", input=1)
    assert info.value.plugin_id == "echo"


def test_sandboxed_routes_accept_only_json_schema_inputs(rt: emdash.Runtime) -> None:
    src = (
        "from emdash import define_plugin, RouteConfig\n"
        "def h(r, ctx):\n    return 1\n"
        "plugin = define_plugin(routes={'r': RouteConfig(h, input=lambda v: v)})\n"
    )
    with pytest.raises(
        emdash.ManifestError, match="a sandboxed route's input must be a JSON Schema"
    ):
        rt.add_plugin({"id": "lam"}, source={"plugin.py": src})
