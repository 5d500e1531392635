"""``sqlite:///path/state.db``: the embedded queue engine, owned by the project.

One table, ``queue_messages``, lives in the same database file as the store's tables, so
``tilerunner run`` needs a single file and no server. Several worker *processes* can lease from
it at once: every state change runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's
write lock before reading, so two leasers can never pick the same row; WAL mode lets readers
(``depth``) proceed meanwhile, and ``busy_timeout`` makes writers wait for the lock instead of
failing. Each thread gets its own connection, because a worker extends leases from a heartbeat
thread while its main thread processes; it is closed when its thread ends, and :meth:`close`
closes those still open. Once the last connection to the file closes, SQLite folds the
write-ahead log into the file and removes it, so the file alone holds the queue.

A row's ``visible_at`` is "the time from which it can be leased": the publish time, the end of
a nack delay, or — for a leased row — the lease expiry (``leased_until`` is kept equal to it for
readers of the table). So an expired lease needs no sweeper: the lease query simply finds it
again, walking the partial index ``(queue, visible_at) WHERE state <> 'dead'`` in order and
stopping after ``n`` rows, however long the queue is.

``synchronous=NORMAL`` in WAL mode survives any process crash (a SIGKILLed worker loses
nothing); only a power cut can drop the last commits, and the coordinator's repair sweep
re-enqueues regions whose messages went missing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

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
    nack_reason,
    new_receipt,
)
from tilerunner.errors import InvalidRequestError, QueueError, RetryableError

__all__ = ["SQLiteQueue"]

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queue_messages (
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        body BLOB NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
        visible_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        receipt TEXT,
        leased_until REAL,
        reason TEXT NOT NULL DEFAULT '',
        died_at REAL,
        enqueued_at REAL NOT NULL,
        PRIMARY KEY (queue, id)
    )""",
    """CREATE INDEX IF NOT EXISTS queue_messages_state
        ON queue_messages (queue, state, visible_at)""",
    """CREATE INDEX IF NOT EXISTS queue_messages_available
        ON queue_messages (queue, visible_at) WHERE state <> 'dead'""",
)

# Expired leases that already used the last attempt: dead-lettered instead of redelivered.
# The reason spells contract.expiry_reason() in SQL (a conformance test keeps them in step).
_REAP = """UPDATE queue_messages
    SET state = 'dead', receipt = NULL, leased_until = NULL, died_at = visible_at,
        reason = 'lease expired ' || attempts || ' times (worker died or was too slow)'
    WHERE queue = ? AND state = 'leased' AND visible_at <= ? AND attempts >= ?"""

_MEMORY = ":memory:"


class SQLiteQueue:
    """A durable queue in an SQLite file, safe for many threads and processes."""

    def __init__(
        self,
        path: str | Path,
        name: str,
        *,
        max_attempts: int = 3,
        clock: Clock = time.time,
        busy_timeout: float = 30.0,
    ) -> None:
        self.name = check_queue_name(name)
        self.max_attempts = check_max_attempts(max_attempts)
        self.path = str(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        # ':memory:' is one private database per connection, so all threads share one
        # connection, serialised by this lock; files get a connection per thread instead.
        self._memory_lock = threading.RLock() if self.path == _MEMORY else None
        if self._memory_lock is None and not Path(self.path).parent.is_dir():
            raise InvalidRequestError(
                f"queue database {self.path!r} cannot be created: its directory does not exist; "
                "create the directory or point the sqlite URL at an existing one"
            )
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    @classmethod
    def from_url(
        cls, url: str, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> SQLiteQueue:
        """Open ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``.

        The only option is ``?busy_timeout=SECONDS`` (default 30): how long a writer waits for
        another process's transaction before failing with a retryable error.
        """
        parts = urlsplit(url)
        if parts.netloc:
            raise InvalidRequestError(
                f"sqlite queue URL {url!r} has a host part; write sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db (three or four slashes)"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        busy_timeout = 30.0
        if "busy_timeout" in options:
            try:
                busy_timeout = float(options.pop("busy_timeout"))
            except ValueError:
                busy_timeout = -1.0
            if not 0 <= busy_timeout < float("inf"):
                raise InvalidRequestError(f"busy_timeout in {url!r} must be seconds >= 0")
        if options:
            raise InvalidRequestError(
                f"unknown sqlite queue option(s) {sorted(options)} in {url!r}; "
                "the only option is busy_timeout"
            )
        return cls(
            path or _MEMORY,
            name,
            max_attempts=max_attempts,
            clock=clock,
            busy_timeout=busy_timeout,
        )

    def publish(self, messages: Sequence[Message]) -> int:
        check_messages(messages)
        now = self._clock()
        rows = [(self.name, m.id, m.body, now, now) for m in messages]
        if not rows:
            return 0
        with self._transaction() as conn:
            cursor = conn.executemany(
                "INSERT OR IGNORE INTO queue_messages (queue, id, body, state, visible_at, "
                "enqueued_at) VALUES (?, ?, ?, 'ready', ?, ?)",
                rows,
            )
            return cursor.rowcount

    def lease(self, n: int, visibility: float) -> list[Lease]:
        check_lease_request(n, visibility)
        if n == 0:
            return []
        now = self._clock()
        expires_at = now + visibility
        with self._transaction() as conn:
            conn.execute(_REAP, (self.name, now, self.max_attempts))
            rows = conn.execute(
                "SELECT id, body, attempts FROM queue_messages "
                "WHERE queue = ? AND state <> 'dead' AND visible_at <= ? "
                "ORDER BY visible_at LIMIT ?",
                (self.name, now, n),
            ).fetchall()
            leases = [
                Lease(message_id, bytes(body), new_receipt(), attempts + 1, expires_at)
                for message_id, body, attempts in rows
            ]
            conn.executemany(
                "UPDATE queue_messages SET state = 'leased', attempts = ?, receipt = ?, "
                "visible_at = ?, leased_until = ? WHERE queue = ? AND id = ?",
                [
                    (le.attempt, le.receipt, expires_at, expires_at, self.name, le.message_id)
                    for le in leases
                ],
            )
        return leases

    def extend(self, lease: Lease, visibility: float) -> Lease:
        check_visibility(visibility)
        expires_at = self._clock() + visibility
        with self._transaction() as conn:
            self._update_held(
                conn, lease, "visible_at = ?, leased_until = ?", (expires_at, expires_at)
            )
        return Lease(lease.message_id, lease.body, lease.receipt, lease.attempt, expires_at)

    def ack(self, lease: Lease) -> None:
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM queue_messages "
                "WHERE queue = ? AND id = ? AND state = 'leased' AND receipt = ?",
                (self.name, lease.message_id, lease.receipt),
            )
            if cursor.rowcount != 1:
                raise LeaseLostError(self.name, lease.message_id)

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        check_delay(delay)
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT attempts FROM queue_messages "
                "WHERE queue = ? AND id = ? AND state = 'leased' AND receipt = ?",
                (self.name, lease.message_id, lease.receipt),
            ).fetchone()
            if row is None:
                raise LeaseLostError(self.name, lease.message_id)
            attempts = int(row[0])
            if attempts >= self.max_attempts:
                sets = "state = 'dead', died_at = ?, reason = ?"
                values: tuple[float | str, ...] = (now, nack_reason(reason, attempts))
            else:
                sets = "state = 'ready', visible_at = ?, reason = ?"
                values = (now + delay, reason)
            self._update_held(conn, lease, f"{sets}, receipt = NULL, leased_until = NULL", values)

    def depth(self) -> Depth:
        now = self._clock()
        with self._transaction(immediate=False) as conn:
            row = conn.execute(
                """SELECT
                    COALESCE(SUM(state = 'dead' OR (state = 'leased' AND visible_at <= ?1
                                                    AND attempts >= ?2)), 0),
                    COALESCE(SUM(state <> 'dead' AND visible_at <= ?1
                                 AND NOT (state = 'leased' AND attempts >= ?2)), 0),
                    COALESCE(SUM(state = 'leased' AND visible_at > ?1), 0),
                    COALESCE(SUM(state = 'ready' AND visible_at > ?1), 0)
                FROM queue_messages WHERE queue = ?3""",
                (now, self.max_attempts, self.name),
            ).fetchone()
        dead, visible, in_flight, delayed = (int(v) for v in row)
        return Depth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._transaction() as conn:
            conn.execute(_REAP, (self.name, self._clock(), self.max_attempts))
            rows = conn.execute(
                "SELECT id, body, attempts, reason, died_at FROM queue_messages "
                "WHERE queue = ? AND state = 'dead' ORDER BY died_at, id LIMIT ?",
                (self.name, max(limit, 0)),
            ).fetchall()
        return [DeadLetter(i, bytes(b), int(a), r, float(d)) for i, b, a, r, d in rows]

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        now = self._clock()
        update = (
            "UPDATE queue_messages SET state = 'ready', attempts = 0, visible_at = ?, "
            "reason = '', died_at = NULL WHERE queue = ? AND state = 'dead'"
        )
        with self._transaction() as conn:
            conn.execute(_REAP, (self.name, now, self.max_attempts))
            if message_ids is None:
                return conn.execute(update, (now, self.name)).rowcount
            ids = list(dict.fromkeys(message_ids))
            cursor = conn.executemany(f"{update} AND id = ?", [(now, self.name, i) for i in ids])
            return cursor.rowcount

    def purge(self) -> int:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM queue_messages WHERE queue = ?", (self.name,)).rowcount

    def close(self) -> None:
        """Close every thread's connection; the messages stay in the file."""
        self._closed = True
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            conn.close()

    def _update_held(
        self,
        conn: sqlite3.Connection,
        lease: Lease,
        sets: str,
        values: tuple[float | str, ...],
    ) -> None:
        """Apply ``sets`` to the row ``lease`` still holds, or raise LeaseLostError."""
        cursor = conn.execute(
            f"UPDATE queue_messages SET {sets} "
            "WHERE queue = ? AND id = ? AND state = 'leased' AND receipt = ?",
            (*values, self.name, lease.message_id, lease.receipt),
        )
        if cursor.rowcount != 1:
            raise LeaseLostError(self.name, lease.message_id)

    @contextmanager
    def _transaction(self, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction, translating SQLite errors at this boundary.

        ``immediate`` takes the write lock up front, so a read-then-update (lease, nack) can
        never interleave with another process's; read-only blocks use a plain deferred BEGIN.
        """
        if self._closed:
            raise QueueError(f"sqlite queue {self.name!r} is closed; open it again with open_queue")
        with self._memory_lock or nullcontext():
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise RetryableError(
                        f"queue database {self.path!r} stayed locked for {self._busy_timeout} s; "
                        "retry, or raise busy_timeout in the sqlite URL if writers are many"
                    ) from exc
                raise QueueError(f"queue database {self.path!r} failed: {exc}") from exc
            except sqlite3.Error as exc:
                raise QueueError(f"queue database {self.path!r} failed: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (or the shared one for ':memory:'), opened on first use."""
        if self._pid != os.getpid():
            # forked: the parent's connections must not be used (or closed) here; start afresh
            self._pid, self._local, self._connections = os.getpid(), threading.local(), []
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None and self._memory_lock is not None and self._connections:
            conn = self._connections[0]
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if self._memory_lock is None:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            with self._connections_lock:
                self._connections.append(conn)
            self._local.conn = conn
            if self._memory_lock is None:  # one connection a thread: closed when it ends
                self._local.closer = _ThreadEnd()
                weakref.finalize(
                    self._local.closer, _close_thread_connection, conn, self._connections,
                    self._connections_lock, self._pid,
                ).atexit = False  # fmt: skip
            log.debug("opened queue connection to %s for queue %s", self.path, self.name)
        return conn

    def __repr__(self) -> str:
        return f"SQLiteQueue(path={self.path!r}, name={self.name!r})"


class _ThreadEnd:
    """Kept in a thread's locals beside its connection: collected when that thread ends."""


def _close_thread_connection(
    conn: sqlite3.Connection, connections: list[sqlite3.Connection], lock: threading.Lock, pid: int
) -> None:
    """Close the connection of a thread that ended and forget it (in the process that opened
    it: a forked child drops its parent's thread-locals but must not close their connections)."""
    if os.getpid() != pid:
        return
    with lock:
        if conn not in connections:  # closed already by close()
            return
        connections.remove(conn)
    conn.close()
