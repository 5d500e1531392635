"""Photo jobs in the store: photos as images, groups of photos and their later stages as items.

A photo job stores one ``images`` row per photo (``meta`` keeps its event and location) and one
``regions`` row per work item: row ``(leader, stage)`` is stage ``stage`` of the group whose first
photo is ``leader`` (groups are consecutive runs of ``group_size`` photos). Planning writes the
stage-0 rows. Completing a stage writes its features, records what became of each photo, and, in
the same guarded transaction, adds the rows of the stages that consume its detections (one per
group and stage, so their ids are deterministic); the caller publishes them after the commit and
the repair sweep re-publishes any pending row a crash left unpublished. The leader image's
``regions_finished`` / ``regions_total`` counters lock the group, so exactly one completion sees
the group's last stage finish and closes its photos; the last photo closed schedules the job's
one aggregation as for any job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from tilerunner.jobs.features import FeatureRows
from tilerunner.jobs.states import ImageState, JobState, RegionState, sources_of
from tilerunner.store.base import StoreBase
from tilerunner.store.tables import features, images, jobs, regions
from tilerunner.work.results import MemberOutcome

__all__ = ["PhotoPlan", "PhotoStore", "StageOutcome"]

_STARTABLE = [s.value for s in sources_of(JobState.RUNNING)]


@dataclass(frozen=True, slots=True)
class PhotoPlan:
    """One photo as planned: its index, id, url, what it carries (event, location), or error."""

    idx: int
    source_id: str
    url: str
    meta: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What completing a stage did: recorded at all, and the later stages it enqueued."""

    recorded: bool
    new_stages: tuple[int, ...] = ()


class PhotoStore(StoreBase):
    """The photo-job methods of :class:`tilerunner.store.Store`."""

    if TYPE_CHECKING:  # provided by Store (repository.py)

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
        """(image index, url) of the group's photos still to run."""
        with self._begin() as conn:
            rows = conn.execute(
                select(images.c.idx, images.c.url)
                .where(
                    images.c.job_id == job_id,
                    images.c.idx >= leader,
                    images.c.idx < leader + group_size,
                    images.c.state == ImageState.PENDING.value,
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
                .where(
                    features.c.job_id == job_id,
                    features.c.image_idx >= leader,
                    features.c.image_idx < leader + group_size,
                    features.c.region_idx == stage,
                    features.c.score >= min_score,
                )
                .order_by(features.c.id)
            ).all()
        return [
            (str(r.extra["key"]), int(r.image_idx), str(r.url), (r.x0, r.y0, r.x1, r.y1))
            for r in rows
        ]

    def complete_photo_stage(
        self,
        job_id: str,
        leader: int,
        stage: int,
        rows: FeatureRows,
        members: Sequence[MemberOutcome],
        *,
        group_size: int,
        consumers: Sequence[tuple[int, float]],
        worker: str = "",
    ) -> StageOutcome:
        """Record a stage of a group once (False for a duplicate delivery) and add the rows of
        the ``consumers`` (stage, min_score) that have detections to work on."""
        now = self._clock()
        with self._begin() as conn:
            if not _flip(conn, job_id, leader, stage, RegionState.DONE, len(rows), worker, now):
                return StageOutcome(False)
            _insert_rows(conn, job_id, stage, rows)
            self._record_members(conn, job_id, members)
            new = []
            for target, min_score in consumers:
                n = int((rows.scores >= min_score).sum()) if len(rows) else 0
                if n:
                    _add_stage(conn, job_id, leader, target, n)
                    new.append(target)
            self._stage_finished(conn, job_id, leader, group_size, failed=None)
        return StageOutcome(True, tuple(new))

    def fail_photo_stage(
        self, job_id: str, leader: int, stage: int, error: str, *, group_size: int, worker: str = ""
    ) -> bool:
        """A stage of a group failed for good: its photos fail if it was the first stage."""
        now = self._clock()
        with self._begin() as conn:
            if not _flip(conn, job_id, leader, stage, RegionState.FAILED, 0, worker, now, error):
                return False
            self._event(conn, job_id, "region_failed", error, image_idx=leader, region_idx=stage)
            self._stage_finished(
                conn, job_id, leader, group_size, failed=error if not stage else None
            )
        return True

    def photo_rows(self, job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The job's photos and all their features (every stage), in a stable order."""
        with self._begin() as conn:
            photos = [
                dict(r)
                for r in conn.execute(
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
                    .where(images.c.job_id == job_id)
                    .order_by(images.c.idx)
                ).mappings()
            ]
            rows = [
                dict(r)
                for r in conn.execute(
                    select(features)
                    .where(features.c.job_id == job_id)
                    .order_by(features.c.region_idx, features.c.image_idx, features.c.id)
                ).mappings()
            ]
        return photos, rows

    # ------------------------------------------------------------ internals
    def _record_members(
        self, conn: Connection, job_id: str, members: Sequence[MemberOutcome]
    ) -> None:
        failed = 0
        for member in members:
            where = (images.c.job_id == job_id) & (images.c.idx == member.image_idx)
            if member.error is not None:
                failed += conn.execute(
                    update(images)
                    .where(where, images.c.state == ImageState.PENDING.value)
                    .values(state=ImageState.FAILED.value, error=member.error)
                ).rowcount
                self._event(conn, job_id, "image_failed", member.error, image_idx=member.image_idx)
                continue
            values: dict[str, Any] = {"width": member.width, "height": member.height}
            if member.location is not None:
                meta = conn.execute(select(images.c.meta).where(where)).scalar() or {}
                if meta.get("lon") is None:  # the manifest's location wins over the EXIF one
                    lon, lat = member.location
                    values["meta"] = {**meta, "lon": lon, "lat": lat}
            conn.execute(update(images).where(where).values(**values))
        if failed:
            self._images_closed(conn, job_id, failed)

    def _stage_finished(
        self, conn: Connection, job_id: str, leader: int, group_size: int, failed: str | None
    ) -> None:
        """Count a finished stage on the leader (which locks the group); close the group's
        photos when it was the last one (as failed when ``failed`` says why)."""
        finished, total = conn.execute(
            update(images)
            .where(images.c.job_id == job_id, images.c.idx == leader)
            .values(regions_finished=images.c.regions_finished + 1)
            .returning(images.c.regions_finished, images.c.regions_total)
        ).one()
        started = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(_STARTABLE))
            .values(status=JobState.RUNNING.value, started_at=self._clock())
        ).rowcount
        if started:
            self._event(conn, job_id, JobState.RUNNING.value, "first work item finished")
        if finished < total:
            return
        state = ImageState.DONE if failed is None else ImageState.FAILED
        closed = conn.execute(
            update(images)
            .where(
                images.c.job_id == job_id,
                images.c.idx >= leader,
                images.c.idx < leader + group_size,
                images.c.state == ImageState.PENDING.value,
            )
            .values(state=state.value, error=failed)
        ).rowcount
        if closed:
            self._images_closed(conn, job_id, closed)


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


def _flip(
    conn: Connection,
    job_id: str,
    leader: int,
    stage: int,
    state: RegionState,
    n_features: int,
    worker: str,
    now: float,
    error: str | None = None,
) -> bool:
    return bool(
        conn.execute(
            update(regions)
            .where(
                regions.c.job_id == job_id,
                regions.c.image_idx == leader,
                regions.c.idx == stage,
                regions.c.state == RegionState.PENDING.value,
            )
            .values(
                state=state.value,
                n_features=n_features,
                worker=worker,
                finished_at=now,
                error=error,
                attempts=regions.c.attempts + 1,
            )
        ).rowcount
    )


def _insert_rows(conn: Connection, job_id: str, stage: int, rows: FeatureRows) -> None:
    if not len(rows):
        return
    extra = rows.extra or [None] * len(rows)
    payload = [
        {
            "job_id": job_id,
            "image_idx": int((e or {})["image"]),
            "region_idx": stage,  # the group is the photos' range; the stage tells them apart
            "class_id": int(c),
            "label": label,
            "score": float(s),
            "x0": float(b[0]),
            "y0": float(b[1]),
            "x1": float(b[2]),
            "y1": float(b[3]),
            "extra": e,
        }
        for b, s, c, label, e in zip(
            rows.boxes.tolist(),
            rows.scores.tolist(),
            rows.class_ids.tolist(),
            rows.labels,
            extra,
            strict=True,
        )
    ]
    conn.execute(insert(features), payload)


def _add_stage(conn: Connection, job_id: str, leader: int, stage: int, n_crops: int) -> None:
    conn.execute(
        insert(regions).values(
            job_id=job_id,
            image_idx=leader,
            idx=stage,
            state=RegionState.PENDING.value,
            n_tiles=n_crops,
        )
    )
    conn.execute(
        update(images)
        .where(images.c.job_id == job_id, images.c.idx == leader)
        .values(
            regions_total=images.c.regions_total + 1, tiles_total=images.c.tiles_total + n_crops
        )
    )
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(regions_total=jobs.c.regions_total + 1, tiles_total=jobs.c.tiles_total + n_crops)
    )
