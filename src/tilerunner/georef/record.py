"""What planning records about an image, so that aggregation never reopens its source.

Planning opens every image once for its header; :class:`ImageGeoref` keeps what later stages
need from it: size, band count and data type, and the georeferencing (CRS and affine transform,
or RPCs, or GCPs with their CRS). It is a plain value that round-trips through JSON exactly
(the store keeps it in ``images.georef``), and
:meth:`tilerunner.georef.Georeferencer.from_record` builds the pixel -> map mapping from it
without touching the file again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tilerunner.errors import StoreError

if TYPE_CHECKING:
    from tilerunner.imagery.reader import GeoMetadata, ImageInfo

__all__ = ["GCP", "ImageGeoref"]

#: One ground control point: ``(row, col, x, y, z)``, pixel position and map coordinates.
GCP = tuple[float, float, float, float, float | None]


@dataclass(frozen=True, slots=True)
class ImageGeoref:
    """Header facts of one image: size, bands, dtype and its georeferencing, if any.

    ``transform`` is the affine ``(a, b, c, d, e, f)`` in rasterio order; ``rpcs`` the fields of
    a ``rasterio.rpc.RPC`` (``RPC.to_dict()``); ``gcps`` the control points with their CRS in
    ``gcp_crs_wkt``. Photos have none of the three.
    """

    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str | None = None
    transform: tuple[float, ...] | None = None
    rpcs: dict[str, Any] | None = None
    gcps: tuple[GCP, ...] = ()
    gcp_crs_wkt: str | None = None

    @classmethod
    def from_header(cls, info: ImageInfo, meta: GeoMetadata | None = None) -> ImageGeoref:
        """From what :func:`tilerunner.imagery.probe` read, plus the RPCs / GCPs if read."""
        rpcs = None if meta is None or meta.rpcs is None else dict(meta.rpcs.to_dict())
        gcps: tuple[GCP, ...] = ()
        if meta is not None:
            gcps = tuple(
                (float(g.row), float(g.col), float(g.x), float(g.y), _opt_float(g.z))
                for g in meta.gcps
            )
        return cls(
            width=info.width,
            height=info.height,
            count=info.count,
            dtype=info.dtype,
            crs_wkt=info.crs_wkt,
            transform=info.transform,
            rpcs=rpcs,
            gcps=gcps,
            gcp_crs_wkt=None if meta is None else meta.gcp_crs_wkt,
        )

    @property
    def has_affine(self) -> bool:
        return self.transform is not None and self.crs_wkt is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-native mapping (floats survive a JSON round trip exactly)."""
        return {
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": self.dtype,
            "crs_wkt": self.crs_wkt,
            "transform": None if self.transform is None else list(self.transform),
            "rpcs": self.rpcs,
            "gcps": [list(g) for g in self.gcps],
            "gcp_crs_wkt": self.gcp_crs_wkt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageGeoref:
        """Inverse of :meth:`to_json`."""
        try:
            transform = data.get("transform")
            return cls(
                width=int(data["width"]),
                height=int(data["height"]),
                count=int(data["count"]),
                dtype=str(data["dtype"]),
                crs_wkt=data.get("crs_wkt"),
                transform=None if transform is None else tuple(float(v) for v in transform),
                rpcs=data.get("rpcs"),
                gcps=tuple(
                    (float(r), float(c), float(x), float(y), _opt_float(z))
                    for r, c, x, y, z in data.get("gcps") or ()
                ),
                gcp_crs_wkt=data.get("gcp_crs_wkt"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(
                f"recorded image metadata is malformed ({error!r}); plan the job again"
            ) from None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
