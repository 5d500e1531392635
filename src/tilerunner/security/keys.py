"""API keys: their format, their hash, their scopes (pure: no I/O).

A key reads ``trk_<id>_<secret>``: ``trk_`` makes a leaked key recognisable (secret scanners,
log greps), ``<id>`` is a short public id (12 hex digits) that names the key in listings and
in ``keys revoke``, and ``<secret>`` is 32 random bytes from :mod:`secrets`, URL-safe base64.

Only a hash is stored. A plain SHA-256 of the whole key is enough here, and a slow password
hash (bcrypt, scrypt, argon2) would buy nothing but latency on every request: slow hashes exist
to stop offline guessing of low-entropy secrets chosen by people, and a 256-bit random secret
cannot be guessed however fast the hash is. A stolen table therefore yields no usable key.
Looking a key up by its hash is safe for the same reason: an index comparison may leak timing
about stored hashes, but knowing a hash does not help to find a key that hashes to it. The
final comparison still uses :func:`hmac.compare_digest`.

Scopes: ``submit`` (submit and cancel jobs), ``read`` (jobs, results, models, workers,
metrics), ``worker`` (the work protocol), ``admin`` (every other scope). A key belongs to one
project and sees only that project's jobs, whatever its scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from tilerunner.errors import (
    AuthenticationError,
    InvalidRequestError,
    PermissionDeniedError,
)

__all__ = [
    "DEFAULT_PROJECT",
    "KEY_PREFIX",
    "AuthenticationError",
    "GeneratedKey",
    "PermissionDeniedError",
    "Scope",
    "allows",
    "check_project",
    "generate_key",
    "hash_key",
    "key_id_of",
    "key_matches",
    "parse_scopes",
]

KEY_PREFIX = "trk_"
DEFAULT_PROJECT = "default"
_ID_BYTES = 6  # 12 hex digits: short enough to type, unique enough for a key table
_SECRET_BYTES = 32  # 256 bits
_KEY = re.compile(r"^trk_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Scope(StrEnum):
    """What a key may do; ``admin`` implies every other scope within the key's project."""

    SUBMIT = "submit"
    READ = "read"
    WORKER = "worker"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A new key: ``key`` is shown to its owner once; only ``key_hash`` is stored."""

    id: str
    key: str = field(repr=False)
    key_hash: str = field(repr=False)


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 of the whole key, hex (see the module docstring)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> GeneratedKey:
    """A fresh random key ``trk_<id>_<secret>`` with its id and hash."""
    key_id = secrets.token_hex(_ID_BYTES)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return GeneratedKey(id=key_id, key=key, key_hash=hash_key(key))


def key_id_of(key: str) -> str | None:
    """The public id of a well-formed key, None for anything else (never raises)."""
    match = _KEY.match(key)
    return None if match is None else match.group("id")


def key_matches(key: str, stored_hash: str) -> bool:
    """Whether ``key`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_key(key), stored_hash)


def allows(scopes: Iterable[Scope], needed: Scope) -> bool:
    """Whether a key with ``scopes`` may do what ``needed`` guards."""
    held = set(scopes)
    return Scope.ADMIN in held or needed in held


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; an unknown name is an error that lists the known ones."""
    out = set()
    for value in values:
        try:
            out.add(Scope(value.strip().lower()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidRequestError(f"unknown scope {value!r}; use one of {known}") from None
    if not out:
        raise InvalidRequestError("a key needs at least one scope; e.g. --scope read")
    return frozenset(out)


def check_project(project: str) -> str:
    """A project name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not _PROJECT.match(project):
        raise InvalidRequestError(
            f"invalid project name {project!r}; use 1-64 letters, digits, '.', '_' or '-' "
            "starting with a letter or digit, e.g. 'default' or 'team-a'"
        )
    return project
