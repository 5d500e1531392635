"""Strips: how a region's tiles are read in a few large, block-aligned windows.

Overlapping tiles share pixels, and a tiled raster (a COG) can only be fetched and decoded in
whole internal blocks, so reading tile by tile fetches the blocks under every overlap twice or
four times, one small request after another. A region is instead read as a few *strips*: each
strip is the union of one or more consecutive tile rows over the columns the region's tiles
span, and every tile is cut from its strip in memory.

Strips are read in order, one after the other, and each one *fetches* only the rows below what
the previous strip already holds, ending on an internal block boundary; the rows the next strip
still needs are carried over in memory. So no internal block of the image is fetched twice for
one region, whatever the overlap::

    strip k holds   [top_k, bottom_k),  bottom_k = ceil(end of its last tile row / block) * block
    strip k fetches [max(top_k, bottom_{k-1}), bottom_k)  and carries [top_k, bottom_{k-1})

(``bottom_k`` never passes the image or the region's last row: nothing below is needed).
Tile rows are added to a strip while its pixels stay within ``budget_bytes``; a strip always
holds at least one tile row, so a strip needs at most ``max(budget, (tile + block) rows x region
width)`` pixels. Everything here is arithmetic on :class:`Window` values; nothing reads pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tilerunner.tiling.window import Window

__all__ = ["Strip", "plan_strips"]


@dataclass(frozen=True, slots=True)
class Strip:
    """Rows of a region held in memory at once, and which tiles are cut from them.

    ``window`` is what the strip holds (inside the image); ``fetch`` the part of it read from
    the source, the rows above it being carried from the previous strip (``None``: everything
    is carried). ``tiles`` index the windows given to :func:`plan_strips`.
    """

    window: Window
    fetch: Window | None
    tiles: tuple[int, ...]


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


def plan_strips(
    windows: Sequence[Window],
    image_width: int,
    image_height: int,
    *,
    block_height: int,
    budget_bytes: int,
    bytes_per_pixel: int,
) -> list[Strip]:
    """The strips that read ``windows`` (one region's tiles), top to bottom.

    Windows may reach past the image (they are zero-padded when cut); windows wholly outside
    it get no strip and must be cut as all zeros. ``block_height`` is the raster's internal
    block height (the row count of a strip for untiled rasters too).
    """
    if block_height < 1 or bytes_per_pixel < 1:
        raise ValueError("block_height and bytes_per_pixel must be at least 1")
    inside: dict[int, Window] = {}
    for index, window in enumerate(windows):
        clipped = window.clip(image_width, image_height)
        if clipped is not None:
            inside[index] = clipped
    if not inside:
        return []
    col0 = min(w.col_off for w in inside.values())
    width = max(w.col_end for w in inside.values()) - col0
    last_end = max(w.row_end for w in inside.values())
    by_row: dict[int, list[int]] = {}
    for index, clipped in inside.items():
        by_row.setdefault(clipped.row_off, []).append(index)
    tile_rows = [(top, members, max(inside[i].row_end for i in members))
                 for top, members in sorted(by_row.items())]  # fmt: skip

    def aligned(row_end: int) -> int:
        """Where a strip ending at ``row_end`` stops: the next block edge, within the need."""
        return min(image_height, _ceil_to(row_end, block_height), last_end)

    strips: list[Strip] = []
    held_bottom = 0  # rows above this were fetched by an earlier strip
    start = 0
    while start < len(tile_rows):
        top, _, row_end = tile_rows[start]
        stop = start + 1
        while stop < len(tile_rows):
            grown = max(row_end, tile_rows[stop][2])
            if (aligned(grown) - top) * width * bytes_per_pixel > budget_bytes:
                break
            row_end, stop = grown, stop + 1
        bottom = max(aligned(row_end), held_bottom)
        fetch_top = max(top, held_bottom)
        fetch = Window(col0, fetch_top, width, bottom - fetch_top) if bottom > fetch_top else None
        tiles = tuple(i for _, members, _ in tile_rows[start:stop] for i in members)
        strips.append(Strip(Window(col0, top, width, bottom - top), fetch, tiles))
        held_bottom = bottom
        start = stop
    return strips
