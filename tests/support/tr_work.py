"""An in-process direct worker that serves ``det`` with the truth-replaying detector of the
OSBS_029 sample until a job's regions are all finished."""

from __future__ import annotations

import threading
from pathlib import Path

from tilerunner.broker import open_queue
from tilerunner.jobs import queue_name
from tilerunner.models import load_model
from tilerunner.store import Store
from tilerunner.work.direct import DirectWorkSource
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.worker import Worker, WorkerOptions


def run_truth_worker(store: Store, url: str, data: Path, job_id: str) -> None:
    """Work ``job_id`` to the end on the queue at ``url`` (fails the test after 60 s)."""
    model = load_model(
        "tilerunner.testing.models:TruthDetector",
        {"truth": str(data / "OSBS_029.csv")},
        name="det",
    )
    queue = open_queue(url, queue_name("det"))
    service = WorkService(store, lambda _: queue, WorkServiceOptions(lease_seconds=30))
    worker = Worker(DirectWorkSource(service), {"det": model}, WorkerOptions(lease_seconds=30))

    def finished() -> bool:
        c = store.counts(job_id)
        return c.regions_finished >= c.regions_total

    thread = threading.Thread(target=worker.run, kwargs={"until": finished})
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), f"job {job_id} not worked to the end in 60 s"
