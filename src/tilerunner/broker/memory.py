"""``memory://``: an in-process queue with exactly the contract's semantics.

It exists so tests of the planner, the worker loop and the API can run a real lease / extend /
ack / dead-letter cycle without a database. Queues are shared by name within the process — two
``open_queue("memory://", "regions")`` calls see the same messages, like two connections to one
broker — and survive ``close()``; :meth:`MemoryQueue.reset_all` forgets them (call it between
tests). Nothing crosses a process boundary.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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
from tilerunner.errors import InvalidRequestError, QueueError

__all__ = ["MemoryQueue"]

_READY, _LEASED, _DEAD = "ready", "leased", "dead"


@dataclass(slots=True)
class _Entry:
    """One message. For a leased entry ``visible_at`` is the lease expiry: both mean
    "the time from which it can be leased", which keeps the lease scan to one comparison."""

    body: bytes
    seq: int
    state: str = _READY
    visible_at: float = 0.0
    attempts: int = 0
    receipt: str | None = None
    reason: str = ""
    died_at: float = 0.0


@dataclass(slots=True)
class _Shelf:
    """The shared state of one named queue."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[str, _Entry] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=itertools.count)


_SHELVES: dict[str, _Shelf] = {}
_SHELVES_LOCK = threading.Lock()


class MemoryQueue:
    """An in-process queue; see the module docstring for its sharing rules."""

    def __init__(self, name: str, *, max_attempts: int = 3, clock: Clock = time.time) -> None:
        self.name = check_queue_name(name)
        self.max_attempts = check_max_attempts(max_attempts)
        self._clock = clock
        self._closed = False
        with _SHELVES_LOCK:
            self._shelf = _SHELVES.setdefault(name, _Shelf())

    @classmethod
    def from_url(
        cls, url: str, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> MemoryQueue:
        """Open ``memory://``; the URL carries nothing else, and anything else is a mistake."""
        parts = urlsplit(url)
        if parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidRequestError(
                f"memory queue URL {url!r} takes no host, path or options; use 'memory://'"
            )
        return cls(name, max_attempts=max_attempts, clock=clock)

    @classmethod
    def reset_all(cls) -> None:
        """Forget every memory queue of this process (for test isolation)."""
        with _SHELVES_LOCK:
            _SHELVES.clear()

    def publish(self, messages: Sequence[Message]) -> int:
        check_messages(messages)
        self._check_open()
        now = self._clock()
        added = 0
        with self._shelf.lock:
            entries = self._shelf.entries
            for message in messages:
                if message.id not in entries:
                    entries[message.id] = _Entry(
                        body=message.body, seq=next(self._shelf.seq), visible_at=now
                    )
                    added += 1
        return added

    def lease(self, n: int, visibility: float) -> list[Lease]:
        check_lease_request(n, visibility)
        self._check_open()
        if n == 0:
            return []
        now = self._clock()
        expires_at = now + visibility
        leases: list[Lease] = []
        with self._shelf.lock:
            self._reap_expired(now)
            available = (
                (entry.visible_at, entry.seq, message_id)
                for message_id, entry in self._shelf.entries.items()
                if entry.state != _DEAD and entry.visible_at <= now
            )
            for _, _, message_id in heapq.nsmallest(n, available):
                entry = self._shelf.entries[message_id]
                entry.state = _LEASED
                entry.attempts += 1
                entry.receipt = new_receipt()
                entry.visible_at = expires_at
                leases.append(
                    Lease(message_id, entry.body, entry.receipt, entry.attempts, expires_at)
                )
        return leases

    def extend(self, lease: Lease, visibility: float) -> Lease:
        check_visibility(visibility)
        self._check_open()
        expires_at = self._clock() + visibility
        with self._shelf.lock:
            entry = self._held(lease)
            entry.visible_at = expires_at
        return Lease(lease.message_id, lease.body, lease.receipt, lease.attempt, expires_at)

    def ack(self, lease: Lease) -> None:
        self._check_open()
        with self._shelf.lock:
            self._held(lease)
            del self._shelf.entries[lease.message_id]

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        check_delay(delay)
        self._check_open()
        now = self._clock()
        with self._shelf.lock:
            entry = self._held(lease)
            entry.receipt = None
            if entry.attempts >= self.max_attempts:
                entry.state = _DEAD
                entry.reason = nack_reason(reason, entry.attempts)
                entry.died_at = now
            else:
                entry.state = _READY
                entry.reason = reason
                entry.visible_at = now + delay

    def depth(self) -> Depth:
        self._check_open()
        now = self._clock()
        visible = in_flight = delayed = dead = 0
        with self._shelf.lock:
            for entry in self._shelf.entries.values():
                if entry.state == _DEAD or (
                    entry.state == _LEASED
                    and entry.visible_at <= now
                    and entry.attempts >= self.max_attempts
                ):
                    dead += 1
                elif entry.visible_at <= now:
                    visible += 1
                elif entry.state == _LEASED:
                    in_flight += 1
                else:
                    delayed += 1
        return Depth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        with self._shelf.lock:
            self._reap_expired(self._clock())
            dead = [
                DeadLetter(message_id, e.body, e.attempts, e.reason, e.died_at)
                for message_id, e in self._shelf.entries.items()
                if e.state == _DEAD
            ]
        dead.sort(key=lambda letter: (letter.died_at, letter.message_id))
        return dead[: max(limit, 0)]

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        self._check_open()
        now = self._clock()
        requeued = 0
        with self._shelf.lock:
            self._reap_expired(now)
            entries = self._shelf.entries
            wanted = entries.keys() if message_ids is None else set(message_ids)
            for message_id in wanted:
                entry = entries.get(message_id)
                if entry is not None and entry.state == _DEAD:
                    entry.state, entry.attempts, entry.visible_at = _READY, 0, now
                    entry.reason, entry.died_at = "", 0.0
                    requeued += 1
        return requeued

    def purge(self) -> int:
        self._check_open()
        with self._shelf.lock:
            count = len(self._shelf.entries)
            self._shelf.entries.clear()
        return count

    def close(self) -> None:
        """Mark this handle closed; the messages stay for the next ``open_queue`` in-process."""
        self._closed = True

    def _reap_expired(self, now: float) -> None:
        """Dead-letter expired leases that used the last attempt (caller holds the lock)."""
        for entry in self._shelf.entries.values():
            if (
                entry.state == _LEASED
                and entry.visible_at <= now
                and entry.attempts >= self.max_attempts
            ):
                entry.state, entry.receipt = _DEAD, None
                entry.reason = expiry_reason(entry.attempts)
                entry.died_at = entry.visible_at

    def _held(self, lease: Lease) -> _Entry:
        """The entry ``lease`` still holds, or LeaseLostError (caller holds the lock)."""
        entry = self._shelf.entries.get(lease.message_id)
        if entry is None or entry.state != _LEASED or entry.receipt != lease.receipt:
            raise LeaseLostError(self.name, lease.message_id)
        return entry

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError(f"memory queue {self.name!r} is closed; open it again with open_queue")

    def __repr__(self) -> str:
        return f"MemoryQueue(name={self.name!r}, max_attempts={self.max_attempts})"
