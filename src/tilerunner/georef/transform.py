"""Pixel boxes to map coordinates.

Detections come out of the merge step as pixel boxes ``[x0, y0, x1, y1]`` (x right, y down,
origin at the top-left corner of the top-left pixel). A :class:`Georeferencer` is built once per
image and maps many of them at once: pixel -> image CRS through the affine transform (exact numpy
arithmetic), RPCs or GCPs (GDAL transformers via rasterio), then image CRS -> WGS 84 ``(lon,
lat)`` through pyproj with ``always_xy`` so axis order never depends on the CRS definition.

Box corners are walked top-left, top-right, bottom-right, bottom-left. On the map that is
clockwise for north-up images (pixel y points south), but rotated, flipped or RPC imagery can
reverse it, so the orientation of every ring is fixed from its signed area instead of assumed:
RFC 7946 wants exterior rings counter-clockwise.

The class is pure computation; only :meth:`Georeferencer.open` touches a file, through
:mod:`tilerunner.imagery`. Aggregation builds it with :meth:`Georeferencer.from_record` from what
planning recorded, so no source is reopened.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS, Transformer
from pyproj.enums import TransformDirection
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC
from rasterio.transform import GCPTransformer, RPCTransformer

from tilerunner.errors import InvalidRequestError
from tilerunner.georef.record import ImageGeoref

if TYPE_CHECKING:
    from tilerunner.imagery.gdal_env import GdalEnv
    from tilerunner.imagery.reader import GeoMetadata

__all__ = ["Georeferencer", "web_mercator_tile_bounds"]

Float64Array = NDArray[np.float64]

_WGS84 = CRS.from_epsg(4326)
_WEB_MERCATOR_HALF = math.pi * 6378137.0
_NEWTON_STEPS = 3


class Georeferencer:
    """Maps pixel coordinates of one image to its CRS and to ``(lon, lat)``, vectorised.

    Build it with :meth:`from_record`, :meth:`open`, :meth:`from_metadata`, :meth:`from_affine`
    or :meth:`for_web_mercator_tile`. Safe to share between threads.
    """

    def __init__(
        self,
        crs_wkt: str,
        *,
        affine: tuple[float, ...] | None = None,
        gdal_transformer: Any | None = None,
    ) -> None:
        if (affine is None) == (gdal_transformer is None):
            raise InvalidRequestError("give exactly one of an affine transform or a transformer")
        self.crs_wkt = crs_wkt
        self._affine = None if affine is None else np.asarray(affine[:6], dtype=np.float64)
        self._gdal = gdal_transformer
        self._gdal_lock = threading.Lock()  # a GDAL transformer is not reentrant
        crs = CRS.from_user_input(crs_wkt)
        # One transformer for both directions: pyproj may pick different pipelines for A->B and
        # B->A (e.g. a datum grid one way only), which would break exact round trips.
        self._to_lonlat: Transformer | None = None
        if not crs.equals(_WGS84, ignore_axis_order=True):
            self._to_lonlat = Transformer.from_crs(crs, _WGS84, always_xy=True)

    @classmethod
    def open(cls, url: str, env: GdalEnv | None = None) -> Georeferencer | None:
        """The georeferencer of the image at ``url``, or ``None`` when it has none (photos)."""
        from tilerunner.imagery.reader import read_geo_metadata

        return cls.from_metadata(read_geo_metadata(url, env))

    @classmethod
    def from_metadata(cls, meta: GeoMetadata) -> Georeferencer | None:
        """Prefer the affine transform, then RPCs, then GCPs; ``None`` without any of them."""
        if meta.transform is not None and meta.crs_wkt is not None:
            return cls.from_affine(meta.transform, meta.crs_wkt)
        if meta.rpcs is not None:
            # RPCs map pixels straight to WGS 84 lon/lat (height 0 unless RPC_HEIGHT is set).
            return cls(_WGS84.to_wkt(), gdal_transformer=RPCTransformer(meta.rpcs))
        if meta.gcps and meta.gcp_crs_wkt is not None:
            return cls(meta.gcp_crs_wkt, gdal_transformer=GCPTransformer(list(meta.gcps)))
        return None

    @classmethod
    def from_record(cls, record: ImageGeoref) -> Georeferencer | None:
        """From what planning recorded (no I/O); same preference and results as
        :meth:`from_metadata` on the file itself."""
        if record.transform is not None and record.crs_wkt is not None:
            return cls.from_affine(record.transform, record.crs_wkt)
        if record.rpcs is not None:
            return cls(_WGS84.to_wkt(), gdal_transformer=RPCTransformer(RPC(**record.rpcs)))
        if record.gcps and record.gcp_crs_wkt is not None:
            points = [
                GroundControlPoint(row=r, col=c, x=x, y=y, z=z) for r, c, x, y, z in record.gcps
            ]
            return cls(record.gcp_crs_wkt, gdal_transformer=GCPTransformer(points))
        return None

    @classmethod
    def from_affine(cls, transform: tuple[float, ...] | Any, crs: str | Any) -> Georeferencer:
        """From an affine transform ``(a, b, c, d, e, f)`` and a CRS (WKT, "EPSG:n", pyproj)."""
        return cls(CRS.from_user_input(crs).to_wkt(), affine=tuple(transform)[:6])

    @classmethod
    def for_web_mercator_tile(cls, z: int, x: int, y: int, size: int = 256) -> Georeferencer:
        """For one ``size`` x ``size`` pixel XYZ tile, placed by its Web Mercator bounds."""
        n = 2**z
        span = 2 * _WEB_MERCATOR_HALF / n
        west = -_WEB_MERCATOR_HALF + x * span
        north = _WEB_MERCATOR_HALF - y * span
        res = span / size
        return cls.from_affine((res, 0.0, west, 0.0, -res, north), "EPSG:3857")

    def pixel_to_crs(self, cols: ArrayLike, rows: ArrayLike) -> tuple[Float64Array, Float64Array]:
        """Image CRS coordinates of fractional pixel positions (corner-based)."""
        c = np.asarray(cols, dtype=np.float64)
        r = np.asarray(rows, dtype=np.float64)
        if self._affine is not None:
            a, b, xoff, d, e, yoff = self._affine
            return a * c + b * r + xoff, d * c + e * r + yoff
        with self._gdal_lock:
            xs, ys = self._transformer().xy(r.ravel(), c.ravel(), offset="ul")
        return np.asarray(xs).reshape(c.shape), np.asarray(ys).reshape(c.shape)

    def pixel_to_lonlat(
        self, cols: ArrayLike, rows: ArrayLike
    ) -> tuple[Float64Array, Float64Array]:
        """WGS 84 ``(lon, lat)`` of fractional pixel positions."""
        xs, ys = self.pixel_to_crs(cols, rows)
        if self._to_lonlat is None:
            return xs, ys
        lon, lat = self._to_lonlat.transform(xs, ys)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def lonlat_to_pixel(
        self, lons: ArrayLike, lats: ArrayLike
    ) -> tuple[Float64Array, Float64Array]:
        """Inverse of :meth:`pixel_to_lonlat`: fractional ``(cols, rows)``.

        PROJ's inverse of a datum shift is not exact (a linearised Helmert inverts to within
        about a millimetre), so the first estimate is refined with Newton steps on
        :meth:`pixel_to_lonlat` itself: the result round-trips to ~1e-9 px.
        """
        lon = np.asarray(lons, dtype=np.float64)
        lat = np.asarray(lats, dtype=np.float64)
        cols, rows = self._crs_to_pixel(*self._lonlat_to_crs(lon, lat))
        for _ in range(_NEWTON_STEPS):
            f_lon, f_lat = self.pixel_to_lonlat(cols, rows)
            r_lon, r_lat = lon - f_lon, lat - f_lat
            if not (np.any(r_lon) or np.any(r_lat)):
                break
            # Finite-difference Jacobian; the mapping is near-linear over one pixel.
            c_lon, c_lat = self.pixel_to_lonlat(cols + 1.0, rows)
            r2_lon, r2_lat = self.pixel_to_lonlat(cols, rows + 1.0)
            a, b = c_lon - f_lon, r2_lon - f_lon
            c, d = c_lat - f_lat, r2_lat - f_lat
            det = a * d - b * c
            step_c = (d * r_lon - b * r_lat) / det
            step_r = (a * r_lat - c * r_lon) / det
            cols, rows = cols + step_c, rows + step_r
            if max(np.max(np.abs(step_c), initial=0), np.max(np.abs(step_r), initial=0)) < 1e-10:
                break
        return cols, rows

    def _lonlat_to_crs(
        self, lon: Float64Array, lat: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        if self._to_lonlat is None:
            return lon, lat
        xs, ys = self._to_lonlat.transform(lon, lat, direction=TransformDirection.INVERSE)
        return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)

    def _crs_to_pixel(
        self, xs: Float64Array, ys: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        if self._affine is not None:
            a, b, xoff, d, e, yoff = self._affine
            det = a * e - b * d
            dx, dy = xs - xoff, ys - yoff
            return (e * dx - b * dy) / det, (a * dy - d * dx) / det
        with self._gdal_lock:
            # np.positive as the rounding op keeps the fractional pixel positions.
            rows, cols = self._transformer().rowcol(xs.ravel(), ys.ravel(), op=np.positive)
        return np.asarray(cols).reshape(xs.shape), np.asarray(rows).reshape(xs.shape)

    def box_rings(
        self, boxes: ArrayLike, *, crs: Literal["lonlat", "image"] = "lonlat"
    ) -> Float64Array:
        """Closed counter-clockwise rings ``[N, 5, 2]`` for pixel boxes ``[N, 4]``."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        cols = b[:, [0, 2, 2, 0, 0]]
        rows = b[:, [1, 1, 3, 3, 1]]
        if crs == "lonlat":
            xs, ys = self.pixel_to_lonlat(cols, rows)
        elif crs == "image":
            xs, ys = self.pixel_to_crs(cols, rows)
        else:
            raise InvalidRequestError(f"crs must be 'lonlat' or 'image', not {crs!r}")
        rings = np.stack([xs, ys], axis=-1)
        clockwise = signed_area(rings) < 0
        rings[clockwise] = rings[clockwise, ::-1]
        return rings

    def _transformer(self) -> Any:
        if self._gdal is None:  # pragma: no cover - the constructor guarantees one of the two
            raise InvalidRequestError("georeferencer has no transform")
        return self._gdal

    def close(self) -> None:
        """Release the GDAL transformer, if any."""
        if self._gdal is not None:
            self._gdal.close()


def signed_area(rings: ArrayLike) -> Float64Array:
    """Shoelace area of closed rings ``[N, K, 2]``: positive when counter-clockwise."""
    r = np.asarray(rings, dtype=np.float64)
    x, y = r[..., 0], r[..., 1]
    area: Float64Array = 0.5 * np.sum(x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1], axis=1)
    return area


def web_mercator_tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in degrees of XYZ tile ``z/x/y`` (y counted from north)."""
    n = 2**z
    if not (z >= 0 and 0 <= x < n and 0 <= y < n):
        raise InvalidRequestError(
            f"tile {z}/{x}/{y} does not exist; at zoom {z} x and y run from 0 to {n - 1}"
        )

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)
