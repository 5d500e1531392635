"""Retrying just the tiles that failed: the rest of each region's work is kept.

A tile that could not be read or that the model rejected fails alone, and its region is done
with the features of its other tiles (see :mod:`tilerunner.store.tiles`). Once the cause is
repaired (the file fixed, the model mended), :func:`retry_failed_tiles` puts each such region
back to pending; its work item then names only the failed tiles (``RegionItem.only_tiles``), and
completing it adds their features to the region's and replaces their failures with the new
ones. The job reopens and is aggregated again, so every object comes back exactly once.
"""

from __future__ import annotations

import logging

from tilerunner.coordinator.planner import QueueFor, publish_pending
from tilerunner.store import Store

__all__ = ["retry_failed_tiles"]

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
