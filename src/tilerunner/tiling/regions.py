"""Regions: blocks of whole tiles of one image's global grid, the unit put on the queue.

A region never cuts a tile and never re-tiles its pixels: it is just a rectangle of
``(col, row)`` addresses in the image's :class:`~tilerunner.tiling.grid.TileGrid`. Two jobs that
split the same image into regions of different sizes therefore run the model on exactly the same
tiles and own exactly the same detections; only the grouping changes. This is why outputs never
depend on region size, worker count or delivery order.

Regions are numbered row-major and computed on demand, so a planner can enqueue the regions of a
200,000 x 200,000 px scene by index without building a list of tiles.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass

from tilerunner.errors import InvalidRequestError
from tilerunner.tiling.grid import TileGrid
from tilerunner.tiling.window import Window

__all__ = ["Region", "RegionGrid", "TileRef"]


@dataclass(frozen=True, slots=True)
class TileRef:
    """One tile of a region: its grid address, the window to read, and the core it owns."""

    col: int
    row: int
    window: Window
    core: Window


@dataclass(frozen=True, slots=True)
class Region:
    """A block of ``n_cols`` x ``n_rows`` tiles whose top-left tile is ``(col0, row0)``."""

    index: int
    col0: int
    row0: int
    n_cols: int
    n_rows: int

    @property
    def n_tiles(self) -> int:
        return self.n_cols * self.n_rows


@dataclass(frozen=True, slots=True)
class RegionGrid:
    """The grid of regions over a :class:`TileGrid`, each ``region_tiles`` tiles on a side.

    Regions on the right and bottom edges hold fewer tiles when the tile grid does not divide
    evenly.
    """

    grid: TileGrid
    region_tiles: int

    def __post_init__(self) -> None:
        try:
            region_tiles = operator.index(self.region_tiles)
        except TypeError:
            raise InvalidRequestError(
                f"region size in tiles must be a whole number, got {self.region_tiles!r}"
            ) from None
        if region_tiles < 1:
            raise InvalidRequestError(
                f"region size in tiles ({region_tiles}) must be at least 1; raise --region-size"
            )
        object.__setattr__(self, "region_tiles", region_tiles)

    @classmethod
    def from_pixels(cls, grid: TileGrid, region_size: int) -> RegionGrid:
        """Regions of about ``region_size`` px: ``max(1, region_size // stride)`` tiles a side.

        The size is rounded down to whole tiles (a region is never smaller than one tile), since
        cutting a tile would make results depend on the region size.
        """
        if region_size < 1:
            raise InvalidRequestError(
                f"region size ({region_size}) must be at least 1 pixel; raise --region-size"
            )
        return cls(grid, max(1, region_size // grid.stride))

    @property
    def n_cols(self) -> int:
        return -(-self.grid.n_cols // self.region_tiles)

    @property
    def n_rows(self) -> int:
        return -(-self.grid.n_rows // self.region_tiles)

    @property
    def n_regions(self) -> int:
        return self.n_cols * self.n_rows

    def region(self, index: int) -> Region:
        """The region with row-major ``index``; raises :class:`IndexError` when out of range."""
        if not 0 <= index < self.n_regions:
            raise IndexError(
                f"region index {index} out of range; this image has {self.n_regions} regions "
                f"(0 to {self.n_regions - 1})"
            )
        region_row, region_col = divmod(index, self.n_cols)
        col0 = region_col * self.region_tiles
        row0 = region_row * self.region_tiles
        return Region(
            index=index,
            col0=col0,
            row0=row0,
            n_cols=min(self.region_tiles, self.grid.n_cols - col0),
            n_rows=min(self.region_tiles, self.grid.n_rows - row0),
        )

    def regions(self) -> Iterator[Region]:
        """Every region, row-major, computed lazily."""
        for index in range(self.n_regions):
            yield self.region(index)

    def tiles(self, region: Region) -> Iterator[TileRef]:
        """The tiles of ``region``, row-major, each with its read window and core."""
        grid = self.grid
        for row in range(region.row0, region.row0 + region.n_rows):
            for col in range(region.col0, region.col0 + region.n_cols):
                yield TileRef(col, row, grid.tile(col, row), grid.core(col, row))
