"""``tilerunner tiles``: XYZ tile lists (``x-y-z`` lines) for tile jobs.

``tiles cover`` prints the tiles of one zoom level that a bounding box or a GeoJSON area
touches, one a line, streamed (a cover of millions of tiles is never held in memory), so
``tilerunner tiles cover --bbox W,S,E,N --zoom 17 > tiles.txt`` feeds ``run --tiles``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tilerunner.cli.common import handle_errors, pass_settings
from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings

__all__ = ["tiles"]


@click.group()
def tiles() -> None:
    """XYZ tile lists: covers of an area at one zoom level."""


@tiles.command()
@click.option("--bbox", default=None, help="W,S,E,N in degrees (lon/lat).")
@click.option(
    "--geojson",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A GeoJSON file (lon/lat): the tiles its geometries intersect.",
)
@click.option("--zoom", required=True, type=int, help="Zoom level (0..22).")
@pass_settings
@handle_errors
def cover(settings: Settings, bbox: str | None, geojson: Path | None, zoom: int) -> None:
    """Print the tiles (x-y-z, one a line) of ZOOM that a bbox or a GeoJSON area touches."""
    from tilerunner.xyz.cover import cover_bbox, cover_geojson, parse_bbox

    if (bbox is None) == (geojson is None):
        raise InvalidRequestError("give exactly one of --bbox W,S,E,N or --geojson FILE")
    if bbox is not None:
        found = cover_bbox(parse_bbox(bbox), zoom)
    else:
        assert geojson is not None
        found = cover_geojson(geojson, zoom)
    out = sys.stdout
    for tile in found:
        out.write(f"{tile}\n")
