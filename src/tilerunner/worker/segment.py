"""A segment region in the worker: which tiles it runs, and its core published as a part.

The pipeline fills the region's :class:`~tilerunner.merging.segment.SegmentCanvas`; the
worker's committer thread (off the hot path) then masks the source's nodata, publishes the
class-id part (and the probability part) beside the output, and counts pixels and area per
class from the core pixels it holds, so aggregation only sums and never re-reads a pixel. Those
counts are the region's recorded rows: one per class, with the part's location.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tilerunner.imagery import RasterReader
from tilerunner.jobs.features import FeatureRows
from tilerunner.merging.segment import SegmentCanvas, class_counts, region_core, region_tiles
from tilerunner.models import LoadedModel
from tilerunner.outputs.cog import parts_prefix, write_part
from tilerunner.tiling import RegionGrid, TileGrid, TileRef
from tilerunner.work.items import RegionItem

__all__ = ["class_raster", "publish_region", "segment_tiles"]

_PROBABILITY_NODATA = {"uint8": 255.0, "float32": float("nan")}


def class_raster(model: LoadedModel) -> tuple[str, int]:
    """The class-id raster's dtype and nodata value for a model.

    A model may name its nodata class (``nodata_class``); otherwise it is 255, or 65535 for
    models with more than 255 classes.
    """
    declared = getattr(model.impl, "nodata_class", None)
    dtype = "uint16" if len(model.classes) > 255 else "uint8"
    if declared is not None:
        return dtype, int(declared)
    return dtype, 65535 if dtype == "uint16" else 255


def segment_tiles(
    item: RegionItem, model: LoadedModel
) -> tuple[tuple[TileRef, ...], SegmentCanvas]:
    """The tiles a segment region runs (every tile: a part is always whole) and its canvas."""
    assert item.segment is not None
    grid = TileGrid(item.width, item.height, item.tile_size, item.overlap)
    regions = RegionGrid(grid, item.region_tiles)
    region = regions.region(item.region_idx)
    dtype, nodata = class_raster(model)
    top = 65535 if dtype == "uint16" else 255
    canvas = SegmentCanvas(
        region_core(regions, region),
        item.tile_size,
        item.overlap,
        blend=item.segment.blend,
        keep_probabilities=item.segment.probabilities != "none",
        max_class=nodata - 1 if nodata == top else top,
    )
    return region_tiles(regions, region, item.segment.blend), canvas


def _probabilities(
    probs: NDArray[np.float32], kind: str, invalid: NDArray[np.bool_]
) -> NDArray[Any]:
    if kind == "float32":
        out = probs.copy()
        out[:, invalid] = np.nan
        return out
    scaled = np.round(np.clip(probs, 0.0, 1.0) * 254.0).astype(np.uint8)
    scaled[:, invalid] = 255
    return scaled


def publish_region(
    item: RegionItem,
    canvas: SegmentCanvas,
    reader: RasterReader,
    model: LoadedModel,
    s3_endpoint_url: str | None = None,
) -> FeatureRows:
    """Publish the region's parts; its rows: pixels and area per class of its core."""
    target = item.segment
    assert target is not None
    canvas.finish()
    dtype, nodata = class_raster(model)
    core = canvas.core
    invalid = ~canvas.filled
    source_invalid = reader.invalid_mask(core)
    if source_invalid is not None:
        invalid |= source_invalid
    ids = canvas.ids
    out = ids.astype(dtype)
    out[invalid] = nodata
    prefix = parts_prefix(target.output)
    name = f"{prefix}/{item.image_idx}-{item.region_idx}"
    part = write_part(
        f"{name}.tif", core, out[None], nodata, target.transform, target.crs_wkt, s3_endpoint_url
    )
    if target.probabilities != "none" and canvas.probabilities is not None:
        write_part(
            f"{name}.probabilities.tif",
            core,
            _probabilities(canvas.probabilities, target.probabilities, invalid),
            _PROBABILITY_NODATA[target.probabilities],
            target.transform,
            target.crs_wkt,
            s3_endpoint_url,
        )
    counts = class_counts(ids, ~invalid)
    pixel_area = None
    if target.transform is not None:
        a, b, _, d, e, _ = target.transform[:6]
        pixel_area = abs(a * e - b * d)
    classes = sorted(counts)
    n = len(classes)
    bounds = [core.col_off, core.row_off, core.col_end, core.row_end]
    return FeatureRows(
        boxes=np.array([bounds] * n, dtype=np.float64).reshape(n, 4),
        scores=np.array([counts[c] / core.area for c in classes], dtype=np.float64),
        class_ids=np.array(classes, dtype=np.int64),
        labels=[model.label(c) for c in classes],
        extra=[
            {
                "pixels": counts[c],
                "area": None if pixel_area is None else counts[c] * pixel_area,
                "part": part.uri,
            }
            for c in classes
        ],
    )
