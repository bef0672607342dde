"""examples/emdash.toml: the sample site config loads every example plugin, sandboxed."""

from __future__ import annotations

import os
from pathlib import Path

from emdash._cli._config import load_config, open_runtime

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "emdash.toml"


def test_the_example_site_config_opens_with_all_examples(tmp_path: Path) -> None:
    config = load_config(CONFIG)
    assert config.sandbox is True
    assert [p.path for p in config.plugins] == [
        "hello",
        "seo-check",
        "audit-trail",
        "og-metadata",
        "webhook-notifier",
        "forms",
    ]
    # Same config, but a database outside the source tree.
    local = config.model_copy(
        update={"database": str(tmp_path / "site.db"), "media_dir": str(tmp_path / "media")}
    )
    with open_runtime(local) as rt:
        modes = {p["id"]: (p["mode"], p["enabled"]) for p in rt.plugins()}
        assert modes == {
            pid: ("sandboxed", True)
            for pid in (
                "plugin-hello",
                "seo-check",
                "audit-trail",
                "og-metadata",
                "webhook-notifier",
                "forms",
            )
        }
        assert rt.limits.cpu_ms == 100
        item = rt.content.create("posts", {"title": "From the example site"})
        assert item["data"]["slug"] == "from-the-example-site"
    os.environ["EMDASH_API_TOKEN"] = "example-token-0123456789"
    assert config.token() == "example-token-0123456789"
