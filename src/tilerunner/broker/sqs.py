"""``sqs://?region=eu-west-1``: region messages on Amazon SQS standard queues (boto3).

How the contract maps onto SQS (details and limits in ``docs/engines/sqs.md``):

* ``lease`` is ReceiveMessage (10 per call, looped; visibility rounded *up* to whole seconds;
  no long polling, so it never blocks); the receipt is the ReceiptHandle and ``attempt`` is
  ApproximateReceiveCount. ``extend`` and ``nack(delay)`` are ChangeMessageVisibility, ``ack``
  is DeleteMessage.
* Dead letters: the work queue has a redrive policy (maxReceiveCount = ``max_attempts``) to
  ``<name>-dead``, so SQS itself moves a message whose every lease expired. A ``nack`` on the
  last attempt sends a copy carrying the reason to the dead queue and deletes the original.
* SQS accepts a DeleteMessage with an outdated receipt, so lost leases are caught by a ledger of
  the latest receipt per message id that this process took (shared by all its handles on the
  queue). A stale lease from another process is caught only where SQS itself refuses it.
* SQS cannot tell a nack delay from a lease, nor an expired last-attempt lease from a visible
  message (it dead-letters on the next receive). ``depth`` corrects its approximate counters
  with what the ledger knows; other processes see those messages as in flight / visible.
* Standard queues do not deduplicate: ``publish`` drops repeated ids within one call only. The
  system stays correct because completing a region is idempotent (why not FIFO: see the doc).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
)
from tilerunner.broker.sqs_admin import (
    ATTEMPTS,
    DIED_AT,
    MAX_VISIBILITY,
    REASON,
    PurgeInProgressError,
    SQSClient,
    SQSOptions,
    decode,
    encode,
    provision,
)
from tilerunner.errors import InvalidRequestError, QueueError, RetryableError

__all__ = ["SQSQueue"]

log = logging.getLogger(__name__)

_COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]
_PEEK = 30  # seconds a dead letter stays hidden while dead_letters/requeue_dead look at it
_BATCH_BYTES = 200_000  # below SQS's 256 KiB limit on one SendMessageBatch
_REMEMBER = 50_000  # receipts the ledger keeps per queue


@dataclass(slots=True)
class _Held:
    receipt: str
    attempt: int
    expires_at: float


class _Ledger:
    """What this process knows about its own leases on one SQS queue (thread-safe, bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: OrderedDict[str, _Held] = OrderedDict()  # message id -> latest lease
        self._finished: OrderedDict[str, None] = OrderedDict()  # receipts acked/nacked/lost
        self._delayed: dict[str, float] = {}  # message id -> end of its nack delay

    def took(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease.message_id] = _Held(lease.receipt, lease.attempt, lease.expires_at)
            self._held.move_to_end(lease.message_id)
            self._delayed.pop(lease.message_id, None)
            while len(self._held) > _REMEMBER:
                self._held.popitem(last=False)

    def holds(self, lease: Lease) -> bool:
        """False when this process knows a newer receipt, or already finished this one."""
        with self._lock:
            held = self._held.get(lease.message_id)
            return lease.receipt not in self._finished and (
                held is None or held.receipt == lease.receipt
            )

    def extended(self, lease: Lease) -> None:
        with self._lock:
            held = self._held.get(lease.message_id)
            if held is not None and held.receipt == lease.receipt:
                held.expires_at = lease.expires_at

    def finish(self, lease: Lease, *, hidden_until: float = 0.0) -> None:
        with self._lock:
            held = self._held.get(lease.message_id)
            if held is not None and held.receipt == lease.receipt:
                del self._held[lease.message_id]
            self._finished[lease.receipt] = None
            while len(self._finished) > _REMEMBER:
                self._finished.popitem(last=False)
            if hidden_until:
                self._delayed[lease.message_id] = hidden_until

    def drained(self, since: float, max_attempts: int) -> None:
        """A receive found the queue empty: SQS has dead-lettered last-attempt leases that had
        expired before it, so stop counting them as waiting to die."""
        with self._lock:
            for message_id, held in list(self._held.items()):
                if held.attempt >= max_attempts and held.expires_at <= since:
                    del self._held[message_id]

    def corrections(self, now: float, max_attempts: int) -> tuple[int, int]:
        """(expired last-attempt leases, nack-delayed messages) as this process knows them."""
        with self._lock:
            dying = sum(
                1 for h in self._held.values() if h.attempt >= max_attempts and h.expires_at <= now
            )
            self._delayed = {i: until for i, until in self._delayed.items() if until > now}
            return dying, len(self._delayed)

    def forget(self) -> None:
        with self._lock:
            self._held.clear()
            self._delayed.clear()


_LEDGERS: dict[str, _Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def _ledger_for(queue_url: str) -> _Ledger:
    with _LEDGERS_LOCK:
        return _LEDGERS.setdefault(queue_url, _Ledger())


def _seconds(value: float, what: str) -> int:
    """SQS counts visibility in whole seconds: round up, so a lease never ends early."""
    seconds = math.ceil(value)
    if seconds > MAX_VISIBILITY:
        raise InvalidRequestError(
            f"{what} of {value} s is longer than SQS allows ({MAX_VISIBILITY} s = 12 hours); "
            "use a shorter one (and extend leases while working)"
        )
    return seconds


class SQSQueue:
    """One tilerunner queue = an SQS standard queue plus its ``-dead`` queue."""

    def __init__(
        self, client: SQSClient, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> None:
        self.name = check_queue_name(name)
        requested = check_max_attempts(max_attempts)
        self._client = client
        self._clock = clock
        self._closed = False
        self._queues = provision(client, name, requested)
        limit = self._queues.max_receive
        if limit is not None and limit != requested:
            log.warning(
                "SQS queue %s redrives after %d receives, not max_attempts=%d; the smaller wins",
                name,
                limit,
                requested,
            )
        self.max_attempts = min(requested, limit or requested)
        self._ledger = _ledger_for(self._queues.url)

    @classmethod
    def from_url(
        cls, url: str, name: str, *, max_attempts: int = 3, clock: Clock = time.time
    ) -> SQSQueue:
        """Open ``sqs://?region=R&endpoint_url=U&prefix=P&profile=NAME&create=false``.

        The SQS queue is ``<prefix><name>`` with dead letters in ``<prefix><name>-dead``; both
        are created when missing unless ``create=false``. ``endpoint_url`` points at an SQS
        compatible server (moto, LocalStack, a VPC endpoint). Credentials come from the AWS chain.
        """
        check_queue_name(name)
        check_max_attempts(max_attempts)
        client = SQSClient(SQSOptions.from_url(url))
        try:
            return cls(client, name, max_attempts=max_attempts, clock=clock)
        except BaseException:
            client.close()
            raise

    def publish(self, messages: Sequence[Message]) -> int:
        check_messages(messages)
        self._check_open()
        unique: dict[str, Message] = {}
        for message in messages:
            unique.setdefault(message.id, message)
        sent, size = 0, 0
        batch: list[dict[str, Any]] = []
        for message in unique.values():
            entry = encode(message.id, message.body)
            length = len(entry["MessageBody"]) + len(message.id) + 100
            if batch and (len(batch) == 10 or size + length > _BATCH_BYTES):
                sent += self._send(batch)
                batch, size = [], 0
            batch.append(entry)
            size += length
        return sent + (self._send(batch) if batch else 0)

    def lease(self, n: int, visibility: float) -> list[Lease]:
        check_lease_request(n, visibility)
        self._check_open()
        seconds = _seconds(visibility, "visibility")
        leases: list[Lease] = []
        while len(leases) < n:
            started = self._clock()
            want = min(10, n - len(leases))
            reply = self._call(
                "receive_message",
                QueueUrl=self._queues.url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=seconds,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            )
            received = reply.get("Messages", [])
            expires_at = self._clock() + seconds
            for raw in received:
                message_id, body, _ = decode(raw)
                attempt = int(raw["Attributes"]["ApproximateReceiveCount"])
                lease = Lease(message_id, body, raw["ReceiptHandle"], attempt, expires_at)
                self._ledger.took(lease)
                if attempt <= self.max_attempts:
                    leases.append(lease)
                    continue
                # the last lease expired and SQS did not redrive (no policy, or a larger limit)
                try:
                    self._bury(lease, attempt - 1, expiry_reason(attempt - 1))
                except LeaseLostError:
                    log.warning("could not dead-letter %s of queue %s", message_id, self.name)
            if len(received) < want:
                self._ledger.drained(started, self.max_attempts)
                break
        return leases

    def extend(self, lease: Lease, visibility: float) -> Lease:
        check_visibility(visibility)
        self._check_open()
        seconds = _seconds(visibility, "visibility")
        self._on_lease(lease, "change_message_visibility", VisibilityTimeout=seconds)
        extended = Lease(
            lease.message_id, lease.body, lease.receipt, lease.attempt, self._clock() + seconds
        )
        self._ledger.extended(extended)
        return extended

    def ack(self, lease: Lease) -> None:
        self._check_open()
        self._on_lease(lease, "delete_message")
        self._ledger.finish(lease)

    def nack(self, lease: Lease, delay: float = 0.0, reason: str = "") -> None:
        check_delay(delay)
        self._check_open()
        if lease.attempt >= self.max_attempts:
            if not self._ledger.holds(lease):
                raise LeaseLostError(self.name, lease.message_id)
            self._bury(lease, lease.attempt, nack_reason(reason, lease.attempt))
            return
        seconds = _seconds(delay, "nack delay")
        self._on_lease(lease, "change_message_visibility", VisibilityTimeout=seconds)
        self._ledger.finish(lease, hidden_until=self._clock() + seconds if seconds else 0.0)

    def depth(self) -> Depth:
        self._check_open()
        visible, in_flight, delayed = self._counts(self._queues.url)
        dead = sum(self._counts(self._queues.dead_url))
        dying, hidden = self._ledger.corrections(self._clock(), self.max_attempts)
        dying, hidden = min(dying, visible), min(hidden, in_flight)
        return Depth(visible - dying, in_flight - hidden, delayed + hidden, dead + dying)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        found = self._peek(self._queues.dead_url, max(limit, 0))
        self._release(self._queues.dead_url, found)
        letters = [self._letter(raw) for raw in found]
        letters.sort(key=lambda letter: (letter.died_at, letter.message_id))
        return letters[: max(limit, 0)]

    def requeue_dead(self, message_ids: Sequence[str] | None = None) -> int:
        self._check_open()
        wanted = None if message_ids is None else set(message_ids)
        dead_url, moved = self._queues.dead_url, 0
        keep: list[dict[str, Any]] = []  # peeked but not wanted: made visible again at the end
        seen: set[str] = set()
        try:
            while batch := [r for r in self._receive(dead_url, 10) if r["MessageId"] not in seen]:
                seen.update(r["MessageId"] for r in batch)
                chosen = [r for r in batch if wanted is None or decode(r)[0] in wanted]
                keep.extend(r for r in batch if r not in chosen)
                if chosen:  # send first, then delete: a crash in between duplicates, never loses
                    moved += self._send([encode(*decode(r)[:2]) for r in chosen])
                    self._delete(dead_url, chosen)
        finally:
            self._release(dead_url, keep)
        return moved

    def purge(self) -> int:
        self._check_open()
        total = sum(self._counts(self._queues.url)) + sum(self._counts(self._queues.dead_url))
        for url in (self._queues.url, self._queues.dead_url):
            try:
                self._call("purge_queue", QueueUrl=url)
            except PurgeInProgressError:
                # one PurgeQueue per minute: delete what can be received, the running purge
                # takes the rest
                while batch := self._receive(url, 10):
                    self._delete(url, batch)
        self._ledger.forget()
        return total

    def close(self) -> None:
        """Drop the HTTP connections; the messages stay on SQS."""
        if not self._closed:
            self._closed = True
            self._client.close()

    def _on_lease(self, lease: Lease, operation: str, **kwargs: Any) -> None:
        """Run ``operation`` with the lease's receipt, or raise LeaseLostError if it is lost."""
        if not self._ledger.holds(lease):
            raise LeaseLostError(self.name, lease.message_id)
        try:
            self._call(
                operation,
                lease=(self.name, lease.message_id),
                QueueUrl=self._queues.url,
                ReceiptHandle=lease.receipt,
                **kwargs,
            )
        except LeaseLostError:
            self._ledger.finish(lease)
            raise

    def _bury(self, lease: Lease, attempts: int, reason: str) -> None:
        """Dead-letter a leased message: a copy with its reason first, then the original goes."""
        died_at = self._clock()
        extra = {REASON: reason[:16_000], ATTEMPTS: str(attempts), DIED_AT: repr(died_at)}
        self._call(
            "send_message",
            QueueUrl=self._queues.dead_url,
            **encode(lease.message_id, lease.body, **extra),
        )
        self._on_lease(lease, "delete_message")
        self._ledger.finish(lease)
        log.info("dead-lettered %s of queue %s: %s", lease.message_id, self.name, reason)

    def _letter(self, raw: dict[str, Any]) -> DeadLetter:
        message_id, body, attributes = decode(raw)
        # a message SQS redrove itself carries no tilerunner attributes: its leases expired
        attempts = int(attributes.get(ATTEMPTS) or self._queues.max_receive or self.max_attempts)
        reason = attributes.get(REASON) or expiry_reason(attempts)
        # SQS does not record when it redrove a message; its send time is the best bound
        died_at = float(attributes.get(DIED_AT) or int(raw["Attributes"]["SentTimestamp"]) / 1e3)
        return DeadLetter(message_id, body, attempts, reason, died_at)

    def _send(self, entries: list[dict[str, Any]]) -> int:
        reply = self._call(
            "send_message_batch",
            QueueUrl=self._queues.url,
            Entries=[{"Id": str(i), **entry} for i, entry in enumerate(entries)],
        )
        failed = reply.get("Failed", [])
        if failed:
            first = failed[0]
            text = f"{len(failed)} of {len(entries)} messages refused ({first.get('Code')}: "
            text += f"{first.get('Message')})"
            if first.get("SenderFault"):
                raise InvalidRequestError(f"SQS refused to enqueue on {self.name!r}: {text}")
            raise RetryableError(f"SQS could not enqueue on {self.name!r}: {text}; retry")
        return len(reply.get("Successful", []))

    def _receive(self, url: str, count: int) -> list[dict[str, Any]]:
        reply = self._call(
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=count,
            VisibilityTimeout=_PEEK,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        return list(reply.get("Messages", []))

    def _peek(self, url: str, limit: int) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        while len(found) < limit and (batch := self._receive(url, min(10, limit - len(found)))):
            fresh = {raw["MessageId"]: raw for raw in batch if raw["MessageId"] not in found}
            if not fresh:
                break
            found.update(fresh)
        return list(found.values())

    def _release(self, url: str, raws: list[dict[str, Any]]) -> None:
        """Make peeked messages visible again at once."""
        for start in range(0, len(raws), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": raw["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, raw in enumerate(raws[start : start + 10])
            ]
            self._call("change_message_visibility_batch", QueueUrl=url, Entries=entries)

    def _delete(self, url: str, raws: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": r["ReceiptHandle"]} for i, r in enumerate(raws)]
        self._call("delete_message_batch", QueueUrl=url, Entries=entries)

    def _counts(self, url: str) -> tuple[int, int, int]:
        reply = self._call("get_queue_attributes", QueueUrl=url, AttributeNames=_COUNTS)
        values = reply.get("Attributes", {})
        visible, in_flight, delayed = (int(values.get(key, 0)) for key in _COUNTS)
        return visible, in_flight, delayed

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return self._client.call(operation, **kwargs)

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError(f"sqs queue {self.name!r} is closed; open it again with open_queue")

    def __repr__(self) -> str:
        return f"SQSQueue(url={self._queues.url!r}, max_attempts={self.max_attempts})"
