"""The outbox: work that must follow a state change exactly once, claimed with short leases.

A row is inserted in the transaction that makes it due, and the unique key (job, kind) makes it
once per job and kind:

- ``aggregate``: the last region of a job finished;
- ``callback:<state>``: the job reached a final state and its document has a callback;
- ``callback:progress:<fraction>``: the job passed a progress milestone of its callback.

A claim (``claimed_by``, ``claimed_until``) is a short lease that its holder extends while it
works (:meth:`OutboxStore.extend_claim`); a holder that dies stops extending, and another
coordinator takes the row over when the lease runs out. Callback rows also count ``attempts``:
a failed delivery releases its claim and leaves the row until ``next_attempt_at``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import Connection, select, update

from tilerunner.errors import StoreError
from tilerunner.jobs.states import JOB_TERMINAL, JobState
from tilerunner.store.base import Renewal, StoreBase
from tilerunner.store.records import OutboxItem
from tilerunner.store.tables import outbox

__all__ = [
    "AGGREGATE",
    "CALLBACK",
    "CLAIM_SECONDS",
    "CallbackDelivery",
    "ClaimKeeper",
    "OutboxStore",
    "callback_kind",
    "insert_ignore",
    "progress_kind",
]

log = logging.getLogger(__name__)

AGGREGATE = "aggregate"
CALLBACK = "callback:"
CLAIM_SECONDS = 30.0
"""Default lease of a claim; its holder extends it every third of it."""


def callback_kind(state: JobState) -> str:
    """Outbox kind of the callback for a final state: ``callback:succeeded``."""
    return f"{CALLBACK}{state.value}"


def progress_kind(fraction: float) -> str:
    """Outbox kind of a progress milestone: ``callback:progress:0.25``."""
    return f"{CALLBACK}progress:{fraction:g}"


def insert_ignore(conn: Connection, table: Any, row: dict[str, Any]) -> int:
    """INSERT that does nothing on a unique-key conflict; returns rows inserted."""
    name = conn.dialect.name  # its module is imported here: a SQLite process never loads PostgreSQL
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt: Any = postgresql.insert(table).values(**row).on_conflict_do_nothing()
    elif name == "sqlite":
        from sqlalchemy.dialects import sqlite

        stmt = sqlite.insert(table).values(**row).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two dialects above are supported
        raise StoreError(f"unsupported database dialect {name!r}")
    return int(conn.execute(stmt).rowcount or 0)


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    """A claimed callback row; ``attempts`` were made before this one."""

    id: int
    job_id: str
    kind: str
    attempts: int


class _Claimed(Protocol):
    @property
    def id(self) -> int: ...


class OutboxStore(StoreBase):
    """The outbox methods of :class:`tilerunner.store.Store` (a mixin over its connection)."""

    # ------------------------------------------------------------ scheduling
    def add_outbox(self, job_id: str, kind: str) -> bool:
        """Schedule ``kind`` for a job once; False if it was scheduled before."""
        with self._begin() as conn:
            return bool(self._schedule(conn, job_id, kind))

    def _schedule(self, conn: Connection, job_id: str, kind: str) -> int:
        return insert_ignore(
            conn, outbox, {"job_id": job_id, "kind": kind, "created_at": self._clock()}
        )

    def _schedule_final_callback(
        self, conn: Connection, job_id: str, state: JobState, spec: dict[str, Any] | None
    ) -> None:
        """In the transaction that set a final state: the callback row, if the job has one."""
        if state in JOB_TERMINAL and spec and spec.get("callback"):
            self._schedule(conn, job_id, callback_kind(state))

    # ----------------------------------------------------------- aggregation
    def claim_outbox(
        self,
        owner: str,
        lease_seconds: float = CLAIM_SECONDS,
        job_id: str | None = None,
        kind: str = AGGREGATE,
    ) -> OutboxItem | None:
        """Claim one pending row of ``kind`` (of ``job_id`` if given) for ``lease_seconds``;
        the holder extends the claim while it works, and a claim whose holder died expires."""
        now = self._clock()
        conditions = [outbox.c.kind == kind, *self._claimable(now)]
        if job_id is not None:
            conditions.append(outbox.c.job_id == job_id)
        with self._begin() as conn:
            row = conn.execute(
                select(outbox.c.id, outbox.c.job_id, outbox.c.kind)
                .where(*conditions)
                .order_by(outbox.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(claimed_by=owner, claimed_until=now + lease_seconds)
            )
        return OutboxItem(id=int(row.id), job_id=str(row.job_id), kind=str(row.kind))

    def extend_claim(self, item: _Claimed, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s claim on a row by ``seconds`` from now; False if it was lost."""
        with self._begin() as conn:
            return self.extend_claim_in(conn, item, owner, seconds)

    def extend_claim_in(self, conn: Connection, item: _Claimed, owner: str, seconds: float) -> bool:
        """:meth:`extend_claim` in the caller's transaction."""
        changed = conn.execute(
            update(outbox)
            .where(
                outbox.c.id == item.id,
                outbox.c.claimed_by == owner,
                outbox.c.done_at.is_(None),
            )
            .values(claimed_until=self._clock() + seconds)
        ).rowcount
        return bool(changed)

    def finish_outbox(self, item: OutboxItem) -> None:
        with self._begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == item.id, outbox.c.done_at.is_(None))
                .values(done_at=self._clock())
            )

    def pending_outbox(self, job_id: str) -> bool:
        with self._begin() as conn:
            return (
                conn.execute(
                    select(outbox.c.id).where(outbox.c.job_id == job_id, outbox.c.done_at.is_(None))
                ).first()
                is not None
            )

    # ------------------------------------------------------------- callbacks
    def claim_callbacks(
        self, owner: str, lease_seconds: float, limit: int
    ) -> list[CallbackDelivery]:
        """Claim up to ``limit`` callback rows that are due (never tried, or past their
        ``next_attempt_at``) and not held by a live claim."""
        if limit <= 0:
            return []
        now = self._clock()
        with self._begin() as conn:
            rows = conn.execute(
                select(outbox.c.id, outbox.c.job_id, outbox.c.kind, outbox.c.attempts)
                .where(outbox.c.kind.startswith(CALLBACK, autoescape=True), *self._claimable(now))
                .order_by(outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([r.id for r in rows]))
                    .values(claimed_by=owner, claimed_until=now + lease_seconds)
                )
        return [
            CallbackDelivery(int(r.id), str(r.job_id), str(r.kind), int(r.attempts)) for r in rows
        ]

    def callback_delivered(self, item: CallbackDelivery, owner: str, message: str) -> None:
        """The attempt succeeded: its ``callback_attempt`` event, and the row is done."""
        with self._begin() as conn:
            self._event(conn, item.job_id, "callback_attempt", message)
            self._settle(conn, item, owner, done=True, error=None, retry_at=None)

    def callback_retry(
        self, item: CallbackDelivery, owner: str, message: str, delay: float
    ) -> None:
        """The attempt failed: its event; the row waits ``delay`` seconds, claim released."""
        with self._begin() as conn:
            self._event(conn, item.job_id, "callback_attempt", message)
            retry_at = self._clock() + delay
            self._settle(conn, item, owner, done=False, error=message, retry_at=retry_at)

    def callback_failed(
        self, item: CallbackDelivery, owner: str, attempt: str | None, reason: str
    ) -> None:
        """Given up: the last attempt's event (if one was made), ``callback_failed``, done."""
        with self._begin() as conn:
            if attempt is not None:
                self._event(conn, item.job_id, "callback_attempt", attempt)
            self._event(conn, item.job_id, "callback_failed", reason)
            counted = attempt is not None
            self._settle(conn, item, owner, done=True, error=reason, retry_at=None, count=counted)

    # ------------------------------------------------------------- internals
    @staticmethod
    def _claimable(now: float) -> list[Any]:
        return [
            outbox.c.done_at.is_(None),
            outbox.c.claimed_until.is_(None) | (outbox.c.claimed_until < now),
            outbox.c.next_attempt_at.is_(None) | (outbox.c.next_attempt_at <= now),
        ]

    def _settle(
        self,
        conn: Connection,
        item: CallbackDelivery,
        owner: str,
        *,
        done: bool,
        error: str | None,
        retry_at: float | None,
        count: bool = True,
    ) -> None:
        changed = conn.execute(
            update(outbox)
            .where(outbox.c.id == item.id, outbox.c.claimed_by == owner, outbox.c.done_at.is_(None))
            .values(
                attempts=outbox.c.attempts + (1 if count else 0),
                last_error=error,
                next_attempt_at=retry_at,
                claimed_by=None,
                claimed_until=None,
                done_at=self._clock() if done else None,
            )
        ).rowcount
        if not changed:
            log.warning(
                "outbox row %d (%s of job %s) was claimed by another coordinator meanwhile",
                item.id,
                item.kind,
                item.job_id,
            )


class ClaimKeeper:
    """Extends a claim every third of its lease while the work goes on (a daemon thread).

    ``with ClaimKeeper(store, item, owner, seconds):`` around the work; ``lost`` tells whether
    an extension found the claim taken over (the work is idempotent, so it is only logged).

    A long transaction of the work itself holds locks that the thread's own connection would
    wait on (SQLite's write lock; on PostgreSQL the outbox row, once extended inside it), so
    around one, ``with keeper.within() as renew:`` stops the thread and gives the transaction a
    :data:`~tilerunner.store.base.Renewal` to call between its chunks instead.
    """

    def __init__(self, store: OutboxStore, item: _Claimed, owner: str, seconds: float) -> None:
        self.store = store
        self.item = item
        self.owner = owner
        self.seconds = seconds
        self.lost = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._inside = 0
        self._extended = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="claim-keeper", daemon=True)

    def __enter__(self) -> ClaimKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def within(self) -> Iterator[Renewal]:
        """For one long transaction of the work: the thread pauses, and the returned function,
        called on the transaction's connection, extends the claim there when one is due."""

        def renew(conn: Connection) -> None:
            if time.monotonic() - self._extended >= self.seconds / 3:
                self._extended = time.monotonic()
                self._settle_extension(
                    self.store.extend_claim_in(conn, self.item, self.owner, self.seconds)
                )

        with self._lock:
            self._inside += 1
        try:
            yield renew
        finally:
            with self._lock:
                self._inside -= 1

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with self._lock:  # held while extending, so within() never starts under an extension
                if self._inside:
                    continue
                self._extended = time.monotonic()
                try:
                    held = self.store.extend_claim(self.item, self.owner, self.seconds)
                except StoreError as error:  # the next extension may get through
                    log.warning("cannot extend the claim on outbox row %d: %s", self.item.id, error)
                    continue
            self._settle_extension(held)

    def _settle_extension(self, held: bool) -> None:
        if not held and not self.lost:
            self.lost = True
            log.warning(
                "claim on outbox row %d was lost (it expired and another coordinator took "
                "it over); the work goes on and its outputs are replaced",
                self.item.id,
            )
