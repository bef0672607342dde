from emdash._model._capabilities import (
    CAPABILITIES,
    CAPABILITY_ALIASES,
    expand_capabilities,
    normalize_capabilities,
    normalize_capability,
)


def test_vocabulary_sizes() -> None:
    assert len(CAPABILITIES) == 12
    assert len(CAPABILITY_ALIASES) == 10
    assert set(CAPABILITY_ALIASES.values()) <= set(CAPABILITIES)


def test_alias_maps_and_unknown_passes_through() -> None:
    assert normalize_capability("read:content") == "content:read"
    assert normalize_capability("page:inject") == "hooks.page-fragments:register"
    # own-key lookup only: object-ish names are not aliases
    assert normalize_capability("toString") == "toString"
    assert normalize_capability("__proto__") == "__proto__"


def test_normalize_dedupes_keeps_first_order_and_is_idempotent() -> None:
    src = ["network:fetch", "content:read", "network:request", "read:content"]
    once = normalize_capabilities(src)
    assert once == ["network:request", "content:read"]
    assert normalize_capabilities(once) == once
    assert src == ["network:fetch", "content:read", "network:request", "read:content"]


def test_three_implications() -> None:
    assert expand_capabilities(["content:write"]) == ["content:write", "content:read"]
    assert expand_capabilities(["write:media"]) == ["media:write", "media:read"]
    assert expand_capabilities(["network:fetch:any"]) == [
        "network:request:unrestricted",
        "network:request",
    ]
    # taxonomies are independent of content
    assert expand_capabilities(["taxonomies:read"]) == ["taxonomies:read"]
