"""GeoParquet 1.1 writer.

GeoParquet is plain Parquet plus a ``geo`` JSON entry in the file metadata that names the
geometry column, its encoding and its CRS, so GDAL, GeoPandas, DuckDB and QGIS all read it as a
layer. Geometries are WKB, built for the whole table in one vectorised shapely call. A ``bbox``
struct column is written as the 1.1 "covering", which lets readers skip row groups by extent
without decoding geometries. The CRS is PROJJSON from pyproj; lon/lat is declared as
``OGC:CRS84`` (the GeoParquet default, explicitly longitude first).
"""

from __future__ import annotations

import json
from typing import Any

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


def write_geoparquet(table: FeatureTable, path: str, crs_wkt: str | None = None) -> None:
    """Write ``table`` to the local file ``path``; ``crs_wkt``: geometry CRS (None: lon/lat)."""
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
    }
    for name, values in table.extra.items():
        columns[name] = pa.array(list(values))
    columns["geometry"] = pa.array(list(wkb), type=pa.binary())
    columns["bbox"] = bbox_column
    total = None
    if present.any():
        b = bounds[present]
        total = [
            float(b[:, 0].min()),
            float(b[:, 1].min()),
            float(b[:, 2].max()),
            float(b[:, 3].max()),
        ]
    arrow = pa.table(columns)
    metadata = {b"geo": json.dumps(geo_metadata(crs_wkt, total)).encode("utf-8")}
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **metadata})
    pq.write_table(arrow, path, compression="zstd")
