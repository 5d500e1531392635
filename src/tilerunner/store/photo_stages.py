"""Photo jobs in the store: recording and failing the stages of a group of photos.

Completing a stage writes its features, records what became of each photo and the crops that
failed alone (failure rows of the item, see :func:`tilerunner.photos.items.crop_failure`), and,
in the same guarded transaction, adds the rows of the stages that consume its detections (one
per group and stage, so their ids are deterministic); the caller publishes them after the commit
and the repair sweep re-publishes any pending row a crash left unpublished. The leader image's
``regions_finished`` / ``regions_total`` counters lock the group, so exactly one completion sees
the group's last stage finish and closes its photos; the last photo closed schedules the job's
one aggregation as for any job.

A later stage's completion records what became of each crop it ran (results, nothing found, a
failure: :mod:`tilerunner.store.photo_crops`). An earlier stage that completes locks its
consumers' rows first: a done consumer with detections to crop now is reopened; a pending one
(perhaps running with the detections it was given before) finds them when it completes, and
goes back to pending for them. So each detection gets one outcome of each later stage.

Retrying them is :mod:`tilerunner.store.photo_retries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, and_, exists, select, update

from tilerunner.jobs.features import FeatureRows, TileFailure
from tilerunner.jobs.states import ImageState, RegionState
from tilerunner.store.base import StoreBase
from tilerunner.store.features import insert_features
from tilerunner.store.photo_crops import CropRun, record_crops
from tilerunner.store.tables import images, jobs, regions, tile_failures
from tilerunner.store.tiles import reopen_done_region, replace_tile_failures
from tilerunner.work.results import MemberOutcome

__all__ = ["PhotoStageStore", "StageOutcome"]


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What completing a stage did: recorded at all, the later stages it enqueued, and whether
    the item itself went back to pending (detections to crop came in while it ran)."""

    recorded: bool
    new_stages: tuple[int, ...] = ()
    again: bool = False


class PhotoStageStore(StoreBase):
    """The photo-stage methods of :class:`tilerunner.store.Store` (a mixin)."""

    if TYPE_CHECKING:  # provided by Store (regions.py)

        def _images_closed(self, conn: Connection, job_id: str, n: int) -> None: ...

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
        failures: Sequence[TileFailure] = (),
        crops: CropRun | None = None,
    ) -> StageOutcome:
        """Record a stage of a group once (False for a duplicate delivery), with the crops that
        failed alone, and add the rows of the ``consumers`` (stage, min_score) that have
        detections to work on. A later stage's item says what it cropped (``crops``); when
        detections to crop came in while it ran, it goes back to pending (``again``)."""
        now = self._clock()
        with self._begin() as conn:
            if not _flip(conn, job_id, leader, stage, RegionState.DONE, len(rows), worker, now):
                return StageOutcome(False)
            # the consumers' rows are locked before anything is read or written: a consumer
            # completing meanwhile either sees this stage's detections or is seen done here
            states = _lock_stages(conn, job_id, leader, [t for t, _ in consumers])
            left = 0
            if crops is not None:
                given = len(rows)
                rows, left = record_crops(
                    conn, job_id, leader, stage, rows, failures, crops,
                    group_size=group_size, at=now,
                )  # fmt: skip
                if len(rows) < given:  # results of crops that had theirs already
                    _count_features(conn, job_id, leader, stage, len(rows) - given)
            else:
                # a retried item redid just its failed crops: their old failures give way
                replace_tile_failures(conn, job_id, leader, stage, failures, now)
            insert_features(conn, job_id, stage, rows, None)
            if failures:
                self._event(
                    conn, job_id, "tiles_failed",
                    f"{len(failures)} crop(s) failed; first {failures[0].message}",
                    image_idx=leader, region_idx=stage,
                )  # fmt: skip
            self._record_members(conn, job_id, members)
            new = []
            for target, min_score in consumers:
                n = int((rows.scores >= min_score).sum()) if len(rows) else 0
                state = states.get(target)
                if state is None and n:
                    _add_stage(conn, job_id, leader, target, n)
                    new.append(target)
                elif state is RegionState.DONE and (
                    n or _has_failures(conn, job_id, leader, target)
                ):
                    # a redone photo or crop found more, or the consumer's failed crops wait
                    # for this stage: the done consumer crops what has no outcome yet (a
                    # pending one crops them when it runs, or goes back to pending for them)
                    reopen_done_region(conn, job_id, leader, target)
                    self._group_reopened(conn, job_id, leader, group_size, None)
                    new.append(target)
            if left:
                # an earlier stage, redone while this item ran, found more: it runs again
                reopen_done_region(conn, job_id, leader, stage)
                self._event(
                    conn, job_id, "stage_reopened",
                    f"{left} detection(s) to crop came in while stage {stage} ran",
                    image_idx=leader, region_idx=stage,
                )  # fmt: skip
                self._mark_running(conn, job_id, "first work item finished")
            else:
                self._stage_finished(conn, job_id, leader, group_size, failed=None)
        return StageOutcome(True, tuple(new), again=bool(left))

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
            values: dict[str, object] = {"width": member.width, "height": member.height}
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
        self._mark_running(conn, job_id, "first work item finished")
        if finished < total:
            return
        state = ImageState.DONE if failed is None else ImageState.FAILED
        closed = conn.execute(
            update(images)
            .where(
                *_in_group(job_id, leader, group_size), images.c.state == ImageState.PENDING.value
            )
            .values(state=state.value, error=failed)
        ).rowcount
        if closed:
            self._images_closed(conn, job_id, closed)

    def _group_reopened(
        self, conn: Connection, job_id: str, leader: int, group_size: int, failed: str | None
    ) -> None:
        """Uncount a finished stage put back to pending; if the group had closed, reopen the
        photos it closed: those done, and those failed with the group's own ``failed`` error
        (a photo that failed alone stays failed)."""
        finished, total = conn.execute(
            update(images)
            .where(images.c.job_id == job_id, images.c.idx == leader)
            .values(regions_finished=images.c.regions_finished - 1)
            .returning(images.c.regions_finished, images.c.regions_total)
        ).one()
        if finished + 1 < total:
            return
        closed_by_group = images.c.state == ImageState.DONE.value
        if failed is not None:
            closed_by_group |= (images.c.state == ImageState.FAILED.value) & (
                images.c.error == failed
            )
        reopened = conn.execute(
            update(images)
            .where(_in_group(job_id, leader, group_size), closed_by_group)
            .values(state=ImageState.PENDING.value, error=None)
        ).rowcount
        if reopened:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(images_finished=jobs.c.images_finished - reopened)
            )


def _in_group(job_id: str, leader: int, group_size: int) -> ColumnElement[bool]:
    return and_(
        images.c.job_id == job_id,
        images.c.idx >= leader,
        images.c.idx < leader + group_size,
    )


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
                n_features=regions.c.n_features + n_features,  # a redo of failed crops adds
                worker=worker,
                finished_at=now,
                error=error,
                attempts=regions.c.attempts + 1,
            )
        ).rowcount
    )


def _count_features(conn: Connection, job_id: str, leader: int, stage: int, n: int) -> None:
    conn.execute(
        update(regions)
        .where(regions.c.job_id == job_id, regions.c.image_idx == leader, regions.c.idx == stage)
        .values(n_features=regions.c.n_features + n)
    )


def _has_failures(conn: Connection, job_id: str, leader: int, stage: int) -> bool:
    return bool(
        conn.execute(
            select(
                exists().where(
                    tile_failures.c.job_id == job_id,
                    tile_failures.c.image_idx == leader,
                    tile_failures.c.region_idx == stage,
                )
            )
        ).scalar()
    )


def _add_stage(conn: Connection, job_id: str, leader: int, stage: int, n_crops: int) -> None:
    """Add the group's row of a consuming stage (it has none yet)."""
    conn.execute(
        regions.insert().values(
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


def _lock_stages(
    conn: Connection, job_id: str, leader: int, stages: Sequence[int]
) -> dict[int, RegionState]:
    """The state of each of the group's rows of ``stages`` that exists, locked until commit
    (SQLite's transactions hold the whole database already)."""
    if not stages:
        return {}
    rows = conn.execute(
        select(regions.c.idx, regions.c.state)
        .where(regions.c.job_id == job_id, regions.c.image_idx == leader, regions.c.idx.in_(stages))
        .order_by(regions.c.idx)
        .with_for_update()
    ).all()
    return {int(idx): RegionState(state) for idx, state in rows}
