"""Tiles that failed alone, and putting just those tiles back on the queue.

A tile that could not be read, or that the model rejected, does not fail its region: the
region completes with the features of its other tiles, and each failed tile is a row of
``tile_failures`` (its read window, the error's code and message) written in the completion's
own transaction (:func:`replace_tile_failures`, called by ``Store.complete_region``).

Retrying (:meth:`TileStore.reopen_failed_tiles`, ``tilerunner queue requeue``) puts each done
region with failed tiles back to pending and leaves its failure rows in place: they are the
list of tiles to redo. The work service describes such a region with ``only_tiles`` set to
their window offsets (:meth:`TileStore.failed_tiles`); completing it adds the new features to
the region's and replaces its failure rows with the new ones. Failures count (``counts``,
``errors``) only while their region is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from tilerunner.jobs.features import TileFailure
from tilerunner.jobs.states import RegionState
from tilerunner.photos.items import crop_photo, failed_crop_key
from tilerunner.store.base import StoreBase
from tilerunner.store.records import JobError
from tilerunner.store.tables import images, regions, tile_failures
from tilerunner.tiling import Window

__all__ = [
    "TileStore",
    "count_tile_failures",
    "insert_tile_failures",
    "reopen_done_region",
    "replace_tile_failures",
    "tile_errors",
    "tile_failures",
]

"""One row per failed tile of a region (migration 0006)."""

_OF_REGION = and_(
    tile_failures.c.job_id == bindparam("job"),
    tile_failures.c.image_idx == bindparam("image"),
    tile_failures.c.region_idx == bindparam("region"),
)
_DELETE = delete(tile_failures).where(_OF_REGION)
_INSERT = insert(tile_failures)
_OF_DONE_REGION = and_(
    regions.c.job_id == tile_failures.c.job_id,
    regions.c.image_idx == tile_failures.c.image_idx,
    regions.c.idx == tile_failures.c.region_idx,
    regions.c.state == RegionState.DONE.value,
)


def replace_tile_failures(
    conn: Connection,
    job_id: str,
    image_idx: int,
    region_idx: int,
    failures: Sequence[TileFailure],
    at: float,
) -> None:
    """Replace a region's failure rows with ``failures`` (inside the caller's transaction).

    A pending region's rows are the tiles being redone, so replacing all of them replaces
    exactly the failures of the tiles that were tried again.
    """
    key = {"job": job_id, "image": image_idx, "region": region_idx}
    conn.execute(_DELETE, key)
    insert_tile_failures(conn, job_id, image_idx, region_idx, failures, at)


def insert_tile_failures(
    conn: Connection,
    job_id: str,
    image_idx: int,
    region_idx: int,
    failures: Sequence[TileFailure],
    at: float,
) -> None:
    """Add ``failures`` to a region's failure rows (inside the caller's transaction)."""
    if failures:
        conn.execute(
            _INSERT,
            [
                {
                    "job_id": job_id,
                    "image_idx": image_idx,
                    "region_idx": region_idx,
                    "col_off": f.window.col_off,
                    "row_off": f.window.row_off,
                    "width": f.window.width,
                    "height": f.window.height,
                    "code": f.code,
                    "message": f.message,
                    "at": at,
                }
                for f in failures
            ],
        )


def reopen_done_region(conn: Connection, job_id: str, image_idx: int, idx: int) -> bool:
    """Put a done region (or a photo group's done stage) back to pending; False when it is not
    done."""
    return bool(
        conn.execute(
            update(regions)
            .where(
                regions.c.job_id == job_id,
                regions.c.image_idx == image_idx,
                regions.c.idx == idx,
                regions.c.state == RegionState.DONE.value,
            )
            .values(state=RegionState.PENDING.value)
        ).rowcount
    )


def count_tile_failures(conn: Connection, job_id: str) -> int:
    """Failed tiles of the job's done regions."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(tile_failures.join(regions, _OF_DONE_REGION))
            .where(tile_failures.c.job_id == job_id)
        ).scalar_one()
    )


def tile_errors(conn: Connection, job_id: str) -> list[JobError]:
    """A ``tile_failed`` error per failed tile of a done region, with its image and window;
    a photo job's failed crop names the photo it was cut from and the detection's key (read
    from the message, :func:`tilerunner.photos.items.crop_failure`), not its group's first."""
    rows = conn.execute(
        select(tile_failures, images.c.source_id)
        .select_from(
            tile_failures.join(regions, _OF_DONE_REGION).join(
                images,
                and_(
                    images.c.job_id == tile_failures.c.job_id,
                    images.c.idx == tile_failures.c.image_idx,
                ),
            )
        )
        .where(tile_failures.c.job_id == job_id)
        .order_by(
            tile_failures.c.image_idx,
            tile_failures.c.region_idx,
            tile_failures.c.row_off,
            tile_failures.c.col_off,
        )
    ).all()
    keys = [failed_crop_key(str(r.message)) for r in rows]
    photos = {p for p in (crop_photo(k) for k in keys if k is not None) if p is not None}
    names: dict[int, str] = {}
    if photos:
        found = conn.execute(
            select(images.c.idx, images.c.source_id).where(
                images.c.job_id == job_id, images.c.idx.in_(sorted(photos))
            )
        ).all()
        names = {int(idx): str(source_id) for idx, source_id in found}
    out = []
    for r, key in zip(rows, keys, strict=True):
        photo = crop_photo(key) if key is not None else None
        out.append(
            JobError(
                "tile_failed",
                f"{r.code}: {r.message}",
                names.get(photo, str(r.source_id)) if photo is not None else str(r.source_id),
                int(r.region_idx),
                window=Window(int(r.col_off), int(r.row_off), int(r.width), int(r.height)),
                detection=key,
            )
        )
    return out


class TileStore(StoreBase):
    """The tile-failure methods of :class:`tilerunner.store.Store` (a mixin)."""

    if TYPE_CHECKING:  # provided by Store (regions.py)

        def _region_reopened(self, conn: Connection, job_id: str, image_idx: int) -> None: ...

    def failed_tiles(
        self, job_id: str, image_idx: int, region_idx: int
    ) -> tuple[tuple[int, int], ...]:
        """(col_off, row_off) of the region's failed tiles, in row-major order."""
        with self._begin() as conn:
            rows = conn.execute(
                select(tile_failures.c.col_off, tile_failures.c.row_off)
                .where(_OF_REGION)
                .order_by(tile_failures.c.row_off, tile_failures.c.col_off),
                {"job": job_id, "image": image_idx, "region": region_idx},
            ).all()
        return tuple((int(c), int(r)) for c, r in rows)

    def tile_failures(self, job_id: str) -> list[JobError]:
        """The job's failed tiles (of done regions) as typed errors."""
        with self._begin() as conn:
            return tile_errors(conn, job_id)

    def reopen_failed_tiles(self, job_id: str) -> dict[tuple[int, int], int]:
        """Put every done region with failed tiles back to pending; {(image, region): tiles}.

        Its failure rows stay: they name the tiles to redo. Its image (and, through the
        counters, the job) reopens as ``retry_region`` does; reopen the job afterwards.
        """
        with self._begin() as conn:
            found = conn.execute(
                select(tile_failures.c.image_idx, tile_failures.c.region_idx, func.count())
                .select_from(tile_failures.join(regions, _OF_DONE_REGION))
                .where(tile_failures.c.job_id == job_id)
                .group_by(tile_failures.c.image_idx, tile_failures.c.region_idx)
                .order_by(tile_failures.c.image_idx, tile_failures.c.region_idx)
            ).all()
            reopened: dict[tuple[int, int], int] = {}
            for image_idx, region_idx, n in found:
                if reopen_done_region(conn, job_id, int(image_idx), int(region_idx)):
                    self._region_reopened(conn, job_id, int(image_idx))
                    reopened[(int(image_idx), int(region_idx))] = int(n)
        return reopened
