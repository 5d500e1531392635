"""Photo jobs in the store: putting back what failed (``tilerunner queue requeue``).

A failed stage of a group, or a done stage with failed crops, goes back to pending and the
group's photos it had closed reopen; a photo that could not be read goes back with its group's
first stage, which reads just the photos never read. A retried or reopened crop item crops
only the detections without an outcome of its stage yet, so every detection and stage result
is stored once. The caller reopens the job and publishes the pending items afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, exists, func, select, update

from tilerunner.jobs.states import ImageState, RegionState
from tilerunner.store.base import StoreBase
from tilerunner.store.tables import images, jobs, regions, tile_failures
from tilerunner.store.tiles import reopen_done_region

__all__ = ["PhotoRetryStore"]


class PhotoRetryStore(StoreBase):
    """The photo-retry methods of :class:`tilerunner.store.Store` (a mixin)."""

    if TYPE_CHECKING:  # provided by Store (photo_stages.py)

        def _group_reopened(
            self, conn: Connection, job_id: str, leader: int, group_size: int, failed: str | None
        ) -> None: ...

    def retry_photo_stage(self, job_id: str, leader: int, stage: int, *, group_size: int) -> bool:
        """Put a failed stage of a group back to pending; the photos its failure (or the group's
        end) closed reopen. Reopen the job afterwards."""
        where = (
            regions.c.job_id == job_id,
            regions.c.image_idx == leader,
            regions.c.idx == stage,
            regions.c.state == RegionState.FAILED.value,
        )
        with self._begin() as conn:
            error = conn.execute(select(regions.c.error).where(*where)).scalar()
            changed = conn.execute(
                update(regions).where(*where).values(state=RegionState.PENDING.value, error=None)
            ).rowcount
            if not changed:
                return False
            failed = str(error) if error is not None and not stage else None
            self._group_reopened(conn, job_id, leader, group_size, failed)
        return True

    def reopen_failed_crops(self, job_id: str, group_size: int) -> dict[tuple[int, int], int]:
        """Put every done stage item with failed crops back to pending; {(leader, stage): crops}.

        Its failure rows stay: they name the crops to redo. Reopen the job afterwards.
        """
        with self._begin() as conn:
            found = conn.execute(
                select(tile_failures.c.image_idx, tile_failures.c.region_idx, func.count())
                .where(tile_failures.c.job_id == job_id)
                .group_by(tile_failures.c.image_idx, tile_failures.c.region_idx)
                .order_by(tile_failures.c.image_idx, tile_failures.c.region_idx)
            ).all()
            reopened: dict[tuple[int, int], int] = {}
            for leader, stage, n in found:
                if _earlier_pending(conn, job_id, int(leader), int(stage)):
                    continue  # reopened when the earlier stage completes (it may find more)
                if reopen_done_region(conn, job_id, int(leader), int(stage)):
                    self._group_reopened(conn, job_id, int(leader), group_size, None)
                    reopened[(int(leader), int(stage))] = int(n)
        return reopened

    def reopen_failed_photos(self, job_id: str, group_size: int) -> dict[int, int]:
        """Put every photo that failed alone in a done first stage (its bytes could not be
        fetched or decoded) back to pending with its group's first stage; {leader: photos}.

        Such a photo's error names its url (``<url>: <why>``); a photo refused while planning
        (a manifest row without url) or closed by its group's failed item is not one of them.
        The redone item reads just the photos never read (:meth:`group_members`). Reopen the
        job afterwards.
        """
        with self._begin() as conn:
            found = conn.execute(
                select(images.c.idx)
                .where(
                    images.c.job_id == job_id,
                    images.c.state == ImageState.FAILED.value,
                    images.c.url != "",
                    images.c.error.startswith(images.c.url + ": ", autoescape=False),
                    images.c.width.is_(None),
                )
                .order_by(images.c.idx)
            ).scalars()
            groups: dict[int, list[int]] = {}
            for idx in found:
                groups.setdefault(int(idx) - int(idx) % group_size, []).append(int(idx))
            reopened: dict[int, int] = {}
            for leader, photos in groups.items():
                if not reopen_done_region(conn, job_id, leader, 0):
                    continue  # its first stage is not done: it runs the photo anyway, or failed
                self._group_reopened(conn, job_id, leader, group_size, None)
                n = conn.execute(
                    update(images)
                    .where(images.c.job_id == job_id, images.c.idx.in_(photos))
                    .values(state=ImageState.PENDING.value, error=None)
                ).rowcount
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(images_finished=jobs.c.images_finished - n)
                )
                reopened[leader] = n
        return reopened


def _earlier_pending(conn: Connection, job_id: str, leader: int, stage: int) -> bool:
    """Whether an earlier stage of the group is pending (being redone)."""
    return bool(
        conn.execute(
            select(
                exists().where(
                    regions.c.job_id == job_id,
                    regions.c.image_idx == leader,
                    regions.c.idx < stage,
                    regions.c.state == RegionState.PENDING.value,
                )
            )
        ).scalar()
    )
