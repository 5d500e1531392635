"""Planning a tile job: stream the tile list into work items of a few hundred tiles each.

Each zoom level named is one image (its virtual raster, :mod:`tilerunner.xyz.grid`), and
tiles are grouped in list order, per zoom level, into batches of ``per_item`` tiles: one region
(work item) each. Grouping in list order keeps memory flat (one open batch per zoom level, never
the list), and costs nothing in correctness: a detection belongs to the tile whose core holds
its centre, whichever item carried that tile, and the merge across items is the one of regions.
A repeated tile inside one batch is run once; a tile listed again far apart is run again.

The list is read once more than at acceptance (which checks every line before anything is
stored), streamed; each zoom level's image is written just before its first batch.
"""

from __future__ import annotations

from collections.abc import Iterator

from tilerunner.store import Store
from tilerunner.store.tile_batches import TileBatch, TileImage
from tilerunner.xyz.cover import cover_bbox
from tilerunner.xyz.grid import zoom_georef
from tilerunner.xyz.spec import TileSetSpec
from tilerunner.xyz.tiles import Tile, check_tile_file, parse_tile, read_tiles

__all__ = ["check_tiles", "plan_tiles", "tile_stream"]


def tile_stream(tiles: TileSetSpec) -> Iterator[Tile]:
    """The tiles a tile set names, one at a time, in order."""
    if tiles.ids is not None:
        for index, text in enumerate(tiles.ids):
            yield parse_tile(text, f"tiles.ids[{index}]")
    elif tiles.file is not None:
        yield from read_tiles(tiles.file)
    else:
        assert tiles.bbox is not None and tiles.zoom is not None  # the spec's validator
        yield from cover_bbox(tiles.bbox, tiles.zoom)


def check_tiles(tiles: TileSetSpec) -> None:
    """Up front, before anything is stored: a tile-list file exists and every line is a tile
    (InvalidRequestError naming the line otherwise)."""
    if tiles.file is not None:
        check_tile_file(tiles.file)


def _batches(tiles: TileSetSpec) -> Iterator[TileBatch]:
    images: dict[int, TileImage] = {}
    open_batches: dict[int, dict[str, None]] = {}
    next_region: dict[int, int] = {}

    def close(zoom: int) -> TileBatch:
        pairs = open_batches.pop(zoom)
        region = next_region[zoom]
        next_region[zoom] = region + 1
        return TileBatch(images[zoom], region, len(pairs), " ".join(pairs))

    for tile in tile_stream(tiles):
        if tile.z not in images:  # zoom levels become images in order of first appearance
            images[tile.z] = TileImage(
                len(images), f"z{tile.z}", tiles.url_template, zoom_georef(tile.z)
            )
            next_region[tile.z] = 0
        batch = open_batches.setdefault(tile.z, {})
        batch[f"{tile.x}-{tile.y}"] = None
        if len(batch) >= tiles.per_item:
            yield close(tile.z)
    for zoom in sorted(open_batches):
        yield close(zoom)


def plan_tiles(store: Store, job_id: str, tiles: TileSetSpec) -> bool:
    """Write a tile job's zoom levels and work items and move it to ``queued``; False when
    the job was no longer planning (nothing written)."""
    return store.add_tile_plan(job_id, _batches(tiles))
