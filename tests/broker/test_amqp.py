"""What the RabbitMQ engine adds to the conformance suite: durable quorum queues that survive a
broker restart, client-side leases (background expiry, thread safety, give-back on close), the
broker's own dead-lettering, and URL errors that say what to fix."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from tilerunner.broker import Depth, Lease, LeaseLostError, Message, open_queue
from tilerunner.broker.contract import expiry_reason
from tilerunner.broker.rabbitmq import RabbitQueue
from tilerunner.broker.rabbitmq_connection import RabbitOptions
from tilerunner.errors import InvalidRequestError, RetryableError

from .conftest import amqp_probe

pytestmark = pytest.mark.services

Opener = Callable[..., RabbitQueue]
T = TypeVar("T")
_COLUMNS = ("name", "type", "durable", "arguments")


def messages(*ids: str) -> list[Message]:
    return [Message(i, f"body of {i}".encode()) for i in ids]


@pytest.fixture
def amqp_url() -> str:
    url, skip_reason = amqp_probe()
    if skip_reason:
        pytest.skip(skip_reason)
    return url


@pytest.fixture
def open_rabbit(amqp_url: str) -> Iterator[Opener]:
    """Open handles on one queue name unique to the test; the queues are deleted afterwards."""
    name = f"t-amqp-{uuid.uuid4().hex[:10]}"
    opened: list[RabbitQueue] = []

    def opener(*, max_attempts: int = 3, url: str = amqp_url) -> RabbitQueue:
        queue = open_queue(url, name, max_attempts=max_attempts)
        assert isinstance(queue, RabbitQueue)
        opened.append(queue)
        return queue

    yield opener
    for queue in opened:
        queue.close()
    RabbitQueue.from_url(amqp_url, name).delete_queues()


def eventually(check: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll ``check`` until it returns something truthy (broker-side work is asynchronous)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return result


def test_queues_are_durable_quorum_queues_with_dead_letter_routes(open_rabbit: Opener) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH; it reads the queues' arguments")
    queue = open_rabbit(max_attempts=4)
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "--formatter", "json", *_COLUMNS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    main, delay, dead = rows[queue.name], rows[f"{queue.name}.delay"], rows[f"{queue.name}.dead"]
    assert all(r["type"] == "quorum" and r["durable"] is True for r in (main, delay, dead))
    args = {key: value for key, _type, value in main["arguments"]}
    assert args["x-delivery-limit"] == 3  # max_attempts - 1 redeliveries
    assert args["x-dead-letter-routing-key"] == f"{queue.name}.dead"
    assert args["x-dead-letter-strategy"] == "at-most-once"
    delay_args = {key: value for key, _type, value in delay["arguments"]}
    assert delay_args["x-dead-letter-routing-key"] == queue.name


@pytest.mark.slow
def test_no_loss_across_a_broker_restart(open_rabbit: Opener, amqp_url: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH; it restarts the broker")
    queue = open_rabbit(max_attempts=2)
    queue.publish(messages("r1", "r2", "r3", "r4", "late", "broken"))
    leases = {le.message_id: le for le in queue.lease(6, visibility=60.0)}
    queue.nack(leases["late"], delay=120.0)
    queue.nack(leases["broken"], reason="model raised")
    queue.nack(queue.lease(1, 60.0)[0], reason="model raised again")  # "broken", last attempt
    held = leases["r1"]
    for other in ("r2", "r3", "r4"):
        queue.nack(leases[other])
    before = Depth(visible=3, in_flight=1, delayed=1, dead=1)
    eventually(lambda: queue.depth() == before)  # nacks settle asynchronously

    _restart_rabbitmq(amqp_url, queue.name)

    after = Depth(visible=4, in_flight=0, delayed=1, dead=1)  # r1 came back, nothing lost
    # the call that meets the dead connection fails retryably; the next one reconnects
    eventually(lambda: _retrying(queue.depth) == after)
    with pytest.raises(LeaseLostError):
        queue.ack(held)  # the restart gave that delivery back
    again = queue.lease(10, visibility=60.0)
    assert sorted(le.message_id for le in again) == ["r1", "r2", "r3", "r4"]
    assert {le.message_id: le.body for le in again}["r3"] == b"body of r3"
    (dead,) = queue.dead_letters()
    assert (dead.message_id, dead.reason, dead.attempts) == ("broken", "model raised again", 2)


def test_expired_lease_is_given_back_without_further_calls(open_rabbit: Opener) -> None:
    holder, other = open_rabbit(), open_rabbit()
    holder.publish(messages("a"))
    (lease,) = holder.lease(1, visibility=0.5)
    # nothing calls ``holder`` now: its background reaper must notice the expiry by itself
    (again,) = eventually(lambda: other.lease(1, visibility=30.0))  # type: ignore[misc]
    assert (again.message_id, again.attempt) == ("a", 2)
    with pytest.raises(LeaseLostError):
        holder.extend(lease, 30.0)


def test_heartbeat_and_ack_from_other_threads(open_rabbit: Opener) -> None:
    queue, other = open_rabbit(), open_rabbit()
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, visibility=0.6)
    errors: list[BaseException] = []
    current: list[Lease] = [lease]

    def heartbeat() -> None:
        try:
            for _ in range(8):  # ~1.6 s, well past the first expiry
                current[0] = queue.extend(current[0], visibility=0.6)
                time.sleep(0.2)
        except BaseException as exc:
            errors.append(exc)

    beating = threading.Thread(target=heartbeat)
    beating.start()
    while beating.is_alive():
        assert other.lease(1, 30.0) == []  # never handed out while the heartbeat runs
        time.sleep(0.1)
    beating.join()
    acker = threading.Thread(target=queue.ack, args=(current[0],))
    acker.start()
    acker.join()
    assert errors == []
    assert queue.depth().total == 0
    time.sleep(0.8)  # past the last extension: an acked message must not come back
    assert other.lease(1, 30.0) == []


def test_channel_closed_by_the_broker_loses_leases_and_recovers(open_rabbit: Opener) -> None:
    """What consumer_timeout does: the broker closes the channel holding the deliveries."""
    queue, other = open_rabbit(), open_rabbit()
    queue.publish(messages("a"))
    (lease,) = queue.lease(1, visibility=300.0)
    with queue._link.lock:  # an ack for a delivery tag the broker never gave: it closes the channel
        channel = queue._link._channel
        assert channel is not None
        channel.basic_ack(10_000)
    (again,) = eventually(lambda: other.lease(1, 30.0))  # type: ignore[misc]
    assert (again.message_id, again.attempt) == ("a", 2)
    with pytest.raises(LeaseLostError):
        queue.extend(lease, 30.0)
    queue.publish(messages("b"))  # the handle reconnected by itself
    assert [le.message_id for le in queue.lease(1, 30.0)] == ["b"]


def test_close_gives_leases_back_at_once(open_rabbit: Opener) -> None:
    holder, other = open_rabbit(), open_rabbit()
    holder.publish(messages("a", "b"))
    assert len(holder.lease(2, visibility=300.0)) == 2
    holder.close()
    got: list[Lease] = []

    def both_back() -> bool:
        got.extend(other.lease(2, 30.0))
        return len(got) == 2

    eventually(both_back)
    assert sorted((le.message_id, le.attempt) for le in got) == [("a", 2), ("b", 2)]


def test_consumer_lost_on_last_attempt_is_dead_lettered_by_the_broker(
    open_rabbit: Opener,
) -> None:
    holder, other = open_rabbit(max_attempts=1), open_rabbit(max_attempts=1)
    holder.publish(messages("a"))
    assert len(holder.lease(1, visibility=300.0)) == 1
    closed_at = time.time()
    holder.close()  # like a crash: the broker returns it, over its delivery limit
    (dead,) = eventually(other.dead_letters)  # type: ignore[misc]
    assert (dead.message_id, dead.body, dead.attempts) == ("a", b"body of a", 1)
    assert dead.reason == expiry_reason(1)
    assert abs(dead.died_at - closed_at) < 2.0  # the broker stamps whole seconds
    assert other.lease(1, 30.0) == []
    assert other.requeue_dead(["a"]) == 1
    assert [(le.message_id, le.attempt) for le in other.lease(1, 30.0)] == [("a", 1)]


def test_dead_letters_are_browsed_in_order_without_being_consumed(open_rabbit: Opener) -> None:
    queue = open_rabbit(max_attempts=1)
    queue.publish(messages("c", "a", "b"))
    for lease in sorted(queue.lease(3, 30.0), key=lambda le: "cab".index(le.message_id)):
        queue.nack(lease, reason=f"failed {lease.message_id}")
        time.sleep(0.01)
    first = queue.dead_letters()
    assert [(d.message_id, d.reason) for d in first] == [
        ("c", "failed c"),
        ("a", "failed a"),
        ("b", "failed b"),
    ]
    assert queue.dead_letters(limit=2) == first[:2]
    assert queue.dead_letters() == first  # browsing gave them back
    assert eventually(lambda: queue.depth().dead == 3)


def test_publish_collapses_repeated_ids_within_one_call_only(open_rabbit: Opener) -> None:
    queue = open_rabbit()
    assert queue.publish([*messages("a", "b"), Message("a", b"second a")]) == 2
    assert queue.publish(messages("a")) == 1  # no broker-side dedupe: a second copy
    bodies = sorted(le.body for le in queue.lease(10, 30.0))
    assert bodies == [b"body of a", b"body of a", b"body of b"]


def test_handles_with_other_max_attempts_share_the_existing_queues(open_rabbit: Opener) -> None:
    first = open_rabbit(max_attempts=2)
    admin = open_rabbit(max_attempts=5)  # other arguments: uses the queues as they are
    first.publish(messages("a"))
    assert admin.depth() == Depth(visible=1, in_flight=0, delayed=0, dead=0)


def _with_credentials(url: str, userinfo: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.hostname}:{parts.port or 5672}"))


def test_wrong_password_says_to_fix_it_without_printing_it(amqp_url: str) -> None:
    with pytest.raises(InvalidRequestError, match="refused the login") as info:
        open_queue(_with_credentials(amqp_url, "guest:not-the-password"), "regions")
    assert "not-the-password" not in str(info.value)


def test_unknown_vhost_says_to_fix_it(amqp_url: str) -> None:
    parts = urlsplit(amqp_url)
    with pytest.raises(InvalidRequestError, match="virtual host"):
        open_queue(urlunsplit(parts._replace(path="/no-such-vhost")), "regions")


def test_unreachable_server_is_retryable_and_named() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError, match=f"127.0.0.1:{port}"):
        open_queue(f"amqp://guest:secret@127.0.0.1:{port}/%2F", "regions")


@pytest.mark.parametrize(
    ("query", "match"),
    [("nonsense=1", "not valid"), ("queue_expires=-1", "queue_expires"), ("heartbeat=x", "valid")],
)
def test_bad_url_options_say_what_to_write(query: str, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        RabbitOptions.parse(f"amqp://guest:guest@127.0.0.1/%2F?{query}")


def test_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pika", None)
    with pytest.raises(InvalidRequestError, match=r"tilerunner\[amqp\]"):
        RabbitOptions.parse("amqp://127.0.0.1/%2F")


def _retrying(call: Callable[[], T], attempts: int = 5) -> T:
    for _ in range(attempts - 1):
        try:
            return call()
        except RetryableError:
            time.sleep(0.5)
    return call()


def _restart_rabbitmq(url: str, queue: str, timeout: float = 90.0) -> None:
    """A whole-node restart, always started again; returns once ``queue`` answers again."""
    from tr_services import start_rabbitmq, stop_rabbitmq

    try:
        stop_rabbitmq()
    finally:
        start_rabbitmq()
    deadline = time.monotonic() + timeout
    while True:
        try:
            RabbitQueue.from_url(url, queue, max_attempts=2).close()
            return
        except RetryableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
