"""The objects of watched sources: what ``tilerunner watch`` has taken, and into which job.

An object is one version of one key of a watched source (an S3 ETag, a file's size and
modification time): a new version at the same key is a new object. It is recorded once (a
primary key over watch, key and version) when the watcher finds it, and its ``job_id`` is set
in the same transaction that inserts its job, guarded on the object having none yet. So however
often a watcher is killed and restarted, and however often an object is listed or notified, it
goes into exactly one job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select, tuple_, update

from tilerunner.jobs.states import JobState
from tilerunner.store.base import StoreBase
from tilerunner.store.outbox import AGGREGATE, insert_ignore
from tilerunner.store.plans import PLAN, insert_job
from tilerunner.store.tables import jobs, outbox, watched_objects

__all__ = ["WatchStore", "WatchedObject"]

_BATCH = 500


@dataclass(frozen=True, slots=True)
class WatchedObject:
    """One version of one object of a watched source; ``seen_at`` is when it was recorded."""

    key: str
    version: str
    url: str
    size: int | None = None
    seen_at: float = 0.0

    @property
    def identity(self) -> tuple[str, str]:
        return self.key, self.version


class _Taken(Exception):
    """A member is in a job already (another watcher of the same source took it)."""


class WatchStore(StoreBase):
    """The watched-object methods of :class:`tilerunner.store.Store` (a mixin)."""

    def seen_objects(self, watch: str) -> set[tuple[str, str]]:
        """Every (key, version) of ``watch`` recorded so far."""
        query = select(watched_objects.c.key, watched_objects.c.version).where(
            watched_objects.c.watch == watch
        )
        with self._begin() as conn:
            return {(row.key, row.version) for row in conn.execute(query)}

    def record_objects(
        self, watch: str, found: Iterable[WatchedObject], *, at: float | None = None
    ) -> list[WatchedObject]:
        """Record the objects not recorded before (waiting for a job) as seen ``at`` (now by
        default); returns those. Objects recorded already, by any watcher, are skipped."""
        now = self._clock() if at is None else at
        objects = list(found)
        c = watched_objects.c
        with self._begin() as conn:
            known: set[tuple[str, str]] = set()
            for start in range(0, len(objects), _BATCH):
                keys = [obj.key for obj in objects[start : start + _BATCH]]
                query = select(c.key, c.version).where(c.watch == watch, c.key.in_(keys))
                known.update((row.key, row.version) for row in conn.execute(query))
            new = [
                WatchedObject(obj.key, obj.version, obj.url, obj.size, now)
                for obj in objects
                if obj.identity not in known
            ]
            if new:  # a watcher of the same source may have recorded some meanwhile: skip them
                rows = [
                    {"watch": watch, "key": o.key, "version": o.version, "url": o.url,
                     "size": o.size, "seen_at": now}
                    for o in new
                ]  # fmt: skip
                conn.execute(_insert_ignoring(conn), rows)
        return new

    def waiting_objects(self, watch: str) -> list[WatchedObject]:
        """Objects of ``watch`` recorded but in no job yet, oldest first."""
        c = watched_objects.c
        query = (
            select(c.key, c.version, c.url, c.size, c.seen_at)
            .where(c.watch == watch, c.job_id.is_(None))
            .order_by(c.seen_at, c.key, c.version)
        )
        with self._begin() as conn:
            return [
                WatchedObject(r.key, r.version, r.url, r.size, r.seen_at)
                for r in conn.execute(query)
            ]

    def accept_watched_job(
        self,
        watch: str,
        job_id: str,
        name: str | None,
        spec: dict[str, Any],
        members: Sequence[WatchedObject],
        *,
        project: str = "default",
    ) -> bool:
        """Insert a job in ``planning`` (with its ``plan`` outbox row) and give it ``members``,
        in one transaction; False, writing nothing, if any member is in a job already."""
        now = self._clock()
        try:
            with self._begin() as conn:
                if _claim(conn, watch, job_id, members, submitted_at=now) != len(members):
                    raise _Taken
                if not insert_job(conn, job_id, name, spec, project, JobState.PLANNING, now, []):
                    raise _Taken
                self._event(
                    conn, job_id, JobState.PLANNING.value, f"job accepted from {watch}; planning"
                )
                insert_ignore(conn, outbox, {"job_id": job_id, "kind": PLAN, "created_at": now})
        except _Taken:  # raised inside the transaction, so that it rolls back
            return False
        return True

    def assign_objects(self, watch: str, job_id: str, members: Sequence[WatchedObject]) -> bool:
        """Give ``members`` to ``job_id`` without making the job (it is submitted elsewhere:
        :meth:`unsubmitted_jobs`); False, writing nothing, if any member is in a job already."""
        try:
            with self._begin() as conn:
                if _claim(conn, watch, job_id, members) != len(members):
                    raise _Taken
        except _Taken:
            return False
        return True

    def unsubmitted_jobs(self, watch: str) -> dict[str, list[WatchedObject]]:
        """The jobs of ``watch`` given members but not noted as submitted, with their members,
        oldest first."""
        c = watched_objects.c
        query = (
            select(c.job_id, c.key, c.version, c.url, c.size, c.seen_at)
            .where(c.watch == watch, c.job_id.is_not(None), c.submitted_at.is_(None))
            .order_by(c.seen_at, c.key, c.version)
        )
        found: dict[str, list[WatchedObject]] = {}
        with self._begin() as conn:
            for r in conn.execute(query):
                obj = WatchedObject(r.key, r.version, r.url, r.size, r.seen_at)
                found.setdefault(r.job_id, []).append(obj)
        return found

    def mark_submitted(self, watch: str, job_id: str) -> None:
        """Note that ``job_id`` of ``watch`` was submitted."""
        c = watched_objects.c
        with self._begin() as conn:
            conn.execute(
                update(watched_objects)
                .where(c.watch == watch, c.job_id == job_id, c.submitted_at.is_(None))
                .values(submitted_at=self._clock())
            )

    def watched_jobs(self, watch: str, states: Iterable[JobState]) -> list[str]:
        """Ids of the jobs of ``watch`` now in one of ``states``, oldest first."""
        query = (
            select(jobs.c.id)
            .where(
                jobs.c.status.in_([s.value for s in states]),
                jobs.c.id.in_(_of_watch(watch)),
            )
            .order_by(jobs.c.created_at, jobs.c.id)
        )
        with self._begin() as conn:
            return [row.id for row in conn.execute(query)]

    def aggregations_due(self, watch: str) -> list[str]:
        """Ids of the jobs of ``watch`` with an aggregation not done yet."""
        query = (
            select(outbox.c.job_id)
            .where(
                outbox.c.kind == AGGREGATE,
                outbox.c.done_at.is_(None),
                outbox.c.job_id.in_(_of_watch(watch)),
            )
            .order_by(outbox.c.id)
        )
        with self._begin() as conn:
            return [row.job_id for row in conn.execute(query)]


def _insert_ignoring(conn: Connection) -> Any:
    """INSERT of watched objects that skips those recorded already (a unique-key conflict)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(watched_objects).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(watched_objects).on_conflict_do_nothing()


def _of_watch(watch: str) -> Any:
    """The ids of the jobs made from ``watch``'s objects (a subquery)."""
    c = watched_objects.c
    return (
        select(c.job_id).where(c.watch == watch, c.job_id.is_not(None)).distinct().scalar_subquery()
    )


def _claim(
    conn: Connection,
    watch: str,
    job_id: str,
    members: Sequence[WatchedObject],
    submitted_at: float | None = None,
) -> int:
    """Give ``members`` that are in no job to ``job_id``; returns how many were given."""
    c = watched_objects.c
    given = 0
    for start in range(0, len(members), _BATCH):
        chunk = members[start : start + _BATCH]
        if conn.dialect.name == "postgresql":
            match: Any = tuple_(c.key, c.version).in_([m.identity for m in chunk])
        else:  # row values with IN are not portable to every SQLite build: spell them out
            match = or_(*(and_(c.key == m.key, c.version == m.version) for m in chunk))
        given += int(
            conn.execute(
                update(watched_objects)
                .where(c.watch == watch, c.job_id.is_(None), match)
                .values(job_id=job_id, submitted_at=submitted_at)
            ).rowcount
            or 0
        )
    return given
