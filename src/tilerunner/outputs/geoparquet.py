"""GeoParquet 1.1 writer.

GeoParquet is plain Parquet plus a ``geo`` JSON entry in the file metadata that names the
geometry column, its encoding and its CRS, so GDAL, GeoPandas, DuckDB and QGIS all read it as a
layer. Geometries are WKB, built one row group at a time in vectorised shapely calls. A ``bbox``
struct column is written as the 1.1 "covering", which lets readers skip row groups by extent
without decoding geometries. The CRS is PROJJSON from pyproj; lon/lat is declared as
``OGC:CRS84`` (the GeoParquet default, explicitly longitude first).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from tilerunner.outputs.table import FeatureTable

__all__ = ["GEOPARQUET_VERSION", "geo_metadata", "write_geoparquet"]

GEOPARQUET_VERSION = "1.1.0"


def _projjson(crs_wkt: str | None) -> dict[str, Any]:
    crs = CRS.from_epsg(4326) if crs_wkt is None else CRS.from_user_input(crs_wkt)
    if crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        crs = CRS.from_user_input("OGC:CRS84")
    projjson: dict[str, Any] = crs.to_json_dict()
    return projjson


def geo_metadata(
    crs_wkt: str | None, bbox: list[float] | None, *, orientation: bool = True
) -> dict[str, Any]:
    """The ``geo`` file metadata for one WKB polygon column named ``geometry``."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "crs": _projjson(crs_wkt),
        "covering": {
            "bbox": {
                "xmin": ["bbox", "xmin"],
                "ymin": ["bbox", "ymin"],
                "xmax": ["bbox", "xmax"],
                "ymax": ["bbox", "ymax"],
            }
        },
    }
    if orientation:
        column["orientation"] = "counterclockwise"
    if bbox is not None:
        column["bbox"] = bbox
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {"geometry": column},
    }


#: Features per row group: the writer holds one group's shapely polygons and WKB at a time.
ROW_GROUP = 100_000


def write_geoparquet(table: FeatureTable, path: str, crs_wkt: str | None = None) -> None:
    """Write ``table`` to the local file ``path``; ``crs_wkt``: geometry CRS (None: lon/lat).

    Written one row group of :data:`ROW_GROUP` features at a time, after a first pass that
    finds the extent for the file metadata, so memory does not grow with the table.
    """
    extra = {name: pa.array(list(values)) for name, values in table.extra.items()}
    n = len(table)
    bounds = [_bounds(table.rows(a, a + ROW_GROUP)) for a in range(0, n, ROW_GROUP)]
    found = [b for b in bounds if b is not None]
    total = None
    if found:
        b = np.array(found)
        total = [
            float(b[:, 0].min()),
            float(b[:, 1].min()),
            float(b[:, 2].max()),
            float(b[:, 3].max()),
        ]
    metadata = {b"geo": json.dumps(geo_metadata(crs_wkt, total)).encode("utf-8")}
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, max(n, 1), ROW_GROUP):  # an empty table still gets its schema
            stop = start + ROW_GROUP
            arrow = _arrow(table.rows(start, stop), {k: v[start:stop] for k, v in extra.items()})
            if writer is None:
                schema = arrow.schema.with_metadata({**(arrow.schema.metadata or {}), **metadata})
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            writer.write_table(arrow.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _bounds(table: FeatureTable) -> list[float] | None:
    """``[xmin, ymin, xmax, ymax]`` of the features that have a geometry; None if none has."""
    if isinstance(table.geometry, np.ndarray):
        if not len(table):
            return None
        rings = table.geometry
        lo, hi = rings.min(axis=(0, 1)), rings.max(axis=(0, 1))
        return [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]
    present = table.has_geometry()
    if not present.any():
        return None
    b = shapely.bounds(table.shapely_geometries()[present])
    return [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]


def _arrow(table: FeatureTable, extra: dict[str, pa.Array]) -> pa.Table:
    """One row group of ``table``; ``extra``: its extra columns, already converted."""
    geoms = table.shapely_geometries()
    present = table.has_geometry()
    wkb = shapely.to_wkb(geoms)  # None stays None
    bounds = shapely.bounds(geoms)  # NaN rows where geometry is None
    bbox_arrays = [pa.array(bounds[:, k], mask=~present, type=pa.float64()) for k in range(4)]
    bbox_column = pa.StructArray.from_arrays(
        bbox_arrays, names=["xmin", "ymin", "xmax", "ymax"], mask=pa.array(~present)
    )
    columns: dict[str, pa.Array] = {
        "image": pa.array(list(table.image), type=pa.string()),
        "label": pa.array(list(table.label), type=pa.string()),
        "class_id": pa.array(table.class_id, type=pa.int64()),
        "score": pa.array(table.score, type=pa.float64()),
        "pixel_bbox": pa.FixedSizeListArray.from_arrays(
            pa.array(table.pixel_bbox.ravel(), type=pa.float64()), 4
        ),
        **extra,
        "geometry": pa.array(list(wkb), type=pa.binary()),
        "bbox": bbox_column,
    }
    return pa.table(columns)
