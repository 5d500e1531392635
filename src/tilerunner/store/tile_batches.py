"""Planning and describing tile jobs: one region row plus one ``tile_batches`` row per item.

A tile job's work item is a batch of a few hundred XYZ tiles of one zoom level; the zoom level
is an image (a virtual raster, :mod:`tilerunner.xyz.grid`) and each batch a region of it, so
states, attempts, completion, tile failures, counts and aggregation are the region machinery
unchanged. What a region of a raster gets from grid arithmetic, a batch gets from its
``tile_batches`` row: the tiles it holds. :meth:`TileBatchStore.add_tile_plan` writes a plan
from a stream of batches in chunks, in the one transaction that moves the job ``planning ->
queued``, so a million tiles never sit in memory and planning twice writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from tilerunner.errors import StoreError
from tilerunner.georef import ImageGeoref
from tilerunner.jobs.states import ImageState, JobState, RegionState, sources_of
from tilerunner.store.base import StoreBase
from tilerunner.store.tables import images, jobs, regions, tile_batches

__all__ = ["TileBatch", "TileBatchStore", "TileImage"]

_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class TileImage:
    """One zoom level of a tile job, as the image it is stored as."""

    idx: int
    source_id: str
    url: str
    georef: ImageGeoref


@dataclass(frozen=True, slots=True)
class TileBatch:
    """One work item of a tile job: ``tiles`` holds ``x-y`` pairs separated by spaces."""

    image: TileImage
    region_idx: int
    n_tiles: int
    tiles: str


class TileBatchStore(StoreBase):
    """The tile-job methods of :class:`tilerunner.store.Store`."""

    def add_tile_plan(self, job_id: str, batches: Iterable[TileBatch]) -> bool:
        """Write the (streamed) batches of a tile job, each zoom level's image before its first
        batch, and move the job to ``queued``, atomically; False, writing nothing, when the job
        is no longer planning."""
        allowed = [s.value for s in sources_of(JobState.QUEUED)]
        with self._begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(allowed))
                .values(status=JobState.QUEUED.value)
            ).rowcount
            if not changed:
                return False
            per_image = self._insert_batches(conn, job_id, batches)
            for idx, (n_regions, n_tiles) in per_image.items():
                conn.execute(
                    update(images)
                    .where(images.c.job_id == job_id, images.c.idx == idx)
                    .values(regions_total=n_regions, tiles_total=n_tiles)
                )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    images_total=len(per_image),
                    regions_total=sum(r for r, _ in per_image.values()),
                    tiles_total=sum(t for _, t in per_image.values()),
                )
            )
            self._event(
                conn, job_id, JobState.QUEUED.value,
                f"job queued with {sum(t for _, t in per_image.values())} tile(s) "
                f"in {sum(r for r, _ in per_image.values())} item(s)",
            )  # fmt: skip
        return True

    @staticmethod
    def _insert_batches(
        conn: Connection, job_id: str, batches: Iterable[TileBatch]
    ) -> dict[int, tuple[int, int]]:
        per_image: dict[int, tuple[int, int]] = {}
        region_rows: list[dict[str, object]] = []
        tile_rows: list[dict[str, object]] = []

        def flush() -> None:
            if region_rows:
                conn.execute(insert(regions), region_rows)
                conn.execute(insert(tile_batches), tile_rows)
                region_rows.clear()
                tile_rows.clear()

        for batch in batches:
            if batch.image.idx not in per_image:  # a zoom level's image before its regions
                flush()
                _insert_image(conn, job_id, batch.image)
                per_image[batch.image.idx] = (0, 0)
            key = {"job_id": job_id, "image_idx": batch.image.idx, "idx": batch.region_idx}
            region_rows.append(
                {**key, "state": RegionState.PENDING.value, "n_tiles": batch.n_tiles}
            )
            tile_rows.append(
                {"job_id": job_id, "image_idx": batch.image.idx,
                 "region_idx": batch.region_idx, "tiles": batch.tiles}
            )  # fmt: skip
            n_regions, n_tiles = per_image[batch.image.idx]
            per_image[batch.image.idx] = (n_regions + 1, n_tiles + batch.n_tiles)
            if len(region_rows) >= _CHUNK:
                flush()
        flush()
        return per_image

    def tile_batch(self, job_id: str, image_idx: int, region_idx: int) -> list[tuple[int, int]]:
        """The ``(x, y)`` tiles of one work item of a tile job."""
        with self._begin() as conn:
            text = conn.execute(
                select(tile_batches.c.tiles).where(
                    tile_batches.c.job_id == job_id,
                    tile_batches.c.image_idx == image_idx,
                    tile_batches.c.region_idx == region_idx,
                )
            ).scalar()
        if text is None:
            raise StoreError(f"job {job_id} has no tile batch {image_idx}/{region_idx}")
        pairs = (pair.partition("-") for pair in str(text).split())
        return [(int(x), int(y)) for x, _, y in pairs]


def _insert_image(conn: Connection, job_id: str, image: TileImage) -> None:
    conn.execute(
        insert(images).values(
            job_id=job_id,
            idx=image.idx,
            source_id=image.source_id,
            url=image.url,
            width=image.georef.width,
            height=image.georef.height,
            region_tiles=None,
            state=ImageState.PENDING.value,
            georef=image.georef.to_json(),
        )
    )
