"""The queue contract every broker engine implements.

The broker hands out *leases* on region messages; the database is the system of record.
Every engine (the embedded SQLite one, the memory fake, and the cluster engines) gives the
same guarantees, which ``tests/broker/test_conformance.py`` checks against each of them:

* **Idempotent publish.** A message id is deterministic (``"job:image:region"``). Publishing an
  id that is still on the queue — visible, leased, delayed or dead — is a no-op, so planning a
  job twice enqueues its regions once. Only after an ack removes it can the id be published again.
* **At-least-once delivery.** A message is never handed to two holders at the same time, but a
  lease that is not acked or extended before ``expires_at`` makes it visible again, and every
  delivery counts as one attempt (the first lease has ``attempt == 1``).
* **Receipts.** Each delivery gets a fresh random receipt. ``extend``, ``ack`` and ``nack``
  check it, so a worker that was too slow cannot ack (or extend) the redelivered copy another
  worker is processing: it gets :class:`LeaseLostError` instead. A lease whose time has passed
  but that nobody else has taken yet is still honoured, so a late heartbeat wastes no work.
* **Dead letters.** ``nack`` on the last attempt, or the expiry of a lease that already used
  the last attempt (the worker died every time), moves the message to the dead-letter set with
  its reason. ``requeue_dead`` brings dead messages back with their attempts reset.

Times are seconds since the epoch from an injectable clock, so tests advance time instead of
sleeping.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tilerunner.errors import InvalidRequestError, LeaseLostError

__all__ = [
    "Clock",
    "DeadLetter",
    "Depth",
    "Lease",
    "LeaseLostError",
    "Message",
    "Queue",
    "QueueEngine",
    "check_delay",
    "check_lease_request",
    "check_max_attempts",
    "check_messages",
    "check_queue_name",
    "check_visibility",
    "expiry_reason",
    "nack_reason",
    "new_receipt",
]

Clock = Callable[[], float]
"""Returns the current time in seconds since the epoch (``time.time`` unless a test injects one)."""

# The strictest common subset of the planned engines' queue-name rules (SQS: 80 characters of
# letters, digits, '-' and '_'; NATS stream names forbid '.', '*', '>' and spaces), so a name that
# works on the laptop keeps working when the URL is switched to a cluster engine.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


@dataclass(frozen=True, slots=True)
class Message:
    """A message to publish; ``id`` is deterministic so that re-publishing deduplicates."""

    id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Lease:
    """A time-limited claim on one message; pass it back to ``extend``, ``ack`` or ``nack``."""

    message_id: str
    body: bytes
    receipt: str
    attempt: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that used up its attempts, with the reason it last failed."""

    message_id: str
    body: bytes
    attempts: int
    reason: str
    died_at: float


@dataclass(frozen=True, slots=True)
class Depth:
    """How many messages are in each state right now.

    ``visible``: can be leased now (including expired leases); ``in_flight``: leased and not yet
    expired; ``delayed``: nacked with a delay that has not passed; ``dead``: dead-lettered
    (including expired leases that used the last attempt and wait to be dead-lettered).
    """

    visible: int
    in_flight: int
    delayed: int
    dead: int

    @property
    def total(self) -> int:
        """All messages still on the queue, whatever their state."""
        return self.visible + self.in_flight + self.delayed + self.dead


@runtime_checkable
class Queue(Protocol):
    """One named queue on one engine. All methods are safe to call from several threads."""

    name: str
    max_attempts: int

    def publish(self, messages: Sequence[Message]) -> int:
        """Enqueue messages whose id is not on the queue yet; return how many were new."""
        ...

    def lease(self, n: int, visibility: float) -> list[Lease]:
        """Lease up to ``n`` visible messages for ``visibility`` seconds; never blocks."""
        ...

    def extend(self, lease: Lease, visibility: float) -> Lease:
        """Push the lease's expiry to now + ``visibility``; raise LeaseLostError if lost."""
        ...

    def ack(self, lease: Lease) -> None:
        """Remove the message for good; raise LeaseLostError if the lease was lost."""
        ...

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        """Give the message back, visible after ``delay``; dead-letter it on the last attempt."""
        ...

    def depth(self) -> Depth:
        """Count the messages in each state."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The dead-lettered messages, oldest death first."""
        ...

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        """Make dead messages visible again with attempts reset; ``None`` means all of them."""
        ...

    def purge(self) -> int:
        """Delete every message of this queue, in every state; return how many."""
        ...

    def close(self) -> None:
        """Release connections; the messages stay on durable engines."""
        ...


class QueueEngine(Protocol):
    """What ``engines.ENGINES`` entries point at: a class that opens a queue from its URL."""

    @classmethod
    def from_url(cls, url: str, name: str, *, max_attempts: int, clock: Clock) -> Queue:
        """Open queue ``name`` on the engine that ``url`` designates."""
        ...


def check_queue_name(name: str) -> str:
    """Validate a queue name against the rules every engine accepts."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"queue name {name!r} is not valid; use 1-80 letters, digits, '-' or '_'"
        )
    return name


def check_max_attempts(max_attempts: int) -> int:
    """A queue must allow at least one delivery."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidRequestError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    return max_attempts


def check_messages(messages: Sequence[Message]) -> None:
    """Reject what no engine can store, before anything is written."""
    for message in messages:
        if not isinstance(message, Message):
            raise InvalidRequestError(
                f"publish takes Message objects, got {type(message).__name__}"
            )
        if not isinstance(message.id, str) or not message.id:
            raise InvalidRequestError(f"message id must be a non-empty string, got {message.id!r}")
        if not isinstance(message.body, bytes):
            raise InvalidRequestError(
                f"body of message {message.id!r} must be bytes, got {type(message.body).__name__}; "
                "encode it (e.g. JSON .encode()) before publishing"
            )


def check_lease_request(n: int, visibility: float) -> None:
    """``n`` may be 0 (returns nothing); a lease must last a positive time."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidRequestError(f"lease count n must be an integer >= 0, got {n!r}")
    check_visibility(visibility)


def check_visibility(visibility: float) -> None:
    """A visibility timeout must be a positive, finite number of seconds."""
    if not visibility > 0 or visibility == float("inf"):
        raise InvalidRequestError(
            f"visibility must be a positive number of seconds, got {visibility!r}"
        )


def check_delay(delay: float) -> None:
    """A nack delay is zero (visible at once) or a positive, finite number of seconds."""
    if not delay >= 0 or delay == float("inf"):
        raise InvalidRequestError(f"nack delay must be >= 0 seconds, got {delay!r}")


def expiry_reason(attempts: int) -> str:
    """The dead-letter reason for a message whose every lease expired."""
    return f"lease expired {attempts} times (worker died or was too slow)"


def nack_reason(reason: str, attempts: int) -> str:
    """Keep the caller's reason; say something useful when it gave none."""
    return reason or f"nacked on attempt {attempts} without a reason"


def new_receipt() -> str:
    """An unguessable token that identifies one delivery of one message."""
    return secrets.token_hex(16)
