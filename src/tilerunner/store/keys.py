"""API keys in the state database: create, list, revoke, look up by hash.

Only the hash of a key is ever written (:mod:`tilerunner.security.keys` says why SHA-256 is
enough). Nothing is cached: every request looks its key up, so a revoked key stops working on
the next request, in every ``serve`` process at once. ``last_used_at`` is written at most once
a minute per key, by a guarded update, so busy keys cost one extra write a minute, not one per
request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tilerunner.errors import StoreError
from tilerunner.security.keys import Scope
from tilerunner.store.base import StoreBase
from tilerunner.store.tables import api_keys

__all__ = ["LAST_USED_EVERY", "ApiKeyRecord", "KeyRepository"]

LAST_USED_EVERY = 60.0
"""Seconds between two writes of a key's ``last_used_at``."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One stored key; ``key_hash`` is kept out of ``repr`` so it never lands in a log."""

    id: str
    name: str | None
    project: str
    scopes: frozenset[Scope]
    created_at: float
    revoked_at: float | None
    last_used_at: float | None
    key_hash: str = field(repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class KeyRepository(StoreBase):
    """The ``api_keys`` table."""

    def create(
        self,
        key_id: str,
        key_hash: str,
        *,
        project: str,
        scopes: Iterable[Scope],
        name: str | None = None,
    ) -> ApiKeyRecord:
        """Store a new key (its hash only); raise StoreError if the id or hash exists."""
        values = {
            "id": key_id,
            "name": name,
            "project": project,
            "scopes": sorted(Scope(s).value for s in scopes),
            "hash": key_hash,
            "created_at": self._clock(),
        }
        try:
            with self._begin() as conn:
                conn.execute(insert(api_keys).values(**values))
        except StoreError as error:
            if isinstance(error.__cause__, IntegrityError):
                raise StoreError(f"an API key with id {key_id!r} exists already") from None
            raise
        return _record({**values, "revoked_at": None, "last_used_at": None})

    def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._begin() as conn:
            rows = conn.execute(
                select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
            ).mappings()
            return [_record(r) for r in rows]

    def get(self, key_id: str) -> ApiKeyRecord | None:
        with self._begin() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return None if row is None else _record(row)

    def lookup(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash (revoked or not), or None."""
        with self._begin() as conn:
            row = (
                conn.execute(select(api_keys).where(api_keys.c.hash == key_hash)).mappings().first()
            )
        return None if row is None else _record(row)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key for good; False if no such key or it was revoked already."""
        with self._begin() as conn:
            changed = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            ).rowcount
        return bool(changed)

    def touch(self, record: ApiKeyRecord) -> bool:
        """Record a use of the key, unless one was recorded in the last minute."""
        now = self._clock()
        if record.last_used_at is not None and now - record.last_used_at < LAST_USED_EVERY:
            return False
        with self._begin() as conn:
            changed = conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == record.id,
                    or_(
                        api_keys.c.last_used_at.is_(None),
                        api_keys.c.last_used_at <= now - LAST_USED_EVERY,
                    ),
                )
                .values(last_used_at=now)
            ).rowcount
        return bool(changed)


def _record(row: Mapping[Any, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=str(row["id"]),
        name=row["name"],
        project=str(row["project"]),
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        created_at=float(row["created_at"]),
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        key_hash=str(row["hash"]),
    )
