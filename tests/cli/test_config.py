"""emdash.toml: loading, strict validation, secrets from the environment, and editing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from emdash import Limits
from emdash._cli._config import (
    ConfigError,
    add_plugin_entry,
    find_entry,
    load_config,
    remove_plugin_entry,
    set_plugin_enabled,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config_loads_and_resolves_paths_against_its_directory(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "emdash.toml",
        """
database = "data/site.db"
media_dir = "uploads"
sandbox = false
api_token = "0123456789abcdef0123"

[site]
name = "Blog"
url = "https://blog.example/"
locale = "de"

[limits]
cpu_ms = 250
subrequests = 20

[[plugins]]
path = "plugins/hello"
trusted = true

[[plugins]]
path = "/abs/other"
enabled = false
""",
    )
    config = load_config(cfg)
    assert config.database_path() == str(tmp_path / "data" / "site.db")
    assert config.media_path() == tmp_path / "uploads"
    assert config.sandbox is False
    assert config.token() == "0123456789abcdef0123"
    # One trailing slash is dropped, as EmDash does, so ctx.url("/x") never has "//".
    assert config.site_info() == {"name": "Blog", "url": "https://blog.example", "locale": "de"}
    assert config.limits == Limits(cpu_ms=250, subrequests=20)
    assert [(p.path, p.trusted, p.enabled) for p in config.plugins] == [
        ("plugins/hello", True, True),
        ("/abs/other", False, False),
    ]
    assert config.plugin_path(config.plugins[0]) == tmp_path / "plugins" / "hello"
    assert config.plugin_path(config.plugins[1]) == Path("/abs/other")


def test_defaults_when_the_default_file_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.source is None
    assert config.database_path() == str(tmp_path / "emdash.db")
    assert config.sandbox is True
    assert config.token() is None
    assert config.plugins == []
    assert config.site_info() == {"name": "", "url": "", "locale": "en"}


def test_memory_database_is_kept_verbatim(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "e.toml", 'database = ":memory:"\n'))
    assert config.database_path() == ":memory:"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert (
        str(info.value)
        == f"Config file {tmp_path / 'nope.toml'} does not exist; create it or drop --config"
    )


def test_unknown_keys_are_rejected_with_their_location(tmp_path: Path) -> None:
    cfg = write(tmp_path / "emdash.toml", 'databse = "x.db"\n[site]\nnmae = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value) == (
        f"Invalid config file {cfg}: site.nmae: unknown key (check the spelling; see: emdash "
        "help config); databse: unknown key (check the spelling; see: emdash help config)"
    )


def test_site_locales(tmp_path: Path) -> None:
    cfg = write(tmp_path / "a.toml", '[site]\nlocales = ["fr", "zh-TW"]\n')
    # The first configured locale is the default when "locale" is left out.
    assert load_config(cfg).site_info() == {
        "name": "",
        "url": "",
        "locale": "fr",
        "locales": ["fr", "zh-TW"],
    }
    bad = write(tmp_path / "b.toml", '[site]\nlocale = "de"\nlocales = ["fr"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert 'site locale: Locale "de" is not configured for this site' in str(info.value)


def test_computed_fields_cannot_be_set_from_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "emdash.toml", 'base_dir = "/etc"\n')
    with pytest.raises(ConfigError, match="base_dir: unknown key"):
        load_config(cfg)


def test_invalid_toml_and_bad_values(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "database = \n")
    with pytest.raises(ConfigError, match=r"^Config file .*bad.toml is not valid TOML: "):
        load_config(bad)
    cfg = write(tmp_path / "v.toml", '[site]\nurl = "ftp://x"\n[limits]\ncpu_ms = -1\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "site.url: site url 'ftp://x' must start with http:// or https://" in str(info.value)
    assert "limits.cpu_ms: Input should be greater than 0" in str(info.value)


def test_short_literal_token_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.toml", 'api_token = "short"\n')
    with pytest.raises(ConfigError, match="api_token: api_token must be at least 16 characters"):
        load_config(cfg)


def test_token_from_environment(tmp_path: Path) -> None:
    cfg = write(tmp_path / "t.toml", 'api_token = { "$env" = "EMDASH_TEST_TOKEN" }\n')
    config = load_config(cfg)
    with pytest.raises(ConfigError) as info:
        config.token()
    assert str(info.value) == (
        f"{cfg.resolve()}: api_token refers to environment variable EMDASH_TEST_TOKEN, "
        "which is not set; export it or remove api_token"
    )
    os.environ["EMDASH_TEST_TOKEN"] = "from-the-environment-123"
    assert config.token() == "from-the-environment-123"
    # --json output never shows a secret.
    assert config.describe()["api_token"] == {"$env": "EMDASH_TEST_TOKEN"}


def test_describe_redacts_a_literal_token(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "t.toml", 'api_token = "0123456789abcdef"\n'))
    described = config.describe()
    assert described["api_token"] == "(redacted)"
    assert "0123456789abcdef" not in repr(described)


def copy_example(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(EXAMPLES / name, target)
    return target


def test_editing_the_plugin_list_keeps_comments_and_validates(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "emdash.toml",
        '# my site\ndatabase = "site.db"  # the db\n\n[site]\nname = "S"\n',
    )
    hello = copy_example("hello", tmp_path)
    forms = copy_example("forms", tmp_path)

    descriptor = add_plugin_entry(load_config(cfg), hello, trusted=False)
    assert descriptor.id == "plugin-hello"
    add_plugin_entry(load_config(cfg), forms, trusted=True)
    text = cfg.read_text()
    assert text.startswith('# my site\ndatabase = "site.db"  # the db\n')
    config = load_config(cfg)
    assert [(p.path, p.trusted, p.enabled) for p in config.plugins] == [
        ("hello", False, True),
        ("forms", True, True),
    ]
    assert find_entry(config, "forms") == 1

    set_plugin_enabled(config, "plugin-hello", False)
    config = load_config(cfg)
    assert config.plugins[0].enabled is False

    removed = remove_plugin_entry(config, "plugin-hello")
    assert removed.path == "hello"
    config = load_config(cfg)
    assert [p.path for p in config.plugins] == ["forms"]
    remove_plugin_entry(config, "forms")
    config = load_config(cfg)
    assert config.plugins == []
    assert "[[plugins]]" not in cfg.read_text()
    assert cfg.read_text().startswith("# my site\n")


def test_adding_the_same_plugin_twice_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path / "emdash.toml", "")
    hello = copy_example("hello", tmp_path)
    add_plugin_entry(load_config(cfg), hello, trusted=False)
    with pytest.raises(ConfigError, match=r"^Plugin directory .*hello is already in ") as same:
        add_plugin_entry(load_config(cfg), hello, trusted=False)
    assert str(same.value).endswith(
        "(plugin plugin-hello); to change how it runs (--trusted or not), emdash plugins "
        "remove plugin-hello (its data stays), then add it again; for a new version: "
        "emdash plugins upgrade plugin-hello"
    )
    clone = tmp_path / "hello-copy"
    shutil.copytree(hello, clone)
    with pytest.raises(ConfigError) as info:
        add_plugin_entry(load_config(cfg), clone, trusted=False)
    assert str(info.value) == (
        f'A plugin with id "plugin-hello" is already installed (from {hello}); to install '
        f"this copy as its new version: emdash plugins upgrade plugin-hello {clone}; or "
        "remove it first with: emdash plugins remove plugin-hello"
    )
    assert len(load_config(cfg).plugins) == 1


def test_unknown_plugin_id_lists_the_installed_ones(tmp_path: Path) -> None:
    cfg = write(tmp_path / "emdash.toml", "")
    add_plugin_entry(load_config(cfg), copy_example("hello", tmp_path), trusted=False)
    with pytest.raises(ConfigError) as info:
        find_entry(load_config(cfg), "nope")
    assert str(info.value) == (
        f'No plugin with id "nope" in {cfg.resolve()} (installed: plugin-hello); '
        "see: emdash plugins list"
    )


def test_add_creates_the_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hello = copy_example("hello", tmp_path)
    add_plugin_entry(load_config(), hello, trusted=False)
    config = load_config(tmp_path / "emdash.toml")
    assert [p.path for p in config.plugins] == ["hello"]


def test_a_bad_descriptor_is_not_added(tmp_path: Path) -> None:
    cfg = write(tmp_path / "emdash.toml", "")
    plugin = tmp_path / "bad"
    plugin.mkdir()
    write(plugin / "emdash-plugin.toml", 'id = "Bad Id"\n')
    with pytest.raises(Exception, match="Invalid plugin id"):
        add_plugin_entry(load_config(cfg), plugin, trusted=False)
    assert cfg.read_text() == ""
