"""Segmentation cores: which tiles a region runs, and how their masks fill the region's core.

Cores partition the image (:mod:`tilerunner.tiling.grid`), and a region's core is the union of
its tiles' cores, so regions partition it too. A region writes exactly its core: without
blending each core pixel comes from the one tile that owns it, so no pixel is ever written
twice and regions can be written by any worker in any order.

Blending (``linear`` or ``cosine``) averages the probabilities of every tile whose window
covers a pixel, weighted by a ramp that falls towards each tile edge over the overlap. A region
then also runs the neighbouring tiles whose windows reach into its core (:func:`region_tiles`),
so a pixel's value never depends on how the image was cut into regions. The weighted sums are
kept in fixed point (int64, 2**-24 steps): integer addition is associative, so the result is
bit for bit the same whatever order tiles finish in, whatever the batch or region size.

Memory is the region's core: 3 bytes a pixel for the class ids and the filled mask, plus
``4 x K`` for kept probabilities, or ``8 + 8 x K`` while blending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import ModelError
from tilerunner.tiling import Region, RegionGrid, TileRef, Window

__all__ = [
    "Blend",
    "SegmentCanvas",
    "blend_weights",
    "class_counts",
    "region_core",
    "region_tiles",
]

Blend = Literal["none", "linear", "cosine"]

_FIXED = float(1 << 24)
_COUNT_ROWS = 256


def region_core(regions: RegionGrid, region: Region) -> Window:
    """The pixels a region owns: from its first tile's core to its last tile's core."""
    first = regions.grid.core(region.col0, region.row0)
    last = regions.grid.core(region.col0 + region.n_cols - 1, region.row0 + region.n_rows - 1)
    return Window(
        first.col_off, first.row_off, last.col_end - first.col_off, last.row_end - first.row_off
    )


def _covering(origins: list[int], tile_size: int, start: int, end: int) -> range:
    """Indexes of the tiles along one axis whose window ``[o, o + tile)`` meets ``[start, end)``."""
    hits = [i for i, o in enumerate(origins) if o < end and o + tile_size > start]
    return range(hits[0], hits[-1] + 1)


def region_tiles(regions: RegionGrid, region: Region, blend: Blend) -> tuple[TileRef, ...]:
    """The tiles a region runs: its own, plus (when blending) every tile covering its core."""
    if blend == "none":
        return tuple(regions.tiles(region))
    grid = regions.grid
    core = region_core(regions, region)
    # neighbours are near: look a few tiles around the region, not along the whole axis
    reach = -(-grid.tile_size // grid.stride) + 1
    col_lo = max(0, region.col0 - reach)
    row_lo = max(0, region.row0 - reach)
    col_origins = grid.col_origins[col_lo : region.col0 + region.n_cols + reach]
    row_origins = grid.row_origins[row_lo : region.row0 + region.n_rows + reach]
    cols = _covering(col_origins, grid.tile_size, core.col_off, core.col_end)
    rows = _covering(row_origins, grid.tile_size, core.row_off, core.row_end)
    return tuple(
        TileRef(col, row, grid.tile(col, row), grid.core(col, row))
        for row in (row_lo + r for r in rows)
        for col in (col_lo + c for c in cols)
    )


def blend_weights(tile_size: int, overlap: int, blend: Blend) -> NDArray[np.float64]:
    """``[tile, tile]`` weights: 1 inside, falling over ``overlap`` px towards every edge, > 0."""
    ramp = np.ones(tile_size)
    if overlap > 0 and blend != "none":
        edge = np.minimum(np.arange(tile_size) + 0.5, tile_size - np.arange(tile_size) - 0.5)
        ramp = np.clip(edge / overlap, 0.0, 1.0)
        if blend == "cosine":
            ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
        ramp = np.maximum(ramp, 1.0 / 256)
    weights: NDArray[np.float64] = np.outer(ramp, ramp)
    return weights


@dataclass(slots=True)
class SegmentCanvas:
    """The region's core being filled from its tiles' masks (one per region, post thread only).

    ``ids`` is the class-id core; ``probabilities`` the ``[K, H, W]`` core when they are kept
    or blended. :meth:`finish` turns blended sums into probabilities and class ids.
    """

    core: Window
    tile_size: int
    overlap: int
    blend: Blend = "none"
    keep_probabilities: bool = False
    max_class: int = 254
    ids: NDArray[np.uint16] = field(init=False)
    filled: NDArray[np.bool_] = field(init=False)
    """Core pixels some tile wrote (a failed tile leaves its core unfilled: nodata)."""
    probabilities: NDArray[np.float32] | None = field(init=False, default=None)
    _sums: NDArray[np.int64] | None = field(init=False, default=None)
    _weight: NDArray[np.int64] | None = field(init=False, default=None)
    _ramp: NDArray[np.int64] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.ids = np.zeros((self.core.height, self.core.width), dtype=np.uint16)
        self.filled = np.zeros(self.ids.shape, dtype=np.bool_)
        if self.blend != "none":
            weights = blend_weights(self.tile_size, self.overlap, self.blend)
            self._ramp = np.round(weights * _FIXED).astype(np.int64)
            self._weight = np.zeros(self.ids.shape, dtype=np.int64)

    @property
    def needs_probabilities(self) -> bool:
        return self.blend != "none" or self.keep_probabilities

    def add(self, tile: TileRef, classes: NDArray[np.int64] | None,
            probabilities: NDArray[np.float32] | None) -> None:  # fmt: skip
        """Put one tile's mask (tile pixels) into the core: its own core, or blended."""
        if probabilities is None and self.needs_probabilities:
            raise ModelError(
                "blending and probability outputs need a model that returns probabilities "
                "[K, H, W]; this one returned class ids (use --blend none, no --probabilities)"
            )
        if self.blend == "none":
            self._own(tile, classes, probabilities)
        else:
            assert probabilities is not None
            self._blend(tile.window, probabilities)

    def _own(self, tile: TileRef, classes: NDArray[np.int64] | None,
             probabilities: NDArray[np.float32] | None) -> None:  # fmt: skip
        part = tile.core.intersection(self.core)
        if part is None:
            return
        src = np.s_[
            part.row_off - tile.window.row_off : part.row_end - tile.window.row_off,
            part.col_off - tile.window.col_off : part.col_end - tile.window.col_off,
        ]
        dst = self._local(part)
        self.filled[dst] = True
        if probabilities is not None:
            self._check_classes(probabilities.shape[0])
            if self.keep_probabilities:
                if self.probabilities is None:
                    shape = (probabilities.shape[0], *self.ids.shape)
                    self.probabilities = np.zeros(shape, dtype=np.float32)
                self.probabilities[(slice(None), *dst)] = probabilities[(slice(None), *src)]
            self.ids[dst] = np.argmax(probabilities[(slice(None), *src)], axis=0)
        else:
            assert classes is not None
            owned = classes[src]
            if owned.size and int(owned.max()) > self.max_class:
                raise ModelError(
                    f"the model returned class id {int(owned.max())}; this output holds class "
                    f"ids 0..{self.max_class} (the next is nodata): declare the model's classes"
                )
            self.ids[dst] = owned

    def _blend(self, window: Window, probabilities: NDArray[np.float32]) -> None:
        assert self._ramp is not None and self._weight is not None
        part = window.intersection(self.core)
        if part is None:
            return
        k = probabilities.shape[0]
        self._check_classes(k)
        if self._sums is None:
            self._sums = np.zeros((k, *self.ids.shape), dtype=np.int64)
        src = np.s_[
            part.row_off - window.row_off : part.row_end - window.row_off,
            part.col_off - window.col_off : part.col_end - window.col_off,
        ]
        dst = self._local(part)
        ramp = self._ramp[src]
        self._weight[dst] += ramp
        scaled = np.round(probabilities[(slice(None), *src)].astype(np.float64) * _FIXED)
        self._sums[(slice(None), *dst)] += scaled.astype(np.int64) * ramp // (1 << 24)

    def _check_classes(self, k: int) -> None:
        if k - 1 > self.max_class:
            raise ModelError(
                f"the model returned {k} class probabilities; this output holds class ids "
                f"0..{self.max_class}"
            )
        if self._sums is not None and self._sums.shape[0] != k:
            raise ModelError(f"tiles returned {self._sums.shape[0]} and {k} class probabilities")

    def _local(self, part: Window) -> tuple[slice, slice]:
        return np.s_[
            part.row_off - self.core.row_off : part.row_end - self.core.row_off,
            part.col_off - self.core.col_off : part.col_end - self.core.col_off,
        ]

    def finish(self) -> None:
        """Blended sums -> probabilities and argmax class ids (a no-op without blending)."""
        if self._sums is None or self._weight is None:
            return
        weight = np.maximum(self._weight, 1).astype(np.float64)
        self.probabilities = (self._sums / weight).astype(np.float32)
        self.ids = np.argmax(self._sums, axis=0).astype(np.uint16)
        self.filled = self._weight > 0
        self._sums = None
        self._weight = None


def class_counts(ids: NDArray[np.uint16], valid: NDArray[np.bool_] | None) -> dict[int, int]:
    """Pixels per class id among the valid pixels of a core.

    Counted in bands of rows, every pixel then minus the few invalid ones: no copy of the core
    is made (a boolean selection of all valid pixels was 6x slower than this)."""
    n = int(ids.max()) + 1 if ids.size else 0
    counts = np.zeros(n, dtype=np.int64)
    for row in range(0, ids.shape[0], _COUNT_ROWS):
        band = ids[row : row + _COUNT_ROWS]
        counts += np.bincount(band.ravel(), minlength=n)
        if valid is not None:
            invalid = ~valid[row : row + _COUNT_ROWS]
            if invalid.any():
                counts -= np.bincount(band[invalid], minlength=n)
    return {int(c): int(k) for c, k in enumerate(counts) if k}
