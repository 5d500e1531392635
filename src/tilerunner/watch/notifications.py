"""Watching an S3 prefix through its event notifications on an SQS queue.

S3 sends an ``ObjectCreated:*`` event per new object to the queue (docs/watch.md says how to
set it up); the watcher long-polls the queue, parses the events (keys arrive URL-encoded, with
``+`` for spaces; S3's ``s3:TestEvent`` and events of other buckets, prefixes or kinds are
skipped; an event wrapped by SNS is unwrapped) and deletes each message only after the objects
it named are recorded in the store. A watcher killed before that leaves the message to be
received again, and the store's record makes the second receipt take nothing twice.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from tilerunner.errors import InvalidRequestError
from tilerunner.store.watched import WatchedObject
from tilerunner.watch.s3 import etag, translate
from tilerunner.watch.sources import Found, KeyFilter

__all__ = ["S3Event", "SqsNotifications", "parse_s3_events", "sqs_client"]

log = logging.getLogger(__name__)

_AWS_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?")


@dataclass(frozen=True, slots=True)
class S3Event:
    """A created object as an event names it."""

    bucket: str
    key: str
    etag: str
    size: int | None


def parse_s3_events(body: str) -> list[S3Event]:
    """The created objects of one SQS message body; [] for the test event and other kinds.

    ValueError when the body is not an S3 event at all.
    """
    try:
        message = json.loads(body)
        if isinstance(message, dict) and isinstance(message.get("Message"), str):
            message = json.loads(message["Message"])  # delivered through SNS
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg}") from None
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise ValueError("no Records")
    events = []
    for record in records:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3", {})
        obj = s3.get("object", {})
        events.append(
            S3Event(
                bucket=str(s3.get("bucket", {}).get("name", "")),
                key=unquote_plus(str(obj.get("key", ""))),
                etag=etag(str(obj.get("eTag", ""))),
                size=int(obj["size"]) if "size" in obj else None,
            )
        )
    return events


def sqs_client(queue_url: str) -> Any:
    """A client for the SQS endpoint that serves ``queue_url`` (its region from the host on
    AWS, from the AWS configuration elsewhere)."""
    parts = urlsplit(queue_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.count("/") < 2:
        raise InvalidRequestError(
            f"--sqs-queue {queue_url!r} is not a queue URL; write it as SQS shows it, e.g. "
            "https://sqs.eu-west-1.amazonaws.com/123456789012/uploads"
        )
    import boto3

    match = _AWS_HOST.fullmatch(parts.hostname or "")
    return boto3.session.Session().client(
        "sqs",
        endpoint_url=f"{parts.scheme}://{parts.netloc}",
        region_name=match.group(1) if match else None,
    )


class SqsNotifications:
    """S3 event notifications of ``s3://bucket/prefix`` received from an SQS queue."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        keys: KeyFilter,
        client: Any,
        queue_url: str,
        *,
        wait_seconds: float = 10.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.keys = keys
        self.client = client
        self.queue_url = queue_url
        self.wait_seconds = int(min(max(wait_seconds, 0), 20))
        self.name = f"s3://{bucket}/{prefix}"
        self._call(lambda: client.get_queue_attributes(QueueUrl=queue_url))

    def discover(self) -> Found:
        reply = self._call(
            lambda: self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_seconds,
            )
        )
        messages = reply.get("Messages", [])
        objects: list[WatchedObject] = []
        for message in messages:
            try:
                events = parse_s3_events(str(message.get("Body", "")))
            except ValueError as error:  # deleted with the others: it would never parse
                log.warning(
                    "dropping message %s: not an S3 event (%s)", message["MessageId"], error
                )
                continue
            objects += [self._object(e) for e in events if self._wanted(e)]
        return Found(objects, [str(m["ReceiptHandle"]) for m in messages], more=bool(messages))

    def acknowledge(self, receipts: Sequence[str]) -> None:
        for start in range(0, len(receipts), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": handle}
                for i, handle in enumerate(receipts[start : start + 10])
            ]
            reply = self._call(
                lambda entries=entries: self.client.delete_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            )
            for failed in reply.get("Failed", []):  # received again later; the store dedups
                log.warning("could not delete a notification: %s", failed.get("Message"))

    def _wanted(self, event: S3Event) -> bool:
        return (
            event.bucket == self.bucket
            and event.key.startswith(self.prefix)
            and not event.key.endswith("/")
            and self.keys.accepts(event.key[len(self.prefix) :])
        )

    def _object(self, event: S3Event) -> WatchedObject:
        url = f"s3://{event.bucket}/{event.key}"
        return WatchedObject(event.key, event.etag, url, event.size)

    def _call(self, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except (BotoCoreError, ClientError) as error:
            raise translate(error, f"read notifications from {self.queue_url}") from None
