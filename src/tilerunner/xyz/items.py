"""Describing a leased work item of a tile job: its zoom level, its tiles, how to fetch them.

Called by the work service for jobs with a ``tiles`` section (the region path describes every
other job). A retried item (``tilerunner queue requeue``, ``POST /v1/jobs/{id}/retry``) names
only the tiles that failed, read back from their failure windows.
"""

from __future__ import annotations

from tilerunner.jobs import JobSpec, RegionMessage
from tilerunner.store import ImageRecord, Store
from tilerunner.work.items import TileBatchItem
from tilerunner.xyz.grid import zoom_of_width
from tilerunner.xyz.tiles import TILE_PX

__all__ = ["describe_tile_batch"]


def describe_tile_batch(
    store: Store, message: RegionMessage, spec: JobSpec, image: ImageRecord
) -> TileBatchItem:
    """The :class:`TileBatchItem` behind a region message of a tile job."""
    tiles = spec.tiles
    assert tiles is not None and image.width is not None  # a tile job's zoom-level image
    context = tiles.context if spec.pipeline[0].task == "detect" else 0
    xy = store.tile_batch(message.job_id, message.image_idx, message.region_idx)
    failed = store.failed_tiles(message.job_id, message.image_idx, message.region_idx)
    if failed:
        redo = {((c + context) // TILE_PX, (r + context) // TILE_PX) for c, r in failed}
        xy = [t for t in xy if t in redo]
    return TileBatchItem(
        id=message.id,
        job_id=message.job_id,
        image_idx=message.image_idx,
        region_idx=message.region_idx,
        url=tiles.url_template,
        subdomains=tiles.subdomains,
        zoom=zoom_of_width(image.width),
        xy=tuple(xy),
        context=context,
        min_score=spec.merge.min_score,
    )
