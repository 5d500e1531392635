"""Photo jobs in the store: photos as images, groups of photos and their later stages as items.

A photo job stores one ``images`` row per photo (``meta`` keeps its event and location) and one
``regions`` row per work item: row ``(leader, stage)`` is stage ``stage`` of the group whose first
photo is ``leader`` (groups are consecutive runs of ``group_size`` photos). Planning writes the
stage-0 rows; this module plans and reads photo jobs (what an item holds, the records per photo),
and :mod:`tilerunner.store.photo_stages` records what becomes of each stage (its crops:
:mod:`tilerunner.store.photo_crops`; retries: :mod:`tilerunner.store.photo_retries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update

from tilerunner.jobs.states import ImageState, JobState, RegionState, sources_of
from tilerunner.photos.items import crop_photo, failed_crop_key
from tilerunner.store.base import StoreBase
from tilerunner.store.photo_crops import cropped_keys, group_detections
from tilerunner.store.tables import features, images, jobs, regions, tile_failures

__all__ = ["PhotoPlan", "PhotoStore"]


@dataclass(frozen=True, slots=True)
class PhotoPlan:
    """One photo as planned: its index, id, url, what it carries (event, location), or error."""

    idx: int
    source_id: str
    url: str
    meta: dict[str, Any]
    error: str | None = None


class PhotoStore(StoreBase):
    """The photo-job methods of :class:`tilerunner.store.Store`."""

    if TYPE_CHECKING:  # provided by Store (regions.py)

        def _images_closed(self, conn: Connection, job_id: str, n: int) -> None: ...

    def add_photo_plans(self, job_id: str, photos: Sequence[PhotoPlan], group_size: int) -> bool:
        """Photos and their groups' stage-0 rows; the job ``planning -> queued``, atomically.

        False, writing nothing, when the job is no longer in planning.
        """
        groups = _groups([p for p in photos if p.error is None], group_size)
        allowed = [s.value for s in sources_of(JobState.QUEUED)]
        with self._begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(allowed))
                .values(
                    status=JobState.QUEUED.value,
                    images_total=len(photos),
                    regions_total=len(groups),
                    tiles_total=sum(groups.values()),
                )
            ).rowcount
            if not changed:
                return False
            self._event(conn, job_id, JobState.QUEUED.value, f"{len(photos)} photo(s) queued")
            _insert_photos(conn, job_id, photos, groups)
            failed = [p for p in photos if p.error is not None]
            for photo in failed:
                self._event(conn, job_id, "image_failed", str(photo.error), image_idx=photo.idx)
            if failed or not groups:
                self._images_closed(conn, job_id, len(failed))
        return True

    def group_members(self, job_id: str, leader: int, group_size: int) -> list[tuple[int, str]]:
        """(image index, url) of the group's photos still to run: pending and never read (a
        retried group's photos read before keep their detections)."""
        with self._begin() as conn:
            rows = conn.execute(
                select(images.c.idx, images.c.url)
                .where(
                    images.c.job_id == job_id,
                    images.c.idx >= leader,
                    images.c.idx < leader + group_size,
                    images.c.state == ImageState.PENDING.value,
                    images.c.width.is_(None),  # a retry redoes just the photos never read
                )
                .order_by(images.c.idx)
            ).all()
        return [(int(i), str(u)) for i, u in rows]

    def stage_features(
        self, job_id: str, leader: int, group_size: int, stage: int, min_score: float
    ) -> list[tuple[str, int, str, tuple[float, float, float, float]]]:
        """(key, image index, url, box) of a group's detections of ``stage`` scoring at least
        ``min_score``, in a stable order: what the stages that consume them crop."""
        with self._begin() as conn:
            rows = conn.execute(
                select(
                    features.c.extra,
                    features.c.image_idx,
                    images.c.url,
                    features.c.x0,
                    features.c.y0,
                    features.c.x1,
                    features.c.y1,
                )
                .join(
                    images,
                    (images.c.job_id == features.c.job_id) & (images.c.idx == features.c.image_idx),
                )
                .where(*group_detections(job_id, leader, group_size, stage, min_score))
                .order_by(features.c.id)
            ).all()
        return [
            (str(r.extra["key"]), int(r.image_idx), str(r.url), (r.x0, r.y0, r.x1, r.y1))
            for r in rows
        ]

    def photo_rows(
        self, job_id: str, *, after: int = -1, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The job's photos (those with an index above ``after``, at most ``limit`` of them)
        and all their features (every stage), in a stable order."""
        with self._begin() as conn:
            query = (
                select(
                    images.c.idx,
                    images.c.source_id,
                    images.c.url,
                    images.c.width,
                    images.c.height,
                    images.c.state,
                    images.c.error,
                    images.c.meta,
                )
                .where(images.c.job_id == job_id, images.c.idx > after)
                .order_by(images.c.idx)
            )
            if limit is not None:
                query = query.limit(limit)
            photos = [dict(r) for r in conn.execute(query).mappings()]
            if not photos:
                return [], []
            rows = [
                dict(r)
                for r in conn.execute(
                    select(features)
                    .where(
                        features.c.job_id == job_id,
                        features.c.image_idx >= photos[0]["idx"],
                        features.c.image_idx <= photos[-1]["idx"],
                    )
                    .order_by(features.c.region_idx, features.c.image_idx, features.c.id)
                ).mappings()
            ]
        return photos, rows

    def crop_failures(
        self, job_id: str, first: int = 0, last: int | None = None
    ) -> dict[str, list[tuple[int, str]]]:
        """{detection key: [(stage, message)]} of the crops that failed alone in done items,
        of the photos ``first`` to ``last`` (every photo when ``last`` is None)."""
        where = [tile_failures.c.job_id == job_id, regions.c.state == RegionState.DONE.value]
        if last is not None:
            # a failure row is its group's (leader <= photo): the groups from the one that
            # holds photo ``first`` to photo ``last``
            lowest = (
                select(func.max(regions.c.image_idx))
                .where(regions.c.job_id == job_id, regions.c.image_idx <= first)
                .scalar_subquery()
            )
            where += [
                tile_failures.c.image_idx >= func.coalesce(lowest, first),
                tile_failures.c.image_idx <= last,
            ]
        with self._begin() as conn:
            rows = conn.execute(
                select(tile_failures.c.region_idx, tile_failures.c.message)
                .select_from(
                    tile_failures.join(
                        regions,
                        (regions.c.job_id == tile_failures.c.job_id)
                        & (regions.c.image_idx == tile_failures.c.image_idx)
                        & (regions.c.idx == tile_failures.c.region_idx),
                    )
                )
                .where(*where)
                .order_by(tile_failures.c.id)
            ).all()
        out: dict[str, list[tuple[int, str]]] = {}
        for stage, message in rows:
            key = failed_crop_key(str(message))
            photo = None if key is None else crop_photo(key)
            if key is not None and (last is None or (photo is not None and first <= photo <= last)):
                out.setdefault(key, []).append((int(stage), str(message)))
        return out

    def stage_cropped(self, job_id: str, leader: int, group_size: int, stage: int) -> set[str]:
        """The keys of the group's detections that ``stage`` cropped with an outcome (results,
        or nothing found): a retried or reopened crop item leaves them out."""
        with self._begin() as conn:
            return cropped_keys(conn, job_id, leader, group_size, stage)

    def failed_crop_keys(self, job_id: str, leader: int, stage: int) -> frozenset[str]:
        """The keys of the crops of item ``(leader, stage)`` that failed alone: on a retry the
        item redoes just these."""
        with self._begin() as conn:
            messages = conn.execute(
                select(tile_failures.c.message).where(
                    tile_failures.c.job_id == job_id,
                    tile_failures.c.image_idx == leader,
                    tile_failures.c.region_idx == stage,
                )
            ).scalars()
            keys = (failed_crop_key(str(m)) for m in messages)
            return frozenset(k for k in keys if k is not None)


def _groups(valid: Sequence[PhotoPlan], group_size: int) -> dict[int, int]:
    """{leader: photos to run} for every group with a photo to run."""
    out: dict[int, int] = {}
    for photo in valid:
        leader = photo.idx - photo.idx % group_size
        out[leader] = out.get(leader, 0) + 1
    return out


def _insert_photos(
    conn: Connection, job_id: str, photos: Sequence[PhotoPlan], groups: dict[int, int]
) -> None:
    rows = [
        {
            "job_id": job_id,
            "idx": p.idx,
            "source_id": p.source_id,
            "url": p.url,
            "regions_total": 1 if p.idx in groups else 0,
            "tiles_total": groups.get(p.idx, 0),
            "state": (ImageState.FAILED if p.error else ImageState.PENDING).value,
            "error": p.error,
            "meta": p.meta,
        }
        for p in photos
    ]
    for start in range(0, len(rows), 5000):
        conn.execute(insert(images), rows[start : start + 5000])
    stage0 = [
        {
            "job_id": job_id,
            "image_idx": leader,
            "idx": 0,
            "state": RegionState.PENDING.value,
            "n_tiles": n,
        }
        for leader, n in groups.items()
    ]
    if stage0:
        conn.execute(insert(regions), stage0)
