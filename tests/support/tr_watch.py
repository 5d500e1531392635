"""Reading what a watch recorded, and a bucket on the moto server (tests/watch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tilerunner.store import Store, open_store
from tilerunner.store.tables import watched_objects


@dataclass
class Bucket:
    endpoint: str
    name: str
    s3: Any

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.name, Key=key, Body=body)


def taken(store_url: str) -> dict[str, list[str]]:
    """Each job of the store with the object keys it was made of (from the job documents)."""
    store = open_store(store_url)
    return {job.id: [s["id"] for s in job.spec["sources"]] for job in store.list_jobs(limit=10_000)}


def recorded(store: Store) -> list[tuple[str, str, str | None]]:
    """(key, version, job id) of every watched object."""
    c = watched_objects.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(c.key, c.version, c.job_id).order_by(c.key, c.version))
        return [(r.key, r.version, r.job_id) for r in rows]


def taken_keys(store_url: str) -> list[str]:
    """The object keys of every job of the store, sorted: a key twice was taken twice."""
    return sorted(key for keys in taken(store_url).values() for key in keys)
