"""Route input schemas: what the host agrees to evaluate for untrusted plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

import emdash

TEMPLATE = '''
from emdash import define_plugin, RouteConfig

def echo(route_ctx, ctx):
    return route_ctx["input"]

plugin = define_plugin(routes={{"echo": RouteConfig(echo, public=True, input={schema})}})
'''


def _add(rt: emdash.Runtime, schema: str, *, trusted: bool) -> None:
    rt.add_plugin(
        {"id": "echo"}, source={"plugin.py": TEMPLATE.format(schema=schema)}, trusted=trusted
    )


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ('{"$ref": "https://example.com/schema.json"}', "is not a reference inside the schema"),
        ('{"type": "string", "pattern": "(unclosed"}', "is not a valid regular expression"),
        ('{"type": "string", "minLength": -1}', "-1 is less than the minimum of 0"),
    ],
)
def test_sandboxed_schemas_are_checked_at_load(tmp_path: Path, schema: str, why: str) -> None:
    with emdash.Runtime(tmp_path / "site.db") as rt:
        with pytest.raises(emdash.ManifestError) as info:
            _add(rt, schema, trusted=False)
    assert "Plugin echo route 'echo' declares an invalid JSON Schema input" in str(info.value)
    assert why in str(info.value)


def test_a_catastrophic_pattern_cannot_stall_the_host(tmp_path: Path) -> None:
    # (a|aa)+ backtracks exponentially on "aaa...b": with re this holds the GIL for minutes.
    with emdash.Runtime(tmp_path / "site.db") as rt:
        _add(rt, '{"type": "string", "pattern": "^(a|aa)+$"}', trusted=False)
        assert rt.invoke_route("echo", "echo", input="aaaa") == "aaaa"
        with pytest.raises(emdash.PluginRouteError) as info:
            rt.invoke_route("echo", "echo", input="ab")
        assert info.value.details == [{"path": [], "message": "'ab' does not match '^(a|aa)+$'"}]
        with pytest.raises(emdash.PluginRouteError) as info:
            rt.invoke_route("echo", "echo", input="a" * 60 + "b")
        assert info.value.code == "VALIDATION_ERROR"
        assert info.value.details[0]["message"].endswith(
            "could not be checked against '^(a|aa)+$' in time"
        )


def test_pattern_properties_are_bounded_too(tmp_path: Path) -> None:
    schema = '{"type": "object", "patternProperties": {"^x": {"type": "integer"}}}'
    with emdash.Runtime(tmp_path / "site.db") as rt:
        _add(rt, schema, trusted=False)
        assert rt.invoke_route("echo", "echo", input={"x1": 1, "y": "s"}) == {"x1": 1, "y": "s"}
        with pytest.raises(emdash.PluginRouteError) as info:
            rt.invoke_route("echo", "echo", input={"x1": "no"})
        assert info.value.details == [{"path": ["x1"], "message": "'no' is not of type 'integer'"}]


def test_trusted_plugins_may_use_patterns(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db") as rt:
        _add(rt, '{"type": "string", "pattern": "^[a-z]+$"}', trusted=True)
        assert rt.invoke_route("echo", "echo", input="abc") == "abc"
        with pytest.raises(emdash.PluginRouteError) as info:
            rt.invoke_route("echo", "echo", input="ABC")
        assert (info.value.code, info.value.status) == ("VALIDATION_ERROR", 400)
        assert info.value.details == [{"path": [], "message": "'ABC' does not match '^[a-z]+$'"}]


def test_sandboxed_schemas_still_validate_on_the_host(tmp_path: Path) -> None:
    schema = '{"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}, "required": ["n"], "$defs": {"x": {}}, "additionalProperties": {"$ref": "#/$defs/x"}}'
    with emdash.Runtime(tmp_path / "site.db") as rt:
        _add(rt, schema, trusted=False)
        assert rt.invoke_route("echo", "echo", input={"n": 2}) == {"n": 2}
        with pytest.raises(emdash.PluginRouteError) as info:
            rt.invoke_route("echo", "echo", input={"n": 9})
        assert info.value.details == [{"path": ["n"], "message": "9 is greater than the maximum of 3"}]
