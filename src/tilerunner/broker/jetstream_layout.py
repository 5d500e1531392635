"""How one tilerunner queue is laid out on JetStream: URL options, names, records, headers.

Everything here is pure (no I/O), so the naming and encoding rules are testable without a
server. A queue ``<name>`` with prefix ``P`` (default ``tilerunner``) owns:

========================  ==========================  ==========================================
stream                    subjects                    holds
========================  ==========================  ==========================================
``P_q_<name>``            ``P.q.<name>.<token>``      the messages (work queue, one per subject)
``P_lease_<name>``        ``P.lease.<name>.<token>``  one lease record per delivered message
``P_dl_<name>``           ``P.dl.<name>.<token>``     dead letters (one per subject)
========================  ==========================  ==========================================

``<token>`` is the message id in unpadded base64url, because ids may contain characters that
are special in subjects ('.', '*', '>', spaces). The ``q`` / ``lease`` / ``dl`` infixes keep the
three families apart even for queue names such as ``dl_x``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from tilerunner.broker.contract import DeadLetter
from tilerunner.errors import InvalidRequestError

__all__ = [
    "CONSUMER",
    "JetStreamSettings",
    "LeaseRecord",
    "QueueLayout",
    "dead_letter_from",
    "dead_letter_headers",
    "decode_id",
    "encode_id",
    "nak",
    "parse_url",
]

CONSUMER = "workers"
_OPTIONS = ("timeout", "ack_wait", "replicas", "prefix")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,32}")
_H_ATTEMPTS, _H_REASON, _H_DIED = "Tilerunner-Attempts", "Tilerunner-Reason", "Tilerunner-Died-At"


@dataclass(frozen=True, slots=True)
class JetStreamSettings:
    """What a ``nats://`` URL says: the servers (credentials kept) and the engine options."""

    servers: tuple[str, ...]
    display_url: str  # the URL without credentials, for messages and logs
    timeout: float = 5.0
    ack_wait: float = 30.0
    replicas: int = 1
    prefix: str = "tilerunner"


@dataclass(frozen=True, slots=True)
class QueueLayout:
    """Stream, subject and consumer names of one queue."""

    prefix: str
    name: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}_q_{self.name}"

    @property
    def lease_stream(self) -> str:
        return f"{self.prefix}_lease_{self.name}"

    @property
    def dead_stream(self) -> str:
        return f"{self.prefix}_dl_{self.name}"

    def subject(self, message_id: str) -> str:
        return f"{self.prefix}.q.{self.name}.{encode_id(message_id)}"

    def lease_subject(self, message_id: str) -> str:
        return f"{self.prefix}.lease.{self.name}.{encode_id(message_id)}"

    def dead_subject(self, message_id: str) -> str:
        return f"{self.prefix}.dl.{self.name}.{encode_id(message_id)}"

    def stream_configs(self, replicas: int) -> list[StreamConfig]:
        """The three streams, file-backed. Queue and dead letters refuse a second message on a
        subject (that is the idempotent publish); lease records keep only the latest."""
        return [
            StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.q.{self.name}.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=replicas,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.NEW,
                discard_new_per_subject=True,
                allow_direct=True,
            ),
            StreamConfig(
                name=self.lease_stream,
                subjects=[f"{self.prefix}.lease.{self.name}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=replicas,
                max_msgs_per_subject=1,
                allow_direct=True,
            ),
            StreamConfig(
                name=self.dead_stream,
                subjects=[f"{self.prefix}.dl.{self.name}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=replicas,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.NEW,
                discard_new_per_subject=True,
                allow_direct=True,
            ),
        ]

    def consumer_config(self, ack_wait: float) -> ConsumerConfig:
        """The durable pull consumer. ``max_deliver`` is unlimited on purpose: attempts are
        counted by the engine, so a message the server would give up on is dead-lettered by
        the next lease instead of lingering unseen in the work queue."""
        return ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=-1,
            filter_subject=f"{self.prefix}.q.{self.name}.*",
        )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What the lease stream knows about one delivered message.

    ``revision`` is the record's own sequence in the lease stream: a compare-and-set on it (or
    deleting exactly that sequence) fails if anyone wrote a newer record meanwhile.
    """

    receipt: str | None  # None after a nack: nobody holds the message
    reply: str  # the delivery's ack subject, usable from any connection
    attempt: int
    seq: int  # the message's sequence in the queue stream
    leased: bool
    until: float  # lease expiry when leased, else the end of the nack delay
    revision: int = 0

    def encode(self) -> bytes:
        fields = (self.receipt, self.reply, self.attempt, self.seq, self.leased, self.until)
        return json.dumps(fields).encode()

    @classmethod
    def decode(cls, data: bytes, revision: int) -> LeaseRecord:
        receipt, reply, attempt, seq, leased, until = json.loads(data)
        return cls(receipt, reply, int(attempt), int(seq), bool(leased), float(until), revision)


def encode_id(message_id: str) -> str:
    """A message id as one subject token."""
    return base64.urlsafe_b64encode(message_id.encode()).decode().rstrip("=")


def decode_id(subject: str) -> str:
    """The message id from the last token of a queue, lease or dead-letter subject."""
    token = subject.rsplit(".", 1)[-1]
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def nak(delay: float) -> bytes:
    """A NAK after which the server redelivers in ``delay`` seconds, not before.

    The server sets the delivery's deadline to now + delay whatever the consumer's ack_wait,
    which is what gives every lease its own visibility.
    """
    return b'-NAK {"delay": %d}' % round(delay * 1e9)


def dead_letter_headers(attempts: int, reason: str, died_at: float) -> dict[str, str]:
    """Headers carried by a dead letter (the reason is percent-encoded: headers are one line)."""
    return {_H_ATTEMPTS: str(attempts), _H_REASON: quote(reason), _H_DIED: repr(died_at)}


def dead_letter_from(msg: Msg) -> DeadLetter:
    """Rebuild a :class:`DeadLetter` from a message of the dead-letter stream."""
    headers = msg.headers or {}
    return DeadLetter(
        message_id=decode_id(msg.subject),
        body=msg.data,
        attempts=int(headers.get(_H_ATTEMPTS, "0")),
        reason=unquote(headers.get(_H_REASON, "")),
        died_at=float(headers.get(_H_DIED, "0")),
    )


def parse_url(url: str) -> JetStreamSettings:
    """Split ``nats://[user:pass@]host[:port][,host:port...][?options]`` into settings."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("nats", "nats+tls"):
        raise InvalidRequestError(f"NATS queue URL {url!r} must start with nats:// or nats+tls://")
    if parts.path not in ("", "/") or parts.fragment:
        raise InvalidRequestError(
            f"NATS queue URL {url!r} takes no path; write nats://host:4222?option=value"
        )
    userinfo, _, hosts = (parts.netloc or "127.0.0.1:4222").rpartition("@")
    client_scheme = "tls" if scheme == "nats+tls" else "nats"
    auth = f"{userinfo}@" if userinfo else ""
    servers = tuple(f"{client_scheme}://{auth}{host}" for host in hosts.split(",") if host)
    if not servers:
        raise InvalidRequestError(f"NATS queue URL {url!r} names no server host")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidRequestError(
            f"unknown NATS queue option(s) {unknown} in {url!r}; known: {', '.join(_OPTIONS)}"
        )
    settings = JetStreamSettings(servers, f"{scheme}://{hosts}")
    try:
        settings = replace(
            settings,
            timeout=float(options.get("timeout", settings.timeout)),
            ack_wait=float(options.get("ack_wait", settings.ack_wait)),
            replicas=int(options.get("replicas", settings.replicas)),
        )
    except ValueError as exc:
        raise InvalidRequestError(
            f"bad number in NATS queue URL {url!r} ({exc}); timeout and ack_wait are seconds, "
            "replicas an integer"
        ) from exc
    if not (0 < settings.timeout < float("inf") and 0 < settings.ack_wait < float("inf")):
        raise InvalidRequestError(f"timeout and ack_wait in {url!r} must be positive seconds")
    if not 1 <= settings.replicas <= 5:
        raise InvalidRequestError(f"replicas in {url!r} must be 1 to 5 (3 in a cluster)")
    prefix = options.get("prefix", settings.prefix)
    if not _PREFIX.fullmatch(prefix):
        raise InvalidRequestError(
            f"prefix {prefix!r} in {url!r} must be 1-32 letters, digits, '-' or '_'"
        )
    return replace(settings, prefix=prefix)
