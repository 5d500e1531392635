"""The global tile grid: origins, coverage, full-size tiles and cores that partition the image."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tilerunner.errors import InvalidRequestError
from tilerunner.tiling import TileGrid, Window, axis_origins


@st.composite
def grids(draw: st.DrawFn, max_size: int = 200, min_tile: int = 6) -> TileGrid:
    tile_size = draw(st.integers(min_tile, 64))
    overlap = draw(st.integers(0, tile_size - 1))
    width = draw(st.integers(1, max_size))
    height = draw(st.integers(1, max_size))
    return TileGrid(width, height, tile_size, overlap)


def paint(grid: TileGrid, which: str) -> np.ndarray:
    """Count, per pixel, how many tile windows (or cores) cover it; must stay inside the image."""
    canvas = np.zeros((grid.height, grid.width), dtype=np.int32)
    for index in range(grid.n_tiles):
        col, row = grid.tile_at(index)
        window = grid.tile(col, row) if which == "tile" else grid.core(col, row)
        clipped = window.clip(grid.width, grid.height)
        assert clipped is not None
        canvas[clipped.row_off : clipped.row_end, clipped.col_off : clipped.col_end] += 1
    return canvas


# --- the axis formula ------------------------------------------------------------------------


def test_axis_origins_follow_the_stride_and_shift_the_last_tile() -> None:
    assert list(axis_origins(1000, 256, 192)) == [0, 192, 384, 576, 744]


def test_axis_origins_do_not_duplicate_a_tile_that_already_ends_at_the_edge() -> None:
    assert list(axis_origins(640, 256, 192)) == [0, 192, 384]


def test_axis_shorter_than_a_tile_gets_one_padded_tile() -> None:
    assert list(axis_origins(100, 256, 192)) == [0]
    assert list(axis_origins(256, 256, 192)) == [0]


def test_axis_origins_support_negative_indices_and_slices() -> None:
    origins = axis_origins(1000, 256, 192)
    assert origins[-1] == 744
    assert origins[1:3] == [192, 384]
    with pytest.raises(IndexError, match="out of range"):
        origins[5]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 600), st.data())
def test_axis_origins_cover_the_axis_with_full_tiles(
    length: int, tile: int, data: st.DataObject
) -> None:
    stride = data.draw(st.integers(1, tile))
    origins = axis_origins(length, tile, stride)
    values = np.array(list(origins))
    assert len(values) == len(origins)
    assert values[0] == 0
    assert (np.diff(values) > 0).all() and (np.diff(values) <= stride).all()
    if length <= tile:
        assert values.tolist() == [0]
    else:
        assert values[-1] + tile == length
        assert (np.diff(values)[:-1] == stride).all()
    starts = [origins.core_bounds(i)[0] for i in range(len(origins))]
    ends = [origins.core_bounds(i)[1] for i in range(len(origins))]
    assert starts[0] == 0 and ends[-1] == length
    assert starts[1:] == ends[:-1]
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    for i in range(1, len(origins)):
        assert starts[i] == (values[i - 1] + values[i] + tile) // 2


# --- the 2-D grid -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(grids())
def test_every_pixel_is_covered_by_some_tile(grid: TileGrid) -> None:
    assert (paint(grid, "tile") >= 1).all()


@settings(max_examples=150, deadline=None)
@given(grids())
def test_tiles_are_full_size_and_inside_the_image_unless_it_is_smaller(grid: TileGrid) -> None:
    for index in range(grid.n_tiles):
        window = grid.tile(*grid.tile_at(index))
        assert (window.width, window.height) == (grid.tile_size, grid.tile_size)
        assert window.col_off >= 0 and window.row_off >= 0
        if grid.width >= grid.tile_size:
            assert window.col_end <= grid.width
        else:
            assert window.col_off == 0
        if grid.height >= grid.tile_size:
            assert window.row_end <= grid.height
        else:
            assert window.row_off == 0


@settings(max_examples=150, deadline=None)
@given(grids())
def test_cores_partition_the_image_and_lie_inside_their_tiles(grid: TileGrid) -> None:
    areas = 0
    for index in range(grid.n_tiles):
        col, row = grid.tile_at(index)
        core = grid.core(col, row)
        assert core.clip(grid.width, grid.height) == core
        assert grid.tile(col, row).contains(core)
        areas += core.area
    assert areas == grid.width * grid.height
    assert (paint(grid, "core") == 1).all()


@settings(max_examples=100, deadline=None)
@given(grids(max_size=40, min_tile=1))
def test_tiny_tiles_and_tiny_images_still_partition(grid: TileGrid) -> None:
    assume(grid.n_tiles <= 2000)
    assert (paint(grid, "tile") >= 1).all()
    assert (paint(grid, "core") == 1).all()


def test_image_smaller_than_one_tile() -> None:
    grid = TileGrid(100, 50, tile_size=256, overlap=64)
    assert (grid.n_cols, grid.n_rows, grid.n_tiles) == (1, 1, 1)
    assert grid.tile(0, 0) == Window(0, 0, 256, 256)
    assert grid.core(0, 0) == Window(0, 0, 100, 50)


def test_one_pixel_wide_image() -> None:
    grid = TileGrid(1, 1000, tile_size=256, overlap=32)
    assert grid.n_cols == 1 and grid.n_rows == 5
    assert [grid.tile(0, r).row_off for r in range(grid.n_rows)] == [0, 224, 448, 672, 744]
    cores = [grid.core(0, r) for r in range(grid.n_rows)]
    assert all(c.col_off == 0 and c.width == 1 for c in cores)
    assert sum(c.height for c in cores) == 1000
    assert (paint(grid, "core") == 1).all()


def test_core_boundary_is_the_middle_of_the_overlap() -> None:
    grid = TileGrid(1000, 300, tile_size=256, overlap=64)
    # tiles at 0 and 192 overlap on [192, 256): the boundary is 224; the last tile (744) overlaps
    # the one at 576 by 88 px, and the boundary is the middle of that larger overlap.
    assert grid.core(0, 0).col_end == 224
    assert grid.core(4, 0) == Window(788, 0, 212, 150)  # rows at 0 and 44: (0+44+256)//2


def test_tile_index_round_trip_and_bounds() -> None:
    grid = TileGrid(1000, 700, tile_size=256, overlap=64)
    assert (grid.n_cols, grid.n_rows) == (5, 4)
    assert [grid.index_of(*grid.tile_at(i)) for i in range(grid.n_tiles)] == list(range(20))
    assert grid.tile_at(7) == (2, 1)
    with pytest.raises(IndexError, match="20 tiles"):
        grid.tile_at(20)
    with pytest.raises(IndexError, match="outside the grid"):
        grid.tile(5, 0)
    with pytest.raises(IndexError, match="outside the grid"):
        grid.core(0, -1)


def test_numpy_integers_are_accepted_as_plain_ints() -> None:
    grid = TileGrid(np.int64(300), np.int32(200), np.int64(64), np.int16(8))  # type: ignore[arg-type]
    assert type(grid.width) is int and grid == TileGrid(300, 200, 64, 8)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (400, 400, 256, 256),
            r"tile size \(256\) must be larger than overlap \(256\); lower --overlap",
        ),
        ((400, 400, 256, 300), r"raise --tile-size"),
        ((400, 400, 256, -1), r"overlap \(-1\) must not be negative"),
        ((400, 400, 0, 0), r"tile size \(0\) must be at least 1; raise --tile-size"),
        ((0, 400, 256, 0), r"image size \(0 x 400\)"),
        ((400, 400, 256.5, 0), r"tile size must be a whole number"),
    ],
)
def test_invalid_options_say_what_to_change(args: tuple[int, ...], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        TileGrid(*args)


def test_invalid_axis_arguments() -> None:
    with pytest.raises(InvalidRequestError, match="at least 1"):
        axis_origins(0, 256, 192)
    with pytest.raises(InvalidRequestError, match="must not exceed the tile size"):
        axis_origins(1000, 256, 300)


def test_huge_grid_costs_no_memory() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        grid = TileGrid(1_000_000, 1_000_000, tile_size=512, overlap=64)
        n_tiles = grid.n_tiles
        last = grid.tile(grid.n_cols - 1, grid.n_rows - 1)
        core = grid.core(grid.n_cols - 1, grid.n_rows - 1)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert allocated < 1_000_000
    assert n_tiles == 2232 * 2232
    assert (last.col_end, last.row_end) == (1_000_000, 1_000_000)
    assert (core.col_end, core.row_end) == (1_000_000, 1_000_000)
