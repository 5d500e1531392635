"""Cancelling a job: ``cancelling`` until the workers let go, then ``cancelled``.

A cancelled job keeps what finished. A job still planning has no workers, so it is cancelled at
once; a queued or running job goes to ``cancelling``: from then on the work service hands out
none of its items and refuses to extend the leases held on them, so every worker lets go within
one lease period (it drops what it was doing; a result that arrives first is still recorded).
The coordinator moves the job on to ``cancelled`` once that period has passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tilerunner.jobs import JOB_TERMINAL, JobState
from tilerunner.store import Store

__all__ = ["cancel_job", "finish_cancelling"]

log = logging.getLogger(__name__)


def cancel_job(store: Store, job_id: str) -> JobState | None:
    """Cancel a job; the state it moved to, or None when it was already finished (or absent)."""
    job = store.get_job(job_id)
    if job is None or JobState(job.status) in JOB_TERMINAL:
        return None
    target = JobState.CANCELLED if job.status == JobState.PLANNING else JobState.CANCELLING
    if store.set_job_state(job_id, target):
        return target
    return None  # it finished (or was cancelled) meanwhile


def finish_cancelling(
    store: Store, grace_seconds: float, clock: Callable[[], float] = time.time
) -> list[str]:
    """Move to ``cancelled`` the jobs that have been ``cancelling`` for ``grace_seconds``
    (one lease period: every lease on their items has been dropped by then)."""
    finished = []
    for job in store.list_jobs(1000, status=JobState.CANCELLING):
        since = max(
            (e["at"] for e in store.events(job.id) if e["kind"] == JobState.CANCELLING.value),
            default=None,
        )
        if since is None or clock() - since < grace_seconds:
            continue
        if store.set_job_state(job.id, JobState.CANCELLED, error="cancelled by request"):
            finished.append(job.id)
            log.info("job %s cancelled: its workers let go", job.id)
    return finished
