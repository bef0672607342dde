"""Audit records whose text has no UTF-8 form (lone surrogates) are still stored.

One such record used to make every flush of the buffer raise ``UnicodeEncodeError``,
at close too, and the records buffered with it were lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import emdash
from emdash._store import Store

SOURCE = """
from emdash import define_plugin


def shout(route_ctx, ctx):
    ctx.log.info("half a pair: \\udc80")
    raise ValueError("bad text \\ud800 here")


def fine(route_ctx, ctx):
    ctx.kv.set("k", 1)
    ctx.log.warn("lone \\udfff")
    return "ok"


plugin = define_plugin(routes={"shout": shout, "fine": fine})
"""


def test_every_text_field_is_made_storable(tmp_path: Path) -> None:
    with Store(tmp_path / "site.db") as store:
        store.audit_records.flush_after_s = None
        store.audit_records.record(
            "p\ud800",
            "route",
            "r\udc00",
            "error",
            1.0,
            limit="cpu\udfff",
            error="boom \ud800",
            logs=json.dumps([{"level": "info", "message": "x\udc80"}], ensure_ascii=False),
        )
        store.audit_records.record("p", "route", "plain", "ok", 1.0)
        assert store.audit_records.flush() == 2  # both: the bad one takes no one down
        plain, bad = store.audit_records.list()
    assert plain["name"] == "plain"
    assert (bad["pluginId"], bad["name"], bad["error"]) == ("p\ufffd", "r\ufffd", "boom \ufffd")
    assert bad["logs"] == [{"level": "info", "message": "x\ufffd"}]


def _write(root: Path, source: str) -> Path:
    plugin = root / "shouter"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text('id = "shouter"\nentrypoint = "plugin.py"\n')
    (plugin / "plugin.py").write_text(source)
    return plugin


def test_a_trusted_plugin_raising_and_logging_lone_surrogates(tmp_path: Path) -> None:
    plugin = _write(tmp_path, SOURCE)
    rt = emdash.Runtime(tmp_path / "site.db")
    try:
        rt.add_plugin(plugin, trusted=True)
        with pytest.raises(emdash.PluginError) as info:
            rt.invoke_route("shouter", "shout")
        assert "bad text \\ud800 here" in str(info.value)
        # A committing invocation writes the buffered records in its own transaction.
        assert rt.invoke_route("shouter", "fine") == "ok"
    finally:
        rt.close()  # raised UnicodeEncodeError here
    with emdash.Runtime(tmp_path / "site.db") as rt:
        fine, shout = [r for r in rt.audit_log(limit=20) if r["kind"] == "route"]
    # Plugin text is cleaned as control characters are: escaped, visible to the operator.
    assert (fine["name"], fine["outcome"]) == ("fine", "ok")
    assert [line["message"] for line in fine["logs"]] == ["lone \\udfff"]
    assert shout["outcome"] == "error"
    assert shout["error"].endswith("bad text \\ud800 here")
    assert [line["message"] for line in shout["logs"]] == ["half a pair: \\udc80"]


def test_a_sandboxed_plugin_raising_a_lone_surrogate(tmp_path: Path) -> None:
    plugin = _write(
        tmp_path,
        "from emdash import define_plugin\n\n\n"
        "def shout(route_ctx, ctx):\n"
        "    raise ValueError('bad text \\ud800 here')\n\n\n"
        "plugin = define_plugin(routes={'shout': shout})\n",
    )
    with emdash.Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(plugin)
        with pytest.raises(emdash.EmDashError):
            rt.invoke_route("shouter", "shout")
    with emdash.Runtime(tmp_path / "site.db") as rt:
        (shout,) = [r for r in rt.audit_log(limit=20) if r["kind"] == "route"]
    assert shout["outcome"] == "error"
    assert "\ud800" not in shout["error"]


def test_a_sandboxed_plugin_logging_lone_surrogates_is_logged_as_a_trusted_one(
    tmp_path: Path,
) -> None:
    # The worker cannot send a lone surrogate (it has no UTF-8 form): ctx.log escapes it
    # first, as the host does for a trusted plugin, instead of failing the call.
    plugin = _write(tmp_path, SOURCE)
    with emdash.Runtime(tmp_path / "site.db") as rt:
        rt.add_plugin(plugin)
        assert rt.invoke_route("shouter", "fine") == "ok"
        with pytest.raises(emdash.EmDashError):
            rt.invoke_route("shouter", "shout")
    with emdash.Runtime(tmp_path / "site.db") as rt:
        shout, fine = [r for r in rt.audit_log(limit=20) if r["kind"] == "route"]
    assert (fine["name"], fine["outcome"]) == ("fine", "ok")
    assert [line["message"] for line in fine["logs"]] == ["lone \\udfff"]
    assert [line["message"] for line in shout["logs"]] == ["half a pair: \\udc80"]
