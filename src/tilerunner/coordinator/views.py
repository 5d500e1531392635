"""The job object users see (CLI ``status --json`` and ``GET /v1/jobs/{id}``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tilerunner.jobs import JobState
from tilerunner.store import Store

__all__ = ["job_view"]

_TRANSITIONS = {state.value for state in JobState}


def job_view(store: Store, job_id: str) -> dict[str, Any] | None:
    """Status, a timestamp per transition, counts, typed errors and outputs of one job."""
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
        "status": job.status,
        "timestamps": timestamps,
        "counts": {
            "images": {"total": c.images_total, "done": c.images_done, "failed": c.images_failed},
            "regions": {
                "total": c.regions_total,
                "done": c.regions_done,
                "failed": c.regions_failed,
            },
            "tiles": {"total": c.tiles_total, "done": c.tiles_done},
            "features": {"found": c.features},
        },
        "errors": [asdict(e) for e in store.errors(job_id)],
        "outputs": job.outputs or [],
        "error": job.error,
        "spec": job.spec,
    }
