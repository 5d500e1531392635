"""The job object users see (CLI ``status --json`` and ``GET /v1/jobs/{id}``)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from tilerunner.jobs import JOB_TERMINAL, JobSpec, JobState
from tilerunner.store import Counts, JobRecord, Store

__all__ = ["eta_seconds", "job_view", "progress"]

_TRANSITIONS = {state.value for state in JobState}


def progress(job: JobRecord, c: Counts) -> float:
    """Share of the job's regions finished (done or failed), 0-1; 1 once the job is over."""
    if JobState(job.status) in JOB_TERMINAL:
        return 1.0
    if c.regions_total == 0:
        return 0.0
    return min(1.0, c.regions_finished / c.regions_total)


def eta_seconds(job: JobRecord, c: Counts, now: float) -> float | None:
    """Seconds left at the throughput measured so far (tiles done per second since the job
    started running); 0 once the job is over, None while nothing was measured yet."""
    if JobState(job.status) in JOB_TERMINAL:
        return 0.0
    if job.started_at is None or c.tiles_done <= 0 or now <= job.started_at:
        return None
    rate = c.tiles_done / (now - job.started_at)
    return max(0.0, c.tiles_total - c.tiles_done) / rate


def _statistics(store: Store, job_id: str, spec: dict[str, Any]) -> list[dict[str, object]] | None:
    """Pixels and area per class of a segment job, summed over its finished regions."""
    if JobSpec.model_validate(spec).pipeline[0].segment is None:
        return None
    from tilerunner.coordinator.segment import class_statistics

    return [
        s.as_dict() for image in store.images(job_id)
        for s in class_statistics(store.features(job_id, image.idx))
    ]  # fmt: skip


def job_view(store: Store, job_id: str, now: float | None = None) -> dict[str, Any] | None:
    """Status, a timestamp per transition, counts, progress, ETA, typed errors and outputs."""
    job = store.get_job(job_id)
    if job is None:
        return None
    c = store.counts(job_id)
    timestamps = {"created_at": job.created_at}
    for event in store.events(job_id):
        if event["kind"] in _TRANSITIONS:
            timestamps.setdefault(f"{event['kind']}_at", event["at"])
    return {
        "id": job.id,
        "name": job.name,
        "project": job.project,
        "status": job.status,
        "timestamps": timestamps,
        "counts": {
            "images": {"total": c.images_total, "done": c.images_done, "failed": c.images_failed},
            "regions": {
                "total": c.regions_total,
                "done": c.regions_done,
                "failed": c.regions_failed,
            },
            "tiles": {"total": c.tiles_total, "done": c.tiles_done, "failed": c.tiles_failed},
            "features": {"found": c.features},
        },
        "progress": progress(job, c),
        "eta_seconds": eta_seconds(job, c, time.time() if now is None else now),
        "errors": [asdict(e) for e in store.errors(job_id)],
        "outputs": job.outputs or [],
        "error": job.error,
        "statistics": _statistics(store, job_id, job.spec),
        "spec": JobSpec.model_validate(job.spec).public_dump(),
    }
