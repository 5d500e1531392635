"""Planning: validate a job, open its images for metadata, cut them into regions, enqueue.

Two steps, so that a caller never waits for sources to be opened:

1. :func:`accept_job` validates what needs no source opened (the document, local paths,
   writable outputs) and stores the job in ``planning`` with a ``plan`` outbox row. Nothing is
   stored for an invalid job.
2. :func:`plan_job`, run by a coordinator that claimed the row (:func:`process_plans`), opens
   every image for its header, records what aggregation needs (size, bands, CRS, transform,
   RPCs or GCPs), cuts it into regions, moves the job to ``queued`` and publishes.

:func:`submit_job` does both at once (``tilerunner run`` and ``submit``). An image that exists
but cannot be opened becomes a failed image with a typed error; the job's other images still
run; planning that fails as a whole fails the job. Region messages have deterministic ids, so
planning twice, or re-publishing the pending regions after a crash, enqueues each region once.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator

from tilerunner.broker import Message, Queue
from tilerunner.errors import (
    InvalidRequestError,
    QueueError,
    RetryableError,
    SourceError,
    StoreError,
    TilerunnerError,
)
from tilerunner.georef import ImageGeoref
from tilerunner.imagery import GdalEnv, expand_sources, probe, read_geo_metadata
from tilerunner.jobs import JobSpec, JobState, RegionMessage, queue_name
from tilerunner.outputs import check_output, check_writable
from tilerunner.photos.plan import plan_photos, stage_model
from tilerunner.photos.results import check_photo_output
from tilerunner.photos.sources import expand_photos
from tilerunner.store import ImagePlan, Store
from tilerunner.store.outbox import CLAIM_SECONDS, ClaimKeeper
from tilerunner.store.plans import PLAN
from tilerunner.tiling import RegionGrid, TileGrid

__all__ = [
    "QueueFor",
    "accept_job",
    "check_outputs",
    "plan_images",
    "plan_job",
    "process_plans",
    "publish_pending",
    "submit_job",
]

log = logging.getLogger(__name__)

QueueFor = Callable[[str], Queue]
_CHUNK = 1000
#: Failures that a later attempt may not meet: planning is retried, the job is not failed.
_TRANSIENT = (StoreError, QueueError, RetryableError)


def plan_images(spec: JobSpec, env: GdalEnv | None = None) -> list[ImagePlan]:
    """Expand the sources and cut each readable image into regions (metadata reads only).

    Each plan records the image's header (:class:`tilerunner.georef.ImageGeoref`); RPCs and
    GCPs are read only for images without an affine transform and CRS, which need them.
    """
    plans = []
    for idx, ref in enumerate(expand_sources(spec.source_pairs())):
        try:
            info = probe(ref.url, env)
            affine = info.transform is not None and info.crs_wkt is not None
            needs_more = not affine and (info.has_rpcs or info.has_gcps)
            meta = read_geo_metadata(ref.url, env) if needs_more else None
        except SourceError as error:
            plans.append(ImagePlan(idx, ref.id, ref.url, None, None, None, [], error=str(error)))
            continue
        grid = TileGrid(info.width, info.height, spec.tiling.tile_size, spec.tiling.overlap)
        regions = RegionGrid.from_pixels(grid, spec.tiling.region_size)
        counts = [regions.region(i).n_tiles for i in range(regions.n_regions)]
        plans.append(
            ImagePlan(
                idx,
                ref.id,
                ref.url,
                info.width,
                info.height,
                regions.region_tiles,
                counts,
                georef=ImageGeoref.from_header(info, meta),
            )
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
    spec = JobSpec.model_validate(job.spec)
    by_model: dict[str, list[tuple[int, int]]] = {}
    for image_idx, region_idx in store.pending_regions(job_id):
        # a photo job's row (group, stage) runs on the stage's model; rasters on the one model
        stage = region_idx if spec.photos is not None else 0
        by_model.setdefault(stage_model(spec, stage), []).append((image_idx, region_idx))
    return sum(
        queue_for(queue_name(model)).publish(chunk)
        for model, pending in by_model.items()
        for chunk in _messages(job_id, pending)
    )


def accept_job(
    store: Store, spec: JobSpec, *, project: str = "default", job_id: str | None = None
) -> str:
    """Validate what needs no source opened and store the job in ``planning``; returns its id.

    Outputs must be writable and local sources must exist (nothing is stored otherwise); no
    image is opened: a coordinator plans the job off the caller's request. An existing
    ``job_id`` is returned as is.
    """
    return _accept(store, spec, project, job_id)[0]


def check_outputs(spec: JobSpec) -> None:
    """Every output of ``spec`` has a known format and a writable location (InvalidRequestError
    naming the output and what to change otherwise); called before anything is stored."""
    for index, output in enumerate(spec.outputs):
        label = f"outputs[{index}] {output.uri!r}"
        if spec.photos is not None:
            check_photo_output(output.uri, output.format, label=label)
        else:
            check_output(output.uri, output.format, label=label)
    segment = spec.pipeline[0].segment
    if segment is not None:
        check_writable(segment.output)
        if segment.vectorize is not None:
            label = f"pipeline[0].segment.vectorize {segment.vectorize!r}"
            if check_output(segment.vectorize, label=label) not in ("geojson", "geoparquet"):
                raise InvalidRequestError(f"{label}: polygons go to a .parquet or .geojson file")


def _accept(store: Store, spec: JobSpec, project: str, job_id: str | None) -> tuple[str, bool]:
    check_outputs(spec)
    if job_id is not None and store.get_job(job_id) is not None:
        return job_id, False  # resumed: its sources were checked when it was accepted
    if spec.tiles is not None:
        from tilerunner.xyz.planning import check_tiles

        check_tiles(spec.tiles)  # a malformed tile-list line fails now, naming the line
    elif spec.photos is not None:
        expand_photos(spec.source_pairs())  # a missing manifest or a bad row header fails now
    else:
        images = expand_sources(spec.source_pairs())  # a missing path or empty folder fails now
        if spec.pipeline[0].segment is not None and len(images) != 1:
            raise InvalidRequestError(
                f"a segment job writes one raster on one image's grid; its sources name "
                f"{len(images)} images: submit one job per image"
            )
    job_id = job_id or f"job-{uuid.uuid4().hex[:16]}"
    created = store.accept_job(job_id, spec.name, spec.model_dump(mode="json"), project=project)
    if created:
        log.info("accepted job %s (project %s)", job_id, project)
    return job_id, created


def plan_job(store: Store, queue_for: QueueFor, job_id: str, env: GdalEnv | None = None) -> int:
    """Plan a job in ``planning``: open its images, store images and regions, move it to
    ``queued``, publish; returns the region messages newly published.

    Safe to repeat: a job planned already only has its pending regions re-published. Planning
    that fails for good (a source vanished, a bad tiling) moves the job to ``failed`` with the
    error; store and broker failures propagate, and planning is retried.
    """
    job = store.get_job(job_id)
    if job is None:
        return 0
    if JobState(job.status) is JobState.PLANNING:
        spec = JobSpec.model_validate(job.spec)
        try:
            if spec.tiles is not None:
                from tilerunner.xyz.planning import plan_tiles

                planned = plan_tiles(store, job_id, spec.tiles)
            elif spec.photos is not None:
                planned = plan_photos(store, job_id, spec)
            else:
                planned = store.add_plans(job_id, plan_images(spec, env))
        except (TilerunnerError, OSError) as error:  # OSError: a folder that cannot be listed
            if isinstance(error, _TRANSIENT):
                raise
            log.warning("planning job %s failed: %s", job_id, error)
            store.set_job_state(job_id, JobState.FAILED, error=f"planning failed: {error}")
            return 0
        if planned:
            log.info("planned job %s", job_id)
    published = publish_pending(store, queue_for, job_id)
    log.info("job %s: %d region message(s) published", job_id, published)
    return published


def process_plans(
    store: Store,
    queue_for: QueueFor,
    owner: str,
    env: GdalEnv | None = None,
    *,
    job_id: str | None = None,
    claim_seconds: float = CLAIM_SECONDS,
) -> str | None:
    """Claim and run one pending planning (of ``job_id`` if given); returns its job id, or
    None when none is pending. The claim is extended while the images are opened."""
    item = store.claim_outbox(owner, claim_seconds, job_id=job_id, kind=PLAN)
    if item is None:
        return None
    with ClaimKeeper(store, item, owner, claim_seconds):
        plan_job(store, queue_for, item.job_id, env)
    store.finish_outbox(item)
    return item.job_id


def submit_job(
    store: Store,
    queue_for: QueueFor,
    spec: JobSpec,
    *,
    job_id: str | None = None,
    env: GdalEnv | None = None,
    project: str = "default",
) -> tuple[str, bool]:
    """Validate, plan, store and enqueue a job at once; returns (job id, created).

    With a ``job_id`` that exists already, nothing is planned again (unless its planning never
    finished): its pending regions are re-published (a resumed run) and ``created`` is False.
    """
    job_id, created = _accept(store, spec, project, job_id)
    owner = f"submit-{os.getpid()}"
    if process_plans(store, queue_for, owner, env, job_id=job_id) is None:
        plan_job(store, queue_for, job_id, env)  # planned already, or another holds the claim
    return job_id, created
