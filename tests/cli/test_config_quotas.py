"""emdash.toml ``[quotas]``, a plugin entry's ``quotas`` and ``[audit]`` reach the runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emdash import Quotas
from emdash._cli._config import ConfigError, load_config, open_runtime
from emdash._store._quotas import AuditRetention

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quotas_and_retention_from_the_config_file(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
    shutil.copytree(EXAMPLES / "forms", tmp_path / "forms")
    cfg = tmp_path / "emdash.toml"
    cfg.write_text(
        """
database = "site.db"

[quotas]
stored_rows = 500
log_bytes_per_minute = 4096

[audit]
max_age_days = 7
max_rows = 5000

[[plugins]]
path = "hello"
quotas = { stored_bytes = 1000 }

[[plugins]]
path = "forms"
""",
        encoding="utf-8",
    )
    config = load_config(cfg)
    site_default = Quotas(stored_rows=500, log_bytes_per_minute=4096)
    assert config.quotas == site_default
    # The entry's own keys win; the keys it leaves out come from [quotas], not the defaults.
    assert config.plugin_quotas() == {
        "plugin-hello": Quotas(stored_bytes=1000, stored_rows=500, log_bytes_per_minute=4096)
    }
    with open_runtime(config, sandbox=False) as rt:
        assert rt.store.quotas.for_plugin("plugin-hello").stored_bytes == 1000
        assert rt.store.quotas.for_plugin("forms") == site_default
        assert rt.store.audit_records.retention == AuditRetention(max_age_days=7, max_rows=5000)


def test_quota_keys_are_validated_strictly(tmp_path: Path) -> None:
    cfg = tmp_path / "emdash.toml"
    cfg.write_text("[quotas]\nstored_byte = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="quotas.stored_byte: unknown key"):
        load_config(cfg)
    cfg.write_text("[quotas]\nstored_rows = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="quotas.stored_rows"):
        load_config(cfg)


def test_defaults_without_any_quota_keys(tmp_path: Path) -> None:
    config = load_config(_empty(tmp_path))
    assert config.quotas == Quotas()
    assert (Quotas().stored_bytes, Quotas().stored_rows, Quotas().log_bytes_per_minute) == (
        64 * 1024 * 1024,
        100_000,
        1024 * 1024,
    )
    assert config.audit == AuditRetention()


def _empty(tmp_path: Path) -> Path:
    cfg = tmp_path / "emdash.toml"
    cfg.write_text('database = "site.db"\n', encoding="utf-8")
    return cfg
