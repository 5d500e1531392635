"""GeoJSON (RFC 7946) FeatureCollection writer.

RFC 7946 fixes coordinates to WGS 84 longitude/latitude and asks for counter-clockwise exterior
rings; the georeferencer already produces both, so this module only refuses tables in another
CRS. Features are serialised one at a time straight into the file, so memory stays bounded by one
feature, not by the size of the collection. Photos without georeferencing get
``"geometry": null``, which RFC 7946 allows, and keep their pixel box in the properties.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from pyproj import CRS

from tilerunner.errors import InvalidRequestError
from tilerunner.outputs.table import FeatureTable

__all__ = ["feature_properties", "geojson_chunks", "geojson_features", "write_geojson"]


def _plain(value: Any) -> Any:
    """Turn numpy scalars and arrays into JSON-native values; non-finite floats into null."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def check_lonlat(crs_wkt: str | None) -> None:
    """Raise unless ``crs_wkt`` is absent or WGS 84 longitude/latitude."""
    if crs_wkt is None:
        return
    if not CRS.from_user_input(crs_wkt).equals(CRS.from_epsg(4326), ignore_axis_order=True):
        raise InvalidRequestError(
            "GeoJSON coordinates must be WGS 84 longitude/latitude (RFC 7946); "
            "write lon/lat geometry to GeoJSON, or use GeoParquet for the image CRS"
        )


def feature_properties(table: FeatureTable, i: int) -> dict[str, Any]:
    """Properties of feature ``i``: score, label, class_id, image, pixel_bbox, then extras."""
    props: dict[str, Any] = {
        "score": _plain(table.score[i]),
        "label": table.label[i],
        "class_id": int(table.class_id[i]),
        "image": table.image[i],
        "pixel_bbox": _plain(table.pixel_bbox[i]),
    }
    for name, column in table.extra.items():
        props[name] = _plain(column[i])
    return props


def geojson_features(table: FeatureTable) -> Iterator[dict[str, Any]]:
    """GeoJSON Feature objects of ``table``, one at a time (for files and HTTP streams)."""
    for i in range(len(table)):
        ring = table.geometry[i]
        geometry = (
            None
            if ring is None
            else {"type": "Polygon", "coordinates": [np.asarray(ring, dtype=float).tolist()]}
        )
        yield {"type": "Feature", "geometry": geometry, "properties": feature_properties(table, i)}


def geojson_chunks(table: FeatureTable) -> Iterator[str]:
    """The FeatureCollection of ``table`` as text chunks, streamed feature by feature."""
    yield '{"type": "FeatureCollection", "features": ['
    for i, feature in enumerate(geojson_features(table)):
        yield ("\n" if i == 0 else ",\n") + json.dumps(
            feature, allow_nan=False, separators=(",", ":")
        )
    yield "\n]}\n"


def write_geojson(table: FeatureTable, path: str, crs_wkt: str | None = None) -> None:
    """Write ``table`` as a FeatureCollection to the local file ``path``."""
    check_lonlat(crs_wkt)
    with open(path, "w", encoding="utf-8") as fh:
        for chunk in geojson_chunks(table):
            fh.write(chunk)
