"""How tilerunner's queue state rides on RabbitMQ: queue names, message headers, channel calls.

A message is published persistent through the default exchange with its id as the AMQP
``message_id``. Headers carry what the broker does not keep across a re-publish:

* ``tilerunner-attempts``: attempts used before this copy was published (0 for a fresh message;
  the attempt of the nack for a delayed copy; the total for a dead copy). A delivery's attempt
  is that plus the quorum queue's ``x-delivery-count`` (returns since this copy was published)
  plus one.
* ``tilerunner-reason``, ``tilerunner-died-at-us``: on dead copies only (microseconds, because
  pika cannot put floats into AMQP field tables).

Dead letters without a reason header were dead-lettered by the broker itself (its delivery limit:
a consumer died holding the last attempt); their ``x-death`` entry gives the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tilerunner.broker.contract import DeadLetter, expiry_reason

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel
    from pika.spec import BasicProperties

__all__ = [
    "RabbitQueues",
    "attempt_of",
    "dead_headers",
    "fresh_headers",
    "get_one",
    "message_count",
    "publish_persistent",
    "purge_count",
    "read_dead_letter",
]

_ATTEMPTS = "tilerunner-attempts"
_REASON = "tilerunner-reason"
_DIED_AT = "tilerunner-died-at-us"


@dataclass(frozen=True, slots=True)
class RabbitQueues:
    """The three broker queues behind one tilerunner queue (the contract forbids '.' in names,
    so these can never collide with another tilerunner queue)."""

    main: str

    @property
    def delay(self) -> str:
        """Nacked-with-delay copies wait here; per-message TTL dead-letters them back to main."""
        return f"{self.main}.delay"

    @property
    def dead(self) -> str:
        """Dead letters: our copies with a reason, and the broker's delivery-limit casualties."""
        return f"{self.main}.dead"


def fresh_headers(attempts_before: int = 0) -> dict[str, Any]:
    """Headers of a message published to the main or delay queue."""
    return {_ATTEMPTS: attempts_before}


def dead_headers(attempts: int, reason: str, died_at: float) -> dict[str, Any]:
    """Headers of a dead copy: the reason and time travel with the message."""
    return {_ATTEMPTS: attempts, _REASON: reason, _DIED_AT: round(died_at * 1e6)}


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """This delivery's attempt: earlier copies' attempts + the quorum queue's returns + 1."""
    headers = headers or {}
    return _int(headers.get(_ATTEMPTS)) + _int(headers.get("x-delivery-count")) + 1


def read_dead_letter(properties: BasicProperties, body: bytes, max_attempts: int) -> DeadLetter:
    """A dead letter from ``NAME.dead``: our copy with its reason, or a broker-made one.

    The broker does not record how often it delivered a message it dead-letters, so for those
    the reader's ``max_attempts`` (what the delivery limit was made from) is assumed.
    """
    headers: Mapping[str, Any] = properties.headers or {}
    message_id = properties.message_id or ""
    reason = headers.get(_REASON)
    if isinstance(reason, bytes | str):
        text = reason.decode() if isinstance(reason, bytes) else reason
        died_at = _int(headers.get(_DIED_AT)) / 1e6
        return DeadLetter(message_id, body, _int(headers.get(_ATTEMPTS)), text, died_at)
    attempts = _int(headers.get(_ATTEMPTS)) + max_attempts
    deaths = headers.get("x-death")
    death: Mapping[str, Any] = deaths[0] if isinstance(deaths, list) and deaths else {}
    why = death.get("reason")
    if isinstance(why, bytes):
        why = why.decode()
    text = (
        expiry_reason(attempts) if why == "delivery_limit" else f"dead-lettered by RabbitMQ: {why}"
    )
    stamp = death.get("time")
    died_at = stamp.timestamp() if isinstance(stamp, datetime) else 0.0
    return DeadLetter(message_id, body, attempts, text, died_at)


def publish_persistent(
    channel: BlockingChannel,
    queue: str,
    message_id: str,
    body: bytes,
    headers: Mapping[str, Any],
    *,
    expiration_ms: int | None = None,
) -> None:
    """Publish through the default exchange and wait for the broker's confirm.

    ``mandatory`` makes a vanished queue an error instead of a silent drop.
    """
    import pika

    properties = pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        headers=dict(headers),
        expiration=None if expiration_ms is None else str(expiration_ms),
    )
    channel.basic_publish("", queue, body, properties, mandatory=True)


def message_count(channel: BlockingChannel, queue: str) -> int:
    """Ready messages of ``queue`` (unacked deliveries are not counted by the broker)."""
    return channel.queue_declare(queue, passive=True).method.message_count


def purge_count(channel: BlockingChannel, queue: str) -> int:
    """Delete the ready messages of ``queue``; return how many there were."""
    return channel.queue_purge(queue).method.message_count or 0


def get_one(channel: BlockingChannel, queue: str) -> tuple[int, BasicProperties, bytes] | None:
    """``basic.get`` without auto-ack: (delivery tag, properties, body), or None when empty."""
    method, properties, body = channel.basic_get(queue, auto_ack=False)
    if method is None or properties is None or body is None or method.delivery_tag is None:
        return None
    return method.delivery_tag, properties, body


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
