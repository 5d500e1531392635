"""Repair: the database is the system of record; the broker only hands out leases.

``repair`` re-publishes regions that are pending in the store (a lost message comes back; one
still on the queue is deduplicated by its id) and records, as failed regions, the messages the
queue dead-lettered without any worker saying so (the worker died on the last attempt).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from tilerunner.broker import Queue
from tilerunner.coordinator.planner import QueueFor, publish_pending
from tilerunner.jobs import JobSpec, RegionMessage, queue_name
from tilerunner.store import Store

__all__ = ["reconcile_dead_letters", "repair"]

log = logging.getLogger(__name__)


def reconcile_dead_letters(store: Store, queue: Queue, limit: int = 1000) -> int:
    """Mark regions failed whose messages the queue dead-lettered; returns regions changed."""
    changed = 0
    for dead in queue.dead_letters(limit):
        try:
            message = RegionMessage.decode(dead.body)
        except ValidationError:
            log.warning("dead letter %s is not a region message; left alone", dead.message_id)
            continue
        reason = dead.reason or f"dead-lettered after {dead.attempts} attempts"
        if store.fail_region(
            message.job_id, message.image_idx, message.region_idx, reason, "sweeper"
        ):
            changed += 1
    return changed


def repair(store: Store, queue_for: QueueFor, job_id: str) -> tuple[int, int]:
    """One sweep for a job: (messages re-published, dead letters recorded)."""
    job = store.get_job(job_id)
    if job is None:
        return 0, 0
    queue = queue_for(queue_name(JobSpec.model_validate(job.spec).pipeline[0].model))
    failed = reconcile_dead_letters(store, queue)
    counts = store.counts(job_id)
    depth = queue.depth()
    if (
        depth.visible + depth.in_flight + depth.delayed
        >= counts.regions_total - counts.regions_finished
    ):
        # as many messages as pending regions: nothing is missing. Engines that cannot refuse a
        # re-published id (SQS, RabbitMQ) would otherwise gain a duplicate per sweep. Other
        # jobs' messages on the same queue count too: a lost message then comes back once
        # they have drained (later, never lost).
        return 0, failed
    published = publish_pending(store, queue_for, job_id)
    if published:
        log.warning(
            "job %s: re-published %d region message(s) the queue had lost", job_id, published
        )
    return published, failed
