"""Regions: the work items of a job and the guarded updates that finish, fail and reopen them.

Completing a region writes its features and flips its row in one transaction, so a duplicate
delivery writes and counts nothing; each finished region is counted on its image, the last one
closes the image, and the last image of a job schedules exactly one aggregation (an outbox row
with a unique key). The counter update locks the image row, so concurrent completions of one
image serialise there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, func, select, update

from tilerunner.jobs.features import TileFailure
from tilerunner.jobs.states import ImageState, RegionState
from tilerunner.store.base import StoreBase
from tilerunner.store.features import insert_features
from tilerunner.store.outbox import AGGREGATE
from tilerunner.store.records import FeatureRows
from tilerunner.store.tables import images, jobs, regions
from tilerunner.store.tiles import replace_tile_failures

__all__ = ["RegionStore"]

# The hot path of completion as prebuilt statements: built once, they skip SQLAlchemy's
# per-call statement construction, which costs as much as the round trip itself.
_COMPLETE_REGION = (
    update(regions)
    .where(
        regions.c.job_id == bindparam("job"),
        regions.c.image_idx == bindparam("image"),
        regions.c.idx == bindparam("region"),
        regions.c.state == RegionState.PENDING.value,
    )
    .values(
        state=RegionState.DONE.value,
        n_features=regions.c.n_features + bindparam("n_features"),  # a redo of failed tiles adds
        worker=bindparam("worker"),
        finished_at=bindparam("at"),
        attempts=regions.c.attempts + 1,
    )
)
_COUNT_REGION = (
    update(images)
    .where(images.c.job_id == bindparam("job"), images.c.idx == bindparam("image"))
    .values(regions_finished=images.c.regions_finished + 1)
    .returning(images.c.regions_finished, images.c.regions_total)
)


class RegionStore(StoreBase):
    """The region methods of :class:`tilerunner.store.Store` (a mixin over its connection)."""

    if TYPE_CHECKING:  # provided by Store (outbox.py)

        def _schedule(self, conn: Connection, job_id: str, kind: str) -> int: ...

    def regions_in(self, job_id: str, state: RegionState) -> list[tuple[int, int]]:
        """(image_idx, region_idx) of the job's regions in ``state``, in order."""
        with self._begin() as conn:
            rows = conn.execute(
                select(regions.c.image_idx, regions.c.idx)
                .where(regions.c.job_id == job_id, regions.c.state == state.value)
                .order_by(regions.c.image_idx, regions.c.idx)
            ).all()
        return [(int(i), int(r)) for i, r in rows]

    def pending_regions(self, job_id: str) -> list[tuple[int, int]]:
        """Regions not yet done or failed."""
        return self.regions_in(job_id, RegionState.PENDING)

    def region_state(self, job_id: str, image_idx: int, region_idx: int) -> RegionState | None:
        with self._begin() as conn:
            state = conn.execute(
                select(regions.c.state).where(
                    regions.c.job_id == job_id,
                    regions.c.image_idx == image_idx,
                    regions.c.idx == region_idx,
                )
            ).scalar()
        return None if state is None else RegionState(state)

    def complete_region(
        self,
        job_id: str,
        image_idx: int,
        region_idx: int,
        rows: FeatureRows,
        worker: str = "",
        tile_failures: Sequence[TileFailure] = (),
    ) -> bool:
        """Record a region's features and failed tiles and mark it done, once. False for a
        duplicate delivery. A region put back for its failed tiles gains the new features and
        has those tiles' failures replaced by ``tile_failures``."""
        now = self._clock()
        with self._begin() as conn:
            changed = conn.execute(
                _COMPLETE_REGION,
                {
                    "job": job_id,
                    "image": image_idx,
                    "region": region_idx,
                    "n_features": len(rows),
                    "worker": worker,
                    "at": now,
                },
            ).rowcount
            if not changed:
                return False
            if len(rows):
                insert_features(conn, job_id, region_idx, rows, image_idx)
            replace_tile_failures(conn, job_id, image_idx, region_idx, tile_failures, now)
            if tile_failures:
                first = tile_failures[0]
                self._event(
                    conn, job_id, "tiles_failed",
                    f"{len(tile_failures)} tile(s) failed; first {first.window}: "
                    f"{first.code}: {first.message}",
                    image_idx=image_idx, region_idx=region_idx,
                )  # fmt: skip
            self._after_region(conn, job_id, image_idx)
        return True

    def fail_region(
        self, job_id: str, image_idx: int, region_idx: int, error: str, worker: str = ""
    ) -> bool:
        """Mark a region failed for good (its message is dead-lettered); False if not pending."""
        with self._begin() as conn:
            changed = conn.execute(
                update(regions)
                .where(
                    regions.c.job_id == job_id,
                    regions.c.image_idx == image_idx,
                    regions.c.idx == region_idx,
                    regions.c.state == RegionState.PENDING.value,
                )
                .values(
                    state=RegionState.FAILED.value,
                    error=error,
                    worker=worker,
                    finished_at=self._clock(),
                )
            ).rowcount
            if not changed:
                return False
            self._event(
                conn, job_id, "region_failed", error, image_idx=image_idx, region_idx=region_idx
            )
            self._after_region(conn, job_id, image_idx)
        return True

    def retry_region(self, job_id: str, image_idx: int, region_idx: int) -> bool:
        """Put a failed region back to pending (``queue requeue``); its image and job reopen."""
        with self._begin() as conn:
            changed = conn.execute(
                update(regions)
                .where(
                    regions.c.job_id == job_id,
                    regions.c.image_idx == image_idx,
                    regions.c.idx == region_idx,
                    regions.c.state == RegionState.FAILED.value,
                )
                .values(state=RegionState.PENDING.value, error=None)
            ).rowcount
            if changed:
                self._region_reopened(conn, job_id, image_idx)
        return bool(changed)

    def _region_reopened(self, conn: Connection, job_id: str, image_idx: int) -> None:
        """Uncount a finished region put back to pending; reopen its image if it had closed."""
        conn.execute(
            update(images)
            .where(images.c.job_id == job_id, images.c.idx == image_idx)
            .values(regions_finished=images.c.regions_finished - 1)
        )
        reopened = conn.execute(
            update(images)
            .where(
                images.c.job_id == job_id,
                images.c.idx == image_idx,
                images.c.state != ImageState.PENDING.value,
            )
            .values(state=ImageState.PENDING.value)
        ).rowcount
        if reopened:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(images_finished=jobs.c.images_finished - 1)
            )

    def failed_regions(self, job_id: str) -> list[tuple[int, int]]:
        """Regions failed for good (dead-lettered)."""
        return self.regions_in(job_id, RegionState.FAILED)

    def note_attempt_failed(self, job_id: str, image_idx: int, region_idx: int, error: str) -> None:
        """Record a failed attempt that will be retried (the timeline shows it)."""
        with self._begin() as conn:
            self._event(
                conn, job_id, "attempt_failed", error, image_idx=image_idx, region_idx=region_idx
            )

    def _after_region(self, conn: Connection, job_id: str, image_idx: int) -> None:
        """Count a finished region; close its image at the last one, then maybe the job.

        The counter update locks the image row, so concurrent completions of one image
        serialise there and exactly one of them sees the last region finish.
        """
        finished, total = conn.execute(_COUNT_REGION, {"job": job_id, "image": image_idx}).one()
        if finished == 1:
            self._mark_running(conn, job_id, "first region finished")
        if finished < total:
            return
        done = conn.execute(
            select(func.count()).where(
                regions.c.job_id == job_id,
                regions.c.image_idx == image_idx,
                regions.c.state == RegionState.DONE.value,
            )
        ).scalar_one()
        closed = conn.execute(
            update(images)
            .where(
                images.c.job_id == job_id,
                images.c.idx == image_idx,
                images.c.state == ImageState.PENDING.value,
            )
            .values(state=(ImageState.DONE if done else ImageState.FAILED).value)
        ).rowcount
        if closed:
            self._images_closed(conn, job_id, 1)

    def _images_closed(self, conn: Connection, job_id: str, n: int) -> None:
        """Count closed images; when the last one closes, schedule the one aggregation."""
        finished, total = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(images_finished=jobs.c.images_finished + n)
            .returning(jobs.c.images_finished, jobs.c.images_total)
        ).one()
        if finished < total:
            return
        if self._schedule(conn, job_id, AGGREGATE):
            self._event(
                conn, job_id, "all_regions_finished", "every region finished; aggregation scheduled"
            )
