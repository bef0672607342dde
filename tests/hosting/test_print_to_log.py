"""print() in a plugin becomes its log lines at info level ("print: ..."), in both modes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import emdash

SOURCE = """
from emdash import define_plugin


def saved(event, ctx):
    print("saved", event["content"]["id"], sep=": ")
    print("two\\nlines")
    print("no newline", end="")
    ctx.log.info("from ctx.log")


def boom(route_ctx, ctx):
    print("before the error")
    raise ValueError("boom")


def flood(route_ctx, ctx):
    for i in range(1000):
        print(i)
    return "done"


plugin = define_plugin(
    hooks={"content:afterSave": saved},
    routes={"boom": boom, "flood": flood},
)
"""
SAVE = {"content": {"id": "c1", "title": "T"}, "collection": "posts", "isNew": True}


def plugin_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "emdash.plugins.printer"]


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "native"])
def test_print_is_logged_like_ctx_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sandboxed: bool
) -> None:
    plugin = tmp_path / "printer"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        'id = "printer"\nentrypoint = "plugin.py"\ncapabilities = ["content:read"]\n'
    )
    (plugin / "plugin.py").write_text(SOURCE)
    with emdash.Runtime(tmp_path / "site.db") as rt, caplog.at_level(logging.INFO):
        rt.add_plugin(plugin, trusted=not sandboxed)
        assert rt.run_hook("content:afterSave", SAVE).ok
        assert plugin_lines(caplog) == [
            "[plugin:printer] print: saved: c1",
            "[plugin:printer] print: two",
            "[plugin:printer] print: lines",
            "[plugin:printer] print: no newline",
            "[plugin:printer] from ctx.log",
        ]
        assert all(r.levelno == logging.INFO for r in caplog.records if "print:" in r.message)

        caplog.clear()
        with pytest.raises(emdash.PluginError):
            rt.invoke_route("printer", "boom")
        assert plugin_lines(caplog) == ["[plugin:printer] print: before the error"]

        caplog.clear()
        if sandboxed:
            # Bounded like ctx.log: past the per-invocation line cap, each print costs a
            # subrequest, so a print loop ends instead of flooding the host.
            with pytest.raises(emdash.SubrequestLimitExceeded):
                rt.invoke_route("printer", "flood")
            assert len(plugin_lines(caplog)) <= 201
        else:
            assert rt.invoke_route("printer", "flood") == "done"
