"""Jobs in planning, and writing what planning found: images, their metadata, their regions.

A job is accepted in ``planning`` with its document and no images, together with a ``plan``
outbox row (one transaction); a coordinator claims the row, opens the images for their headers
and calls :meth:`PlanStore.add_plans`, which writes images and regions and moves the job to
``queued`` in one guarded transaction, so planning twice (a claim taken over) or after a cancel
writes nothing. :func:`insert_plans` is shared with :meth:`tilerunner.store.Store.create_job`,
which writes a job already planned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from tilerunner.georef import ImageGeoref
from tilerunner.jobs.states import ImageState, JobState, RegionState, sources_of
from tilerunner.store.base import StoreBase
from tilerunner.store.outbox import insert_ignore
from tilerunner.store.records import ImagePlan
from tilerunner.store.tables import images, jobs, outbox, regions

__all__ = ["PLAN", "PlanStore", "georef_of", "insert_job", "insert_plans", "plan_totals"]

PLAN = "plan"
"""Outbox kind of a job waiting for its images to be opened and cut into regions."""
_BATCH = 5000


class PlanStore(StoreBase):
    """The planning methods of :class:`tilerunner.store.Store` (a mixin over its connection)."""

    if TYPE_CHECKING:  # provided by Store (regions.py)

        def _images_closed(self, conn: Connection, job_id: str, n: int) -> None: ...

    def accept_job(
        self, job_id: str, name: str | None, spec: dict[str, Any], *, project: str = "default"
    ) -> bool:
        """Store a job in ``planning`` (its document, no images) with its ``plan`` outbox row;
        False if the job id exists already."""
        now = self._clock()
        with self._begin() as conn:
            if not insert_job(conn, job_id, name, spec, project, JobState.PLANNING, now, []):
                return False
            self._event(conn, job_id, JobState.PLANNING.value, "job accepted; planning")
            insert_ignore(conn, outbox, {"job_id": job_id, "kind": PLAN, "created_at": now})
        return True

    def add_plans(self, job_id: str, plans: list[ImagePlan]) -> bool:
        """Write what planning found and move the job ``planning -> queued``, atomically.

        False, writing nothing, when the job is no longer in planning (planned already by
        another coordinator, cancelled, failed).
        """
        allowed = [s.value for s in sources_of(JobState.QUEUED)]
        with self._begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(allowed))
                .values(status=JobState.QUEUED.value, **plan_totals(plans))
            ).rowcount
            if not changed:
                return False
            self._event(
                conn, job_id, JobState.QUEUED.value, f"job queued with {len(plans)} image(s)"
            )
            self._write_plans(conn, job_id, plans)
        return True

    def _write_plans(self, conn: Connection, job_id: str, plans: list[ImagePlan]) -> None:
        """Images and regions; images closed at planning (or no image at all) are counted, so
        a job with nothing left to run gets its aggregation scheduled at once."""
        closed = insert_plans(conn, job_id, plans)
        for plan in plans:
            if plan.error is not None:
                self._event(conn, job_id, "image_failed", plan.error, image_idx=plan.idx)
        if closed or not plans:
            self._images_closed(conn, job_id, closed)


def insert_job(
    conn: Connection,
    job_id: str,
    name: str | None,
    spec: dict[str, Any],
    project: str,
    status: JobState,
    now: float,
    plans: list[ImagePlan],
) -> bool:
    """Insert a job row with the totals of ``plans``; False (nothing written) if the id exists."""
    if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first():
        return False
    conn.execute(
        insert(jobs).values(
            id=job_id,
            name=name,
            project=project,
            spec=spec,
            status=status.value,
            created_at=now,
            **plan_totals(plans),
        )
    )
    return True


def plan_totals(plans: list[ImagePlan]) -> dict[str, int]:
    """The job's image, region and tile totals for ``plans``."""
    return {
        "images_total": len(plans),
        "regions_total": sum(len(p.region_tile_counts) for p in plans),
        "tiles_total": sum(sum(p.region_tile_counts) for p in plans),
    }


def insert_plans(conn: Connection, job_id: str, plans: list[ImagePlan]) -> int:
    """Insert images and their pending regions; returns how many images closed at planning.

    An image that failed its probe is stored failed; a readable image without regions (none
    today, but possible for an empty grid) is done at once. The caller counts both as closed,
    so a job whose every image closed here gets its aggregation scheduled right away.
    """
    closed = 0
    for plan in plans:
        failed = plan.error is not None
        conn.execute(
            insert(images).values(
                job_id=job_id,
                idx=plan.idx,
                source_id=plan.source_id,
                url=plan.url,
                width=plan.width,
                height=plan.height,
                region_tiles=plan.region_tiles,
                regions_total=len(plan.region_tile_counts),
                tiles_total=sum(plan.region_tile_counts),
                state=(ImageState.FAILED if failed else ImageState.PENDING).value,
                error=plan.error,
                georef=None if plan.georef is None else plan.georef.to_json(),
            )
        )
        if failed or not plan.region_tile_counts:
            closed += 1
        rows = [
            {
                "job_id": job_id,
                "image_idx": plan.idx,
                "idx": r,
                "state": RegionState.PENDING.value,
                "n_tiles": n,
            }
            for r, n in enumerate(plan.region_tile_counts)
        ]
        for start in range(0, len(rows), _BATCH):
            conn.execute(insert(regions), rows[start : start + _BATCH])
        if not failed and not rows:
            conn.execute(
                update(images)
                .where(images.c.job_id == job_id, images.c.idx == plan.idx)
                .values(state=ImageState.DONE.value)
            )
    return closed


def georef_of(value: Any) -> ImageGeoref | None:
    """The recorded metadata of an image row (``None`` for images planned before it was)."""
    return None if value is None else ImageGeoref.from_json(value)
