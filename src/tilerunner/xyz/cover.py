"""Tile covers: the tiles of one zoom level that a bounding box or a GeoJSON area touches.

The tile arithmetic (lon/lat to tile, tile bounds) is morecantile's ``WebMercatorQuad``, the
OGC TileMatrixSet that XYZ services use, rather than our own formulas: its edge cases (the
antimeridian, the latitude clamp at +-85.05 degrees, bounds that fall on a tile edge) are
tested there. A GeoJSON area is covered by the tiles of its bounding box that intersect it
(shapely, prepared once); tiles are yielded one at a time, so a cover of millions of tiles
never sits in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from tilerunner.errors import InvalidRequestError
from tilerunner.xyz.tiles import MAX_ZOOM, Tile

__all__ = ["cover_bbox", "cover_geojson", "parse_bbox", "tile_bounds", "tile_lonlat_ring"]


@cache
def _tms() -> Any:
    import morecantile

    return morecantile.tms.get("WebMercatorQuad")


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``'W,S,E,N'`` in degrees as a tuple; InvalidRequestError saying what to change."""
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidRequestError(
            f"--bbox {text!r} must be W,S,E,N in degrees, e.g. 13.37,52.50,13.42,52.53"
        ) from None
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south < north <= 90):
        raise InvalidRequestError(
            f"--bbox {text!r}: longitudes must be in -180..180 and latitudes in -90..90 with S < N"
        )
    return west, south, east, north


def _check_zoom(zoom: int) -> None:
    if not 0 <= zoom <= MAX_ZOOM:
        raise InvalidRequestError(f"--zoom {zoom} is outside 0..{MAX_ZOOM}")


def cover_bbox(bbox: tuple[float, float, float, float], zoom: int) -> Iterator[Tile]:
    """Tiles of ``zoom`` touching ``bbox`` (W, S, E, N degrees; W > E crosses the antimeridian)."""
    _check_zoom(zoom)
    for t in _tms().tiles(*bbox, zooms=[zoom], truncate=True):
        yield Tile(t.x, t.y, t.z)


def tile_bounds(tile: Tile) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in degrees."""
    b = _tms().bounds(tile.x, tile.y, tile.z)
    return b.left, b.bottom, b.right, b.top


def tile_lonlat_ring(tile: Tile) -> list[tuple[float, float]]:
    """The tile's footprint as a closed lon/lat ring (counter-clockwise, RFC 7946)."""
    w, s, e, n = tile_bounds(tile)
    return [(w, s), (e, s), (e, n), (w, n), (w, s)]


def _load_area(path: Path) -> Any:
    import shapely
    from shapely.geometry import shape

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidRequestError(
            f"cannot read --geojson {str(path)!r}: {error.strerror}"
        ) from None
    except ValueError as error:
        raise InvalidRequestError(f"--geojson {str(path)!r} is not JSON: {error}") from None
    if not isinstance(doc, dict):
        raise InvalidRequestError(f"--geojson {str(path)!r} must hold a GeoJSON object")
    if doc.get("type") == "FeatureCollection":
        geometries = [f.get("geometry") for f in doc.get("features") or []]
    elif doc.get("type") == "Feature":
        geometries = [doc.get("geometry")]
    else:
        geometries = [doc]
    try:
        shapes = [shape(g) for g in geometries if g]
    except (ValueError, AttributeError, TypeError, KeyError) as error:
        raise InvalidRequestError(f"--geojson {str(path)!r}: invalid geometry ({error})") from None
    if not shapes:
        raise InvalidRequestError(f"--geojson {str(path)!r} holds no geometry to cover")
    area = shapely.union_all(shapes)
    shapely.prepare(area)
    return area


def cover_geojson(path: str | Path, zoom: int) -> Iterator[Tile]:
    """Tiles of ``zoom`` that intersect the (lon/lat) geometries of a GeoJSON file."""
    import shapely

    _check_zoom(zoom)
    area = _load_area(Path(path))
    for tile in cover_bbox(tuple(area.bounds), zoom):
        if shapely.intersects(area, shapely.box(*tile_bounds(tile))):
            yield tile
