"""``nats://host:4222``: the queue on NATS JetStream, for clusters.

Each queue is three file-backed streams (names in ``jetstream_layout``):

* **the messages** — a *work-queue* stream with one subject per message id, at most one
  message per subject and *discard new per subject*: the server itself refuses an id that is
  already stored, atomically, so publish is idempotent for as long as the message exists and an
  id is publishable again the moment an ack removes it. (The ``Nats-Msg-Id`` duplicate window
  would also swallow a legitimate re-publish after an ack, so it is not used.) A durable pull
  consumer hands out leases and redelivers what is not acked in time, even when the worker that
  held it was killed.
* **lease records** — one small record per delivered message: the current receipt, attempt and
  expiry. JetStream accepts an ack from *any* earlier delivery of a message, so receipts are
  checked against this record, and every change to it is a compare-and-set on its sequence: of
  a stale worker and the current holder, exactly one wins. ``depth()`` reads the records to
  tell in-flight, delayed and expired messages apart.
* **dead letters** — body plus attempts, reason and time of death in headers.

Visibility: the consumer's ``ack_wait`` is one value for every lease, so each lease sets its
own deadline with a delayed NAK right after delivery (the server keeps the message unacked and
redelivers it when the delay has passed), and ``extend`` sends another one. Attempts are the
server's delivery count; ``max_attempts`` is enforced here rather than by the consumer's
``max_deliver``, so a delivery that comes back after the last attempt (its last lease expired)
is dead-lettered by whoever receives it instead of being silently abandoned by the server.
See ``docs/engines/nats.md`` for durability settings and limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

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

try:
    from nats.aio.msg import Msg

    from tilerunner.broker.jetstream_client import JetStreamLink
    from tilerunner.broker.jetstream_layout import (
        CONSUMER,
        JetStreamSettings,
        LeaseRecord,
        QueueLayout,
        dead_letter_from,
        dead_letter_headers,
        decode_id,
        nak,
        parse_url,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise InvalidRequestError(
        f"the nats:// queue engine needs nats-py ({exc}); install tilerunner[nats]"
    ) from exc

__all__ = ["JetStreamQueue"]

log = logging.getLogger(__name__)


class JetStreamQueue:
    """A durable queue on NATS JetStream; safe for many threads, processes and hosts.

    ``clock`` must be the wall clock (the server keeps lease time); it is injectable only for
    symmetry with the other engines.
    """

    def __init__(
        self,
        settings: JetStreamSettings,
        name: str,
        *,
        max_attempts: int = 3,
        clock: Clock = time.time,
    ) -> None:
        self.name = check_queue_name(name)
        self.max_attempts = check_max_attempts(max_attempts)
        self.settings = settings
        self._clock = clock
        self._closed = False
        self._layout = QueueLayout(settings.prefix, name)
        self._link = JetStreamLink(
            list(settings.servers), settings.display_url, timeout=settings.timeout, name=name
        )
        try:
            self._link.run(self._ensure())
        except BaseException:
            self._link.close()
            raise

    @classmethod
    def from_url(
        cls, url: str, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> JetStreamQueue:
        """Open ``nats://[user:pass@]host[:port][,host:port...][?options]``; ``nats+tls://``
        for TLS. Options: ``timeout`` (seconds per request, 5), ``ack_wait`` (seconds a fresh
        delivery stays invisible until its lease sets its own deadline, 30), ``replicas``
        (stream replicas, 1; 3 in a cluster), ``prefix`` (of stream names, tilerunner).
        """
        return cls(parse_url(url), name, max_attempts=max_attempts, clock=clock)

    async def _ensure(self) -> None:
        for config in self._layout.stream_configs(self.settings.replicas):
            await self._link.ensure_stream(config)
        await self._link.ensure_consumer(
            self._layout.stream, self._layout.consumer_config(self.settings.ack_wait)
        )

    # -- the contract -------------------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> int:
        check_messages(messages)
        self._check_open()
        first = {m.id: m for m in reversed(messages)}  # of repeated ids, the first one wins
        return self._link.run(self._publish([m for m in messages if first[m.id] is m]))

    async def _publish(self, messages: list[Message]) -> int:
        if not messages:
            return 0
        lay = self._layout
        if await self._link.count(lay.dead_stream):  # a dead id is still "on the queue"
            dead = await self._link.gather(
                *(
                    self._link.last_on_subject(lay.dead_stream, lay.dead_subject(m.id))
                    for m in messages
                )
            )
            messages = [m for m, found in zip(messages, dead, strict=True) if found is None]
        seqs = await self._link.gather(
            *(self._link.publish_new(lay.subject(m.id), m.body) for m in messages)
        )
        return sum(seq is not None for seq in seqs)

    def lease(self, n: int, visibility: float) -> list[Lease]:
        check_lease_request(n, visibility)
        self._check_open()
        return self._link.run(self._lease(n, visibility)) if n else []

    async def _lease(self, n: int, visibility: float) -> list[Lease]:
        leases: list[Lease] = []
        while len(leases) < n:
            msgs = await self._link.pull(self._layout.stream, CONSUMER, n - len(leases))
            taken = [
                le
                for le in await self._link.gather(*(self._take(m, visibility) for m in msgs))
                if le
            ]
            leases.extend(taken)
            if len(taken) == len(msgs):
                break  # nothing was dead-lettered instead, so nothing more is visible now
        return leases

    async def _take(self, msg: Msg, visibility: float) -> Lease | None:
        """Turn one delivery into a lease, or bury it if it came back after its last attempt."""
        meta = msg.metadata
        attempt, seq = int(meta.num_delivered), int(meta.sequence.stream)
        message_id = decode_id(msg.subject)
        if attempt > self.max_attempts:
            await self._bury_expired(message_id, msg, seq, attempt - 1)
            return None
        expires_at = self._clock() + visibility
        record = LeaseRecord(new_receipt(), msg.reply, attempt, seq, True, expires_at)
        await asyncio.gather(
            self._link.reply(msg.reply, nak(visibility)),  # the server-side deadline
            self._link.publish(self._layout.lease_subject(message_id), record.encode()),
        )
        return Lease(message_id, msg.data, record.receipt or "", attempt, expires_at)

    def extend(self, lease: Lease, visibility: float) -> Lease:
        check_visibility(visibility)
        self._check_open()
        return self._link.run(self._extend(lease, visibility))

    async def _extend(self, lease: Lease, visibility: float) -> Lease:
        record = await self._held(lease)
        expires_at = self._clock() + visibility
        await self._swap(lease, record, replace(record, until=expires_at))
        await self._link.reply(record.reply, nak(visibility))
        return Lease(lease.message_id, lease.body, lease.receipt, lease.attempt, expires_at)

    def ack(self, lease: Lease) -> None:
        self._check_open()
        self._link.run(self._ack(lease))

    async def _ack(self, lease: Lease) -> None:
        record = await self._held(lease)
        await self._claim(lease, record)
        await self._link.reply(record.reply, b"+ACK")

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        check_delay(delay)
        self._check_open()
        self._link.run(self._nack(lease, delay, reason))

    async def _nack(self, lease: Lease, delay: float, reason: str) -> None:
        record = await self._held(lease)
        now = self._clock()
        if record.attempt >= self.max_attempts:
            await self._claim(lease, record)
            why = nack_reason(reason, record.attempt)
            await self._bury(lease.message_id, lease.body, record, why, now)
            return
        released = replace(record, receipt=None, leased=False, until=now + delay)
        await self._swap(lease, record, released)
        await self._link.reply(record.reply, nak(delay) if delay > 0 else b"-NAK")

    def depth(self) -> Depth:
        self._check_open()
        return self._link.run(self._depth())

    async def _depth(self) -> Depth:
        lay = self._layout
        fresh, records, dead = await asyncio.gather(
            self._link.num_pending(lay.stream, CONSUMER),
            self._records(),
            self._link.count(lay.dead_stream),
        )
        now = self._clock()
        visible, in_flight, delayed = fresh, 0, 0
        for r in records:
            if r.until > now:
                in_flight += r.leased
                delayed += not r.leased
            elif r.leased and r.attempt >= self.max_attempts:
                dead += 1  # expired on its last attempt: dead-lettered on the next touch
            else:
                visible += 1
        return Depth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        return self._link.run(self._dead_letters(limit))

    async def _dead_letters(self, limit: int) -> list[DeadLetter]:
        await self._reap()
        letters = [dead_letter_from(m) for m in await self._link.read_all(self._layout.dead_stream)]
        letters.sort(key=lambda d: (d.died_at, d.message_id))
        return letters[: max(limit, 0)]

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        self._check_open()
        wanted = None if message_ids is None else set(message_ids)
        return self._link.run(self._requeue(wanted))

    async def _requeue(self, wanted: set[str] | None) -> int:
        await self._reap()
        lay, requeued = self._layout, 0
        for msg in await self._link.read_all(lay.dead_stream):
            message_id = decode_id(msg.subject)
            if wanted is None or message_id in wanted:
                # queue first, then drop the dead copy: the id is never absent in between
                await self._link.publish_new(lay.subject(message_id), msg.data)
                requeued += await self._link.delete(lay.dead_stream, msg.metadata.sequence.stream)
        return requeued

    def purge(self) -> int:
        self._check_open()
        return self._link.run(self._purge())

    async def _purge(self) -> int:
        lay = self._layout
        live, dead, _ = await asyncio.gather(
            self._link.purge(lay.stream),
            self._link.purge(lay.dead_stream),
            self._link.purge(lay.lease_stream),
        )
        return live + dead

    def close(self) -> None:
        """Close the connection; messages and leases stay on the server."""
        self._closed = True
        self._link.close()

    # -- lease records and burial --------------------------------------------------------------

    async def _record(self, message_id: str) -> LeaseRecord | None:
        lay = self._layout
        found = await self._link.last_on_subject(lay.lease_stream, lay.lease_subject(message_id))
        if found is None or found.data is None or found.seq is None:
            return None
        return LeaseRecord.decode(found.data, int(found.seq))

    async def _records(self) -> list[LeaseRecord]:
        msgs = await self._link.read_all(self._layout.lease_stream)
        return [LeaseRecord.decode(m.data, int(m.metadata.sequence.stream)) for m in msgs]

    async def _held(self, lease: Lease) -> LeaseRecord:
        """The record proving ``lease`` is the current delivery, or LeaseLostError."""
        record = await self._record(lease.message_id)
        if record is None or record.receipt != lease.receipt:
            raise LeaseLostError(self.name, lease.message_id)
        return record

    async def _swap(self, lease: Lease, old: LeaseRecord, new: LeaseRecord) -> None:
        """Replace the record, unless somebody changed it since it was read."""
        subject = self._layout.lease_subject(lease.message_id)
        if await self._link.publish_cas(subject, new.encode(), old.revision) is None:
            raise LeaseLostError(self.name, lease.message_id)

    async def _claim(self, lease: Lease, record: LeaseRecord) -> None:
        """Delete the record if it is still current: whoever succeeds owns the message."""
        if not await self._link.delete(self._layout.lease_stream, record.revision):
            raise LeaseLostError(self.name, lease.message_id)

    async def _bury(
        self, message_id: str, body: bytes, record: LeaseRecord, reason: str, died_at: float
    ) -> None:
        """Store the dead letter, then remove the message from the queue (in that order, so a
        crash in between leaves a duplicate that the dead-letter stream refuses, never a loss)."""
        lay = self._layout
        headers = dead_letter_headers(record.attempt, reason, died_at)
        await self._link.publish_new(lay.dead_subject(message_id), body, headers)
        await self._link.reply(record.reply, b"+TERM")
        await self._link.delete(lay.stream, record.seq)
        log.info("dead-lettered %r on queue %s: %s", message_id, self.name, reason)

    async def _bury_expired(self, message_id: str, msg: Msg, seq: int, attempts: int) -> None:
        """A delivery after the last attempt: its last lease expired, so it is dead."""
        record = await self._record(message_id)
        died_at = self._clock()
        if record is not None and record.seq == seq:
            if record.leased and record.until > died_at:
                return  # its holder extended it just now: this delivery expires unused
            if not await self._link.delete(self._layout.lease_stream, record.revision):
                return  # changed under us: whoever changed it decides
            died_at = min(died_at, record.until)
        elif record is not None:  # left by an earlier message with this id: drop it too
            await self._link.delete(self._layout.lease_stream, record.revision)
        stand_in = LeaseRecord(None, msg.reply, attempts, seq, False, died_at)
        await self._bury(message_id, msg.data, stand_in, expiry_reason(attempts), died_at)

    async def _reap(self) -> None:
        """Dead-letter expired leases on their last attempt that nobody received again yet."""
        now = self._clock()
        for r in await self._records():
            if r.leased and r.until <= now and r.attempt >= self.max_attempts:
                found = await self._link.get(self._layout.stream, r.seq)
                if found is None or found.subject is None:
                    continue
                if await self._link.delete(self._layout.lease_stream, r.revision):
                    body = found.data or b""
                    await self._bury(
                        decode_id(found.subject), body, r, expiry_reason(r.attempt), r.until
                    )

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError(f"NATS queue {self.name!r} is closed; open it again with open_queue")

    def __repr__(self) -> str:
        return f"JetStreamQueue(url={self.settings.display_url!r}, name={self.name!r})"
