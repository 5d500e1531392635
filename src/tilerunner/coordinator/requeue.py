"""Retrying what failed: dead-lettered regions whole, and just the tiles that failed alone.

A tile that could not be read or that the model rejected fails alone, and its region is done
with the features of its other tiles (see :mod:`tilerunner.store.tiles`). Once the cause is
repaired (the file fixed, the model mended), :func:`retry_failed_tiles` puts each such region
back to pending; its work item then names only the failed tiles (``RegionItem.only_tiles``), and
completing it adds their features to the region's and replaces their failures with the new
ones. The job reopens and is aggregated again, so every object comes back exactly once.

A photo job's items are groups of photos and their later stages' crops: a failed one is put
back with the photos it closed (:meth:`Store.retry_photo_stage`) on its own stage's queue, and
an item with crops that failed alone redoes just those crops (:meth:`Store.reopen_failed_crops`).
A photo that failed alone (its bytes could not be fetched or decoded) is read again with its
group's first stage (:meth:`Store.reopen_failed_photos`); its new detections reopen the later
stages that crop them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tilerunner.coordinator.planner import QueueFor, publish_pending
from tilerunner.jobs import JobSpec, RegionMessage, queue_name
from tilerunner.photos.plan import stage_model
from tilerunner.store import Store

__all__ = ["Retried", "retry_failed", "retry_failed_tiles"]

log = logging.getLogger(__name__)


def retry_failed_tiles(
    store: Store, queue_for: QueueFor, job_id: str, spec: JobSpec | None = None
) -> int:
    """Put the failed tiles (a photo job: crops) of the job's done regions back on the queue;
    returns how many (0 when none failed). The job reopens if it had ended ``partial`` or
    ``failed``."""
    if spec is None:
        job = store.get_job(job_id)
        spec = None if job is None else JobSpec.model_validate(job.spec)
    if spec is not None and spec.photos is not None:
        reopened = store.reopen_failed_crops(job_id, spec.photos.group_size)
    else:
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
    photos: int = 0


def retry_failed(store: Store, queue_for: QueueFor, job_id: str) -> Retried:
    """Retry the job's failed (dead-lettered) regions and then the tiles that failed alone;
    the job reopens when anything was put back (``queue requeue``, ``POST .../retry``)."""
    job = store.get_job(job_id)
    if job is None:
        raise LookupError(job_id)
    spec = JobSpec.model_validate(job.spec)
    failed = store.failed_regions(job_id)
    revived = published = 0
    if failed:
        dead: dict[str, list[str]] = {}  # per model: a photo job's stages run on their own
        for image_idx, region_idx in failed:
            if spec.photos is not None:
                store.retry_photo_stage(
                    job_id, image_idx, region_idx, group_size=spec.photos.group_size
                )
            else:
                store.retry_region(job_id, image_idx, region_idx)
            model = stage_model(spec, region_idx if spec.photos is not None else 0)
            message = RegionMessage(job_id=job_id, image_idx=image_idx, region_idx=region_idx)
            dead.setdefault(model, []).append(message.id)
        store.reopen_job(job_id)
        revived = sum(queue_for(queue_name(m)).requeue_dead(ids) for m, ids in dead.items())
        published = publish_pending(store, queue_for, job_id)
    photos = 0
    if spec.photos is not None:  # photos that failed alone, before the crops that wait on them
        photos = sum(store.reopen_failed_photos(job_id, spec.photos.group_size).values())
        if photos:
            store.reopen_job(job_id)
            published += publish_pending(store, queue_for, job_id)
    tiles = retry_failed_tiles(store, queue_for, job_id, spec)
    return Retried(len(failed), revived, published, tiles, photos)
