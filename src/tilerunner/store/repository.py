"""Repository: every read and write of the state database goes through :class:`Store`.

State changes are guarded updates: a region flips to done only if it was pending, a job moves
only from the states :mod:`tilerunner.jobs.states` allows. Completing a region writes its
features and flips its row in one transaction, so a duplicate delivery writes and counts
nothing, and the last region of a job schedules exactly one aggregation (an outbox row with a
unique key).

:class:`Store` is assembled here from one mixin per group of tables (regions in
:mod:`~tilerunner.store.regions`, reading features in :mod:`~tilerunner.store.features`,
claims in :mod:`~tilerunner.store.outbox`, ...); jobs and their images are its own methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from tilerunner.errors import StoreError
from tilerunner.jobs.states import (
    JOB_REOPENABLE,
    ImageState,
    JobState,
    RegionState,
    sources_of,
)
from tilerunner.store.features import FeatureStore
from tilerunner.store.outbox import AGGREGATE, OutboxStore
from tilerunner.store.photo_retries import PhotoRetryStore
from tilerunner.store.photo_stages import PhotoStageStore
from tilerunner.store.photos import PhotoStore
from tilerunner.store.plans import PlanStore, georef_of, insert_job
from tilerunner.store.records import Counts, ImagePlan, ImageRecord, JobError, JobRecord
from tilerunner.store.regions import RegionStore
from tilerunner.store.results import ResultStore
from tilerunner.store.tables import events, images, jobs, outbox, regions
from tilerunner.store.tile_batches import TileBatchStore
from tilerunner.store.tiles import TileStore, count_tile_failures, tile_errors
from tilerunner.store.watched import WatchStore
from tilerunner.store.workers import WorkerStore

__all__ = ["AGGREGATE", "Store"]


class Store(
    FeatureStore,
    OutboxStore,
    PhotoRetryStore,
    PhotoStageStore,
    PhotoStore,
    PlanStore,
    RegionStore,
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

    def active_jobs(self) -> list[str]:
        """Ids of jobs that still have work (queued or running)."""
        with self._begin() as conn:
            rows = conn.execute(
                select(jobs.c.id).where(
                    jobs.c.status.in_([JobState.QUEUED.value, JobState.RUNNING.value])
                )
            ).all()
        return [str(r[0]) for r in rows]


def _job_record(row: Mapping[Any, Any]) -> JobRecord:
    return JobRecord(**{**dict(row), "status": JobState(row["status"])})
