"""The connection side of the ``amqp://`` engine: URL options, one guarded channel, error mapping.

pika's ``BlockingConnection`` is not thread-safe, yet a worker leases on its main thread, extends
from a heartbeat thread and acks from a post-processing thread — and AMQP accepts an ack only on
the channel that received the delivery, so per-thread channels cannot work. Each queue handle
therefore owns exactly one connection with one channel, and every use of it, from any thread
(the handle's background reaper included), happens under one re-entrant lock.

Each use first pumps the connection's I/O (``process_data_events(0)``), and the reaper does so
several times a second, so AMQP heartbeats are answered even while the worker sits in a model,
and a channel the broker closed (``consumer_timeout``) is noticed at the next call.

A lost connection fails the call that noticed it with :class:`RetryableError` (a
:class:`LeaseLostError` for calls about a lease) and the next call connects again. The broker
gives back every delivery of the old connection, so ``generation`` moves on and the queue
forgets the leases it held.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tilerunner.broker.contract import LeaseLostError
from tilerunner.broker.rabbitmq_messages import RabbitQueues
from tilerunner.errors import InvalidRequestError, QueueError, RetryableError, TilerunnerError

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
    from pika.exceptions import AMQPError

__all__ = ["RabbitLink", "RabbitOptions"]

log = logging.getLogger(__name__)

_SCHEMES = ("amqp", "amqps")
_BLOCKED_TIMEOUT = 30.0  # seconds a publish may wait on a memory/disk alarm before failing
_ACCESS_REFUSED, _PRECONDITION_FAILED = 403, 406


@dataclass(frozen=True, slots=True)
class RabbitOptions:
    """A parsed queue URL: what pika gets, what messages show, and our own options."""

    pika_url: str
    display_url: str
    queue_expires: float | None = None
    sets_blocked_timeout: bool = False

    @classmethod
    def parse(cls, url: str) -> RabbitOptions:
        """Split tilerunner's options off the URL and check the rest with pika's own parser."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in _SCHEMES:
            raise InvalidRequestError(
                f"RabbitMQ queue URL {_mask(url)!r} must start with amqp:// (or amqps:// for TLS)"
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        expires = None
        if "queue_expires" in query:
            try:
                expires = float(query.pop("queue_expires"))
            except ValueError:
                expires = -1.0
            if not 0 < expires < float("inf"):
                raise InvalidRequestError(
                    f"queue_expires in the RabbitMQ URL must be a positive number of seconds "
                    f"(it deletes idle queues, for tests only); got it in {_mask(url)!r}"
                )
        pika_url = urlunsplit(parts._replace(query=urlencode(query)))
        options = cls(pika_url, _mask(url), expires, "blocked_connection_timeout" in query)
        pika = _import_pika()
        try:
            pika.URLParameters(pika_url)
        except ValueError as exc:
            raise InvalidRequestError(
                f"RabbitMQ queue URL {options.display_url!r} is not valid ({exc}); the options are "
                "queue_expires and pika's URL parameters (heartbeat, socket_timeout, ...)"
            ) from exc
        return options


class RabbitLink:
    """One connection and channel, shared by all threads under ``lock``; see the module doc."""

    def __init__(self, options: RabbitOptions, queues: RabbitQueues, *, delivery_limit: int):
        self.options = options
        self.queues = queues
        self.lock = threading.RLock()
        self.generation = 0  # bumped on every (re)connect: deliveries of older ones are gone
        self.closed = False
        self._delivery_limit = delivery_limit
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._pid = os.getpid()

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (the reaper never reconnects on its own)."""
        return self._connection is not None and self._pid == os.getpid()

    @contextmanager
    def channel(self, *, lease_of: str | None = None) -> Iterator[BlockingChannel]:
        """The live channel, under the lock; broker errors are translated and drop the link.

        ``lease_of`` names the message a lease call is about: losing the connection then
        raises LeaseLostError, because the broker has given that delivery back.
        """
        import pika.exceptions

        with self.lock:
            if self.closed:
                raise QueueError(
                    f"RabbitMQ queue {self.queues.main!r} is closed; open it again with open_queue"
                )
            try:
                yield self._ensure()
            except pika.exceptions.AMQPError as exc:
                self._drop()
                error = self._translate(exc)
                if lease_of is not None and isinstance(error, RetryableError):
                    raise LeaseLostError(self.queues.main, lease_of) from exc
                raise error from exc

    def close(self) -> None:
        """Close the connection; the broker gives back every delivery it still held."""
        with self.lock:
            self.closed = True
            self._drop()

    def _ensure(self) -> BlockingChannel:
        if self._pid != os.getpid():  # forked: the parent's socket is not ours to use or close
            self._pid, self._connection, self._channel = os.getpid(), None, None
        connection, channel = self._connection, self._channel
        if connection is not None and channel is not None and _is_open(channel):
            connection.process_data_events(0)  # heartbeats; notices a channel the broker closed
            if _is_open(channel):
                return channel
            log.warning(
                "RabbitMQ closed the channel of queue %s (consumer_timeout?); its leases went back",
                self.queues.main,
            )
            self._drop()
        return self._connect()

    def _connect(self) -> BlockingChannel:
        import pika
        import pika.exceptions

        parameters = pika.URLParameters(self.options.pika_url)
        parameters.client_properties = {
            "connection_name": f"tilerunner queue {self.queues.main} pid {os.getpid()}"
        }
        if not self.options.sets_blocked_timeout:
            parameters.blocked_connection_timeout = _BLOCKED_TIMEOUT
        connection = pika.BlockingConnection(parameters)
        try:
            channel = self._declare(connection)
        except pika.exceptions.AMQPError:
            _close_quietly(connection)
            raise
        self._connection, self._channel = connection, channel
        self.generation += 1
        log.info("connected queue %s to %s", self.queues.main, self.options.display_url)
        return channel

    def _declare(self, connection: BlockingConnection) -> BlockingChannel:
        """Create the queues with our arguments, or use them as they are if they differ.

        Existing queues with other arguments (a handle opened with another ``max_attempts``,
        an admin command say) are used as they are instead of failing on RabbitMQ's
        "inequivalent arg" error: the delivery limit is fixed by whoever created the queue.
        """
        import pika.exceptions

        channel = _open_channel(connection)
        for queue, arguments in self._arguments().items():
            try:
                channel.queue_declare(queue, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != _PRECONDITION_FAILED:
                    raise
                log.info("queue %s exists with other arguments (%s); using it", queue, exc)
                channel = _open_channel(connection)
                channel.queue_declare(queue, passive=True)
        return channel

    def _arguments(self) -> dict[str, dict[str, Any]]:
        """Durable quorum queues with the default (at-most-once) dead-lettering.

        ``at-least-once`` dead-lettering runs a worker per queue under one supervisor; on
        RabbitMQ 3.10 queues deleted soon after a node start crash those workers until the
        supervisor gives up, and from then on no such queue can be declared on the node. A
        message lost on a broker-internal dead-letter hop is not lost to the job: its region
        stays pending in the store and the repair sweep publishes it again.
        """
        common: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.options.queue_expires is not None:
            common["x-expires"] = round(self.options.queue_expires * 1000)
        safe: dict[str, Any] = {"x-dead-letter-strategy": "at-most-once"}
        queues = self.queues
        return {
            queues.dead: common,
            queues.delay: {
                **common,
                **safe,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.main,
            },
            queues.main: {
                **common,
                **safe,
                "x-delivery-limit": self._delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.dead,
            },
        }

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and self._pid == os.getpid():
            _close_quietly(connection)

    def _translate(self, exc: AMQPError) -> TilerunnerError:
        """Map pika's errors onto the tree in ``tilerunner.errors``, naming the server."""
        import pika.exceptions as px

        where = f"RabbitMQ at {self.options.display_url}"
        if isinstance(exc, px.ProbableAuthenticationError):
            return InvalidRequestError(
                f"{where} refused the login; fix the user name and password in the queue URL"
            )
        if isinstance(exc, px.ProbableAccessDeniedError):
            return InvalidRequestError(
                f"{where} denied access to the virtual host; fix the vhost in the queue URL "
                "(write '/' as %2F) or grant the user permissions on it"
            )
        if isinstance(exc, px.ChannelClosedByBroker) and exc.reply_code == _ACCESS_REFUSED:
            return InvalidRequestError(
                f"{where} refused access to queue {self.queues.main!r} ({exc.reply_text}); "
                "grant the user configure, write and read permissions on it"
            )
        if isinstance(exc, px.ConnectionBlockedTimeout):
            return RetryableError(
                f"{where} blocked publishing (memory or disk alarm); free resources on the server"
            )
        if isinstance(exc, px.NackError):
            return RetryableError(
                f"{where} refused to store a message of queue {self.queues.main!r} (a max-length "
                "policy with reject-publish, or no queue leader); retry later"
            )
        if isinstance(exc, px.UnroutableError):
            return RetryableError(
                f"queue {self.queues.main!r} vanished from {where}; it is declared again on the "
                "next call, retry"
            )
        if isinstance(exc, px.AMQPConnectionError | px.AMQPChannelError):
            return RetryableError(
                f"lost or could not reach {where} ({exc!r}); check that the server runs and the "
                "URL's host and port; the next call reconnects"
            )
        return QueueError(f"{where} failed on queue {self.queues.main!r}: {exc!r}")


def _is_open(channel: BlockingChannel) -> bool:
    """A function, not the property inline, so the type checker does not pin its value."""
    return channel.is_open


def _open_channel(connection: BlockingConnection) -> BlockingChannel:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def _close_quietly(connection: BlockingConnection) -> None:
    import pika.exceptions

    try:
        if connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError as exc:
        log.debug("closing a broken RabbitMQ connection: %r", exc)


def _mask(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def _import_pika() -> Any:
    try:
        import pika
    except ImportError as exc:
        raise InvalidRequestError(
            "the amqp:// queue engine needs the pika library; install tilerunner[amqp]"
        ) from exc
    return pika
