"""Where class polygons go: pixel rings -> map coordinates, areas, and streamed files.

The feature table of :mod:`tilerunner.outputs` holds one exterior ring per feature (boxes),
while class polygons have holes and arrive in the millions; so polygons are written here in
batches as they are finished, never collected: GeoParquet through a ``pyarrow`` row-group
writer with the same ``geo`` metadata as the detection outputs, GeoJSON one feature per line.
Both go through :func:`tilerunner.outputs.writers.write_output`, so a file appears atomically
(or is uploaded to ``s3://`` in one call) and a failure leaves nothing behind.

:class:`Placement` holds what a raster says about its place on Earth and turns polygons in
full-image pixel coordinates into the output CRS with their areas. Areas are square metres
whenever the CRS allows: projected CRSs by their linear unit, geographic CRSs as geodesic areas
on the CRS's ellipsoid; an image without a CRS gets areas in pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import CRS, Geod, Transformer
from shapely.geometry import mapping
from shapely.geometry.polygon import orient

from tilerunner.errors import InvalidRequestError
from tilerunner.outputs.geoparquet import geo_metadata

__all__ = ["OutputCrs", "Placement", "PolygonBatch", "PolygonSink", "polygon_sink"]

OutputCrs = Literal["lonlat", "image"]


@dataclass(frozen=True)
class PolygonBatch:
    """Finished polygons of one class in output coordinates, with their pixel counts and areas."""

    class_id: int
    label: str
    geometries: NDArray[np.object_]
    pixel_count: NDArray[np.int64]
    area: NDArray[np.float64]


class Placement:
    """Pixel -> output coordinates and areas for one raster (affine transform + CRS)."""

    def __init__(self, transform: Affine, crs: CRS | None, output: OutputCrs, source: str) -> None:
        georeferenced = crs is not None and not transform.is_identity
        if output == "lonlat" and not georeferenced:
            raise InvalidRequestError(
                f"{source!r} has no CRS and geotransform, so its polygons cannot be placed in "
                "lon/lat; pass crs='image' to keep pixel coordinates"
            )
        self.transform = transform
        self.crs = crs if georeferenced else None
        self.output = output
        self._to_lonlat: Transformer | None = None
        self._geod: Geod | None = None
        self._unit_factor = 1.0
        self.area_unit = "px"
        if self.crs is not None:
            self.area_unit = "m2"
            if self.crs.is_geographic:
                self._geod = self.crs.get_geod()
            else:
                axis = self.crs.axis_info[0] if self.crs.axis_info else None
                factor = axis.unit_conversion_factor if axis is not None else None
                if factor:
                    self._unit_factor = float(factor)
                else:
                    self.area_unit = "crs_unit2"
            if output == "lonlat" or self._geod is not None:
                self._to_lonlat = Transformer.from_crs(
                    self.crs, CRS.from_epsg(4326), always_xy=True
                )

    @property
    def output_crs_wkt(self) -> str | None:
        """WKT of the output CRS (``None`` for lon/lat and for pixel coordinates)."""
        if self.output == "image" and self.crs is not None:
            return str(self.crs.to_wkt())
        return None

    def _affine(self, coords: NDArray[np.float64]) -> NDArray[np.float64]:
        a, b, c, d, e, f = tuple(self.transform)[:6]
        x, y = coords[:, 0], coords[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    def _lonlat(self, coords: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._to_lonlat is not None
        lon, lat = self._to_lonlat.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])

    def place(
        self, class_id: int, label: str, pixel_polygons: Sequence[shapely.Polygon]
    ) -> PolygonBatch:
        """Polygons in full-image pixels -> a batch in the output CRS, counter-clockwise shells."""
        pixels = np.asarray(pixel_polygons, dtype=object)
        pixel_count = np.rint(shapely.area(pixels)).astype(np.int64)
        if self.crs is None:
            return PolygonBatch(class_id, label, _oriented(pixels), pixel_count, 1.0 * pixel_count)
        in_crs = shapely.transform(pixels, self._affine)
        lonlat = shapely.transform(in_crs, self._lonlat) if self._to_lonlat is not None else None
        if self._geod is not None:
            assert lonlat is not None
            area = np.array([abs(self._geod.geometry_area_perimeter(g)[0]) for g in lonlat])
        else:
            pixel_area = abs(
                self.transform.a * self.transform.e - self.transform.b * self.transform.d
            )
            area = pixel_count * pixel_area * self._unit_factor**2
        out = lonlat if self.output == "lonlat" else in_crs
        assert out is not None
        return PolygonBatch(class_id, label, _oriented(out), pixel_count, area)


def _oriented(geoms: NDArray[np.object_]) -> NDArray[np.object_]:
    # RFC 7946 and GeoParquet's "counterclockwise" orientation: shells CCW, holes CW.
    orient_all = getattr(shapely, "orient_polygons", None)  # shapely 2.1 and later
    if orient_all is not None:
        oriented: NDArray[np.object_] = orient_all(geoms, exterior_cw=False)
        return oriented
    return np.array([orient(g, 1.0) for g in geoms], dtype=object)


class PolygonSink:
    """Receives :class:`PolygonBatch` es and writes them to one local file as they come."""

    def __init__(self, fmt: str, path: str, placement: Placement, image: str | None) -> None:
        self._fmt = fmt
        self._path = path
        self._area_unit = placement.area_unit
        self._image = image
        self._parquet: pq.ParquetWriter | None = None
        self._json: Any = None
        self._written = 0
        if fmt == "geoparquet":
            geo = geo_metadata(placement.output_crs_wkt, None)
            if placement.crs is None:  # pixel coordinates: GeoParquet's "unknown CRS"
                geo["columns"]["geometry"]["crs"] = None
            self._schema = _schema(image is not None).with_metadata(
                {b"geo": json.dumps(geo).encode("utf-8")}
            )
            self._parquet = pq.ParquetWriter(path, self._schema, compression="zstd")
        else:
            self._json = open(path, "w", encoding="utf-8")  # noqa: SIM115  closed in close()
            self._json.write('{"type": "FeatureCollection", "features": [')

    def write(self, batch: PolygonBatch) -> None:
        n = len(batch.geometries)
        if n == 0:
            return
        if self._parquet is not None:
            self._parquet.write_table(self._arrow(batch), row_group_size=max(n, 1))
        else:
            for i in range(n):
                props: dict[str, Any] = {
                    "class_id": batch.class_id,
                    "label": batch.label,
                    "pixel_count": int(batch.pixel_count[i]),
                    "area": float(batch.area[i]),
                    "area_unit": self._area_unit,
                }
                if self._image is not None:
                    props["image"] = self._image
                feature = {
                    "type": "Feature",
                    "geometry": mapping(batch.geometries[i]),
                    "properties": props,
                }
                sep = "\n" if self._written == 0 else ",\n"
                self._json.write(sep + json.dumps(feature, separators=(",", ":")))
                self._written += 1

    def _arrow(self, batch: PolygonBatch) -> pa.Table:
        n = len(batch.geometries)
        bounds = shapely.bounds(batch.geometries)
        columns: dict[str, pa.Array] = {}
        if self._image is not None:
            columns["image"] = pa.array([self._image] * n, type=pa.string())
        columns |= {
            "class_id": pa.array(np.full(n, batch.class_id, dtype=np.int64)),
            "label": pa.array([batch.label] * n, type=pa.string()),
            "pixel_count": pa.array(batch.pixel_count, type=pa.int64()),
            "area": pa.array(batch.area, type=pa.float64()),
            "area_unit": pa.array([self._area_unit] * n, type=pa.string()),
            "geometry": pa.array(list(shapely.to_wkb(batch.geometries)), type=pa.binary()),
            "bbox": pa.StructArray.from_arrays(
                [pa.array(bounds[:, k], type=pa.float64()) for k in range(4)],
                names=["xmin", "ymin", "xmax", "ymax"],
            ),
        }
        return pa.table(columns, schema=self._schema)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._json is not None:
            self._json.write("\n]}\n")
            self._json.close()


def _schema(with_image: bool) -> pa.Schema:
    bbox = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
    fields = [pa.field("image", pa.string())] if with_image else []
    fields += [
        pa.field("class_id", pa.int64()),
        pa.field("label", pa.string()),
        pa.field("pixel_count", pa.int64()),
        pa.field("area", pa.float64()),
        pa.field("area_unit", pa.string()),
        pa.field("geometry", pa.binary()),
        pa.field("bbox", bbox),
    ]
    return pa.schema(fields)


@contextmanager
def polygon_sink(
    fmt: str, path: str, placement: Placement, image: str | None
) -> Iterator[PolygonSink]:
    """A :class:`PolygonSink` on ``path``, closed (file completed) when the block ends."""
    sink = PolygonSink(fmt, path, placement, image)
    try:
        yield sink
    finally:
        sink.close()
