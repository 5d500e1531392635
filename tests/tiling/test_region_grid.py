"""Regions are blocks of whole tiles of one global grid: region size never changes the tiles."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tilerunner.errors import InvalidRequestError
from tilerunner.tiling import Region, RegionGrid, TileGrid, TileRef


@st.composite
def grids(draw: st.DrawFn) -> TileGrid:
    tile_size = draw(st.integers(4, 64))
    overlap = draw(st.integers(0, tile_size - 1))
    grid = TileGrid(draw(st.integers(1, 600)), draw(st.integers(1, 600)), tile_size, overlap)
    assume(grid.n_tiles <= 2500)  # keeps the set comparison quick; shapes still vary widely
    return grid


def grid_tile_set(grid: TileGrid) -> set[TileRef]:
    refs = set()
    for index in range(grid.n_tiles):
        col, row = grid.tile_at(index)
        refs.add(TileRef(col, row, grid.tile(col, row), grid.core(col, row)))
    return refs


@settings(max_examples=100, deadline=None)
@given(grids())
def test_union_of_region_tiles_is_the_grid_whatever_the_region_size(grid: TileGrid) -> None:
    expected = grid_tile_set(grid)
    for region_tiles in (1, 3, 8):
        regions = RegionGrid(grid, region_tiles)
        listed = [ref for region in regions.regions() for ref in regions.tiles(region)]
        assert len(listed) == len(expected)  # no tile in two regions
        assert set(listed) == expected
        assert sum(region.n_tiles for region in regions.regions()) == grid.n_tiles


def test_regions_are_row_major_and_edge_regions_are_smaller() -> None:
    grid = TileGrid(1000, 700, tile_size=256, overlap=64)  # 5 x 4 tiles
    regions = RegionGrid(grid, 2)
    assert (regions.n_cols, regions.n_rows, regions.n_regions) == (3, 2, 6)
    assert regions.region(0) == Region(0, 0, 0, 2, 2)
    assert regions.region(2) == Region(2, 4, 0, 1, 2)
    assert regions.region(5) == Region(5, 4, 2, 1, 2)
    assert [r.index for r in regions.regions()] == list(range(6))
    refs = list(regions.tiles(regions.region(1)))
    assert [(r.col, r.row) for r in refs] == [(2, 0), (3, 0), (2, 1), (3, 1)]
    assert refs[0].window == grid.tile(2, 0) and refs[0].core == grid.core(2, 0)


def test_from_pixels_rounds_down_to_whole_tiles_but_never_below_one() -> None:
    grid = TileGrid(10_000, 10_000, tile_size=512, overlap=64)  # stride 448
    assert RegionGrid.from_pixels(grid, 4096).region_tiles == 9
    assert RegionGrid.from_pixels(grid, 100).region_tiles == 1
    with pytest.raises(InvalidRequestError, match="raise --region-size"):
        RegionGrid.from_pixels(grid, 0)
    with pytest.raises(InvalidRequestError, match="at least 1"):
        RegionGrid(grid, 0)


def test_region_index_out_of_range() -> None:
    regions = RegionGrid(TileGrid(1000, 700, tile_size=256, overlap=64), 2)
    with pytest.raises(IndexError, match=r"6 regions \(0 to 5\)"):
        regions.region(6)
    with pytest.raises(IndexError):
        regions.region(-1)


def test_image_smaller_than_a_tile_is_one_region_of_one_tile() -> None:
    regions = RegionGrid.from_pixels(TileGrid(30, 1, tile_size=512, overlap=64), 4096)
    assert regions.n_regions == 1
    (ref,) = regions.tiles(regions.region(0))
    assert (ref.col, ref.row, ref.window.width, ref.core.width, ref.core.height) == (
        0,
        0,
        512,
        30,
        1,
    )


def test_huge_grid_lists_a_region_instantly_in_constant_memory() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        grid = TileGrid(1_000_000, 1_000_000, tile_size=512, overlap=64)
        regions = RegionGrid.from_pixels(grid, 4096)
        n_regions = regions.n_regions
        after = tracemalloc.take_snapshot()
        region = regions.region(12345)
        refs = list(regions.tiles(region))
    finally:
        tracemalloc.stop()
    assert sum(stat.size_diff for stat in after.compare_to(before, "filename")) < 1_000_000
    assert n_regions == 248 * 248  # 2232 tiles a side in blocks of 9
    assert (region.col0, region.row0) == ((12345 % 248) * 9, (12345 // 248) * 9)
    assert len(refs) == 81
    assert refs[0].window.col_off == region.col0 * 448
    assert all(ref.window.width == 512 for ref in refs)
