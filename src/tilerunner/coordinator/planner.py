"""Planning: validate a job, open its images for metadata, cut them into regions, enqueue.

Nothing is stored for an invalid job (bad document, missing path, unwritable output). An image
that exists but cannot be opened becomes a failed image with a typed error; the job's other
images still run. Region messages have deterministic ids, so planning twice, or re-publishing
the pending regions after a crash, enqueues each region once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator

from tilerunner.broker import Message, Queue
from tilerunner.errors import SourceError
from tilerunner.imagery import GdalEnv, expand_sources, probe
from tilerunner.jobs import JobSpec, RegionMessage, queue_name
from tilerunner.outputs import check_writable
from tilerunner.store import ImagePlan, Store
from tilerunner.tiling import RegionGrid, TileGrid

__all__ = ["QueueFor", "plan_images", "publish_pending", "submit_job"]

log = logging.getLogger(__name__)

QueueFor = Callable[[str], Queue]
_CHUNK = 1000


def plan_images(spec: JobSpec, env: GdalEnv | None = None) -> list[ImagePlan]:
    """Expand the sources and cut each readable image into regions (metadata reads only)."""
    plans = []
    for idx, ref in enumerate(expand_sources(spec.source_pairs())):
        try:
            info = probe(ref.url, env)
        except SourceError as error:
            plans.append(ImagePlan(idx, ref.id, ref.url, None, None, None, [], error=str(error)))
            continue
        grid = TileGrid(info.width, info.height, spec.tiling.tile_size, spec.tiling.overlap)
        regions = RegionGrid.from_pixels(grid, spec.tiling.region_size)
        counts = [regions.region(i).n_tiles for i in range(regions.n_regions)]
        plans.append(
            ImagePlan(idx, ref.id, ref.url, info.width, info.height, regions.region_tiles, counts)
        )
    return plans


def _messages(job_id: str, pending: Iterable[tuple[int, int]]) -> Iterator[list[Message]]:
    chunk: list[Message] = []
    for image_idx, region_idx in pending:
        message = RegionMessage(job_id=job_id, image_idx=image_idx, region_idx=region_idx)
        chunk.append(Message(message.id, message.encode()))
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def publish_pending(store: Store, queue_for: QueueFor, job_id: str) -> int:
    """(Re-)publish every pending region of a job; returns how many were newly enqueued."""
    job = store.get_job(job_id)
    if job is None:
        return 0
    queue = queue_for(queue_name(JobSpec.model_validate(job.spec).pipeline[0].model))
    return sum(queue.publish(chunk) for chunk in _messages(job_id, store.pending_regions(job_id)))


def submit_job(
    store: Store,
    queue_for: QueueFor,
    spec: JobSpec,
    *,
    job_id: str | None = None,
    env: GdalEnv | None = None,
    project: str = "default",
) -> tuple[str, bool]:
    """Validate, plan, store and enqueue a job; returns (job id, created).

    With a ``job_id`` that exists already, nothing is planned again: its pending regions are
    re-published (a resumed run) and ``created`` is False.
    """
    for output in spec.outputs:
        check_writable(output.uri)
    job_id = job_id or f"job-{uuid.uuid4().hex[:16]}"
    created = False
    if store.get_job(job_id) is None:
        plans = plan_images(spec, env)
        created = store.create_job(
            job_id, spec.name, spec.model_dump(mode="json"), plans, project=project
        )
        log.info("planned job %s: %d image(s)", job_id, len(plans))
    published = publish_pending(store, queue_for, job_id)
    log.info("job %s: %d region message(s) published", job_id, published)
    return job_id, created
