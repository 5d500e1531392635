"""``postgresql://user@host:5432/db``: a queue table in PostgreSQL, leased with SKIP LOCKED.

All queues live in one table, ``tilerunner_queue_messages`` (created on first use), with the
same row life cycle as the SQLite engine: ``ready`` -> ``leased`` -> deleted by ``ack``, back to
``ready`` by ``nack`` or lease expiry, ``dead`` after the last attempt. A row's ``visible_at`` is
the time from which it can be leased — publish time, end of a nack delay, or the lease expiry —
so an expired lease needs no sweeper: the lease query finds it again.

Leasing is one statement::

    UPDATE ... FROM (SELECT ... WHERE visible_at <= now ORDER BY visible_at, seq LIMIT n
                     FOR UPDATE SKIP LOCKED) ... RETURNING ...

Concurrent leasers skip the rows another transaction is taking instead of waiting for it, so
workers on many machines never block each other and never get the same row. Time comes from
the injectable clock as a parameter, never from the server's ``now()``, so tests move a fake
clock and every machine's leases are judged by the clock of the caller (keep clocks in NTP sync).

Durability is the server's: the table is logged (never UNLOGGED) and every connection sets
``synchronous_commit`` (``on`` unless the URL says otherwise), so a committed publish survives a
crash or restart of the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tilerunner.broker.contract import (
    Clock,
    DeadLetter,
    Depth,
    Lease,
    LeaseLostError,
    Message,
    check_delay,
    check_lease_request,
    check_max_attempts,
    check_messages,
    check_queue_name,
    check_visibility,
    expiry_reason,
    nack_reason,
    new_receipt,
)
from tilerunner.broker.postgres_connection import ConnectionPool, PostgresSettings, parse_url
from tilerunner.broker.postgres_schema import TABLE, compose, ensure_table

if TYPE_CHECKING:
    from psycopg import Connection, sql
    from psycopg.rows import TupleRow

__all__ = ["TABLE", "PostgresQueue"]

log = logging.getLogger(__name__)

# contract.expiry_reason() split around the attempt count, so SQL builds the same text per row
_MARK = 987654321
_EXPIRY_PREFIX, _EXPIRY_SUFFIX = expiry_reason(_MARK).split(str(_MARK))

_REAP = """UPDATE {table} AS m
    SET state = 'dead', receipt = NULL, died_at = m.visible_at,
        reason = %(prefix)s || m.attempts || %(suffix)s
    FROM (SELECT queue, id FROM {table}
          WHERE queue = %(queue)s AND state = 'leased' AND visible_at <= %(now)s
            AND attempts >= %(max)s
          FOR UPDATE SKIP LOCKED) AS expired
    WHERE m.queue = expired.queue AND m.id = expired.id"""

_LEASE = """WITH picked AS (
        SELECT id, row_number() OVER (ORDER BY visible_at, seq) AS k
        FROM (SELECT id, visible_at, seq FROM {table}
              WHERE queue = %(queue)s AND state <> 'dead' AND visible_at <= %(now)s
                AND NOT (state = 'leased' AND attempts >= %(max)s)
              ORDER BY visible_at, seq LIMIT %(n)s
              FOR UPDATE SKIP LOCKED) AS candidates)
    UPDATE {table} AS m
    SET state = 'leased', attempts = m.attempts + 1, visible_at = %(expires)s,
        receipt = (%(receipts)s::text[])[picked.k]
    FROM picked WHERE m.queue = %(queue)s AND m.id = picked.id
    RETURNING picked.k, m.id, m.body, m.attempts, m.receipt"""

_DEPTH = """SELECT
        count(*) FILTER (WHERE state = 'dead'
                         OR (state = 'leased' AND visible_at <= %(now)s AND attempts >= %(max)s)),
        count(*) FILTER (WHERE state <> 'dead' AND visible_at <= %(now)s
                         AND NOT (state = 'leased' AND attempts >= %(max)s)),
        count(*) FILTER (WHERE state = 'leased' AND visible_at > %(now)s),
        count(*) FILTER (WHERE state = 'ready' AND visible_at > %(now)s)
    FROM {table} WHERE queue = %(queue)s"""

_HELD = "queue = %(queue)s AND id = %(id)s AND state = 'leased' AND receipt = %(receipt)s"


class PostgresQueue:
    """A durable queue in a PostgreSQL table, safe for many threads, processes and machines."""

    def __init__(
        self,
        settings: PostgresSettings,
        name: str,
        *,
        max_attempts: int = 3,
        clock: Clock = time.time,
    ) -> None:
        self.name = check_queue_name(name)
        self.max_attempts = check_max_attempts(max_attempts)
        self.settings = settings
        self._clock = clock
        self._pool = ConnectionPool(settings)
        self._sql: dict[str, sql.Composed] = {}
        ensure_table(self._pool)

    @classmethod
    def from_url(
        cls, url: str, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> PostgresQueue:
        """Open ``postgresql://user[:password]@host[:port]/database[?options]``.

        Options: ``schema`` (where the table lives; default: the search_path), ``pool_size``
        (idle connections kept, default 4), ``synchronous_commit`` (default ``on``), plus any
        libpq parameter such as ``sslmode`` or ``connect_timeout`` (default 10 s).
        ``postgresql+psycopg://`` is accepted, so the store URL can be reused.
        """
        return cls(parse_url(url), name, max_attempts=max_attempts, clock=clock)

    def publish(self, messages: Sequence[Message]) -> int:
        check_messages(messages)
        first: dict[str, bytes] = {}
        for message in messages:
            first.setdefault(message.id, message.body)  # the first body of an id wins
        if not first:
            return 0
        now = self._clock()
        with self._pool.transaction() as conn:
            cursor = conn.execute(
                self._q(
                    "INSERT INTO {table} (queue, id, body, state, visible_at, enqueued_at) "
                    "SELECT %(queue)s, u.id, u.body, 'ready', %(now)s, %(now)s "
                    "FROM unnest(%(ids)s::text[], %(bodies)s::bytea[]) WITH ORDINALITY "
                    "AS u(id, body, n) ORDER BY u.n ON CONFLICT (queue, id) DO NOTHING"
                ),
                {
                    "queue": self.name,
                    "now": now,
                    "ids": list(first),
                    "bodies": list(first.values()),
                },
            )
            return cursor.rowcount

    def lease(self, n: int, visibility: float) -> list[Lease]:
        check_lease_request(n, visibility)
        if n == 0:
            return []
        now = self._clock()
        expires_at = now + visibility
        with self._pool.transaction() as conn:
            self._reap(conn, now)
            rows = conn.execute(
                self._q(_LEASE),
                {
                    "queue": self.name,
                    "now": now,
                    "max": self.max_attempts,
                    "n": n,
                    "expires": expires_at,
                    "receipts": [new_receipt() for _ in range(n)],
                },
            ).fetchall()
        rows.sort(key=lambda row: int(row[0]))
        return [Lease(str(i), bytes(b), str(r), int(a), expires_at) for _, i, b, a, r in rows]

    def extend(self, lease: Lease, visibility: float) -> Lease:
        check_visibility(visibility)
        expires_at = self._clock() + visibility
        self._update_held(lease, "visible_at = %(expires)s", {"expires": expires_at})
        return Lease(lease.message_id, lease.body, lease.receipt, lease.attempt, expires_at)

    def ack(self, lease: Lease) -> None:
        with self._pool.transaction() as conn:
            cursor = conn.execute(
                self._q(f"DELETE FROM {{table}} WHERE {_HELD}"), self._held_params(lease)
            )
            if cursor.rowcount != 1:
                raise LeaseLostError(self.name, lease.message_id)

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        check_delay(delay)
        now = self._clock()
        # the receipt identifies one delivery, so the row's attempts equal the lease's
        if lease.attempt >= self.max_attempts:
            sets = "state = 'dead', died_at = %(now)s, reason = %(reason)s"
            reason = nack_reason(reason, lease.attempt)
        else:
            sets = "state = 'ready', visible_at = %(visible)s, reason = %(reason)s"
        values = {"now": now, "visible": now + delay, "reason": reason}
        self._update_held(lease, f"{sets}, receipt = NULL", values)

    def depth(self) -> Depth:
        with self._pool.transaction() as conn:
            row = conn.execute(
                self._q(_DEPTH),
                {"queue": self.name, "now": self._clock(), "max": self.max_attempts},
            ).fetchone()
        dead, visible, in_flight, delayed = (int(v) for v in row or (0, 0, 0, 0))
        return Depth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._pool.transaction() as conn:
            self._reap(conn, self._clock())
            rows = conn.execute(
                self._q(
                    "SELECT id, body, attempts, reason, died_at FROM {table} "
                    "WHERE queue = %(queue)s AND state = 'dead' ORDER BY died_at, id "
                    "LIMIT %(limit)s"
                ),
                {"queue": self.name, "limit": max(limit, 0)},
            ).fetchall()
        return [DeadLetter(str(i), bytes(b), int(a), str(r), float(d)) for i, b, a, r, d in rows]

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        now = self._clock()
        query = (
            "UPDATE {table} SET state = 'ready', attempts = 0, visible_at = %(now)s, "
            "reason = '', died_at = NULL WHERE queue = %(queue)s AND state = 'dead'"
        )
        params: dict[str, object] = {"queue": self.name, "now": now}
        if message_ids is not None:
            query += " AND id = ANY(%(ids)s::text[])"
            params["ids"] = list(dict.fromkeys(message_ids))
        with self._pool.transaction() as conn:
            self._reap(conn, now)
            return conn.execute(self._q(query), params).rowcount

    def purge(self) -> int:
        with self._pool.transaction() as conn:
            return conn.execute(
                self._q("DELETE FROM {table} WHERE queue = %(queue)s"), {"queue": self.name}
            ).rowcount

    def close(self) -> None:
        """Close the connections; the messages stay in the database."""
        self._pool.close()

    def _reap(self, conn: Connection[TupleRow], now: float) -> None:
        """Dead-letter expired leases that used the last attempt, skipping rows others hold."""
        conn.execute(
            self._q(_REAP),
            {
                "queue": self.name,
                "now": now,
                "max": self.max_attempts,
                "prefix": _EXPIRY_PREFIX,
                "suffix": _EXPIRY_SUFFIX,
            },
        )

    def _update_held(self, lease: Lease, sets: str, values: dict[str, object]) -> None:
        """Apply ``sets`` to the row ``lease`` still holds, or raise LeaseLostError."""
        with self._pool.transaction() as conn:
            cursor = conn.execute(
                self._q(f"UPDATE {{table}} SET {sets} WHERE {_HELD}"),
                {**values, **self._held_params(lease)},
            )
            if cursor.rowcount != 1:
                raise LeaseLostError(self.name, lease.message_id)

    def _held_params(self, lease: Lease) -> dict[str, object]:
        return {"queue": self.name, "id": lease.message_id, "receipt": lease.receipt}

    def _q(self, template: str) -> sql.Composed:
        """``template`` with the (schema-qualified) table and index names filled in, cached."""
        composed = self._sql.get(template)
        if composed is None:
            composed = compose(template, self.settings.schema)
            self._sql[template] = composed
        return composed

    def __repr__(self) -> str:
        return f"PostgresQueue(url={self.settings.display_url!r}, name={self.name!r})"
