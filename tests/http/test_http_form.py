"""``ctx.http.fetch(data=...)``: form fields sent URL-encoded, as EmDash's wrapper sends
``URLSearchParams`` (text body plus one form content-type, appended only when the caller set
none). Both modes, against the real local HTTP server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import emdash
from emdash._bridge._http import HttpClient

from .conftest import Server

SOURCE = """
from emdash import define_plugin

def post(route_ctx, ctx):
    given = route_ctx["input"]
    response = ctx.http.fetch(
        given["url"], method="POST", data=given["data"], headers=given.get("headers")
    )
    return response.json()

plugin = define_plugin(routes={"post": post})
"""


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "sandboxed"])
def test_form_data_reaches_the_server_url_encoded(
    tmp_path: Path, server: Server, trusted: bool
) -> None:
    with emdash.Runtime(tmp_path / "site.db") as rt:
        # Test-only wiring: let this bridge reach the local server.
        rt.bridge.http = HttpClient(allow_private=["127.0.0.1"], timeout=5.0)
        rt.add_plugin(
            {"id": "form", "capabilities": ["network:request"], "allowedHosts": ["127.0.0.1"]},
            source={"plugin.py": SOURCE},
            trusted=trusted,
        )
        url = f"{server.base}/echo"
        seen = rt.invoke_route(
            "form", "post", input={"url": url, "data": {"a": "1", "q": "x y&z", "é": "ü"}}
        )
        assert seen["method"] == "POST"
        assert base64.b64decode(seen["body"]) == b"a=1&q=x+y%26z&%C3%A9=%C3%BC"
        types = [v for k, v in seen["headers"] if k == "content-type"]
        assert types == ["application/x-www-form-urlencoded"]

        # Repeated names as pairs; the caller's content-type is kept and not doubled.
        seen = rt.invoke_route(
            "form",
            "post",
            input={
                "url": url,
                "data": [["t", "1"], ["t", "2"]],
                "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            },
        )
        assert base64.b64decode(seen["body"]) == b"t=1&t=2"
        types = [v for k, v in seen["headers"] if k == "content-type"]
        assert types == ["application/x-www-form-urlencoded; charset=utf-8"]
