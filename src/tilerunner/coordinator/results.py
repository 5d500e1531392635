"""The features of a job: merged per image, georeferenced from what planning recorded.

Aggregation computes them once (:func:`merged_features`) and stores them; afterwards
:func:`job_results` reads the stored rows, with no merge and no source opened. While a job still
runs, the results are computed from what has finished so far: the owned features of every
finished region, merged per image, and flagged ``partial``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from tilerunner.georef import Georeferencer
from tilerunner.imagery import GdalEnv
from tilerunner.jobs import ImageState, JobSpec, JobState
from tilerunner.merging import MergeParams, merge
from tilerunner.outputs import FeatureTable
from tilerunner.store import FeatureRows, ImageRecord, ImageResults, Store
from tilerunner.store.outbox import ClaimKeeper

__all__ = [
    "JobResults",
    "image_features",
    "job_features",
    "job_results",
    "merge_params",
    "merged_features",
    "table_results",
]

log = logging.getLogger(__name__)

#: Final states that an aggregation set: their results are stored.
_AGGREGATED = frozenset({JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED})


@dataclass(frozen=True, slots=True)
class JobResults:
    """A job's features; ``partial`` until its aggregation has written the final ones."""

    table: FeatureTable
    partial: bool


def merge_params(spec: JobSpec) -> MergeParams:
    """Merge settings of a job; tile classifications are never suppressed."""
    method = spec.merge.method if spec.pipeline[0].task == "detect" else "none"
    return MergeParams(
        method=method,
        threshold=spec.merge.iou,
        metric=spec.merge.metric,
        class_agnostic=spec.merge.class_agnostic,
        min_score=spec.merge.min_score,
    )


def _georeferencer(image: ImageRecord, env: GdalEnv | None) -> Georeferencer | None:
    if image.georef is not None:
        return Georeferencer.from_record(image.georef)
    # planned before the header was recorded at planning: read it once more
    log.info("image %d of job %s has no recorded metadata; reading it", image.idx, image.job_id)
    return Georeferencer.open(image.url, env)


def image_features(
    store: Store,
    image: ImageRecord,
    spec: JobSpec,
    env: GdalEnv | None = None,
    keeper: ClaimKeeper | None = None,
) -> FeatureTable:
    """The merged, georeferenced features of one image (of its finished regions so far);
    ``keeper``: the aggregation's claim, extended while the features are read."""
    with keeper.within() if keeper is not None else nullcontext(None) as renew:
        rows = store.features(image.job_id, image.idx, renew)
    merged = merge(rows.boxes, rows.scores, rows.class_ids, merge_params(spec))
    n = len(merged.scores)
    rings = None
    if n:
        georef = _georeferencer(image, env)
        if georef is not None:
            try:
                rings = georef.box_rings(merged.boxes)
            finally:
                georef.close()
    extra: dict[str, list[Any]] = {}
    if rows.extra is not None:
        extra["scores"] = [(rows.extra[i] or {}).get("scores") for i in merged.source.tolist()]
    if spec.tiles is not None:  # a zoom level of a tile job: each feature's tile
        from tilerunner.xyz.grid import zoom_of_width
        from tilerunner.xyz.results import tile_columns

        extra.update(tile_columns(merged.boxes, zoom_of_width(image.width)))
    return FeatureTable(
        image=[image.source_id] * n,
        label=[rows.labels[i] for i in merged.source.tolist()],
        class_id=merged.labels,
        score=merged.scores,
        pixel_bbox=merged.boxes,
        geometry=rings if rings is not None else [None] * n,
        extra=extra,
    )


def _concat(tables: Sequence[FeatureTable]) -> FeatureTable:
    found = [t for t in tables if len(t)]
    return FeatureTable.concat(found) if found else FeatureTable.empty()


def merged_features(
    store: Store,
    job_id: str,
    spec: JobSpec,
    env: GdalEnv | None = None,
    *,
    finished: bool,
    keeper: ClaimKeeper | None = None,
) -> list[tuple[int, FeatureTable]]:
    """``(image idx, features)`` per image: of finished images only, or (``finished=False``)
    of every image with a finished region."""
    return [
        (image.idx, image_features(store, image, spec, env, keeper))
        for image in store.images(job_id)
        if image.state == ImageState.DONE or (not finished and image.state == ImageState.PENDING)
    ]


def table_results(image_idx: int, table: FeatureTable) -> ImageResults:
    """One image's feature table as the store keeps it."""
    n = len(table)
    extra: list[dict[str, Any] | None] | None = None
    if table.extra:
        columns = {name: list(values) for name, values in table.extra.items()}
        extra = [{name: _plain(col[i]) for name, col in columns.items()} for i in range(n)]
    rows = FeatureRows(
        boxes=table.pixel_bbox,
        scores=table.score,
        class_ids=table.class_id,
        labels=list(table.label),
        extra=extra,
    )
    return ImageResults(image_idx, rows, table.geometry)


def _stored_table(store: Store, job_id: str) -> FeatureTable:
    """The job's stored results as one table, in the order aggregation wrote them."""
    parts = store.results(job_id)
    if not parts:
        return FeatureTable.empty()
    source_ids = {image.idx: image.source_id for image in store.images(job_id)}
    names: dict[str, None] = {}
    for part in parts:
        for e in part.rows.extra or ():
            names.update(dict.fromkeys(e or {}))
    tables = []
    for part in parts:
        rows, n = part.rows, len(part.rows)
        extras = rows.extra or [None] * n
        tables.append(
            FeatureTable(
                image=[source_ids[part.image_idx]] * n,
                label=rows.labels,
                class_id=rows.class_ids,
                score=rows.scores,
                pixel_bbox=rows.boxes,
                geometry=part.geometry,
                extra={name: [(e or {}).get(name) for e in extras] for name in names},
            )
        )
    return FeatureTable.concat(tables)


def job_results(store: Store, job_id: str, env: GdalEnv | None = None) -> JobResults:
    """What a job found: stored by its aggregation once it ran, else computed from every
    finished region so far (``partial``). Raises LookupError for an unknown job."""
    job = store.get_job(job_id)
    if job is None:
        raise LookupError(job_id)
    if JobState(job.status) in _AGGREGATED:
        return JobResults(_stored_table(store, job_id), partial=False)
    spec = JobSpec.model_validate(job.spec)
    tables = [t for _, t in merged_features(store, job_id, spec, env, finished=False)]
    return JobResults(_concat(tables), partial=True)


def job_features(store: Store, job_id: str, env: GdalEnv | None = None) -> FeatureTable:
    """The features of :func:`job_results`, without the ``partial`` flag."""
    return job_results(store, job_id, env).table


def _plain(value: Any) -> Any:
    """A JSON-native value (numpy scalars and arrays become Python numbers and lists)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value
