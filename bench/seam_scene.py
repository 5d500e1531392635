"""A scene whose every object lies across a tile seam, and its ground truth.

The accuracy half of the peer benchmark needs objects exactly where tiling fails: cut by the
edge of one tile and seen whole by its neighbour, or cut at a tile corner. :func:`seam_squares`
places white squares (16 to 56 px, smaller than the 64 px overlap) across every interior tile
edge of the grid the tools share, and across a sample of edge crossings, never touching one
another; :func:`make_seam_scene` paints them with :func:`pipeline.make_scene` into a lossless
(DEFLATE) COG, so :class:`~tilerunner.testing.models.FakeDetector` finds each at its exact extent
and every tool's boxes can be scored against the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline import make_scene
from tilerunner.tiling import TileGrid

__all__ = ["make_seam_scene", "seam_squares"]

_SIDES = (16, 57)  # square sides drawn from [16, 56]
_GAP = 4  # pixels kept free between squares, so no two merge into one bright blob


def _cut_lines(origins: list[int], tile_size: int, length: int) -> list[int]:
    """Coordinates where some tile of one axis starts or ends inside the image."""
    edges = {o for o in origins if o > 0} | {
        o + tile_size for o in origins if o + tile_size < length
    }
    return sorted(edges)


def seam_squares(
    width: int,
    height: int,
    tile_size: int = 512,
    overlap: int = 64,
    *,
    per_line: int = 10,
    crossings: int = 200,
    seed: int = 0,
) -> NDArray[np.int64]:
    """``[N, 3]`` rows of ``x, y, side``: squares cut by the tile edges of the grid."""
    rng = np.random.default_rng(seed)
    grid = TileGrid(width, height, tile_size, overlap)
    xs = _cut_lines(list(grid.col_origins), tile_size, width)
    ys = _cut_lines(list(grid.row_origins), tile_size, height)
    wanted: list[tuple[int | None, int | None]] = [(x, None) for x in xs for _ in range(per_line)]
    wanted += [(None, y) for y in ys for _ in range(per_line)]
    pairs = [(x, y) for x in xs for y in ys]
    for i in rng.permutation(len(pairs))[:crossings]:
        wanted.append(pairs[i])
    placed = np.zeros((0, 3), dtype=np.int64)
    for cut_x, cut_y in wanted:
        for _ in range(20):  # a few tries to find a free place
            side = int(rng.integers(*_SIDES))
            x = (
                cut_x - int(rng.integers(4, side - 3))
                if cut_x
                else int(rng.integers(0, width - side))
            )
            y = (
                cut_y - int(rng.integers(4, side - 3))
                if cut_y
                else int(rng.integers(0, height - side))
            )
            far = (
                (placed[:, 0] >= x + side + _GAP)
                | (placed[:, 0] + placed[:, 2] + _GAP <= x)
                | (placed[:, 1] >= y + side + _GAP)
                | (placed[:, 1] + placed[:, 2] + _GAP <= y)
            )
            if far.all():
                placed = np.vstack([placed, [x, y, side]])
                break
    return placed


def make_seam_scene(
    workdir: Path, width: int, height: int, tile_size: int = 512, overlap: int = 64, seed: int = 0
) -> tuple[Path, NDArray[np.float64]]:
    """The DEFLATE COG (reused when it exists) and its truth boxes ``[N, 4]``."""
    squares = seam_squares(width, height, tile_size, overlap, seed=seed)
    path = workdir / f"seams-{width}x{height}-t{tile_size}-o{overlap}-s{seed}.cog.tif"
    make_scene(path, width, height=height, seed=seed, compress="deflate", squares=squares)
    x, y, side = squares.T.astype(np.float64)
    return path, np.column_stack([x, y, x + side, y + side])
