"""Repository: every read and write of the state database goes through :class:`Store`.

State changes are guarded updates: a region flips to done only if it was pending, a job moves
only from the states :mod:`tilerunner.jobs.states` allows. Completing a region writes its
features and flips its row in one transaction, so a duplicate delivery writes and counts
nothing, and the last region of a job schedules exactly one aggregation (an outbox row with a
unique key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from tilerunner.errors import StoreError
from tilerunner.jobs.features import TileFailure
from tilerunner.jobs.states import (
    JOB_REOPENABLE,
    ImageState,
    JobState,
    RegionState,
    sources_of,
)
from tilerunner.store.base import Renewal
from tilerunner.store.features import insert_features
from tilerunner.store.outbox import AGGREGATE, OutboxStore
from tilerunner.store.photo_retries import PhotoRetryStore
from tilerunner.store.photo_stages import PhotoStageStore
from tilerunner.store.photos import PhotoStore
from tilerunner.store.plans import PlanStore, georef_of, insert_job
from tilerunner.store.records import (
    Counts,
    FeatureRows,
    ImagePlan,
    ImageRecord,
    JobError,
    JobRecord,
)
from tilerunner.store.results import ResultStore
from tilerunner.store.tables import events, features, images, jobs, outbox, regions
from tilerunner.store.tile_batches import TileBatchStore
from tilerunner.store.tiles import (
    TileStore,
    count_tile_failures,
    replace_tile_failures,
    tile_errors,
)
from tilerunner.store.watched import WatchStore
from tilerunner.store.workers import WorkerStore

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["AGGREGATE", "Store"]

#: Features read from the database at a time when an image's features are loaded.
_READ_ROWS = 50_000
# the first finished region moves a job to running from where the states table allows it


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


class Store(
    OutboxStore,
    PhotoRetryStore,
    PhotoStageStore,
    PhotoStore,
    PlanStore,
    ResultStore,
    TileBatchStore,
    TileStore,
    WatchStore,
    WorkerStore,
):
    """The state database of jobs, images, regions, features, events, outbox and workers."""

    # ----------------------------------------------------------------- jobs
    def create_job(
        self,
        job_id: str,
        name: str | None,
        spec: dict[str, Any],
        plans: list[ImagePlan],
        project: str = "default",
    ) -> bool:
        """Write a job (of ``project``) with its images and regions; False if the id exists."""
        now = self._clock()
        with self._begin() as conn:
            if not insert_job(conn, job_id, name, spec, project, JobState.QUEUED, now, plans):
                return False
            self._event(conn, job_id, "queued", f"job queued with {len(plans)} image(s)")
            self._write_plans(conn, job_id, plans)
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return None if row is None else _job_record(row)

    def list_jobs(
        self,
        limit: int = 50,
        *,
        project: str | None = None,
        status: JobState | None = None,
        name: str | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[JobRecord]:
        """Newest first (ties by id), filtered; ``after``: the (created_at, id) of the last
        job of the previous page, whose successors this page holds."""
        query = select(jobs)
        if project is not None:
            query = query.where(jobs.c.project == project)
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        if name is not None:
            query = query.where(jobs.c.name == name)
        if after is not None:
            created, last_id = after
            query = query.where(
                or_(
                    jobs.c.created_at < created,
                    and_(jobs.c.created_at == created, jobs.c.id > last_id),
                )
            )
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
        with self._begin() as conn:
            return [_job_record(r) for r in conn.execute(query).mappings()]

    def set_job_state(self, job_id: str, target: JobState, error: str | None = None) -> bool:
        """Move a job to ``target`` if its transitions allow it from the current state."""
        allowed = [s.value for s in sources_of(target)]
        values: dict[str, Any] = {"status": target.value}
        now = self._clock()
        if target is JobState.RUNNING:
            values["started_at"] = now
        if target in (JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED):
            values["finished_at"] = now
        if error is not None:
            values["error"] = error
        with self._begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(allowed))
                .values(**values)
                .returning(jobs.c.spec)
            ).first()
            if changed:
                self._event(conn, job_id, target.value, error or f"job {target.value}")
                self._schedule_final_callback(conn, job_id, target, changed.spec)
        return changed is not None

    def set_outputs(self, job_id: str, uris: list[str]) -> None:
        with self._begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(outputs=uris))

    def counts(self, job_id: str) -> Counts:
        with self._begin() as conn:
            job = conn.execute(
                select(jobs.c.images_total, jobs.c.regions_total, jobs.c.tiles_total).where(
                    jobs.c.id == job_id
                )
            ).first()
            if job is None:
                raise StoreError(f"no job {job_id!r} in the state database")
            by_state = {
                state: (int(n), int(t or 0), int(f or 0))
                for state, n, t, f in conn.execute(
                    select(
                        regions.c.state,
                        func.count(),
                        func.sum(regions.c.n_tiles),
                        func.sum(regions.c.n_features),
                    )
                    .where(regions.c.job_id == job_id)
                    .group_by(regions.c.state)
                )
            }
            image_states: dict[str, int] = {
                str(state): int(n)
                for state, n in conn.execute(
                    select(images.c.state, func.count())
                    .where(images.c.job_id == job_id)
                    .group_by(images.c.state)
                )
            }
            tiles_failed = count_tile_failures(conn, job_id)
        done = by_state.get(RegionState.DONE.value, (0, 0, 0))
        failed = by_state.get(RegionState.FAILED.value, (0, 0, 0))
        return Counts(
            images_total=int(job.images_total),
            images_done=int(image_states.get(ImageState.DONE.value, 0)),
            images_failed=int(image_states.get(ImageState.FAILED.value, 0)),
            regions_total=int(job.regions_total),
            regions_done=done[0],
            regions_failed=failed[0],
            tiles_total=int(job.tiles_total),
            tiles_done=done[1],
            features=done[2],
            tiles_failed=tiles_failed,
        )

    def errors(self, job_id: str) -> list[JobError]:
        """Typed errors: failed images (unreadable sources), failed regions, failed tiles."""
        with self._begin() as conn:
            out = [
                JobError("source_error", str(r.error), str(r.source_id), None)
                for r in conn.execute(
                    select(images.c.source_id, images.c.error).where(
                        images.c.job_id == job_id, images.c.error.is_not(None)
                    )
                )
            ]
            out += [
                JobError("region_failed", str(r.error), str(r.source_id), int(r.idx))
                for r in conn.execute(
                    select(regions.c.idx, regions.c.error, images.c.source_id)
                    .join(
                        images,
                        and_(
                            images.c.job_id == regions.c.job_id, images.c.idx == regions.c.image_idx
                        ),
                    )
                    .where(regions.c.job_id == job_id, regions.c.state == RegionState.FAILED.value)
                    .order_by(regions.c.image_idx, regions.c.idx)
                )
            ]
            out += tile_errors(conn, job_id)
        return out

    def events(self, job_id: str) -> list[dict[str, Any]]:
        with self._begin() as conn:
            rows = conn.execute(
                select(events).where(events.c.job_id == job_id).order_by(events.c.id)
            )
            return [dict(r) for r in rows.mappings()]

    # --------------------------------------------------------------- images
    def images(self, job_id: str) -> list[ImageRecord]:
        with self._begin() as conn:
            rows = conn.execute(
                select(images).where(images.c.job_id == job_id).order_by(images.c.idx)
            ).mappings()
            return [self._image_record(dict(r)) for r in rows]

    def image(self, job_id: str, idx: int) -> ImageRecord:
        with self._begin() as conn:
            row = (
                conn.execute(select(images).where(images.c.job_id == job_id, images.c.idx == idx))
                .mappings()
                .first()
            )
        if row is None:
            raise StoreError(f"no image {idx} in job {job_id!r}")
        return self._image_record(dict(row))

    @staticmethod
    def _image_record(row: dict[str, Any]) -> ImageRecord:
        return ImageRecord(
            job_id=row["job_id"],
            idx=row["idx"],
            source_id=row["source_id"],
            url=row["url"],
            width=row["width"] or 0,
            height=row["height"] or 0,
            region_tiles=row["region_tiles"] or 0,
            state=ImageState(row["state"]),
            georef=georef_of(row.get("georef")),
        )

    # -------------------------------------------------------------- regions
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

    def reopen_job(self, job_id: str) -> bool:
        """Reopen a finished partial/failed job after failed regions were put back to pending."""
        with self._begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status.in_([s.value for s in JOB_REOPENABLE]),
                )
                .values(status=JobState.RUNNING.value, finished_at=None, error=None)
            ).rowcount
            if changed:  # aggregated again when its regions finish again
                conn.execute(
                    outbox.delete().where(outbox.c.job_id == job_id, outbox.c.kind == AGGREGATE)
                )
                self._event(conn, job_id, "reopened", "failed regions requeued")
        return bool(changed)

    def failed_regions(self, job_id: str) -> list[tuple[int, int]]:
        """Regions failed for good (dead-lettered)."""
        return self.regions_in(job_id, RegionState.FAILED)

    def active_jobs(self) -> list[str]:
        """Ids of jobs that still have work (queued or running)."""
        with self._begin() as conn:
            rows = conn.execute(
                select(jobs.c.id).where(
                    jobs.c.status.in_([JobState.QUEUED.value, JobState.RUNNING.value])
                )
            ).all()
        return [str(r[0]) for r in rows]

    def note_attempt_failed(self, job_id: str, image_idx: int, region_idx: int, error: str) -> None:
        """Record a failed attempt that will be retried (the timeline shows it)."""
        with self._begin() as conn:
            self._event(
                conn, job_id, "attempt_failed", error, image_idx=image_idx, region_idx=region_idx
            )

    def features(self, job_id: str, image_idx: int, renew: Renewal | None = None) -> FeatureRows:
        """All owned features of one image, in a stable order (region, then insertion).

        Rows stream from the database :data:`_READ_ROWS` at a time into numpy arrays, so
        millions of features never exist as SQL rows at once; equal labels share one string.
        ``renew`` is called between chunks (see :data:`~tilerunner.store.base.Renewal`).
        """
        import numpy as np  # here, not at the top: ``tilerunner status`` needs no arrays

        numbers: list[NDArray[np.float64]] = []
        labels: list[str] = []
        extra: list[dict[str, Any] | None] = []
        names: dict[str, str] = {}
        query = (
            select(
                features.c.x0,
                features.c.y0,
                features.c.x1,
                features.c.y1,
                features.c.score,
                features.c.class_id,
                features.c.label,
                features.c.extra,
            )
            .where(features.c.job_id == job_id, features.c.image_idx == image_idx)
            .order_by(features.c.region_idx, features.c.id)
        )
        with self._begin() as conn:
            result = conn.execution_options(yield_per=_READ_ROWS).execute(query)
            for chunk in result.partitions():
                numbers.append(np.array([tuple(r[:6]) for r in chunk], dtype=np.float64))
                labels.extend(names.setdefault(str(r[6]), str(r[6])) for r in chunk)
                extra.extend(r[7] for r in chunk)
                if renew is not None:
                    renew(conn)
        if not numbers:
            return FeatureRows()
        table = np.concatenate(numbers)
        del numbers
        return FeatureRows(
            boxes=np.ascontiguousarray(table[:, :4]),
            scores=table[:, 4].copy(),
            class_ids=table[:, 5].astype(np.int64),
            labels=labels,
            extra=extra if any(e is not None for e in extra) else None,
        )

    # ------------------------------------------------------------ internals
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


def _job_record(row: Mapping[Any, Any]) -> JobRecord:
    return JobRecord(**{**dict(row), "status": JobState(row["status"])})
