"""The harness accepts the route forms a user types: a name, ``/name``, or the served path."""

from __future__ import annotations

import pytest

from emdash.testing import HarnessFactory, PluginHarness

from .conftest import WritePlugin

SOURCE = """
    from emdash import define_plugin


    def echo(route_ctx, ctx):
        return {"input": route_ctx["input"], "method": route_ctx["request"]["method"]}


    plugin = define_plugin(routes={"echo": echo, "nested/path": echo})
"""


def test_client_takes_names_and_paths(
    plugin_harness: HarnessFactory, both_modes: str, write_plugin: WritePlugin
) -> None:
    h = plugin_harness(write_plugin("echoer", SOURCE), sandbox=both_modes)
    client = h.client()
    for url in (
        "echo",
        "/echo",
        "/_emdash/api/plugins/echoer/echo",
        "_emdash/api/plugins/echoer/echo",
        "/api/plugins/echoer/echo",
        "http://testserver/_emdash/api/plugins/echoer/echo",
    ):
        response = client.post(url, json={"a": 1})
        assert response.status_code == 200, (url, response.text)
        assert response.json()["data"] == {"input": {"a": 1}, "method": "POST"}, url
    assert client.get("/_emdash/api/plugins/echoer/nested/path?x=1").json()["data"] == {
        "input": {"x": "1"},
        "method": "GET",
    }
    # Another plugin's path is that plugin's route (here: none), never this one's.
    assert client.post("/_emdash/api/plugins/other/echo").status_code == 404
    for name in ("echo", "/echo", "/_emdash/api/plugins/echoer/echo"):
        assert h.route(name, {"b": 2}) == {"input": {"b": 2}, "method": "POST"}


@pytest.mark.anyio
async def test_async_client_takes_paths(write_plugin: WritePlugin) -> None:
    with PluginHarness(write_plugin("echoer", SOURCE), sandbox=False) as h:
        async with h.async_client() as client:
            response = await client.put("/_emdash/api/plugins/echoer/echo", json={"k": "v"})
    assert response.json()["data"] == {"input": {"k": "v"}, "method": "PUT"}
