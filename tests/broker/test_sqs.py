"""What the ``sqs://`` engine does beyond the contract: URL options, queue provisioning (redrive
policy, retention), the body codec, whole-second visibility, dead letters that SQS moved by
itself, the in-process receipt ledger, and how boto3 failures are translated.

Everything runs against moto's server mode on loopback (the session fixture ``moto_server``);
never against AWS.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tilerunner.broker import Depth, LeaseLostError, Message, open_queue
from tilerunner.broker.contract import expiry_reason
from tilerunner.broker.sqs import SQSQueue
from tilerunner.errors import InvalidRequestError, QueueError, RetryableError

from .conftest import _sqs_url

boto3 = pytest.importorskip("boto3")


@dataclass
class Server:
    """A moto endpoint, the queue URL for it, a name unique to the test and a raw boto3 client."""

    url: str
    name: str
    raw: Any

    def open(self, *, max_attempts: int = 3, url: str | None = None) -> SQSQueue:
        queue = open_queue(url or self.url, self.name, max_attempts=max_attempts)
        assert isinstance(queue, SQSQueue)
        return queue

    def queue_url(self, name: str) -> str:
        return str(self.raw.get_queue_url(QueueName=name)["QueueUrl"])

    def attributes(self, name: str) -> dict[str, str]:
        reply = self.raw.get_queue_attributes(QueueUrl=self.queue_url(name), AttributeNames=["All"])
        return dict(reply["Attributes"])

    def receive_raw(self, name: str) -> list[dict[str, Any]]:
        """A consumer that is not tilerunner: receives and gives the message straight back."""
        reply = self.raw.receive_message(
            QueueUrl=self.queue_url(name),
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
        )
        return list(reply.get("Messages", []))


@pytest.fixture
def sqs(moto_server: str) -> Iterator[Server]:
    server = Server(
        _sqs_url(moto_server),
        f"t-{uuid.uuid4().hex[:12]}",
        boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1"),
    )
    yield server
    listed = server.raw.list_queues(QueueNamePrefix=server.name).get("QueueUrls", [])
    listed += server.raw.list_queues(QueueNamePrefix=f"p1-{server.name}").get("QueueUrls", [])
    for queue_url in listed:
        server.raw.delete_queue(QueueUrl=queue_url)


def messages(*ids: str) -> list[Message]:
    return [Message(i, f"body of {i}".encode()) for i in ids]


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqs://us-east-1", "host or path"),
        ("sqs://?region=us-east-1&visibility=3", "unknown sqs queue option"),
        ("sqs://?prefix=a.b", "prefix"),
        ("sqs://?create=maybe", "create must be true or false"),
        ("sqs://?endpoint_url=localhost:4566", "http:// or https://"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        open_queue(url, "regions")


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(InvalidRequestError, match=r"install tilerunner\[sqs\]"):
        open_queue("sqs://?region=us-east-1", "regions")


def test_unreachable_endpoint_is_retryable_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(RetryableError, match=f"{endpoint}.*cannot be reached"):
        open_queue(f"sqs://?region=us-east-1&endpoint_url={endpoint}", "regions")


@pytest.mark.services
def test_queues_are_created_with_redrive_policy_and_longest_retention(sqs: Server) -> None:
    queue = sqs.open(max_attempts=4, url=f"{sqs.url}&prefix=p1-")
    main, dead = f"p1-{sqs.name}", f"p1-{sqs.name}-dead"
    policy = json.loads(sqs.attributes(main)["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == 4
    assert policy["deadLetterTargetArn"] == sqs.attributes(dead)["QueueArn"]
    assert sqs.attributes(main)["MessageRetentionPeriod"] == "1209600"
    assert sqs.attributes(dead)["MessageRetentionPeriod"] == "1209600"
    assert queue.max_attempts == 4
    queue.close()


@pytest.mark.services
def test_create_false_refuses_a_missing_queue(sqs: Server) -> None:
    with pytest.raises(InvalidRequestError, match="create=false"):
        sqs.open(url=f"{sqs.url}&create=false")
    assert sqs.raw.list_queues(QueueNamePrefix=sqs.name).get("QueueUrls", []) == []


@pytest.mark.services
def test_stricter_existing_redrive_policy_wins(
    sqs: Server, caplog: pytest.LogCaptureFixture
) -> None:
    sqs.open(max_attempts=2).close()
    with caplog.at_level(logging.WARNING, logger="tilerunner.broker.sqs"):
        reopened = sqs.open(max_attempts=5)
    assert reopened.max_attempts == 2
    assert "redrives after 2 receives" in caplog.text
    reopened.close()


@pytest.mark.services
def test_bodies_round_trip_and_json_stays_readable_on_the_queue(sqs: Server) -> None:
    queue = sqs.open()
    bodies = {
        "json": b'{"job": "j1", "image": "a.tif", "window": [0, 0, 4096, 4096]}',
        "binary": bytes(range(256)),
        "empty": b"",
        "nul": b"text with \x00 inside",
    }
    assert queue.publish([Message(key, body) for key, body in bodies.items()]) == 4
    raw = {
        m["MessageAttributes"]["tilerunner-id"]["StringValue"]: m for m in sqs.receive_raw(sqs.name)
    }
    assert raw["json"]["Body"] == bodies["json"].decode()  # an operator reads the pointer as is
    assert raw["binary"]["MessageAttributes"]["tilerunner-encoding"]["StringValue"] == "base64"
    leased = {le.message_id: le.body for le in queue.lease(10, 30.0)}
    assert leased == bodies
    queue.close()


@pytest.mark.services
def test_visibility_rounds_up_to_whole_seconds(sqs: Server) -> None:
    queue = sqs.open()
    queue.publish(messages("a"))
    before = time.time()
    (lease,) = queue.lease(1, visibility=1.2)
    assert lease.expires_at >= before + 2.0
    time.sleep(max(0.0, before + 1.5 - time.time()))  # past 1.2 s, before 2 s
    assert queue.lease(1, 30.0) == []
    queue.ack(lease)
    queue.close()


@pytest.mark.services
def test_more_than_twelve_hours_is_refused_and_changes_nothing(sqs: Server) -> None:
    queue = sqs.open()
    queue.publish(messages("a"))
    with pytest.raises(InvalidRequestError, match="12 hours"):
        queue.lease(1, visibility=43_200.5)
    (lease,) = queue.lease(1, 30.0)
    with pytest.raises(InvalidRequestError, match="12 hours"):
        queue.nack(lease, delay=50_000.0)
    queue.ack(lease)  # the refused nack left the lease held
    assert queue.depth().total == 0
    queue.close()


@pytest.mark.services
def test_message_sqs_redrove_itself_is_a_dead_letter_with_expiry_reason(sqs: Server) -> None:
    queue = sqs.open(max_attempts=2)
    queue.publish(messages("a"))
    for _ in range(2):  # a consumer that died twice, seen by SQS as two receives
        assert len(sqs.receive_raw(sqs.name)) == 1
    assert queue.lease(5, 30.0) == []  # this receive makes SQS redrive it
    (dead,) = queue.dead_letters()
    assert (dead.message_id, dead.body, dead.attempts) == ("a", b"body of a", 2)
    assert dead.reason == expiry_reason(2)
    assert queue.requeue_dead(["a"]) == 1
    (again,) = queue.lease(5, 30.0)
    assert (again.message_id, again.body, again.attempt) == ("a", b"body of a", 1)
    queue.close()


@pytest.mark.services
def test_lease_dead_letters_an_overdue_message_when_the_policy_is_looser(sqs: Server) -> None:
    sqs.open(max_attempts=5).close()  # SQS redrives only after 5 receives
    queue = sqs.open(max_attempts=2)  # a worker configured for 2 attempts
    assert queue.max_attempts == 2
    queue.publish(messages("a", "b"))
    for _ in range(2):
        assert len(sqs.receive_raw(sqs.name)) == 2
    assert queue.lease(5, 30.0) == []  # third delivery of each: dead, not handed out
    dead = queue.dead_letters()
    assert [(d.message_id, d.attempts, d.reason) for d in dead] == [
        ("a", 2, expiry_reason(2)),
        ("b", 2, expiry_reason(2)),
    ]
    queue.close()


@pytest.mark.services
def test_dead_letters_only_peek(sqs: Server) -> None:
    queue = sqs.open(max_attempts=1)
    queue.publish(messages("a", "b"))
    for lease in queue.lease(5, 30.0):
        queue.nack(lease, reason=f"bad {lease.message_id}")
    first = queue.dead_letters()
    assert [(d.message_id, d.reason) for d in first] == [("a", "bad a"), ("b", "bad b")]
    assert queue.dead_letters() == first
    assert sqs.attributes(f"{sqs.name}-dead")["ApproximateNumberOfMessages"] == "2"
    assert len(queue.dead_letters(limit=1)) == 1
    queue.close()


@pytest.mark.services
def test_stale_lease_is_refused_by_another_handle_of_this_process(sqs: Server) -> None:
    worker, other = sqs.open(), sqs.open()
    worker.publish(messages("a"))
    (stale,) = worker.lease(1, visibility=1.0)
    time.sleep(max(0.0, stale.expires_at - time.time()) + 0.1)
    (current,) = other.lease(1, visibility=30.0)
    with pytest.raises(LeaseLostError):
        worker.ack(stale)  # SQS would accept the outdated receipt: the ledger refuses it
    assert other.depth() == Depth(visible=0, in_flight=1, delayed=0, dead=0)
    other.ack(current)
    worker.close()
    other.close()


@pytest.mark.services
def test_heartbeat_thread_extends_while_another_thread_acks(sqs: Server) -> None:
    queue = sqs.open()
    queue.publish(messages(*(f"r{i}" for i in range(20))))
    leases = queue.lease(20, visibility=5.0)
    assert len(leases) == 20
    lost: list[str] = []
    done = threading.Event()

    def heartbeat() -> None:
        while not done.is_set():
            for lease in leases:
                try:
                    queue.extend(lease, 5.0)
                except LeaseLostError:
                    lost.append(lease.message_id)  # acked meanwhile: exactly what must happen

    beating = threading.Thread(target=heartbeat)
    beating.start()
    try:
        for lease in leases:
            queue.ack(lease)
    finally:
        done.set()
        beating.join(timeout=30)
    assert queue.depth().total == 0
    assert set(lost) <= {le.message_id for le in leases}
    queue.close()


@pytest.mark.services
def test_purge_twice_within_a_minute_still_empties_the_queue(sqs: Server) -> None:
    queue = sqs.open()
    queue.publish(messages("a", "b"))
    assert queue.purge() == 2
    queue.publish(messages("c", "d", "e"))
    assert queue.purge() == 3  # SQS allows one PurgeQueue a minute: the engine drains instead
    assert queue.depth().total == 0
    queue.close()


@pytest.mark.services
def test_no_loss_across_a_broker_restart() -> None:
    pytest.skip(
        "moto keeps its queues in process memory and cannot be restarted; SQS stores every "
        "message redundantly across availability zones (docs/engines/sqs.md, durability)"
    )


@pytest.mark.services
def test_closing_twice_is_harmless_and_the_queue_stays(sqs: Server) -> None:
    queue = sqs.open()
    queue.publish(messages("a"))
    queue.close()
    queue.close()
    with pytest.raises(QueueError, match="closed"):
        queue.depth()
    assert sqs.open().depth() == Depth(visible=1, in_flight=0, delayed=0, dead=0)
