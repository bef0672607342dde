"""Users: the exposed shape, case-insensitive email, roles, and id-desc paging."""

from __future__ import annotations

import pytest

from emdash._shared._errors import BridgeError, InvalidCursorError
from emdash._store import Store


def test_create_and_get(store: Store) -> None:
    user = store.user_accounts.create("Ada@Example.com", "Ada", 50)
    assert set(user) == {"id", "email", "name", "role", "createdAt"}
    assert user | {"id": "-"} == {
        "id": "-",
        "email": "Ada@Example.com",
        "name": "Ada",
        "role": 50,
        "createdAt": "2026-11-22T05:33:24.123Z",
    }
    assert store.user_accounts.get(user["id"]) == user
    assert store.user_accounts.get("missing") is None


def test_get_by_email_is_case_insensitive(store: Store) -> None:
    user = store.user_accounts.create("Ada@Example.com", "Ada")
    assert store.user_accounts.get_by_email("ada@example.COM") == user
    assert store.user_accounts.get_by_email("ÄDA@example.com") is None
    umlaut = store.user_accounts.create("Ärger@example.com", None)
    assert store.user_accounts.get_by_email("ärger@EXAMPLE.com") == umlaut
    assert umlaut["role"] == 10 and umlaut["name"] is None


def test_duplicate_email_is_refused(store: Store) -> None:
    store.user_accounts.create("a@x.org", "A")
    with pytest.raises(BridgeError) as info:
        store.user_accounts.create("A@X.ORG", "B")
    assert str(info.value) == 'A user with email "A@X.ORG" already exists'


@pytest.mark.parametrize("role", [0, 15, 60, "50", True, None])
def test_roles_are_validated(store: Store, role: object) -> None:
    with pytest.raises(BridgeError) as info:
        store.user_accounts.create("a@x.org", "A", role)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"Invalid role {role}: must be one of 10 (subscriber), 20 (contributor), "
        "30 (author), 40 (editor), 50 (admin)"
    )


@pytest.mark.parametrize("email", ["", "nobody", "a b@x.org", "a@b@c", 5])
def test_emails_are_validated(store: Store, email: object) -> None:
    with pytest.raises(BridgeError, match="^Invalid email address"):
        store.user_accounts.create(email, "A")  # type: ignore[arg-type]


def test_list_pages_newest_first_with_role_filter(store: Store) -> None:
    users = [
        store.user_accounts.create(f"u{i}@x.org", f"U{i}", [10, 30, 50][i % 3]) for i in range(11)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.user_accounts.list(limit=4, cursor=cursor)
        assert "hasMore" not in page
        pages += 1
        seen.extend(u["id"] for u in page["items"])
        if "nextCursor" not in page:
            break
        cursor = page["nextCursor"]
    assert pages == 3
    assert seen == [u["id"] for u in reversed(users)]
    authors = store.user_accounts.list(role=30)
    assert [u["email"] for u in authors["items"]] == [
        "u10@x.org",
        "u7@x.org",
        "u4@x.org",
        "u1@x.org",
    ]
    assert "nextCursor" not in authors
    assert len(store.user_accounts.list(limit=0)["items"]) == 1
    with pytest.raises(InvalidCursorError):
        store.user_accounts.list(cursor="garbage")
    with pytest.raises(BridgeError, match="^Invalid role 11"):
        store.user_accounts.list(role=11)


def test_set_role(store: Store) -> None:
    user = store.user_accounts.create("a@x.org", "A")
    assert store.user_accounts.set_role(user["id"], 40)["role"] == 40  # type: ignore[index]
