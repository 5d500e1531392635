"""Watching an S3 prefix by listing it (ListObjectsV2), and the boto3 boundary of the watch.

Each look lists the whole prefix and takes every (key, ETag) not recorded before; the store's
record of what was taken is the checkpoint, so an object that arrives with a key that sorts
before others, or a LastModified older than the last look (S3 stamps a multipart upload with
its start), is still found, and a key overwritten with new content (a new ETag) is a new object.
The cost is one LIST request per 1,000 keys per look: for large prefixes, use event
notifications (:mod:`tilerunner.watch.notifications`). boto3 errors become tilerunner errors
here: a missing bucket or no permission is an InvalidRequestError, an unreachable endpoint a
RetryableError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tilerunner.errors import InvalidRequestError, RetryableError
from tilerunner.store.watched import WatchedObject
from tilerunner.watch.sources import Found, KeyFilter

__all__ = ["S3Listing", "parse_s3_url", "s3_client", "translate"]

_FATAL = {
    "NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidBucketName", "403", "404",
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "InvalidAddress",
}  # fmt: skip


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix/``."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidRequestError(f"{url!r} names no bucket; write s3://bucket/prefix/")
    return bucket, prefix


def s3_client(endpoint_url: str | None) -> Any:
    try:
        import boto3
    except ImportError as error:
        raise InvalidRequestError(
            f"watching s3:// needs boto3 ({error}); install tilerunner[s3]"
        ) from None
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url)


def translate(error: Exception, what: str) -> Exception:
    """A tilerunner error for a boto3 failure while doing ``what``."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(error, NoCredentialsError | NoRegionError):
        return InvalidRequestError(f"cannot {what}: {error}; configure AWS credentials and region")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _FATAL:
            return InvalidRequestError(f"cannot {what}: {code}; check the name and permissions")
    return RetryableError(f"cannot {what} now: {error}")


def etag(value: str) -> str:
    """An ETag as events carry it (listings quote it)."""
    return value.strip('"')


class S3Listing:
    """Lists ``s3://bucket/prefix`` on each look (see the module docstring)."""

    def __init__(self, bucket: str, prefix: str, keys: KeyFilter, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.keys = keys
        self.client = client
        self.name = f"s3://{bucket}/{prefix}"
        self.check()

    def check(self) -> None:
        """Fail before watching if the prefix cannot be listed (no bucket, no permission)."""
        self._call(lambda: self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1))

    def discover(self) -> Found:
        return Found(list(self._objects()))

    def acknowledge(self, receipts: Sequence[str]) -> None:
        """Nothing to acknowledge: the store's record is the checkpoint."""

    def _objects(self) -> Iterator[WatchedObject]:
        pages = self._call(
            lambda: list(
                self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=self.prefix
                )
            )
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith("/") or not self.keys.accepts(key[len(self.prefix) :]):
                    continue
                url = f"s3://{self.bucket}/{key}"
                yield WatchedObject(key, etag(str(item["ETag"])), url, int(item["Size"]))

    def _call(self, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except (BotoCoreError, ClientError) as error:
            raise translate(error, f"list {self.name}") from None
