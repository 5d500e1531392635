"""``amqp://user:pass@host:5672/vhost``: the RabbitMQ engine, on durable quorum queues.

Each tilerunner queue ``NAME`` is three quorum queues: ``NAME`` (ready messages, with a delivery
limit and a dead-letter route to ``NAME.dead``), ``NAME.delay`` (nacked-with-delay copies whose
per-message TTL dead-letters them back to ``NAME``) and ``NAME.dead``. Quorum queues are
replicated, fsync'd and survive a broker restart; broker-side dead-lettering is at-most-once
(the store and the repair sweep cover a message lost on that hop).

AMQP has no visibility timeout, so leases are kept on the client, in this handle:

* ``lease`` is ``basic.get`` without auto-ack, one message at a time. An unacked delivery stays
  with this connection until it is acked or nacked, or the connection closes — then the broker
  gives it back at once (so a killed worker's regions return immediately, before expiry).
* The lease's expiry is a local deadline. Every call, and a background reaper several times a
  second, nacks expired deliveries back to the queue (or dead-letters them on the last attempt);
  ``extend`` only moves the deadline, after checking the connection still holds the delivery.
* ``attempt`` is the quorum queue's ``x-delivery-count`` header + 1, plus the attempts a message
  used before it was re-published (through the delay queue), which travel in a header.
* ``nack(delay)`` publishes a copy to ``NAME.delay`` with a TTL and acks the original. Per-message
  TTLs expire only at the head of the queue, so a short delay behind a longer one waits longer.
* Dead letters carry the reason in a header; ``dead_letters`` browses ``NAME.dead`` by getting
  and giving back messages. Messages that hit the broker's delivery limit (a consumer died on
  the last attempt) are reported with the lease-expiry reason.

Limits of the broker: publish cannot deduplicate by id (a repeated id is a second message), and
``depth`` sees other processes' in-flight leases only as absent. See docs/engines/amqp.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
from tilerunner.broker.rabbitmq_connection import RabbitLink, RabbitOptions
from tilerunner.broker.rabbitmq_messages import (
    RabbitQueues,
    attempt_of,
    dead_headers,
    fresh_headers,
    get_one,
    message_count,
    publish_persistent,
    purge_count,
    read_dead_letter,
)
from tilerunner.errors import TilerunnerError

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel

__all__ = ["RabbitQueue"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Held:
    """A delivery this handle holds; ``expires_at`` is the local lease deadline."""

    message_id: str
    body: bytes
    delivery_tag: int
    attempt: int
    expires_at: float


class RabbitQueue:
    """A queue on RabbitMQ; safe for many threads (one channel, one lock) and processes."""

    def __init__(
        self,
        options: RabbitOptions,
        name: str,
        *,
        max_attempts: int = 3,
        clock: Clock = time.time,
        reap_interval: float = 0.2,
    ) -> None:
        self.name = check_queue_name(name)
        self.max_attempts = check_max_attempts(max_attempts)
        self._clock = clock
        self._queues = RabbitQueues(name)
        self._link = RabbitLink(options, self._queues, delivery_limit=max_attempts - 1)
        self._held: dict[str, _Held] = {}  # by receipt
        self._generation = 0
        with self._session():  # connect and declare now: a bad URL fails at open
            pass
        self._stop = threading.Event()
        threading.Thread(
            target=_reap_in_background,
            args=(weakref.ref(self), self._stop, reap_interval),
            name=f"tilerunner-amqp-reaper-{name}",
            daemon=True,
        ).start()

    @classmethod
    def from_url(
        cls, url: str, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> RabbitQueue:
        """Open ``amqp://user:password@host:port/vhost?options`` (``amqps://`` for TLS).

        Options: pika's URL parameters (``heartbeat``, ``socket_timeout``,
        ``blocked_connection_timeout``, ...) and ``queue_expires=SECONDS``, which makes the
        broker delete the queues after that long unused — for test servers, never production.
        """
        return cls(RabbitOptions.parse(url), name, max_attempts=max_attempts, clock=clock)

    def publish(self, messages: Sequence[Message]) -> int:
        """Publish each id once per call (persistent, confirmed); ids already queued repeat."""
        check_messages(messages)
        unique: dict[str, Message] = {}
        for message in messages:
            unique.setdefault(message.id, message)
        with self._session() as channel:
            for message in unique.values():
                publish_persistent(
                    channel, self._queues.main, message.id, message.body, fresh_headers()
                )
        return len(unique)

    def lease(self, n: int, visibility: float) -> list[Lease]:
        check_lease_request(n, visibility)
        leases: list[Lease] = []
        with self._session() as channel:
            now = self._clock()
            self._reap(channel, now)
            while len(leases) < n:
                got = get_one(channel, self._queues.main)
                if got is None:
                    break
                tag, properties, body = got
                message_id = properties.message_id or ""
                attempt = attempt_of(properties.headers)
                if attempt > self.max_attempts:  # its holder died on the last attempt
                    self._bury(
                        channel, message_id, body, attempt - 1, expiry_reason(attempt - 1), now
                    )
                    channel.basic_ack(tag)
                    continue
                receipt = f"{self._generation}-{tag}-{new_receipt()}"
                held = _Held(message_id, body, tag, attempt, now + visibility)
                self._held[receipt] = held
                leases.append(Lease(message_id, body, receipt, attempt, held.expires_at))
        return leases

    def extend(self, lease: Lease, visibility: float) -> Lease:
        check_visibility(visibility)
        with self._session(lease_of=lease.message_id):
            held = self._holding(lease)
            held.expires_at = self._clock() + visibility
        return Lease(lease.message_id, lease.body, lease.receipt, lease.attempt, held.expires_at)

    def ack(self, lease: Lease) -> None:
        with self._session(lease_of=lease.message_id) as channel:
            held = self._holding(lease)
            del self._held[lease.receipt]
            channel.basic_ack(held.delivery_tag)

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        check_delay(delay)
        with self._session(lease_of=lease.message_id) as channel:
            held = self._holding(lease)
            del self._held[lease.receipt]
            if held.attempt >= self.max_attempts:
                why = nack_reason(reason, held.attempt)
                self._bury(channel, held.message_id, held.body, held.attempt, why, self._clock())
                channel.basic_ack(held.delivery_tag)
            elif delay > 0:
                publish_persistent(
                    channel,
                    self._queues.delay,
                    held.message_id,
                    held.body,
                    fresh_headers(held.attempt),
                    expiration_ms=max(1, math.ceil(delay * 1000)),
                )
                channel.basic_ack(held.delivery_tag)
            else:
                channel.basic_nack(held.delivery_tag, requeue=True)

    def depth(self) -> Depth:
        """Broker counts plus this handle's leases; other processes' leases are not visible."""
        with self._session() as channel:
            visible = message_count(channel, self._queues.main)
            delayed = message_count(channel, self._queues.delay)
            dead = message_count(channel, self._queues.dead)
            now, in_flight = self._clock(), 0
            for held in self._held.values():
                if held.expires_at > now:
                    in_flight += 1
                elif held.attempt >= self.max_attempts:
                    dead += 1
                else:
                    visible += 1
        return Depth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Browse the oldest ``limit`` dead letters: get them, then give them back in order."""
        letters: list[DeadLetter] = []
        with self._session() as channel:
            self._reap(channel, self._clock())
            tags: list[int] = []
            while len(letters) < limit:
                got = get_one(channel, self._queues.dead)
                if got is None:
                    break
                tag, properties, body = got
                tags.append(tag)
                letters.append(read_dead_letter(properties, body, self.max_attempts))
            for tag in tags:  # one by one: multiple=True would also return held leases
                channel.basic_nack(tag, requeue=True)
        letters.sort(key=lambda letter: (letter.died_at, letter.message_id))
        return letters

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        """Re-publish chosen dead letters with attempts reset; the rest are given back."""
        wanted = None if message_ids is None else set(message_ids)
        requeued = 0
        with self._session() as channel:
            self._reap(channel, self._clock())
            kept: list[int] = []
            while True:
                got = get_one(channel, self._queues.dead)
                if got is None:
                    break
                tag, properties, body = got
                message_id = properties.message_id or ""
                if wanted is not None and message_id not in wanted:
                    kept.append(tag)
                    continue
                publish_persistent(channel, self._queues.main, message_id, body, fresh_headers())
                channel.basic_ack(tag)
                requeued += 1
            for tag in kept:
                channel.basic_nack(tag, requeue=True)
        return requeued

    def purge(self) -> int:
        """Delete ready, delayed and dead messages and this handle's leases.

        Leases held by other processes cannot be reached: they come back when those processes
        ack, nack, expire or close them.
        """
        with self._session() as channel:
            held, self._held = list(self._held.values()), {}
            for lease in held:
                channel.basic_ack(lease.delivery_tag)
            queues = (self._queues.main, self._queues.delay, self._queues.dead)
            purged = sum(purge_count(channel, queue) for queue in queues)
        return len(held) + purged

    def close(self) -> None:
        """Close the connection: the broker gives this handle's leases back at once."""
        self._stop.set()
        with self._link.lock:
            self._link.close()
            self._held.clear()

    def delete_queues(self) -> None:
        """Delete the three broker queues and everything in them, then close the handle."""
        with self._session() as channel:
            for queue in (self._queues.main, self._queues.delay, self._queues.dead):
                channel.queue_delete(queue)
        self.close()

    def reap(self) -> None:
        """Give back this handle's expired leases now (the background reaper calls this)."""
        with self._link.lock:
            if self._link.closed or not self._link.connected:
                return  # the next call reconnects; a dropped connection held nothing
            with self._session() as channel:
                self._reap(channel, self._clock())

    @contextmanager
    def _session(self, *, lease_of: str | None = None) -> Iterator[BlockingChannel]:
        """The channel under the lock; leases of an older connection are forgotten first."""
        with self._link.channel(lease_of=lease_of) as channel:
            if self._generation != self._link.generation:
                if self._held:
                    log.warning(
                        "queue %s reconnected: %d leases went back", self.name, len(self._held)
                    )
                self._held.clear()
                self._generation = self._link.generation
            yield channel

    def _holding(self, lease: Lease) -> _Held:
        """The delivery ``lease`` still holds, or LeaseLostError (caller holds the session)."""
        held = self._held.get(lease.receipt)
        if held is None or held.message_id != lease.message_id:
            raise LeaseLostError(self.name, lease.message_id)
        return held

    def _reap(self, channel: BlockingChannel, now: float) -> None:
        """Give back expired leases; dead-letter those that used the last attempt."""
        for receipt, held in list(self._held.items()):
            if held.expires_at > now:
                continue
            del self._held[receipt]
            if held.attempt >= self.max_attempts:
                reason = expiry_reason(held.attempt)
                self._bury(
                    channel, held.message_id, held.body, held.attempt, reason, held.expires_at
                )
                channel.basic_ack(held.delivery_tag)
            else:
                channel.basic_nack(held.delivery_tag, requeue=True)

    def _bury(
        self,
        channel: BlockingChannel,
        message_id: str,
        body: bytes,
        attempts: int,
        reason: str,
        died_at: float,
    ) -> None:
        """Publish the dead copy (confirmed) — the caller acks the original afterwards, so a
        crash in between leaves a duplicate, never a loss."""
        headers = dead_headers(attempts, reason, died_at)
        publish_persistent(channel, self._queues.dead, message_id, body, headers)

    def __repr__(self) -> str:
        return f"RabbitQueue(url={self._link.options.display_url!r}, name={self.name!r})"


def _reap_in_background(
    ref: weakref.ref[RabbitQueue], stop: threading.Event, interval: float
) -> None:
    """Expire leases and answer heartbeats while the handle lives; holds no strong reference,
    so a handle that is dropped without ``close`` can still be collected."""
    while not stop.wait(interval):
        queue = ref()
        if queue is None:
            return
        try:
            queue.reap()
        except TilerunnerError as exc:  # the next foreground call reconnects and reports
            log.warning("background reaper of queue %s: %s", queue.name, exc)
        del queue
