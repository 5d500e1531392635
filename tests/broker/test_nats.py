"""What the ``nats://`` engine promises beyond the conformance suite.

Server tests talk to the development machine's NATS (``tests/broker/_nats.py``) and skip, saying
why, when it is down. The restart tests stop and start that server; they put it back in a
``finally`` block and wait until it answers again.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tr_services import NATS_BIN, NATS_START

from tilerunner.broker import Depth, LeaseLostError, Message, open_queue
from tilerunner.broker.jetstream import JetStreamQueue
from tilerunner.broker.jetstream_layout import QueueLayout, decode_id, encode_id, parse_url
from tilerunner.errors import InvalidRequestError, RetryableError

from ._nats import NATS_URL, nats_address, nats_reachable, skip_reason, wait_until_reachable

START = NATS_START

needs_nats = pytest.mark.skipif(not nats_reachable(), reason=skip_reason())
pytestmark = pytest.mark.services


def messages(*ids: str) -> list[Message]:
    return [Message(i, f"body of {i}".encode()) for i in ids]


Opener = Callable[..., JetStreamQueue]


@pytest.fixture
def open_nats() -> Iterator[Opener]:
    """Open test queues on the server (``?options`` appended); purged and closed afterwards."""
    opened: list[JetStreamQueue] = []

    def opener(query: str = "", *, name: str = "", max_attempts: int = 3) -> JetStreamQueue:
        queue = open_queue(
            f"{NATS_URL}{query}", name or f"t-{uuid.uuid4().hex[:12]}", max_attempts=max_attempts
        )
        assert isinstance(queue, JetStreamQueue)
        opened.append(queue)
        return queue

    yield opener
    for queue in opened:
        cleaner = JetStreamQueue.from_url(NATS_URL, queue.name)
        cleaner.purge()
        cleaner.close()
        queue.close()


# -- URL and naming (no server) ----------------------------------------------------------------


def test_url_options_credentials_and_cluster_hosts() -> None:
    settings = parse_url("nats://app:s3cret@n1:4222,n2:4222?timeout=2&ack_wait=10&replicas=3")
    assert settings.servers == ("nats://app:s3cret@n1:4222", "nats://app:s3cret@n2:4222")
    assert "s3cret" not in settings.display_url
    assert (settings.timeout, settings.ack_wait, settings.replicas) == (2.0, 10.0, 3)
    assert parse_url("nats+tls://host").servers == ("tls://host",)
    assert parse_url("nats://").servers == ("nats://127.0.0.1:4222",)
    assert parse_url("nats://h?prefix=tr-prod").prefix == "tr-prod"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("nats://h?visibility=3", "unknown NATS queue option"),
        ("nats://h?timeout=soon", "bad number"),
        ("nats://h?ack_wait=0", "positive seconds"),
        ("nats://h?replicas=7", "replicas"),
        ("nats://h?prefix=a.b", "prefix"),
        ("nats://h/streams", "no path"),
    ],
)
def test_bad_urls_say_what_to_change(url: str, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        parse_url(url)


def test_ids_become_single_subject_tokens_and_back() -> None:
    layout = QueueLayout("tilerunner", "regions-det")
    for message_id in ["job:img:r0", "a.b", "*", "> x", "ünï/cødé", "x" * 200]:
        subject = layout.subject(message_id)
        assert subject.count(".") == 3 and not {"*", ">", " "} & set(encode_id(message_id))
        assert decode_id(subject) == message_id
    assert layout.stream != QueueLayout("tilerunner", "dl_regions-det").dead_stream


def test_unreachable_server_is_a_retryable_error_naming_it() -> None:
    with pytest.raises(RetryableError, match=r"nats://127\.0\.0\.1:1\b"):
        open_queue("nats://127.0.0.1:1?timeout=0.5", "regions")


# -- against the server ------------------------------------------------------------------------


@needs_nats
def test_streams_are_durable_work_queues_that_refuse_repeated_ids(open_nats: Opener) -> None:
    import asyncio

    import nats
    from nats.js.api import ConsumerConfig, StreamConfig

    queue = open_nats()

    async def inspect() -> tuple[StreamConfig, StreamConfig, ConsumerConfig]:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            lay = QueueLayout("tilerunner", queue.name)
            main = (await js.stream_info(lay.stream)).config
            leases = (await js.stream_info(lay.lease_stream)).config
            consumer = (await js.consumer_info(lay.stream, "workers")).config
            return main, leases, consumer
        finally:
            await nc.close()

    main, leases, consumer = asyncio.run(inspect())
    assert (main.retention, main.storage, main.discard) == ("workqueue", "file", "new")
    assert main.max_msgs_per_subject == 1 and main.discard_new_per_subject
    assert leases.storage == "file" and leases.max_msgs_per_subject == 1
    assert (consumer.ack_policy, consumer.max_deliver) == ("explicit", -1)


@needs_nats
def test_ids_with_subject_characters_round_trip(open_nats: Opener) -> None:
    queue = open_nats()
    ids = ["job:img:0", "a.b.c", "*", "> x", "ünïcødé"]
    assert queue.publish(messages(*ids)) == 5
    assert queue.publish(messages(*ids)) == 0
    leases = queue.lease(10, 30.0)
    assert sorted(le.message_id for le in leases) == sorted(ids)
    for lease in leases:
        queue.ack(lease)
    assert queue.depth().total == 0


@needs_nats
def test_visibility_is_per_lease_not_the_consumer_ack_wait(open_nats: Opener) -> None:
    queue = open_nats("?ack_wait=1")
    queue.publish(messages("long", "short"))
    leases = {le.message_id: le for le in queue.lease(2, 0.5)}
    queue.extend(leases["long"], 3.0)  # longer than ack_wait: must hold past it
    time.sleep(1.6)
    (again,) = queue.lease(5, 30.0)
    assert (again.message_id, again.attempt) == ("short", 2)
    assert queue.depth() == Depth(visible=0, in_flight=2, delayed=0, dead=0)
    queue.ack(leases["long"])


@needs_nats
def test_heartbeat_thread_extends_while_other_threads_lease_and_ack(open_nats: Opener) -> None:
    queue = open_nats()
    queue.publish(messages(*(f"r{i}" for i in range(20))))
    (held,) = queue.lease(1, visibility=0.6)
    stop, errors = threading.Event(), []

    def heartbeat() -> None:
        lease = held
        while not stop.wait(0.2):
            try:
                lease = queue.extend(lease, 0.6)
            except LeaseLostError as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)

    beat = threading.Thread(target=heartbeat)
    beat.start()
    ackers: list[threading.Thread] = []
    try:
        # lease and ack the others for well past the held lease's own 0.6 s
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for lease in queue.lease(3, 30.0):
                ackers.append(threading.Thread(target=queue.ack, args=(lease,)))
                ackers[-1].start()
            time.sleep(0.1)
    finally:
        stop.set()
        beat.join()
        for acker in ackers:
            acker.join()
    assert errors == [] and len(ackers) == 19
    assert queue.depth() == Depth(visible=0, in_flight=1, delayed=0, dead=0)
    queue.ack(held)
    assert queue.depth().total == 0


@needs_nats
def test_dead_letter_reason_keeps_any_text(open_nats: Opener) -> None:
    queue = open_nats(max_attempts=1)
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, 30.0)
    reason = "model raised: ValueError('bad\r\ninput') ✗ 100%"
    queue.nack(lease, reason=reason)
    (dead,) = queue.dead_letters()
    assert (dead.message_id, dead.reason, dead.attempts) == ("a", reason, 1)


@needs_nats
def test_existing_stream_with_another_configuration_is_refused(open_nats: Opener) -> None:
    import asyncio

    import nats
    from nats.js.api import StreamConfig

    name = f"t-{uuid.uuid4().hex[:12]}"
    stream = QueueLayout("tilerunner", name).stream

    async def squat(create: bool) -> None:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            if create:
                await js.add_stream(StreamConfig(name=stream, subjects=[f"tilerunner.q.{name}.*"]))
            else:
                await js.delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(squat(True))
    try:
        with pytest.raises(InvalidRequestError, match="different configuration"):
            JetStreamQueue.from_url(NATS_URL, name)
    finally:
        asyncio.run(squat(False))


@pytest.mark.skipif(not Path(NATS_BIN).exists(), reason=f"needs {NATS_BIN}")
def test_server_without_jetstream_is_a_configuration_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port for a private, JetStream-less server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"nats://127.0.0.1:{port}"
    server = subprocess.Popen([NATS_BIN, "-a", "127.0.0.1", "-p", str(port)])
    try:
        assert wait_until_reachable(url, timeout=10)
        with pytest.raises(InvalidRequestError, match=r"does not offer JetStream.*-js"):
            open_queue(f"{url}?timeout=2", "regions")
    finally:
        server.terminate()
        server.wait(timeout=10)


# -- broker restart ------------------------------------------------------------------------------


def _can_restart() -> str:
    if not nats_reachable() or nats_address() != ("127.0.0.1", 4222):
        return "needs the local NATS at 127.0.0.1:4222"
    if not Path(NATS_BIN).exists() or shutil.which("start-stop-daemon") is None:
        return f"needs {NATS_BIN} and start-stop-daemon to restart the server"
    return ""


def _wait_answering(queue: JetStreamQueue, timeout: float = 30.0) -> Depth:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return queue.depth()
        except RetryableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.skipif(bool(_can_restart()), reason=_can_restart() or "-")
@pytest.mark.parametrize("stop_signal", ["TERM", "KILL"])
def test_no_loss_across_a_broker_restart(open_nats: Opener, stop_signal: str) -> None:
    queue = open_nats("?timeout=1")
    queue.publish(messages("a", "b", "c"))
    (held,) = queue.lease(1, visibility=60.0)
    stop = ["start-stop-daemon", "--stop", "--oknodo", "--exec", NATS_BIN, "--retry"]
    try:
        subprocess.run([*stop, f"{stop_signal}/10/KILL/5"], check=True, timeout=30)
        deadline = time.monotonic() + 10
        while nats_reachable() and time.monotonic() < deadline:  # the port closes with the process
            time.sleep(0.1)
        assert not nats_reachable()
        with pytest.raises(RetryableError, match=r"127\.0\.0\.1:4222"):
            queue.lease(1, 30.0)
    finally:
        subprocess.run(START, check=True, timeout=30)
        assert wait_until_reachable(), "nats-server did not come back"
    # the same queue object reconnected by itself; nothing was lost, the lease still holds
    assert _wait_answering(queue) == Depth(visible=2, in_flight=1, delayed=0, dead=0)
    others = queue.lease(5, 30.0)
    assert sorted((le.message_id, le.attempt) for le in others) == [("b", 1), ("c", 1)]
    for lease in [held, *others]:
        queue.ack(lease)
    assert queue.depth().total == 0
