"""The crops of a photo job's later stages: what became of each, and which are still to crop.

A later stage's item crops the detections of its group (of stage ``crops_of``, passing the
stage's ``min_score``) that have no outcome of the stage yet. Every crop it ran ends one way,
recorded in the item's completion transaction: results (features whose ``parent`` is the
detection's key), nothing found (an ``empty_crops`` row), or a failure (a ``tile_failures`` row
whose message names the key). The item reports the keys it cropped (:class:`CropRun`), so the
store tells a crop that found nothing from a detection not cropped yet; a result of a detection
that has its outcome already (a stale holder's late completion) is not stored twice.

An earlier stage redone while the item runs can add detections the item was not given: its
completion counts the detections still without an outcome (:func:`record_crops`), and the
caller puts the item back to pending for them, so each detection of an earlier stage gets
exactly one result or recorded failure of each later stage, whatever the order of events.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, delete, insert, select

from tilerunner.jobs.features import FeatureRows, TileFailure
from tilerunner.photos.items import failed_crop_key
from tilerunner.store.tables import empty_crops, features, tile_failures
from tilerunner.store.tiles import insert_tile_failures, replace_tile_failures

__all__ = ["CropRun", "cropped_keys", "detection_keys", "group_detections", "record_crops"]


@dataclass(frozen=True, slots=True)
class CropRun:
    """What a later stage's item cropped: the stage whose detections it crops, that stage's
    ``min_score``, and the keys of the detections it cropped (None when the result does not
    name them: then nothing is recorded as found empty and the item is not put back)."""

    crops_of: int
    min_score: float
    keys: frozenset[str] | None = None


def cropped_keys(
    conn: Connection, job_id: str, leader: int, group_size: int, stage: int
) -> set[str]:
    """The keys of the group's detections that ``stage`` cropped with an outcome: results, or
    nothing found (a failed crop is still to crop)."""
    extras = conn.execute(
        select(features.c.extra).where(
            features.c.job_id == job_id,
            features.c.image_idx >= leader,
            features.c.image_idx < leader + group_size,
            features.c.region_idx == stage,
        )
    ).scalars()
    done = {str(e["parent"]) for e in extras if e and e.get("parent") is not None}
    done.update(
        str(k)
        for k in conn.execute(
            select(empty_crops.c.key).where(
                empty_crops.c.job_id == job_id,
                empty_crops.c.image_idx == leader,
                empty_crops.c.region_idx == stage,
            )
        ).scalars()
    )
    return done


def group_detections(
    job_id: str, leader: int, group_size: int, stage: int, min_score: float
) -> tuple[ColumnElement[bool], ...]:
    """The ``features`` rows of a group's detections of ``stage`` scoring at least
    ``min_score`` (the group's photos are ``leader`` and the ``group_size - 1`` after it)."""
    return (
        features.c.job_id == job_id,
        features.c.image_idx >= leader,
        features.c.image_idx < leader + group_size,
        features.c.region_idx == stage,
        features.c.score >= min_score,
    )


def detection_keys(
    conn: Connection, job_id: str, leader: int, group_size: int, stage: int, min_score: float
) -> list[str]:
    """The keys of the group's detections of ``stage`` scoring at least ``min_score``."""
    extras = conn.execute(
        select(features.c.extra)
        .where(*group_detections(job_id, leader, group_size, stage, min_score))
        .order_by(features.c.id)
    ).scalars()
    return [str(e["key"]) for e in extras if e and e.get("key") is not None]


def record_crops(
    conn: Connection,
    job_id: str,
    leader: int,
    stage: int,
    rows: FeatureRows,
    failures: Sequence[TileFailure],
    run: CropRun,
    *,
    group_size: int,
    at: float,
) -> tuple[FeatureRows, int]:
    """Record what a completed crop item of ``stage`` found: the crops that gave nothing and
    the failed ones; return the rows to store (of the detections without an outcome before)
    and how many of the group's detections are left without an outcome (nor a failure)."""
    before = cropped_keys(conn, job_id, leader, group_size, stage)
    rows = _rows_of_new_parents(rows, before)
    failures = [f for f in failures if failed_crop_key(f.message) not in before]
    if run.keys is None:  # not said what it cropped: its failures replace the item's
        replace_tile_failures(conn, job_id, leader, stage, failures, at)
        return rows, 0
    found = {str(e["parent"]) for e in rows.extra or [] if e and e.get("parent") is not None}
    failed = {failed_crop_key(f.message) for f in failures}
    ran = run.keys - before
    empty = sorted(ran - found - failed)
    if empty:
        conn.execute(
            insert(empty_crops),
            [{"job_id": job_id, "image_idx": leader, "region_idx": stage, "key": k} for k in empty],
        )
    done = before | found | set(empty)
    still_failed = _update_failures(conn, job_id, leader, stage, failures, ran | done, at)
    todo = detection_keys(conn, job_id, leader, group_size, run.crops_of, run.min_score)
    return rows, sum(1 for k in todo if k not in done and k not in still_failed)


def _rows_of_new_parents(rows: FeatureRows, done: set[str]) -> FeatureRows:
    """The rows whose parent detection has no outcome in ``done``."""
    extra = rows.extra or [None] * len(rows)
    keep = [i for i, e in enumerate(extra) if not e or str(e.get("parent")) not in done]
    if len(keep) == len(rows):
        return rows
    if not keep:
        return FeatureRows()
    return FeatureRows(
        boxes=rows.boxes[keep],
        scores=rows.scores[keep],
        class_ids=rows.class_ids[keep],
        labels=[rows.labels[i] for i in keep],
        extra=[extra[i] for i in keep],
    )


def _update_failures(
    conn: Connection,
    job_id: str,
    leader: int,
    stage: int,
    failures: Sequence[TileFailure],
    tried: AbstractSet[str],
    at: float,
) -> set[str]:
    """Replace the failure rows of the crops ``tried`` again (or cropped since) with the new
    ``failures``; return the keys of every crop of the item that stays failed."""
    of_item = and_(
        tile_failures.c.job_id == job_id,
        tile_failures.c.image_idx == leader,
        tile_failures.c.region_idx == stage,
    )
    old = conn.execute(select(tile_failures.c.id, tile_failures.c.message).where(of_item)).all()
    gone = [int(i) for i, m in old if failed_crop_key(str(m)) in tried]
    kept = {failed_crop_key(str(m)) for _, m in old} - tried
    for start in range(0, len(gone), 1000):
        conn.execute(
            delete(tile_failures).where(tile_failures.c.id.in_(gone[start : start + 1000]))
        )
    insert_tile_failures(conn, job_id, leader, stage, failures, at)
    keys = kept | {failed_crop_key(f.message) for f in failures}
    return {k for k in keys if k is not None}
