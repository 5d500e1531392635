"""Planning photo jobs, describing their items, and recording what workers report.

The coordinator's planner and the work service call these for a job whose document has a
``photos`` section; everything else about the job's life (leases, attempts, the outbox, the
aggregation trigger) is the same as for raster jobs. Photos are not opened at planning: a
photo that cannot be decoded is found by the worker that reads it and fails alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from tilerunner.broker import Message, Queue
from tilerunner.jobs import JobSpec, RegionMessage, queue_name
from tilerunner.jobs.stages import consumers
from tilerunner.photos.items import Crop, CropItem, PhotoGroupItem, PhotoMember
from tilerunner.photos.sources import expand_photos
from tilerunner.store import Store
from tilerunner.store.photo_crops import CropRun
from tilerunner.store.photo_stages import StageOutcome
from tilerunner.store.photos import PhotoPlan
from tilerunner.work.results import WorkResult

__all__ = [
    "complete_photo_item",
    "describe_photo_item",
    "fail_photo_item",
    "plan_photos",
    "publish_stages",
    "stage_model",
]

log = logging.getLogger(__name__)


def plan_photos(store: Store, job_id: str, spec: JobSpec) -> bool:
    """Store the job's photos and the first stage's groups; False if planned before."""
    assert spec.photos is not None
    plans = [
        PhotoPlan(idx, ref.id, ref.url, ref.meta(), ref.error)
        for idx, ref in enumerate(expand_photos(spec.source_pairs()))
    ]
    return store.add_photo_plans(job_id, plans, spec.photos.group_size)


def stage_model(spec: JobSpec, stage: int) -> str:
    """The model name whose queue carries the items of ``stage``."""
    return spec.pipeline[stage].model


def describe_photo_item(
    store: Store, message: RegionMessage, spec: JobSpec
) -> PhotoGroupItem | CropItem:
    """The work item behind a photo job's message, from the store."""
    assert spec.photos is not None
    photos = spec.photos
    stage = message.region_idx
    common: dict[str, object] = {
        "id": message.id,
        "job_id": message.job_id,
        "leader": message.image_idx,
        "stage": stage,
        "input_size": photos.input_size,
        "resize": photos.resize,
        "min_score": spec.merge.min_score,
    }
    if stage == 0:
        members = store.group_members(message.job_id, message.image_idx, photos.group_size)
        return PhotoGroupItem.model_validate(
            {**common, "members": tuple(PhotoMember(image_idx=i, url=u) for i, u in members)}
        )
    spec_stage = spec.pipeline[stage]
    assert spec_stage.crops_of is not None
    crops = store.stage_features(
        message.job_id,
        message.image_idx,
        photos.group_size,
        spec_stage.crops_of,
        spec_stage.min_score,
    )
    # a retried item (crops that failed alone) or one reopened by new detections (a redone
    # photo or crop): the detections cropped before (with results, or found empty) are not
    done = store.stage_cropped(message.job_id, message.image_idx, photos.group_size, stage)
    crops = [c for c in crops if c[0] not in done]
    return CropItem.model_validate(
        {
            **common,
            "padding": spec_stage.crop_padding,
            "crops": tuple(Crop(key=k, image_idx=i, url=u, box=b) for k, i, u, b in crops),
        }
    )


def complete_photo_item(
    store: Store,
    queue_for: Callable[[str], Queue],
    message: RegionMessage,
    spec: JobSpec,
    result: WorkResult,
    worker: str,
) -> StageOutcome:
    """Record a photo item once and publish the later stages its completion added; an item
    that went back to pending (``again``) is published by the caller once it has acked it."""
    assert spec.photos is not None
    stage = message.region_idx
    outcome = store.complete_photo_stage(
        message.job_id,
        message.image_idx,
        stage,
        result.rows,
        result.members,
        group_size=spec.photos.group_size,
        consumers=[(t, spec.pipeline[t].min_score) for t in consumers(spec.pipeline, stage)],
        worker=worker,
        failures=result.tile_failures,
        crops=_crop_run(spec, stage, result),
    )
    # after the commit; a crash before this publish leaves a pending row the sweep
    # re-publishes, and the deterministic id makes a second publish a no-op
    publish_stages(queue_for, message, spec, outcome.new_stages)
    return outcome


def publish_stages(
    queue_for: Callable[[str], Queue],
    message: RegionMessage,
    spec: JobSpec,
    stages: Sequence[int],
) -> None:
    """Publish the items of ``stages`` of the group of ``message`` on their models' queues."""
    for target in stages:
        follow = RegionMessage(
            job_id=message.job_id, image_idx=message.image_idx, region_idx=target
        )
        queue_for(queue_name(stage_model(spec, target))).publish(
            [Message(follow.id, follow.encode())]
        )


def _crop_run(spec: JobSpec, stage: int, result: WorkResult) -> CropRun | None:
    """What a later stage's item cropped (None for the first stage's photos)."""
    crops_of = spec.pipeline[stage].crops_of
    if crops_of is None:
        return None
    # a result that does not name its crops comes from a worker of an older version
    named = bool(result.crops) or not result.n_tiles
    keys = frozenset(result.crops) if named else None
    return CropRun(crops_of, spec.pipeline[stage].min_score, keys)


def fail_photo_item(
    store: Store, message: RegionMessage, spec: JobSpec, reason: str, worker: str
) -> bool:
    assert spec.photos is not None
    return store.fail_photo_stage(
        message.job_id,
        message.image_idx,
        message.region_idx,
        reason,
        group_size=spec.photos.group_size,
        worker=worker,
    )
