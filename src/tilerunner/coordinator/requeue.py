"""Retrying what failed: dead-lettered regions whole, and just the tiles that failed alone.

A tile that could not be read or that the model rejected fails alone, and its region is done
with the features of its other tiles (see :mod:`tilerunner.store.tiles`). Once the cause is
repaired (the file fixed, the model mended), :func:`retry_failed_tiles` puts each such region
back to pending; its work item then names only the failed tiles (``RegionItem.only_tiles``), and
completing it adds their features to the region's and replaces their failures with the new
ones. The job reopens and is aggregated again, so every object comes back exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tilerunner.coordinator.planner import QueueFor, publish_pending
from tilerunner.jobs import JobSpec, RegionMessage, queue_name
from tilerunner.store import Store

__all__ = ["Retried", "retry_failed", "retry_failed_tiles"]

log = logging.getLogger(__name__)


def retry_failed_tiles(store: Store, queue_for: QueueFor, job_id: str) -> int:
    """Put the failed tiles of the job's done regions back on the queue; returns how many
    tiles (0 when none failed). The job reopens if it had ended ``partial`` or ``failed``."""
    reopened = store.reopen_failed_tiles(job_id)
    if not reopened:
        return 0
    store.reopen_job(job_id)
    published = publish_pending(store, queue_for, job_id)
    tiles = sum(reopened.values())
    log.info(
        "job %s: %d failed tile(s) in %d region(s) requeued (%d message(s) published)",
        job_id, tiles, len(reopened), published,
    )  # fmt: skip
    return tiles


@dataclass(frozen=True, slots=True)
class Retried:
    """What :func:`retry_failed` put back: regions (revived from dead letters, re-published)
    and failed tiles."""

    regions: int
    revived: int
    published: int
    tiles: int


def retry_failed(store: Store, queue_for: QueueFor, job_id: str) -> Retried:
    """Retry the job's failed (dead-lettered) regions and then the tiles that failed alone;
    the job reopens when anything was put back (``queue requeue``, ``POST .../retry``)."""
    job = store.get_job(job_id)
    if job is None:
        raise LookupError(job_id)
    failed = store.failed_regions(job_id)
    revived = published = 0
    if failed:
        queue = queue_for(queue_name(JobSpec.model_validate(job.spec).pipeline[0].model))
        dead = [RegionMessage(job_id=job_id, image_idx=i, region_idx=r).id for i, r in failed]
        for image_idx, region_idx in failed:
            store.retry_region(job_id, image_idx, region_idx)
        store.reopen_job(job_id)
        revived = queue.requeue_dead(dead)
        published = publish_pending(store, queue_for, job_id)
    tiles = retry_failed_tiles(store, queue_for, job_id)
    return Retried(len(failed), revived, published, tiles)
