"""A job's results over HTTP: filter the feature table, stream it in the asked format.

Filters apply to the merged table before any writer sees it: ``min_score`` (score >= it),
``label`` (any of the given labels) and ``bbox`` (``minx,miny,maxx,maxy`` in lon/lat; a
feature passes when the bounds of its geometry intersect the box, so features without
georeferencing never pass a bbox filter). GeoJSON is streamed feature by feature; GeoParquet
and CSV are written by the same writers as job outputs, to a temporary file that is streamed
and then removed.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import shapely
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.responses import Response

from tilerunner.errors import InvalidRequestError
from tilerunner.outputs import FORMATS, FeatureTable, geojson_chunks

__all__ = [
    "BBox",
    "ResultFilter",
    "ResultFormat",
    "file_response",
    "filter_table",
    "label_set",
    "parse_bbox",
    "result_response",
]


class ResultFormat(StrEnum):
    GEOJSON = "geojson"
    GEOPARQUET = "geoparquet"
    CSV = "csv"
    JSONL = "jsonl"  # photo jobs' records per photo


_MEDIA = {
    ResultFormat.GEOJSON: ("application/geo+json", ".geojson"),
    ResultFormat.GEOPARQUET: ("application/vnd.apache.parquet", ".parquet"),
    ResultFormat.CSV: ("text/csv; charset=utf-8", ".csv"),
}


@dataclass(frozen=True, slots=True)
class BBox:
    """A lon/lat box."""

    minx: float
    miny: float
    maxx: float
    maxy: float


@dataclass(frozen=True, slots=True)
class ResultFilter:
    min_score: float | None = None
    labels: frozenset[str] | None = None
    bbox: BBox | None = None


def parse_bbox(text: str) -> BBox:
    """``minx,miny,maxx,maxy`` (lon/lat) into a box; a clear error for anything else."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidRequestError(
            f"bbox {text!r} is not four numbers; write bbox=minx,miny,maxx,maxy in lon/lat, "
            "e.g. bbox=-82.1,29.6,-82.0,29.7"
        )
    box = BBox(*values)
    if box.minx > box.maxx or box.miny > box.maxy:
        raise InvalidRequestError(
            f"bbox {text!r} has its minimum above its maximum; write minx,miny,maxx,maxy"
        )
    return box


def _take(table: FeatureTable, keep: np.ndarray) -> FeatureTable:
    idx = np.flatnonzero(keep).tolist()
    return FeatureTable(
        image=[table.image[i] for i in idx],
        label=[table.label[i] for i in idx],
        class_id=table.class_id[idx],
        score=table.score[idx],
        pixel_bbox=table.pixel_bbox[idx].reshape(-1, 4),
        geometry=[table.geometry[i] for i in idx],
        extra={name: [column[i] for i in idx] for name, column in table.extra.items()},
    )


def filter_table(table: FeatureTable, where: ResultFilter) -> FeatureTable:
    """The features of ``table`` that pass every filter of ``where``, in order."""
    keep = np.ones(len(table), dtype=bool)
    if where.min_score is not None:
        keep &= table.score >= where.min_score
    if where.labels is not None:
        labels = where.labels
        keep &= np.fromiter((lb in labels for lb in table.label), dtype=bool, count=len(table))
    if where.bbox is not None and len(table):
        b = where.bbox
        bounds = shapely.bounds(table.shapely_geometries())  # NaN rows: no geometry
        with np.errstate(invalid="ignore"):
            keep &= (
                (bounds[:, 0] <= b.maxx)
                & (bounds[:, 2] >= b.minx)
                & (bounds[:, 1] <= b.maxy)
                & (bounds[:, 3] >= b.miny)
            )
    return table if keep.all() else _take(table, keep)


def result_response(table: FeatureTable, fmt: ResultFormat, stem: str) -> Response:
    """``table`` as a streamed response in ``fmt``, offered for download as ``stem.ext``."""
    media, ext = _MEDIA[fmt]
    headers = {"Content-Disposition": f'attachment; filename="{stem}{ext}"'}
    if fmt is ResultFormat.GEOJSON:
        return StreamingResponse(geojson_chunks(table), media_type=media, headers=headers)
    return file_response(lambda path: FORMATS[fmt.value](table, path, None), ext, media, headers)


def file_response(
    write: Callable[[str], object], ext: str, media: str, headers: dict[str, str]
) -> Response:
    """What ``write(path)`` writes to a temporary ``ext`` file, sent as the response; the file
    is removed once it has been sent (or at once, when writing fails)."""
    fd, path = tempfile.mkstemp(prefix="tilerunner-results-", suffix=ext)
    os.close(fd)
    try:
        write(path)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path, media_type=media, headers=headers, background=BackgroundTask(os.unlink, path)
    )


def label_set(labels: Iterable[str] | None) -> frozenset[str] | None:
    """Labels from repeated ``label=`` parameters (also comma-separated); None when absent."""
    if not labels:
        return None
    return frozenset(part.strip() for value in labels for part in value.split(",") if part.strip())
