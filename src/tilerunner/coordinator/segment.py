"""Aggregation of a segment job: join the regions' parts into one COG, sum their statistics.

Every finished region recorded one row per class of its core (pixels, area, and where its part
is; see :mod:`tilerunner.worker.segment`). Aggregation sums those rows, so no pixel is read
again, writes a VRT of the parts and translates it once into the COG (with overviews: ``mode``
for class ids, ``average`` for probabilities), vectorises the class raster when asked
(:func:`tilerunner.segmentation.vectorize`, window by window), and deletes the parts. Regions
that failed, or whose core held no valid pixel, have no part: their pixels are nodata.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import rasterio

from tilerunner.imagery import GdalEnv
from tilerunner.jobs import JobSpec
from tilerunner.outputs.cog import (
    PartRef,
    RasterGrid,
    delete_parts,
    parts_prefix,
    probabilities_uri,
    write_cog,
)
from tilerunner.store import FeatureRows, ImageRecord, Store
from tilerunner.tiling import Window

__all__ = ["ClassStatistics", "aggregate_segment", "class_statistics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClassStatistics:
    """Pixels and area (in the CRS's units squared; None without a transform) of one class."""

    class_id: int
    label: str
    pixels: int
    area: float | None

    def as_dict(self) -> dict[str, object]:
        return {"class_id": self.class_id, "label": self.label, "pixels": self.pixels,
                "area": self.area}  # fmt: skip


def class_statistics(rows: FeatureRows) -> list[ClassStatistics]:
    """Sum the per-region class rows of an image (a region recorded again counts once: the
    later rows of a part replace the earlier ones)."""
    latest: dict[tuple[str, int], tuple[str, int, float | None]] = {}
    for class_id, label, extra in zip(
        rows.class_ids.tolist(), rows.labels, rows.extra or [None] * len(rows), strict=True
    ):
        if extra and "pixels" in extra:
            area = extra.get("area")
            latest[(str(extra.get("part")), class_id)] = (
                label, int(extra["pixels"]), None if area is None else float(area)
            )  # fmt: skip
    pixels: dict[int, int] = {}
    areas: dict[int, float | None] = {}
    labels: dict[int, str] = {}
    for (_, class_id), (label, n, area) in latest.items():
        pixels[class_id] = pixels.get(class_id, 0) + n
        previous = areas.get(class_id, 0.0)
        areas[class_id] = None if area is None or previous is None else previous + area
        labels[class_id] = label
    return [ClassStatistics(c, labels[c], pixels[c], areas[c]) for c in sorted(pixels)]


def _parts(rows: FeatureRows) -> list[PartRef]:
    seen: dict[str, PartRef] = {}
    for box, extra in zip(rows.boxes.tolist(), rows.extra or [None] * len(rows), strict=True):
        if extra and extra.get("part") and extra["part"] not in seen:
            x0, y0, x1, y1 = (int(v) for v in box)
            seen[extra["part"]] = PartRef(extra["part"], Window(x0, y0, x1 - x0, y1 - y0))
    return sorted(seen.values(), key=lambda p: (p.window.row_off, p.window.col_off))


def _probability_parts(parts: Sequence[PartRef]) -> list[PartRef]:
    return [PartRef(p.uri.removesuffix(".tif") + ".probabilities.tif", p.window) for p in parts]


def _layout(part: PartRef, env: GdalEnv) -> tuple[int, str, float | None]:
    """Bands, dtype and nodata of a part (the worker chose them from its model)."""
    path = part.uri if not part.uri.startswith("s3://") else "/vsis3/" + part.uri[5:]
    with env.context(part.uri), rasterio.open(path) as src:
        return src.count, str(src.dtypes[0]), src.nodata


def _vectorize(raster: str, target: str, statistics: list[ClassStatistics], image: str,
               env: GdalEnv, s3_endpoint_url: str | None) -> None:  # fmt: skip
    """Polygons per class of the finished raster (class 0 is background and is skipped)."""
    from tilerunner.segmentation import vectorize

    names = {s.class_id: s.label for s in statistics}
    classes = [names.get(c, str(c)) for c in range(max(names, default=-1) + 1)]
    vectorize(raster, target, classes=classes, image=image, env=env,
              s3_endpoint_url=s3_endpoint_url)  # fmt: skip


def aggregate_segment(
    store: Store,
    job_id: str,
    spec: JobSpec,
    env: GdalEnv | None = None,
    s3_endpoint_url: str | None = None,
) -> tuple[list[str], list[ClassStatistics]]:
    """Write the job's COG (and its probabilities, vectors); the outputs and class statistics."""
    env = env or GdalEnv.default()
    seg = spec.pipeline[0].segment
    assert seg is not None
    images: list[ImageRecord] = [i for i in store.images(job_id) if i.width and i.height]
    if not images:
        return [], []
    image = images[0]
    rows = store.features(job_id, image.idx)
    parts = _parts(rows)
    georef = image.georef
    grid = RasterGrid(
        image.width,
        image.height,
        georef.transform if georef is not None else None,
        georef.crs_wkt if georef is not None else None,
    )
    bands, dtype, nodata = _layout(parts[0], env) if parts else (1, "uint8", 255.0)
    write_cog(seg.output, parts, grid, bands=bands, dtype=dtype, nodata=nodata,
              resampling="mode", env=env, s3_endpoint_url=s3_endpoint_url)  # fmt: skip
    outputs = [seg.output]
    if seg.probabilities != "none" and parts:
        prob_parts = _probability_parts(parts)
        bands, dtype, nodata = _layout(prob_parts[0], env)
        target = probabilities_uri(seg.output)
        write_cog(target, prob_parts, grid, bands=bands, dtype=dtype, nodata=nodata,
                  resampling="average", env=env, s3_endpoint_url=s3_endpoint_url)  # fmt: skip
        outputs.append(target)
    delete_parts(parts_prefix(seg.output), s3_endpoint_url)
    statistics = class_statistics(rows)
    if seg.vectorize:
        _vectorize(seg.output, seg.vectorize, statistics, image.source_id, env, s3_endpoint_url)
        outputs.append(seg.vectorize)
    log.info("job %s: wrote %s from %d part(s)", job_id, seg.output, len(parts))
    return outputs, statistics
