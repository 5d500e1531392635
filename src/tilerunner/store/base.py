"""What every part of the store shares: the engine, the clock, transactions and the timeline.

:class:`~tilerunner.store.Store` is assembled from one mixin per group of tables (jobs and
images in ``repository``, ``regions``, ``features``, ``outbox``, ``plans``, ``results``,
``tiles``, ...); each of them, and the key repository, builds on :class:`StoreBase`, so there
is one transaction helper and one way to write a timeline event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, insert, update
from sqlalchemy.exc import DBAPIError

from tilerunner.errors import StoreError
from tilerunner.jobs.states import JobState, sources_of
from tilerunner.store.tables import events, jobs

__all__ = ["Renewal", "StoreBase"]

_STARTABLE = [s.value for s in sources_of(JobState.RUNNING)]

Renewal = Callable[[Connection], None]
"""Called now and then on the connection of a long transaction (reading or writing millions of
features): it extends, in that transaction, the claim of the work that runs it, which a
connection of its own could not do while the transaction holds the database's write lock."""


class StoreBase:
    """An engine and a clock; transactions whose database errors surface as StoreError."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; database failures surface as StoreError (the caller retries)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as error:
            raise StoreError(f"state database error: {error.orig}") from error

    def _event(
        self,
        conn: Connection,
        job_id: str,
        kind: str,
        message: str,
        image_idx: int | None = None,
        region_idx: int | None = None,
    ) -> None:
        """One entry of the job's timeline, in the caller's transaction."""
        conn.execute(
            insert(events).values(
                job_id=job_id,
                at=self._clock(),
                kind=kind,
                message=message,
                image_idx=image_idx,
                region_idx=region_idx,
            )
        )

    def _mark_running(self, conn: Connection, job_id: str, reason: str) -> None:
        """Move the job to running, with ``reason`` on its timeline, where its state allows it
        (the first finished work item does; later ones find it running already)."""
        started = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(_STARTABLE))
            .values(status=JobState.RUNNING.value, started_at=self._clock())
        ).rowcount
        if started:
            self._event(conn, job_id, JobState.RUNNING.value, reason)
