"""Polygons per class from a finished class-id raster, read window by window.

``rasterio.features.shapes`` polygonises an array in memory, and a class raster of a large
scene does not fit in memory; so it runs here on one block-aligned window at a time, and the
polygons that a window seam cut are stitched back together. Memory stays bounded by one window
of pixels plus the polygons still touching an open seam, never by the raster's size.

The stitch, in row-major window order (:mod:`tilerunner.segmentation.seams`):

* a polygon that touches no seam shared with another window is complete and is written at
  once (most polygons);
* a polygon touching a seam is held; at the end of each row of windows the held polygons of
  each class are joined (their shells unioned, their holes put back) and split into connected
  parts; a part that does not reach the bottom seam of that row can grow no more and is
  written, the others wait for the next row.

Pixels are 4-connected, as in ``shapes(connectivity=4)`` over the whole raster: two pixels that
touch only at a corner belong to separate polygons, also across a seam (the union of two
polygons that meet at a single point stays two parts). Working in integer pixel coordinates
makes the union exact, so the output is the same polygons, with the same areas, as one
``shapes`` call over the whole raster, whatever the window size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import CRS
from rasterio.features import shapes
from rasterio.windows import Window as RioWindow

from tilerunner.errors import InvalidRequestError
from tilerunner.imagery import GdalEnv, open_dataset
from tilerunner.outputs.writers import check_output, write_output
from tilerunner.segmentation.polygon_output import OutputCrs, Placement, polygon_sink
from tilerunner.segmentation.seams import SeamStitcher
from tilerunner.tiling import Window

__all__ = ["ClassVectors", "VectorSummary", "vectorize"]

logger = logging.getLogger(__name__)

_SHAPES_DTYPES = ("int16", "int32", "uint8", "uint16")


@dataclass(frozen=True, slots=True)
class ClassVectors:
    """What one class became: its polygons, their pixels and their area (``area_unit``)."""

    class_id: int
    label: str
    polygons: int
    pixel_count: int
    area: float


@dataclass(frozen=True, slots=True)
class VectorSummary:
    """The result of :func:`vectorize`: where the polygons went and how many per class.

    ``area_unit`` is ``"m2"`` when the raster's CRS gives metres (projected CRSs by their unit,
    geographic ones as geodesic areas), ``"crs_unit2"`` for a CRS without a known linear unit,
    and ``"px"`` (pixels) for a raster without a CRS.
    """

    uri: str
    crs: OutputCrs
    area_unit: str
    classes: tuple[ClassVectors, ...]

    @property
    def polygons(self) -> int:
        """Polygons written, all classes together."""
        return sum(c.polygons for c in self.classes)


def vectorize(
    raster_uri: str,
    out_uri: str,
    *,
    classes: Sequence[str] = (),
    skip_classes: Sequence[int] = (0,),
    crs: OutputCrs = "lonlat",
    window: int = 2048,
    fmt: str | None = None,
    image: str | None = None,
    env: GdalEnv | None = None,
    s3_endpoint_url: str | None = None,
) -> VectorSummary:
    """Write one polygon per connected region of each class of ``raster_uri`` to ``out_uri``.

    ``raster_uri``: a one-band integer class-id raster (local path, ``s3://`` or ``http(s)://``).
    ``classes``: label per class id (ids without a name get the id as label). Pixels of
    ``skip_classes`` (background) and the raster's nodata are not polygonised. ``crs``:
    ``"lonlat"`` (EPSG:4326, the default) or ``"image"`` (the raster's own CRS, or pixel
    coordinates when it has none). ``window``: pixels per side read at a time, rounded to whole
    blocks of the raster. ``out_uri`` ends in ``.parquet``/``.geoparquet`` or ``.geojson``/
    ``.json`` (or pass ``fmt``); ``image`` adds an ``image`` column with that value.

    Raises :class:`InvalidRequestError` before reading any pixel when an argument is wrong.
    """
    out_format = check_output(out_uri, fmt, label=f"vector output {out_uri!r}")
    if out_format not in ("geojson", "geoparquet"):
        raise InvalidRequestError(
            f"vector output {out_uri!r}: polygons are written as GeoParquet or GeoJSON, "
            f"not {out_format}; end the name in .parquet or .geojson"
        )
    if crs not in ("lonlat", "image"):
        raise InvalidRequestError(f"crs must be 'lonlat' or 'image', not {crs!r}")
    if window < 1:
        raise InvalidRequestError(f"window must be a positive number of pixels, not {window}")
    if out_format == "geojson" and crs == "image":
        raise InvalidRequestError(
            f"vector output {out_uri!r}: GeoJSON coordinates are lon/lat (RFC 7946); "
            "use crs='lonlat', or write .parquet for the image CRS"
        )
    skip = frozenset(int(c) for c in skip_classes)
    with open_dataset(raster_uri, env) as dataset:
        placement = _check_raster(dataset, raster_uri, crs)
        counts: dict[int, list[float]] = {}

        def produce(path: str) -> None:
            with polygon_sink(out_format, path, placement, image) as sink:
                for class_id, polygons in _polygons(dataset, window, skip):
                    label = classes[class_id] if 0 <= class_id < len(classes) else str(class_id)
                    batch = placement.place(class_id, label, polygons)
                    sink.write(batch)
                    total = counts.setdefault(class_id, [0, 0, 0.0])
                    total[0] += len(polygons)
                    total[1] += int(batch.pixel_count.sum())
                    total[2] += float(batch.area.sum())

        write_output(out_uri, produce, s3_endpoint_url)
    summary = tuple(
        ClassVectors(
            class_id=cid,
            label=classes[cid] if 0 <= cid < len(classes) else str(cid),
            polygons=int(n),
            pixel_count=int(px),
            area=float(area),
        )
        for cid, (n, px, area) in sorted(counts.items())
    )
    logger.info("vectorized %s: %d polygons", raster_uri, sum(c.polygons for c in summary))
    return VectorSummary(out_uri, crs, placement.area_unit, summary)


def _check_raster(dataset: Any, uri: str, crs: OutputCrs) -> Placement:
    if dataset.count != 1:
        raise InvalidRequestError(
            f"{uri!r} has {dataset.count} bands; vectorize takes a one-band class-id raster"
        )
    dtype = np.dtype(dataset.dtypes[0])
    if not np.issubdtype(dtype, np.integer):
        raise InvalidRequestError(
            f"{uri!r} holds {dtype} values; vectorize takes integer class ids "
            "(write the class raster, not the probabilities)"
        )
    raster_crs = CRS.from_user_input(dataset.crs.to_wkt()) if dataset.crs else None
    return Placement(dataset.transform, raster_crs, crs, uri)


def _windows(width: int, height: int, block: tuple[int, int], size: int) -> list[list[Window]]:
    """Rows of windows of about ``size`` px, aligned to the ``(block_h, block_w)`` grid.

    A block larger than ``size`` (a striped file's full-width strips) is not followed: the window
    stays ``size`` px, so memory stays bounded by ``size``, not by the raster's width.
    """
    block_h, block_w = block
    step_w = max(1, round(size / block_w)) * block_w if block_w <= size else size
    step_h = max(1, round(size / block_h)) * block_h if block_h <= size else size
    return [
        [
            Window(col, row, min(step_w, width - col), min(step_h, height - row))
            for col in range(0, width, step_w)
        ]
        for row in range(0, height, step_h)
    ]


def _polygons(
    dataset: Any, size: int, skip: frozenset[int]
) -> Iterator[tuple[int, list[shapely.Polygon]]]:
    """``(class_id, polygons in full-image pixels)``, each polygon whole, one batch at a time."""
    width, height = int(dataset.width), int(dataset.height)
    block = tuple(dataset.block_shapes[0])
    nodata = dataset.nodata
    stitcher = SeamStitcher()
    for row in _windows(width, height, (int(block[0]), int(block[1])), size):
        for win in row:
            rio_window = RioWindow(win.col_off, win.row_off, win.width, win.height)
            data = dataset.read(1, window=rio_window)
            found = _window_polygons(data, win, nodata, skip)
            for class_id, polygons in found.items():
                bounds = shapely.bounds(polygons)
                on_seam = (
                    ((bounds[:, 0] <= win.col_off) & (win.col_off > 0))
                    | ((bounds[:, 1] <= win.row_off) & (win.row_off > 0))
                    | ((bounds[:, 2] >= win.col_end) & (win.col_end < width))
                    | ((bounds[:, 3] >= win.row_end) & (win.row_end < height))
                )
                stitcher.hold(class_id, polygons[on_seam].tolist())
                if not on_seam.all():
                    yield class_id, polygons[~on_seam].tolist()
        open_seam = row[0].row_end if row[0].row_end < height else None
        yield from stitcher.stitch(open_seam)


def _window_polygons(
    data: NDArray[Any], win: Window, nodata: float | None, skip: frozenset[int]
) -> dict[int, NDArray[np.object_]]:
    """The polygons of one window per class, in full-image pixel coordinates."""
    valid = np.ones(data.shape, dtype=bool)
    if nodata is not None:
        valid &= data != nodata
    for class_id in skip:
        valid &= data != class_id
    if not valid.any():
        return {}
    if data.dtype.name not in _SHAPES_DTYPES:
        if data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max:
            raise InvalidRequestError("class ids must fit in 32-bit integers to be vectorized")
        data = data.astype(np.int32)
    offset = Affine.translation(win.col_off, win.row_off)
    # all rings of the window in two vectorised calls: coordinates -> rings -> polygons
    coords: list[NDArray[np.float64]] = []
    ring_sizes: list[int] = []
    polygon_of_ring: list[int] = []
    values: list[int] = []
    for index, (geometry, value) in enumerate(
        shapes(data, mask=valid, connectivity=4, transform=offset)
    ):
        for ring in geometry["coordinates"]:
            coords.append(np.asarray(ring, dtype=np.float64))
            ring_sizes.append(len(ring))
            polygon_of_ring.append(index)
        values.append(int(value))
    if not values:
        return {}
    rings = shapely.linearrings(
        np.concatenate(coords), indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    )
    polygons = shapely.polygons(rings, indices=np.asarray(polygon_of_ring))
    ids = np.asarray(values)
    return {int(cid): polygons[ids == cid] for cid in np.unique(ids)}
