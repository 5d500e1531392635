"""A zoom level as one virtual raster in EPSG:3857 (pure arithmetic, no I/O).

Web Mercator spans ``[-H, H]`` metres on both axes (``H = pi * 6378137``); zoom ``z`` cuts it
into ``2**z`` tiles of 256 px a side, so the zoom level is a raster of ``2**z * 256`` px with the
affine ``(2H / size, 0, -H, 0, -2H / size, H)``. Tile ``(x, y)`` (XYZ, rows from the north) is
the window ``(x*256, y*256, 256, 256)``; a TMS row ``ty`` counts from the south and is
``2**z - 1 - y``. With this, a tile job is the raster path unchanged: detections are boxes in
the virtual raster's pixels, owned by the tile whose core holds their centre, merged across
neighbouring tiles by the same merge as regions and georeferenced by the one affine that
planning records.
"""

from __future__ import annotations

import math
from functools import cache

from tilerunner.georef import ImageGeoref
from tilerunner.tiling import TileRef, Window
from tilerunner.xyz.tiles import TILE_PX, Tile

__all__ = [
    "HALF_WORLD",
    "tile_of_pixel",
    "tile_ref",
    "tms_row",
    "zoom_georef",
    "zoom_of_width",
    "zoom_size",
]

HALF_WORLD = math.pi * 6378137.0
"""Half the extent of Web Mercator in metres."""


def zoom_size(zoom: int) -> int:
    """Edge of a zoom level's virtual raster in pixels."""
    return (1 << zoom) * TILE_PX


def zoom_of_width(width: int) -> int:
    """The zoom level whose virtual raster is ``width`` px wide."""
    return (width // TILE_PX).bit_length() - 1


def tms_row(tile: Tile) -> int:
    """The tile's row counted from the south (TMS, ``{-y}``)."""
    return (1 << tile.z) - 1 - tile.y


@cache
def _wkt_3857() -> str:
    from pyproj import CRS

    return str(CRS.from_epsg(3857).to_wkt())


def zoom_georef(zoom: int) -> ImageGeoref:
    """What planning records for a zoom level: its size and its affine in EPSG:3857."""
    size = zoom_size(zoom)
    res = 2 * HALF_WORLD / size
    return ImageGeoref(
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs_wkt=_wkt_3857(),
        transform=(res, 0.0, -HALF_WORLD, 0.0, -res, HALF_WORLD),
    )


def tile_ref(x: int, y: int, zoom: int, context: int = 0) -> TileRef:
    """Tile ``(x, y)`` of ``zoom`` as a tile of its virtual raster: it owns its own 256 px
    (the core) and reads ``context`` more px of its neighbours on every side."""
    core = Window(x * TILE_PX, y * TILE_PX, TILE_PX, TILE_PX)
    window = Window(core.col_off - context, core.row_off - context,
                    TILE_PX + 2 * context, TILE_PX + 2 * context)  # fmt: skip
    return TileRef(col=x, row=y, window=window, core=core)


def tile_of_pixel(col: float, row: float, zoom: int) -> Tile:
    """The tile of ``zoom`` holding a pixel of its virtual raster (clamped to the world)."""
    last = (1 << zoom) - 1
    x = min(last, max(0, int(col // TILE_PX)))
    y = min(last, max(0, int(row // TILE_PX)))
    return Tile(x, y, zoom)
