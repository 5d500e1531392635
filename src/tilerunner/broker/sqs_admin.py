"""Plumbing for the ``sqs://`` engine: URL options, the boto3 boundary, queue provisioning and the
message codec. The queue semantics live in :mod:`tilerunner.broker.sqs`.

Everything boto3 raises is translated here, in :meth:`SQSClient.call`, so the engine itself only
sees tilerunner errors: an unreachable endpoint or throttling is a :class:`RetryableError` naming
the endpoint, missing credentials, region or permissions are an :class:`InvalidRequestError`
saying what to set, and anything else is a :class:`QueueError`. boto3 is imported only when an
``sqs://`` URL is opened, so ``import tilerunner.broker`` never needs it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tilerunner.errors import InvalidRequestError, QueueError, RetryableError

__all__ = [
    "ATTEMPTS",
    "DEAD_SUFFIX",
    "DIED_AT",
    "MAX_VISIBILITY",
    "REASON",
    "PurgeInProgressError",
    "QueuePair",
    "SQSClient",
    "SQSOptions",
    "decode",
    "encode",
    "provision",
]

log = logging.getLogger(__name__)

DEAD_SUFFIX = "-dead"
MAX_VISIBILITY = 43_200  # SQS keeps a message hidden for at most 12 hours
_RETENTION = "1209600"  # 14 days, the SQS maximum: a backlog must not silently expire

# Message attributes; SQS reserves names starting with "AWS." or "Amazon.".
MESSAGE_ID = "tilerunner-id"
ENCODING = "tilerunner-encoding"
REASON = "tilerunner-reason"
ATTEMPTS = "tilerunner-attempts"
DIED_AT = "tilerunner-died-at"

_PREFIX = re.compile(r"[A-Za-z0-9_-]*")
# Characters SQS accepts in a message body; anything else travels base64-encoded.
_SQS_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+")
_OPTIONS = ("region", "endpoint_url", "prefix", "profile", "create")
_RETRYABLE = {
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "KmsThrottled",
    "OverLimit",
}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "InvalidSecurity",
}
_MISSING = {"QueueDoesNotExist", "NonExistentQueue"}
_EXISTS = {"QueueAlreadyExists", "QueueNameExists"}
_PURGING = {"PurgeQueueInProgress"}
_LOST = {"ReceiptHandleIsInvalid", "MessageNotInflight"}


@dataclass(frozen=True, slots=True)
class SQSOptions:
    """What an ``sqs://`` URL says; credentials always come from the usual AWS chain."""

    region: str | None = None
    endpoint_url: str | None = None
    prefix: str = ""
    profile: str | None = None
    create: bool = True

    @classmethod
    def from_url(cls, url: str) -> SQSOptions:
        """Parse ``sqs://?region=R&endpoint_url=U&prefix=P&profile=NAME&create=false``."""
        parts = urlsplit(url)
        if parts.netloc or parts.path not in ("", "/") or parts.fragment:
            raise InvalidRequestError(
                f"sqs queue URL {url!r} has a host or path; write sqs://?region=eu-west-1 "
                "(options: region, endpoint_url, prefix, profile, create)"
            )
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise InvalidRequestError(
                f"unknown sqs queue option(s) {unknown} in {url!r}; known: {', '.join(_OPTIONS)}"
            )
        prefix = options.get("prefix", "")
        if not _PREFIX.fullmatch(prefix):
            raise InvalidRequestError(
                f"sqs prefix {prefix!r} may only hold letters, digits, '-' or '_'"
            )
        endpoint = options.get("endpoint_url") or None
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise InvalidRequestError(
                f"endpoint_url {endpoint!r} must be an http:// or https:// URL"
            )
        create = options.get("create", "true").lower()
        if create not in ("true", "false"):
            raise InvalidRequestError(f"sqs option create must be true or false, got {create!r}")
        return cls(
            region=options.get("region") or None,
            endpoint_url=endpoint,
            prefix=prefix,
            profile=options.get("profile") or None,
            create=create == "true",
        )

    @property
    def where(self) -> str:
        """The server, for error messages."""
        return self.endpoint_url or f"SQS in region {self.region or '(from the AWS config)'}"


class QueueMissingError(QueueError):
    """The SQS queue does not exist (raised by :meth:`SQSClient.call`)."""


class QueueExistsError(QueueError):
    """CreateQueue found the queue already there with other attributes."""


class PurgeInProgressError(QueueError):
    """SQS allows one PurgeQueue per queue every 60 seconds."""


class SQSClient:
    """One thread-safe boto3 SQS client, with every boto3 error translated at this boundary."""

    def __init__(self, options: SQSOptions) -> None:
        try:
            import boto3
            from botocore import exceptions
            from botocore.config import Config
        except ImportError as exc:
            raise InvalidRequestError(
                f"the sqs queue engine needs boto3 ({exc}); install tilerunner[sqs]"
            ) from exc
        self.options = options
        self._errors = exceptions
        config = Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=32,
        )
        try:
            # a session per client: boto3's default session is not thread-safe to build on
            session = boto3.session.Session(
                region_name=options.region, profile_name=options.profile
            )
            self._client: Any = session.client(
                "sqs", endpoint_url=options.endpoint_url, config=config
            )
        except exceptions.BotoCoreError as exc:
            raise self._translate(exc, "connect") from exc

    def call(
        self, operation: str, *, lease: tuple[str, str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Run one SQS API call. ``lease`` = (queue, message id) turns an invalid receipt into
        :class:`~tilerunner.broker.contract.LeaseLostError`."""
        try:
            reply: dict[str, Any] = getattr(self._client, operation)(**kwargs)
        except (self._errors.ClientError, self._errors.BotoCoreError) as exc:
            raise self._translate(exc, operation, lease) from exc
        return reply

    def close(self) -> None:
        self._client.close()

    def _translate(
        self, exc: Exception, operation: str, lease: tuple[str, str] | None = None
    ) -> Exception:
        from tilerunner.broker.contract import LeaseLostError

        where = self.options.where
        errors = self._errors
        if isinstance(exc, errors.ClientError):
            error = exc.response.get("Error", {})
            codes = {
                str(error.get(key, "")).removeprefix("AWS.SimpleQueueService.")
                for key in ("Code", "QueryErrorCode")
            }
            text = f"{error.get('Code', '?')}: {error.get('Message', '')}"
            receipt = "ReceiptHandle" in str(error.get("Message", ""))
            if lease is not None and (codes & _LOST or receipt):
                return LeaseLostError(*lease)
            if codes & _EXISTS:
                return QueueExistsError(f"SQS at {where} refused {operation}: {text}")
            if codes & _PURGING:
                return PurgeInProgressError(f"SQS at {where} refused {operation}: {text}")
            if codes & _MISSING:
                return QueueMissingError(
                    f"SQS queue for {operation} does not exist at {where} ({text}); open the "
                    "queue again (it is created unless create=false) or create it"
                )
            if codes & _RETRYABLE:
                return RetryableError(f"SQS at {where} is busy ({text}); retry shortly")
            if codes & _DENIED:
                return InvalidRequestError(
                    f"SQS at {where} refused {operation} ({text}); check the AWS credentials and "
                    "that they allow sqs:* on the queue and its -dead queue"
                )
            if codes & {"InvalidParameterValue", "InvalidAttributeValue", "InvalidMessageContents"}:
                return InvalidRequestError(f"SQS at {where} rejected {operation}: {text}")
            return QueueError(f"SQS at {where} failed {operation}: {text}")
        if isinstance(exc, errors.NoRegionError):
            return InvalidRequestError(
                "no AWS region is configured; add ?region=... to the sqs URL or set "
                "AWS_DEFAULT_REGION"
            )
        if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
            return InvalidRequestError(
                f"no usable AWS credentials for {where} ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile (?profile=NAME) or an instance role"
            )
        if isinstance(exc, errors.ProfileNotFound):
            return InvalidRequestError(f"{exc}; fix ?profile= in the sqs URL")
        if isinstance(exc, errors.ConnectionError | errors.HTTPClientError):
            return RetryableError(
                f"SQS at {where} cannot be reached ({exc}); check that it runs and is reachable"
            )
        return QueueError(f"SQS at {where} failed {operation}: {exc}")


@dataclass(frozen=True, slots=True)
class QueuePair:
    """The work queue, its dead-letter queue, and the redrive limit SQS enforces (if any)."""

    url: str
    dead_url: str
    max_receive: int | None


def provision(client: SQSClient, name: str, max_attempts: int) -> QueuePair:
    """Find (or create, unless ``create=false``) ``<prefix><name>`` and its dead-letter queue.

    A created work queue gets a redrive policy (maxReceiveCount = ``max_attempts``) to the dead
    queue, so SQS itself dead-letters a message whose workers keep dying, and both queues keep
    messages for the 14-day maximum. An existing queue is used as it is: its redrive policy names
    the dead queue and limits the attempts.
    """
    main = client.options.prefix + name
    dead = main + DEAD_SUFFIX
    if len(dead) > 80:
        raise InvalidRequestError(
            f"SQS queue name {dead!r} is longer than 80 characters; use a shorter queue name "
            "or prefix"
        )
    url = _queue_url(client, main)
    if url is None:
        created = _queue_url(client, dead) or _create(client, dead, {})
        arn = _attributes(client, created, "QueueArn")["QueueArn"]
        policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_attempts)}
        url = _create(client, main, {"RedrivePolicy": json.dumps(policy)})
    policy_text = _attributes(client, url, "RedrivePolicy").get("RedrivePolicy")
    if not policy_text:
        log.warning(
            "SQS queue %s has no redrive policy; tilerunner dead-letters to %s itself", main, dead
        )
        return QueuePair(url, _queue_url(client, dead) or _create(client, dead, {}), None)
    policy = json.loads(policy_text)
    dead = str(policy["deadLetterTargetArn"]).rsplit(":", 1)[-1]
    dead_url = _queue_url(client, dead)
    if dead_url is None:
        raise QueueError(
            f"the redrive policy of SQS queue {main!r} names dead-letter queue {dead!r}, which "
            "does not exist; create it or fix the policy"
        )
    return QueuePair(url, dead_url, int(policy["maxReceiveCount"]))


def _queue_url(client: SQSClient, name: str) -> str | None:
    try:
        return str(client.call("get_queue_url", QueueName=name)["QueueUrl"])
    except QueueMissingError:
        return None


def _create(client: SQSClient, name: str, attributes: dict[str, str]) -> str:
    if not client.options.create:
        raise InvalidRequestError(
            f"SQS queue {name!r} does not exist at {client.options.where}; create it (see "
            "docs/engines/sqs.md) or drop create=false from the sqs URL"
        )
    attributes = {"MessageRetentionPeriod": _RETENTION, **attributes}
    try:
        reply = client.call("create_queue", QueueName=name, Attributes=attributes)
    except QueueExistsError:
        # another process created it first, with other attributes: use theirs
        reply = client.call("get_queue_url", QueueName=name)
    log.info("created SQS queue %s", name)
    return str(reply["QueueUrl"])


def _attributes(client: SQSClient, url: str, *names: str) -> dict[str, str]:
    reply = client.call("get_queue_attributes", QueueUrl=url, AttributeNames=list(names))
    return dict(reply.get("Attributes", {}))


def encode(message_id: str, body: bytes, **extra: str) -> dict[str, Any]:
    """SendMessage arguments for one message: readable text when the body is valid SQS text
    (region pointers are JSON), base64 otherwise; the id and ``extra`` travel as attributes."""
    try:
        text = body.decode("utf-8")
        encoding = "" if _SQS_TEXT.fullmatch(text) else "base64"
    except UnicodeDecodeError:
        encoding = "base64"
    if not body:
        text, encoding = "-", "empty"  # SQS refuses an empty body
    elif encoding:
        text = base64.b64encode(body).decode("ascii")
    attributes = {MESSAGE_ID: message_id, **extra}
    if encoding:
        attributes[ENCODING] = encoding
    return {
        "MessageBody": text,
        "MessageAttributes": {
            key: {
                "DataType": "Number" if key in (ATTEMPTS, DIED_AT) else "String",
                "StringValue": value,
            }
            for key, value in attributes.items()
        },
    }


def decode(raw: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """The id, body and attributes of a received message. A message sent by something other
    than tilerunner keeps its text body and is named by its SQS MessageId."""
    attributes = {
        key: str(value.get("StringValue", ""))
        for key, value in raw.get("MessageAttributes", {}).items()
    }
    message_id = attributes.get(MESSAGE_ID) or f"sqs:{raw['MessageId']}"
    text = str(raw.get("Body", ""))
    encoding = attributes.get(ENCODING, "")
    if encoding == "empty":
        return message_id, b"", attributes
    if encoding == "base64":
        try:
            return message_id, base64.b64decode(text, validate=True), attributes
        except binascii.Error:
            log.warning("message %s claims base64 but is not; passing its text", message_id)
    return message_id, text.encode("utf-8"), attributes
