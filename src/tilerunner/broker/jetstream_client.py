"""The NATS side of the ``nats://`` queue engine: one connection, one event loop, one boundary.

nats-py is asyncio-only while the queue contract is synchronous and called from several threads
(a worker leases on its main thread, heartbeats from another and acks from a third). A
:class:`JetStreamLink` therefore owns a private event loop running in a daemon thread, and every
public call hands a coroutine to it with ``run_coroutine_threadsafe``: the loop serialises all
socket work, so the engine is thread-safe without locks of its own.

This module is also where nats-py's exceptions become tilerunner's: a server that cannot be
reached, a request that timed out while the client reconnects, or JetStream answering "not
available" are :class:`RetryableError` naming the server; a request JetStream refuses for any
other reason is a :class:`QueueError`. The few API errors that carry meaning for the queue
(a per-subject limit, a failed compare-and-set, a missing message) are answered here as values
(``False`` / ``None``) so the engine never catches a client-library exception itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RawStreamMsg, StreamConfig

from tilerunner.errors import InvalidRequestError, QueueError, RetryableError

__all__ = ["JetStreamLink"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_PER_SUBJECT_LIMIT = 10077  # "maximum messages per subject exceeded" (discard-new-per-subject)
_WRONG_LAST_SEQUENCE = 10071  # Nats-Expected-Last-Subject-Sequence did not match
# delete of a sequence that is not (or no longer) stored: "no message found" / "sequence not found"
_MESSAGE_NOT_FOUND = (10057, 10043)
_STREAM_NAME_IN_USE = 10058  # a stream of that name exists with a different configuration
_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


class JetStreamLink:
    """A NATS connection with its own event loop thread; all methods are thread-safe."""

    def __init__(self, servers: list[str], display_url: str, *, timeout: float, name: str) -> None:
        self.display_url = display_url
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"nats-{name}", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._pid = os.getpid()
        try:
            self._nc: Client = self.run(self._connect(servers, name))
        except BaseException:
            self._stop_loop()
            raise
        self._js: JetStreamContext = self._nc.jetstream(timeout=timeout)

    async def _connect(self, servers: list[str], name: str) -> Client:
        """Connect, reconnecting for ever afterwards; give up on the *first* connect in time."""

        async def on_error(exc: Exception) -> None:
            log.debug("NATS client error on %s: %s", self.display_url, exc)

        async def on_disconnect() -> None:
            if not self._closed:
                log.warning("disconnected from NATS at %s; reconnecting", self.display_url)

        async def on_reconnect() -> None:
            log.info("reconnected to NATS at %s", self.display_url)

        client = Client()
        try:
            await asyncio.wait_for(
                client.connect(
                    servers=servers,
                    name=f"tilerunner:{name}",
                    connect_timeout=self.timeout,  # type: ignore[arg-type]  # floats work
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]
                    # no buffering while reconnecting: a request then fails at once (retryable)
                    # instead of reaching the server late, e.g. a pull whose caller gave up
                    pending_size=0,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                ),
                timeout=self.timeout,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await client.close()
            if isinstance(exc, nats.errors.AuthorizationError):
                raise InvalidRequestError(
                    f"NATS at {self.display_url} refused the credentials; fix the user/password "
                    "or token in the queue URL"
                ) from exc
            raise RetryableError(
                f"cannot connect to NATS at {self.display_url} within {self.timeout} s; start the "
                "server (with JetStream, -js) or fix the host and port in the queue URL"
            ) from exc
        return client

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the link's loop and wait for it, translating client errors."""
        if self._closed:
            coro.close()
            raise QueueError(f"NATS link to {self.display_url} is closed")
        if self._pid != os.getpid():
            coro.close()
            raise QueueError(
                f"this NATS queue handle was opened in another process (pid {self._pid}); "
                "open the queue again after forking"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # each request inside has its own timeout; this bound only guards a wedged loop
            return future.result(timeout=self.timeout * 20 + 5)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise RetryableError(
                f"NATS at {self.display_url} did not finish a queue operation in time; retry"
            ) from exc
        except nats.js.errors.ServiceUnavailableError as exc:
            raise RetryableError(
                f"JetStream at {self.display_url} is not available (starting up, or the server "
                "runs without -js); retry, and enable JetStream if this persists"
            ) from exc
        except nats.js.errors.APIError as exc:
            raise QueueError(
                f"JetStream at {self.display_url} refused a queue request: {exc.description} "
                f"(code {exc.err_code}); check the server's limits and permissions"
            ) from exc
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise RetryableError(
                f"NATS at {self.display_url} is unreachable or reconnecting ({type(exc).__name__})"
                "; the request is safe to retry"
            ) from exc

    def close(self) -> None:
        """Flush and close the connection, then stop the loop thread (idempotent)."""
        if self._closed:
            return
        future = asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop)
        self._closed = True
        try:
            future.result(timeout=self.timeout)
        except (concurrent.futures.TimeoutError, nats.errors.Error, OSError) as exc:
            log.debug("closing NATS link to %s did not finish cleanly: %s", self.display_url, exc)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- stream setup -------------------------------------------------------------------------

    async def ensure_stream(self, config: StreamConfig) -> None:
        """Create the stream, or accept an identical one; refuse one configured differently."""
        try:
            await self._js.add_stream(config)
        except nats.js.errors.ServiceUnavailableError as exc:
            # at open time nobody answering the JetStream API means it is switched off
            raise InvalidRequestError(
                f"NATS at {self.display_url} does not offer JetStream; start nats-server with -js "
                "(or a jetstream block in its config) and make sure the account may use it"
            ) from exc
        except nats.js.errors.APIError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
            raise InvalidRequestError(
                f"JetStream stream {config.name!r} on {self.display_url} exists with a different "
                f"configuration ({exc.description}); delete it (nats stream rm {config.name}) or "
                "choose another prefix= in the queue URL"
            ) from exc

    async def ensure_consumer(self, stream: str, config: ConsumerConfig) -> None:
        """Create the durable consumer, or update its editable settings to ``config``."""
        await self._js.add_consumer(stream, config)

    # -- messages -----------------------------------------------------------------------------

    async def publish_new(
        self, subject: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> int | None:
        """Publish; ``None`` when the stream already holds a message on ``subject``."""
        try:
            ack = await self._js.publish(subject, body, headers=dict(headers or {}))
        except nats.js.errors.APIError as exc:
            if exc.err_code == _PER_SUBJECT_LIMIT:
                return None
            raise
        return int(ack.seq)

    async def publish_cas(self, subject: str, body: bytes, last: int) -> int | None:
        """Publish only if ``last`` is still the subject's latest sequence; ``None`` if not."""
        headers = {_EXPECTED_LAST_SUBJECT_SEQ: str(last)}
        try:
            ack = await self._js.publish(subject, body, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.seq)

    async def publish(self, subject: str, body: bytes) -> int:
        """Publish unconditionally and return the stream sequence."""
        return int((await self._js.publish(subject, body)).seq)

    async def last_on_subject(self, stream: str, subject: str) -> RawStreamMsg | None:
        """The stream's latest message on ``subject``, or ``None``."""
        try:
            return await self._js.get_msg(stream, subject=subject, direct=True)
        except nats.js.errors.NotFoundError:
            return None

    async def get(self, stream: str, seq: int) -> RawStreamMsg | None:
        """The message stored at ``seq``, or ``None`` when it was deleted."""
        try:
            return await self._js.get_msg(stream, seq=seq, direct=True)
        except nats.js.errors.NotFoundError:
            return None

    async def delete(self, stream: str, seq: int) -> bool:
        """Delete the message at ``seq``; ``False`` when it is already gone."""
        try:
            return bool(await self._js.delete_msg(stream, seq))
        except nats.js.errors.APIError as exc:
            if exc.err_code in _MESSAGE_NOT_FOUND:
                return False
            raise

    async def count(self, stream: str) -> int:
        """How many messages the stream holds."""
        return int((await self._js.stream_info(stream)).state.messages)

    async def purge(self, stream: str) -> int:
        """Delete every message of the stream; return how many there were."""
        before = await self.count(stream)
        await self._js.purge_stream(stream)
        return before

    async def num_pending(self, stream: str, consumer: str) -> int:
        """Messages the consumer has not delivered yet (never leased)."""
        return int((await self._js.consumer_info(stream, consumer)).num_pending)

    async def pull(self, stream: str, consumer: str, batch: int) -> list[Msg]:
        """Take up to ``batch`` messages the consumer can deliver *now*, never waiting for more.

        A ``no_wait`` pull request is answered with what is available followed by a 404/408
        status, so no request lingers on the server to deliver a message after we stopped
        listening (which would leave it leased by nobody until its ack wait ran out).
        """
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        request = json.dumps({"batch": batch, "no_wait": True}).encode()
        received: list[Msg] = []
        try:
            await self._nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", request, reply=inbox
            )
            while len(received) < batch:
                msg = await sub.next_msg(timeout=self.timeout)
                status = (msg.headers or {}).get("Status")
                if status is None:
                    received.append(msg)
                elif status in ("404", "408"):
                    break
                else:
                    raise QueueError(
                        f"JetStream at {self.display_url} answered a pull from {stream!r} with "
                        f"status {status} {(msg.headers or {}).get('Description', '')}"
                    )
        finally:
            await sub.unsubscribe()
        return received

    async def read_all(self, stream: str, limit: int | None = None) -> list[Msg]:
        """Every message of ``stream`` in order (up to ``limit``), via a throwaway consumer."""
        total = await self.count(stream)
        want = total if limit is None else min(total, limit)
        if want <= 0:
            return []
        info = await self._js.add_consumer(
            stream,
            ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=60.0, mem_storage=True),
        )
        try:
            found: list[Msg] = []
            while len(found) < want and (batch := await self.pull(stream, info.name, want)):
                found.extend(batch)
            return found[:want]
        finally:
            await self._js.delete_consumer(stream, info.name)

    async def reply(self, subject: str, payload: bytes) -> None:
        """Send an acknowledgement (``+ACK``, ``-NAK``, ``+TERM``) and wait for the server."""
        await self._nc.request(subject, payload, timeout=self.timeout)

    async def gather(self, *jobs: Awaitable[T], width: int = 256) -> list[T]:
        """Await ``jobs`` concurrently, at most ``width`` at a time, results in order."""
        gate = asyncio.Semaphore(width)

        async def one(job: Awaitable[T]) -> T:
            async with gate:
                return await job

        return list(await asyncio.gather(*(one(job) for job in jobs)))
