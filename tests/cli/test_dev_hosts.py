"""Development private hosts in ``emdash.toml`` and ``check``'s warnings about unreachable
``allowedHosts`` entries."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from emdash._bridge._hosts import unreachable_allowed_hosts
from emdash._cli._config import load_config
from emdash._shared._errors import ConfigError
from emdash.cli import main


def write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "emdash.toml"
    config.write_text(text)
    return config


def test_dev_private_hosts_need_the_development_environment(tmp_path: Path) -> None:
    dev = '[dev]\nallow_private_hosts = ["localhost:8080"]\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, dev))
    assert "dev.allow_private_hosts is refused in production" in str(info.value)
    assert 'environment = "development"' in str(info.value)
    with pytest.raises(ConfigError, match="refused in production"):
        load_config(write(tmp_path, 'environment = "production"\n' + dev))

    config = load_config(write(tmp_path, 'environment = "development"\n' + dev))
    assert config.dev.allow_private_hosts == ["localhost:8080"]
    # Production is the default, and an empty [dev] is harmless there.
    assert load_config(write(tmp_path, "[dev]\n")).environment == "production"


def test_dev_private_host_entries_are_validated(tmp_path: Path) -> None:
    text = 'environment = "development"\n[dev]\nallow_private_hosts = ["*.local"]\n'
    with pytest.raises(ConfigError, match="no wildcard"):
        load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match="environment: Input should be"):
        load_config(write(tmp_path, 'environment = "staging"\n'))


def test_the_site_runtime_gets_the_dev_hosts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from emdash._cli._config import open_runtime

    config = load_config(
        write(
            tmp_path,
            'database = "site.db"\nenvironment = "development"\n'
            '[dev]\nallow_private_hosts = ["127.0.0.1:8080"]\n',
        )
    )
    caplog.set_level(logging.WARNING, logger="emdash")
    with open_runtime(config):
        pass
    assert [r.getMessage() for r in caplog.records] == [
        "DEVELOPMENT: plugins may fetch the private hosts 127.0.0.1:8080 (allow_private_hosts); "
        "the SSRF protection is off for them. Never do this on a production site."
    ]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is not a public address"),
        ("10.1.2.3:8080", "10.1.2.3 is not a public address"),
        ("169.254.169.254", "169.254.169.254 is not a public address"),
        ("0x7f.1", "127.0.0.1 is not a public address"),
        ("localhost", "internal hostname localhost is blocked"),
        ("*.localhost", "internal hostname localhost is blocked"),
        ("printer.local", "internal hostname printer.local is blocked"),
        ("metadata.google.internal", "internal hostname metadata.google.internal is blocked"),
        ("api..example.com", "not a valid host name"),
        ("-bad-.example.com", "not a valid host name"),
        ("1.2.3.999", "IPv4 address out of range"),
        ("*.10.0.0.1", "a wildcard cannot apply to an IP address"),
        ("api.example.com:0", "is not a TCP port"),
    ],
)
def test_unreachable_allowed_hosts(entry: str, reason: str) -> None:
    (line,) = unreachable_allowed_hosts([entry])
    # Private and internal hosts are reachable from a development site that exempts them
    # (the entry must stay in allowedHosts for that); malformed entries from nowhere.
    dev_reachable = "public address" in reason or "internal hostname" in reason
    if dev_reachable:
        assert line.startswith(f'allowedHosts entry "{entry}" is refused on a production site: ')
        assert "[dev] allow_private_hosts" in line
        assert "instead" not in line
    else:
        assert line.startswith(f'allowedHosts entry "{entry}" can never be reached: ')
        assert "allow_private_hosts" not in line
    assert reason in line


def test_reachable_allowed_hosts_pass() -> None:
    hosts = ["*", "api.example.com", "*.example.com", "api.example.com:8443", "93.184.216.34"]
    assert unreachable_allowed_hosts(hosts) == []


def test_check_warns_about_unreachable_hosts(tmp_path: Path) -> None:
    plugin = tmp_path / "p"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        'id = "p"\nversion = "1.0.0"\nentrypoint = "plugin.py"\n'
        'capabilities = ["network:request"]\nallowedHosts = ["localhost:8080", "api.example.com"]\n'
    )
    (plugin / "plugin.py").write_text(
        "from emdash import define_plugin\nplugin = define_plugin()\n"
    )
    result = CliRunner().invoke(main, ["check", str(plugin)])
    assert result.exit_code == 0, result.output  # a warning, not an error
    warning = (
        'emdash-plugin.toml: warning: allowedHosts entry "localhost:8080" is refused on a '
        "production site: internal hostname localhost is blocked for plugins (only a "
        "development site reaches it, by also listing it in emdash.toml [dev] "
        'allow_private_hosts (with environment = "development"); a production site refuses '
        "every request to it)"
    )
    assert result.stderr.splitlines() == [warning]
