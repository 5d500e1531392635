"""What ``tilerunner run`` does once its job is planned: release the workers, show progress
until every region finished (sweeping expired leases back to the queue now and then), and
draw the preview.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tilerunner.cli.startup import started

if TYPE_CHECKING:
    from tilerunner.cli.thread_worker import ThreadWorker
    from tilerunner.cli.worker_pool import WorkerPool
    from tilerunner.coordinator import QueueFor
    from tilerunner.jobs import JobSpec
    from tilerunner.settings import Settings
    from tilerunner.store import Store

__all__ = ["draw_preview", "finished", "wait_for_regions"]

log = logging.getLogger(__name__)

_SWEEP_SECONDS = 10.0
# the progress poll starts short (a small job finishes within a few polls) and grows to _POLL
_FIRST_POLL = 0.02
_POLL = 0.25


def finished(store: Store, job_id: str) -> bool:
    """Whether the job ended before (succeeded, failed or cancelled)."""
    from tilerunner.jobs import JOB_TERMINAL, JobState

    job = store.get_job(job_id)
    return job is not None and JobState(job.status) in JOB_TERMINAL


def wait_for_regions(
    store: Store,
    queue_for: QueueFor,
    job_id: str,
    pool: WorkerPool | ThreadWorker,
    state_path: Path,
    quiet: bool,
) -> None:
    """Release the workers on the job and wait until every region finished; the workers leave
    on their own then, while this process aggregates."""
    from tilerunner.coordinator import repair
    from tilerunner.jobs import JOB_TERMINAL, JobState

    job = store.get_job(job_id)
    counts = store.counts(job_id)
    if (
        job is None
        or JobState(job.status) in JOB_TERMINAL
        or counts.regions_finished >= counts.regions_total
    ):
        pool.release(None)
        started()  # from here on this process aggregates
        return
    pool.release(job_id)
    started()  # after the release: its one collection runs while the workers read
    log.debug("run: workers released on job %s", job_id)
    # Until now the workers waited on this process; from now on it waits on them. What only
    # showing progress and aggregating need (rich; georeferencing, merging, the output's CRS)
    # is imported here, in that wait, instead of before planning.
    import tilerunner.coordinator.aggregator  # noqa: F401
    from tilerunner.cli.progress import JobProgress

    last_sweep = time.monotonic()
    poll = _FIRST_POLL
    try:
        with JobProgress(store, job_id, enabled=not quiet) as progress:
            while True:
                counts = progress.update()
                if counts.regions_finished >= counts.regions_total:
                    break
                pool.check()
                if time.monotonic() - last_sweep > _SWEEP_SECONDS:
                    repair(store, queue_for, job_id)
                    last_sweep = time.monotonic()
                pool.wait(poll)  # cut short when a worker leaves: its job is finished
                poll = min(_POLL, poll * 2)
    except KeyboardInterrupt:
        pool.stop()
        click.echo(
            f"\nstopped; run the same command again (state: {state_path}) to resume", err=True
        )
        sys.exit(130)


def draw_preview(store: Store, job_id: str, spec: JobSpec, path: Path, settings: Settings) -> None:
    """Write ``--preview``: the first finished image with its features drawn."""
    from tilerunner.coordinator import image_features
    from tilerunner.imagery import RasterReader
    from tilerunner.outputs import write_preview

    images = [i for i in store.images(job_id) if i.state == "done"]
    if not images:
        return
    table = image_features(store, images[0], spec, settings.gdal_env())
    reader = RasterReader(images[0].url, env=settings.gdal_env())
    try:
        write_preview(str(path), reader, table.pixel_bbox, list(table.label), table.score)
    finally:
        reader.close()
