"""Members of hashlib, hmac, uuid and secrets.

* hashlib: the named constructors only. ``new(name)`` and ``file_digest`` are left out
  (``file_digest`` reads from file objects; the named constructors cover every guaranteed
  algorithm). ``algorithms_guaranteed`` is the real frozenset: immutable.
* uuid: ``uuid1`` is left out: it looks up the host's MAC address, which can spawn
  ``ifconfig``-style helpers and discloses host identity.
* secrets: wrapped around a private ``SystemRandom`` so no bound method exposes the module's
  shared instance.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import uuid
from collections.abc import Sequence
from typing import TypeVar

_T = TypeVar("_T")

_HASHES = (
    "md5",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sha3_224",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "shake_128",
    "shake_256",
    "blake2b",
    "blake2s",
)


def hashlib_members() -> dict[str, object]:
    members: dict[str, object] = {name: getattr(hashlib, name) for name in _HASHES}
    members["pbkdf2_hmac"] = hashlib.pbkdf2_hmac
    members["algorithms_guaranteed"] = frozenset(hashlib.algorithms_guaranteed)
    return members


def hashlib_constructors() -> tuple[str, ...]:
    """Names of the hash constructors (``preload()`` warms each one up)."""
    return _HASHES


def hmac_members() -> dict[str, object]:
    return {"new": hmac.new, "digest": hmac.digest, "compare_digest": hmac.compare_digest}


def uuid_members() -> dict[str, object]:
    names = (
        "UUID",
        "uuid3",
        "uuid4",
        "uuid5",
        "NAMESPACE_DNS",
        "NAMESPACE_URL",
        "NAMESPACE_OID",
        "NAMESPACE_X500",
    )
    return {name: getattr(uuid, name) for name in names}


_SYSTEM_RANDOM = random.SystemRandom()


def _choice(seq: Sequence[_T]) -> _T:
    """Pick one element of a non-empty sequence using the OS random source."""
    return _SYSTEM_RANDOM.choice(seq)


def _randbelow(exclusive_upper_bound: int) -> int:
    """A random int in ``range(exclusive_upper_bound)`` from the OS random source."""
    if type(exclusive_upper_bound) is not int or exclusive_upper_bound <= 0:
        raise ValueError("Upper bound must be a positive int.")
    return _SYSTEM_RANDOM.randrange(exclusive_upper_bound)


def _randbits(k: int) -> int:
    """An int with ``k`` random bits from the OS random source."""
    return _SYSTEM_RANDOM.getrandbits(k)


_choice.__name__ = _choice.__qualname__ = "choice"
_randbelow.__name__ = _randbelow.__qualname__ = "randbelow"
_randbits.__name__ = _randbits.__qualname__ = "randbits"


def secrets_members() -> dict[str, object]:
    return {
        "token_bytes": secrets.token_bytes,
        "token_hex": secrets.token_hex,
        "token_urlsafe": secrets.token_urlsafe,
        "compare_digest": secrets.compare_digest,
        "choice": _choice,
        "randbelow": _randbelow,
        "randbits": _randbits,
    }
