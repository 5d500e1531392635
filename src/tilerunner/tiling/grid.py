"""The global tile grid of one image, and the cores that partition it.

Along one axis of ``length`` pixels, with ``stride = tile_size - overlap``::

    origins   o_i = i * stride                 for i < n - 1
              o_{n-1} = length - tile_size     (the last tile is shifted back to end at the edge)
    n         = ceil((length - tile_size) / stride) + 1     when length > tile_size, else 1

An axis shorter than a tile gets a single tile at origin 0 that reaches past the image; the
reader pads it and outputs are clipped. Every other tile is full size and inside the image, and
every pixel is covered.

Cores split each overlap at its middle. Between adjacent tiles with origins ``a < b`` the
boundary is ``(b + a + tile_size) // 2`` (the middle of ``[b, a + tile_size)``, rounded down);
the first core starts at 0 and the last ends at the image edge, so cores partition the image.
A detection belongs to the tile whose core holds its centre: with objects no larger than
``2 * (overlap // 2)`` px (the overlap itself when it is even), the owning tile always sees the
whole object, and a partial view of it never has its centre inside a core.

Everything is arithmetic on the grid's four numbers: a 1,000,000 px axis costs nothing to build,
and any tile or core is found in O(1). That is what lets the planner cut huge scenes into regions
without materialising tiles.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

from tilerunner.errors import InvalidRequestError
from tilerunner.tiling.window import Window

__all__ = ["AxisOrigins", "TileGrid", "axis_origins"]


@dataclass(frozen=True, slots=True)
class AxisOrigins(Sequence[int]):
    """The tile origins along one axis, computed on access (a lazy, read-only sequence)."""

    length: int
    tile_size: int
    stride: int

    def __len__(self) -> int:
        if self.length <= self.tile_size:
            return 1
        return -(-(self.length - self.tile_size) // self.stride) + 1

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> list[int]: ...
    def __getitem__(self, index: int | slice) -> int | list[int]:
        n = len(self)
        if isinstance(index, slice):
            return [self._origin(i, n) for i in range(*index.indices(n))]
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"tile index {index} out of range; this axis has {n} tiles")
        return self._origin(i, n)

    def _origin(self, i: int, n: int) -> int:
        if i < n - 1:
            return i * self.stride
        return max(0, self.length - self.tile_size)

    def _boundary(self, left: int, right: int, n: int) -> int:
        """Middle of the overlap of two adjacent tiles, rounded down."""
        return (self._origin(left, n) + self._origin(right, n) + self.tile_size) // 2

    def core_bounds(self, index: int) -> tuple[int, int]:
        """``(start, end)`` of the core of tile ``index`` along this axis (end exclusive)."""
        n = len(self)
        self[index]  # bounds check, with the same message as indexing
        i = index + n if index < 0 else index
        start = 0 if i == 0 else self._boundary(i - 1, i, n)
        end = self.length if i == n - 1 else self._boundary(i, i + 1, n)
        return start, end


def axis_origins(length: int, tile_size: int, stride: int) -> AxisOrigins:
    """Tile origins along an axis of ``length`` pixels, in O(1) memory (see module docstring)."""
    if length < 1 or tile_size < 1 or stride < 1:
        raise InvalidRequestError(
            f"axis length ({length}), tile size ({tile_size}) and stride ({stride}) "
            "must all be at least 1; check the image size, --tile-size and --overlap"
        )
    if stride > tile_size:
        raise InvalidRequestError(
            f"stride ({stride}) must not exceed the tile size ({tile_size}), or pixels between "
            "tiles would never be seen; use an overlap of 0 or more"
        )
    return AxisOrigins(length, tile_size, stride)


def _as_int(name: str, value: int) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidRequestError(
            f"{name} must be a whole number of pixels, got {value!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class TileGrid:
    """All tiles of one ``width`` x ``height`` image for a tile size and overlap.

    Tiles are addressed by ``(col, row)`` or by a row-major index. Regions are blocks of this one
    grid, so what a tile sees never depends on how the image was split into regions.
    """

    width: int
    height: int
    tile_size: int
    overlap: int
    _cols: AxisOrigins = field(init=False, repr=False, compare=False)
    _rows: AxisOrigins = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("width", "height", "tile_size", "overlap"):
            object.__setattr__(self, name, _as_int(name.replace("_", " "), getattr(self, name)))
        if self.width < 1 or self.height < 1:
            raise InvalidRequestError(
                f"image size ({self.width} x {self.height}) must be at least 1 x 1 pixel; "
                "check that the source has pixels"
            )
        if self.tile_size < 1:
            raise InvalidRequestError(
                f"tile size ({self.tile_size}) must be at least 1; raise --tile-size"
            )
        if self.overlap < 0:
            raise InvalidRequestError(
                f"overlap ({self.overlap}) must not be negative; set --overlap to 0 or more"
            )
        if self.overlap >= self.tile_size:
            raise InvalidRequestError(
                f"tile size ({self.tile_size}) must be larger than overlap ({self.overlap}); "
                "lower --overlap or raise --tile-size"
            )
        object.__setattr__(self, "_cols", AxisOrigins(self.width, self.tile_size, self.stride))
        object.__setattr__(self, "_rows", AxisOrigins(self.height, self.tile_size, self.stride))

    @property
    def stride(self) -> int:
        """Distance between the origins of adjacent tiles (except the last, shifted one)."""
        return self.tile_size - self.overlap

    @property
    def col_origins(self) -> AxisOrigins:
        """Tile origins along x."""
        return self._cols

    @property
    def row_origins(self) -> AxisOrigins:
        """Tile origins along y."""
        return self._rows

    @property
    def n_cols(self) -> int:
        return len(self._cols)

    @property
    def n_rows(self) -> int:
        return len(self._rows)

    @property
    def n_tiles(self) -> int:
        return self.n_cols * self.n_rows

    def _check(self, col: int, row: int) -> None:
        if not (0 <= col < self.n_cols and 0 <= row < self.n_rows):
            raise IndexError(
                f"tile ({col}, {row}) is outside the grid of {self.n_cols} x {self.n_rows} tiles"
            )

    def tile(self, col: int, row: int) -> Window:
        """The window to read for tile ``(col, row)``: always ``tile_size`` square.

        It extends past the image only along an axis shorter than a tile (the reader pads).
        """
        self._check(col, row)
        return Window(self._cols[col], self._rows[row], self.tile_size, self.tile_size)

    def core(self, col: int, row: int) -> Window:
        """The part of the image tile ``(col, row)`` owns; cores partition the image."""
        self._check(col, row)
        x0, x1 = self._cols.core_bounds(col)
        y0, y1 = self._rows.core_bounds(row)
        return Window(x0, y0, x1 - x0, y1 - y0)

    def tile_at(self, index: int) -> tuple[int, int]:
        """``(col, row)`` of the tile with row-major ``index``."""
        if not 0 <= index < self.n_tiles:
            raise IndexError(f"tile index {index} out of range; the grid has {self.n_tiles} tiles")
        row, col = divmod(index, self.n_cols)
        return col, row

    def index_of(self, col: int, row: int) -> int:
        """Row-major index of tile ``(col, row)`` (the inverse of :meth:`tile_at`)."""
        self._check(col, row)
        return row * self.n_cols + col
