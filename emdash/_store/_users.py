"""Users: the site's accounts, as plugins with ``users:read`` may see them.

A user leaves the store only as ``{"id", "email", "name", "role", "createdAt"}``; whatever
else the table holds (the normalised email, future credentials) is never returned. Emails
are unique case-insensitively (Unicode lower-casing, not just ASCII). Roles are EmDash's
numeric levels.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from .._shared._errors import BridgeError
from ._cursor import Keyset, OrderKey, fetch_page
from ._db import Db

__all__ = ["ROLES", "UserAccounts"]

ROLES = {10: "subscriber", 20: "contributor", 30: "author", 40: "editor", 50: "admin"}
_EMAIL_RE = re.compile(r"[^\s@]{1,64}@[^\s@]{1,255}")
_KEYSET = Keyset("users", [OrderKey("id", "id", desc=True)])


class UserAccounts:
    def __init__(self, db: Db) -> None:
        self._db = db

    def create(self, email: str, name: str | None, role: int = 10) -> dict[str, Any]:
        email = _email(email)
        role = _role(role)
        if name is not None and type(name) is not str:
            raise BridgeError("User name must be a string")
        user_id = self._db.new_id()
        try:
            with self._db.transaction():
                self._db.execute(
                    "INSERT INTO _emdash_users (id, email, email_norm, name, role, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (user_id, email, email.lower(), name, role, self._db.now()),
                )
        except sqlite3.IntegrityError:
            raise BridgeError(f'A user with email "{email}" already exists') from None
        found = self.get(user_id)
        assert found is not None
        return found

    def get(self, id: str) -> dict[str, Any] | None:
        if type(id) is not str:
            raise BridgeError("Missing required string parameter: id")
        row = self._db.row("SELECT * FROM _emdash_users WHERE id = ?", (id,))
        return None if row is None else _user(row)

    def get_by_email(self, email: str) -> dict[str, Any] | None:
        if type(email) is not str:
            raise BridgeError("Missing required string parameter: email")
        row = self._db.row("SELECT * FROM _emdash_users WHERE email_norm = ?", (email.lower(),))
        return None if row is None else _user(row)

    def list(
        self, *, role: int | None = None, limit: object = 50, cursor: object = None
    ) -> dict[str, Any]:
        """``{"items", "nextCursor"?}`` newest first (note: no ``hasMore``, as in EmDash)."""
        filters: tuple[str, tuple[Any, ...]] = ("1", ())
        if role is not None:
            filters = ("role = ?", (_role(role),))
        page = fetch_page(
            self._db,
            _KEYSET,
            columns="*",
            table="_emdash_users",
            scope=("1", ()),
            filters=filters,
            limit=limit,
            cursor=cursor,
        )
        out: dict[str, Any] = {"items": [_user(r) for r in page.rows]}
        if page.cursor is not None:
            out["nextCursor"] = page.cursor
        return out

    def set_role(self, id: str, role: int) -> dict[str, Any] | None:
        role = _role(role)
        with self._db.transaction():
            self._db.execute("UPDATE _emdash_users SET role = ? WHERE id = ?", (role, str(id)))
        return self.get(id)


def _user(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "createdAt": row["created_at"],
    }


def _email(value: object) -> str:
    if type(value) is not str or not _EMAIL_RE.fullmatch(value):
        raise BridgeError(f'Invalid email address "{str(value)[:64]}"')
    return value


def _role(value: object) -> int:
    if type(value) is not int or value not in ROLES:
        raise BridgeError(
            f"Invalid role {str(value)[:16]}: must be one of "
            + ", ".join(f"{n} ({label})" for n, label in ROLES.items())
        )
    return value
