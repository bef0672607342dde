from typing import Any

import pytest

from emdash import HookConfig, ManifestError, PluginRouteError, RouteConfig, define_plugin
from emdash._shared._plugin_api import coerce_definition


def handler(event: object, ctx: object) -> None:
    return None


def test_bare_handlers_get_default_config() -> None:
    plugin = define_plugin(hooks={"content:afterSave": handler}, routes={"recent": handler})
    cfg = plugin.hooks["content:afterSave"]
    assert (cfg.priority, cfg.timeout_ms, cfg.dependencies, cfg.error_policy, cfg.exclusive) == (
        100,
        5000,
        (),
        "abort",
        False,
    )
    assert plugin.routes["recent"].public is False


def test_decorator_form() -> None:
    plugin = define_plugin()

    @plugin.hook("cron", timeout_ms=60_000)
    def on_cron(event: object, ctx: object) -> None:
        return None

    @plugin.route("status", public=True, cache_control="max-age=60")
    def status(route_ctx: object, ctx: object) -> dict[str, bool]:
        return {"ok": True}

    assert plugin.hooks["cron"].handler is on_cron
    assert plugin.hooks["cron"].timeout_ms == 60_000
    assert plugin.manifest()["routes"]["status"] == {
        "public": True,
        "input": None,
        "permission": None,
        "cache_control": "max-age=60",
    }


def test_unknown_hook_is_rejected_with_the_closest_name() -> None:
    with pytest.raises(
        ManifestError,
        match='unknown hook "content:saved" \\(did you mean "content:afterSave"\\?\\)',
    ):
        define_plugin(hooks={"content:saved": handler})
    with pytest.raises(ManifestError, match='did you mean "content:beforeSave"') as info:
        define_plugin(hooks={"content:beforesave": handler})
    assert "plugin:install" not in str(info.value)  # one suggestion, not the 25 names
    with pytest.raises(ManifestError) as info:
        define_plugin(hooks={"zzzz": handler})
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exclusive": "yes"}, 'Invalid "exclusive" value'),
        ({"error_policy": "ignore"}, 'Invalid error_policy "ignore"'),
        ({"timeout_ms": 0}, "Invalid hook timeout_ms 0"),
        ({"priority": float("nan")}, "Invalid hook priority"),
        ({"dependencies": [1]}, "dependencies must be a list of plugin ids"),
    ],
)
def test_hook_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        HookConfig(handler, **kwargs)


def test_identity_in_code_points_to_the_descriptor() -> None:
    with pytest.raises(ManifestError, match="belong in the plugin descriptor"):
        define_plugin(id="hello", hooks={})


@pytest.mark.parametrize("name", ["", "/x", "a b", "a?b", "x" * 129])
def test_bad_route_names(name: str) -> None:
    with pytest.raises(ManifestError, match="Invalid route name"):
        define_plugin(routes={name: handler})


def test_route_names_may_contain_slashes() -> None:
    assert "forms/submit" in define_plugin(routes={"forms/submit": handler}).routes


def test_standard_format_dict_is_accepted_and_identity_refused() -> None:
    plugin = coerce_definition({"hooks": {"cron": handler}})
    assert list(plugin.hooks) == ["cron"]
    with pytest.raises(ManifestError, match="may only contain 'hooks' and 'routes'"):
        coerce_definition({"hooks": {}, "id": "x"})
    with pytest.raises(ManifestError, match="must bind `plugin`"):
        coerce_definition(42)


def test_route_config_meta_reports_only_json_schema_inputs() -> None:
    schema = {"type": "object"}
    assert RouteConfig(handler, input=schema).meta()["input"] == schema
    assert RouteConfig(handler, input=lambda v: v).meta()["input"] is None


def test_plugin_route_error_constructors() -> None:
    assert (PluginRouteError.not_found().code, PluginRouteError.not_found().status) == (
        "NOT_FOUND",
        404,
    )
    err = PluginRouteError.conflict("dup", {"id": 1})
    assert (err.code, err.status, err.details, str(err)) == ("CONFLICT", 409, {"id": 1}, "dup")
    assert PluginRouteError("X", "m").status == 400
