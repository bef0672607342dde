import pytest

from emdash._shared._hooks_catalog import HOOK_NAMES, HOOKS, hook_spec


def test_there_are_25_hooks_with_emdash_names() -> None:
    assert len(HOOK_NAMES) == 25
    assert "content:afterUnschedule" in HOOKS and "page:fragments" in HOOKS


@pytest.mark.parametrize(
    ("name", "cap"),
    [
        ("content:beforeSave", "content:write"),
        ("content:afterSave", "content:read"),
        ("content:beforeDelete", "content:read"),
        ("media:beforeUpload", "media:write"),
        ("media:afterUpload", "media:read"),
        ("comment:moderate", "users:read"),
        ("email:deliver", "hooks.email-transport:register"),
        ("email:beforeSend", "hooks.email-events:register"),
        ("page:fragments", "hooks.page-fragments:register"),
        ("page:metadata", None),
        ("cron", None),
        ("plugin:install", None),
    ],
)
def test_required_capabilities(name: str, cap: str | None) -> None:
    assert HOOKS[name].capability == cap


def test_families_and_chain_keys() -> None:
    assert HOOKS["content:beforeSave"].family == "chain"
    assert HOOKS["content:beforeSave"].chain_key == "content"
    assert HOOKS["media:beforeUpload"].chain_key == "file"
    assert HOOKS["content:beforeDelete"].family == "veto"
    assert HOOKS["email:beforeSend"].family == "middleware"
    assert HOOKS["email:beforeSend"].chain_key == "message"
    assert HOOKS["comment:beforeCreate"].chain_key is None
    assert {HOOKS[n].family for n in ("email:deliver", "comment:moderate")} == {"exclusive"}
    assert all(HOOKS[n].deferred for n in HOOK_NAMES if n.startswith("content:after"))


def test_unknown_hook_lists_valid_names() -> None:
    with pytest.raises(
        KeyError, match='Unknown hook "content:beforeSav". Valid hooks: plugin:install'
    ):
        hook_spec("content:beforeSav")
