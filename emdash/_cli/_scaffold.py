"""``emdash init NAME``: a new plugin directory whose tests pass before it is edited.

It writes the descriptor, an entry module with one hook and one route, a test file that runs
every test sandboxed and then natively (the ``both_modes`` fixture of ``emdash.testing``),
and a README saying what to run next. Nothing existing is overwritten.
"""

from __future__ import annotations

from pathlib import Path

from .._model._descriptor import PLUGIN_ID_RE
from .._shared._errors import ConfigError
from ._output import DISTRIBUTION

__all__ = ["scaffold"]

_DESCRIPTOR = """\
# What this plugin is and what it may do: data, never code.
id = "{id}"
version = "0.1.0"
entrypoint = "plugin.py"
# content:afterSave needs content:read; ask for no more than the plugin uses.
capabilities = ["content:read"]
"""

_PLUGIN = '''\
"""{id}: counts saved content and reports the count on a route."""

from emdash import define_plugin


def after_save(event, ctx):
    """content:afterSave: count every save, and remember what was saved last."""
    count = (ctx.kv.get("saves") or 0) + 1
    ctx.kv.set("saves", count)
    ctx.kv.set("last", {{"collection": event["collection"], "id": event["content"]["id"]}})
    ctx.log.info("content saved", {{"count": count}})


def stats(route_ctx, ctx):
    """POST /_emdash/api/plugins/{id}/stats"""
    return {{"saves": ctx.kv.get("saves") or 0, "last": ctx.kv.get("last")}}


plugin = define_plugin(
    hooks={{"content:afterSave": after_save}},
    routes={{"stats": stats}},
)
'''

_TEST = '''\
"""Tests for {id}: each runs sandboxed, then natively (the both_modes fixture)."""

from pathlib import Path

from emdash.testing import HarnessFactory

PLUGIN = Path(__file__).resolve().parents[1]


def test_counts_saves(plugin_harness: HarnessFactory, both_modes: str) -> None:
    h = plugin_harness(PLUGIN, sandbox=both_modes)
    assert h.route("stats") == {{"saves": 0, "last": None}}
    item = h.runtime.content.create("posts", {{"title": "Hello"}})
    assert h.kv["saves"] == 1
    assert h.route("stats") == {{"saves": 1, "last": {{"collection": "posts", "id": item["id"]}}}}


def test_stats_over_http(plugin_harness: HarnessFactory, both_modes: str) -> None:
    h = plugin_harness(PLUGIN, sandbox=both_modes)
    response = h.client().post("/_emdash/api/plugins/{id}/stats")
    assert response.status_code == 200
    assert response.json() == {{"success": True, "data": {{"saves": 0, "last": None}}}}
'''

_README = """\
# {id}

A plugin for emdash, the EmDash CMS plugin runtime for Python
(`pip install '{dist}[test]'`; the import name is `emdash`).

- `emdash-plugin.toml`: id, version, entrypoint and the capabilities it asks for.
- `plugin.py`: the code. It runs sandboxed (restricted Python in a confined worker) unless
  the site adds it with `--trusted`.
- `tests/test_plugin.py`: each test runs sandboxed, then natively.

In this directory:

```sh
pytest tests                     # the plugin's tests, both modes
emdash check .                   # what `emdash plugins add` checks, plus run-time warnings
```

Then, from your site's directory (the one with its `emdash.toml`; a first `plugins add`
creates one there), not from this one, so the site's database stays out of the plugin:

```sh
emdash plugins add path/to/{id}
emdash run-hook content:afterSave --event '{{"content": {{"id": "1"}}, "collection": "posts", "isNew": true}}'
emdash route {id} stats          # its log lines show on stderr
emdash audit-log --logs          # every invocation, with its log lines
```
"""


def scaffold(name: str, parent: Path) -> Path:
    """Write a new plugin called ``name`` into ``parent/name``; return that directory."""
    if not PLUGIN_ID_RE.fullmatch(name) or len(name) > 64:
        raise ConfigError(
            f'"{name}" is not a valid plugin id: use lower-case letters, digits, "-" and "_", '
            "starting with a letter (at most 64 characters), e.g. word-count"
        )
    target = parent / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target} already exists and is not empty; pick another name or remove it"
        )
    files = {
        "emdash-plugin.toml": _DESCRIPTOR,
        "plugin.py": _PLUGIN,
        "tests/test_plugin.py": _TEST,
        "README.md": _README,
    }
    (target / "tests").mkdir(parents=True, exist_ok=True)
    for rel, template in files.items():
        (target / rel).write_text(template.format(id=name, dist=DISTRIBUTION), encoding="utf-8")
    return target
