"""Where a watcher finds new objects: the contract, the key filter, and the choice by URL.

A watched source says what it found (:meth:`ObjectSource.discover`) and is told when what it
found is recorded (:meth:`ObjectSource.acknowledge`): an SQS queue deletes its messages only
then. Three implementations: S3 listing (:mod:`tilerunner.watch.s3`), S3 event notifications
on SQS (:mod:`tilerunner.watch.notifications`) and a local folder
(:mod:`tilerunner.watch.directory`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tilerunner.errors import InvalidRequestError
from tilerunner.store.watched import WatchedObject

__all__ = ["Found", "KeyFilter", "ObjectSource", "open_source"]


@dataclass(frozen=True, slots=True)
class Found:
    """What one look found: objects, receipts to acknowledge once they are recorded, and
    whether a look right away may find more (a full batch of messages, files still settling)."""

    objects: list[WatchedObject]
    receipts: list[str] = field(default_factory=list)
    more: bool = False


class ObjectSource(Protocol):
    name: str
    """The watch's identity in the store (its source URL): what it took is recorded under it."""

    def discover(self) -> Found: ...

    def acknowledge(self, receipts: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which objects a watch takes: names ending with one of ``suffixes`` (any case) and
    matching ``glob`` (fnmatch, ``*`` also crosses ``/``); both test the path below the watched
    prefix or folder. Empty means everything."""

    suffixes: tuple[str, ...] = ()
    glob: str | None = None

    def __post_init__(self) -> None:
        if bad := [s for s in self.suffixes if not s.startswith(".") or len(s) < 2]:
            raise InvalidRequestError(
                f"--suffix {bad[0]!r}: give a file suffix with its dot, e.g. --suffix .tif"
            )

    def accepts(self, relative: str) -> bool:
        name = relative.lower()
        if self.suffixes and not name.endswith(tuple(s.lower() for s in self.suffixes)):
            return False
        return self.glob is None or fnmatch.fnmatchcase(relative, self.glob)


def open_source(
    url: str,
    keys: KeyFilter,
    *,
    sqs_queue: str | None = None,
    s3_endpoint_url: str | None = None,
    settle_seconds: float = 2.0,
    wait_seconds: float = 10.0,
    clock: Callable[[], float] | None = None,
) -> ObjectSource:
    """The source for ``url``: ``s3://bucket/prefix/`` (listed, or notified through
    ``sqs_queue``) or a local folder; InvalidRequestError for anything else."""
    if url.startswith("s3://"):
        from tilerunner.watch.s3 import S3Listing, parse_s3_url, s3_client

        bucket, prefix = parse_s3_url(url)
        client = s3_client(s3_endpoint_url)
        if sqs_queue is None:
            return S3Listing(bucket, prefix, keys, client)
        from tilerunner.watch.notifications import SqsNotifications, sqs_client

        return SqsNotifications(
            bucket, prefix, keys, sqs_client(sqs_queue), sqs_queue, wait_seconds=wait_seconds
        )
    if "://" in url and not url.startswith("file://"):
        raise InvalidRequestError(
            f"cannot watch {url!r}: watch an s3://bucket/prefix/ or a local folder"
        )
    if sqs_queue is not None:
        raise InvalidRequestError("--sqs-queue carries S3 notifications; watch an s3:// prefix")
    from tilerunner.watch.directory import DirectoryScan

    root = Path(url.removeprefix("file://")).expanduser()
    if not root.is_dir():
        raise InvalidRequestError(f"cannot watch {url!r}: no such folder; create it first")
    return DirectoryScan(root, keys, settle_seconds=settle_seconds, clock=clock)
