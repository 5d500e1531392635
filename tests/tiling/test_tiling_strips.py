"""Strip plans: every tile in exactly one strip, no row fetched twice, the budget honoured."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tilerunner.tiling import RegionGrid, TileGrid, Window
from tilerunner.tiling.strips import plan_strips


@st.composite
def cases(draw: st.DrawFn) -> tuple[TileGrid, int, int, int, int]:
    tile = draw(st.integers(16, 96))
    overlap = draw(st.integers(0, tile - 1))
    width = draw(st.integers(1, 400))
    height = draw(st.integers(1, 400))
    region_tiles = draw(st.integers(2, 6))
    block = draw(st.sampled_from([1, 16, 64, 128, 256]))
    budget = draw(st.integers(0, 400_000))
    return (
        TileGrid(width, height, tile, overlap),
        region_tiles,
        block,
        budget,
        draw(st.integers(1, 4)),
    )


@settings(max_examples=60, deadline=None)
@given(cases())
def test_plans_cover_each_tile_once_fetch_each_row_once_and_keep_the_budget(
    case: tuple[TileGrid, int, int, int, int],
) -> None:
    grid, region_tiles, block, budget, bpp = case
    regions = RegionGrid(grid, region_tiles)
    for region in regions.regions():
        windows = [t.window for t in regions.tiles(region)]
        inside = [w.clip(grid.width, grid.height) for w in windows]
        last_row = max(w.row_end for w in inside if w is not None)
        strips = plan_strips(
            windows, grid.width, grid.height,
            block_height=block, budget_bytes=budget, bytes_per_pixel=bpp,
        )  # fmt: skip
        assigned = [i for s in strips for i in s.tiles]
        assert sorted(assigned) == list(range(len(windows)))  # each tile once (all inside)
        fetched: list[int] = []
        held_bottom = 0
        for strip in strips:
            w = strip.window
            assert w.row_off >= 0 and w.row_end <= grid.height and w.col_end <= grid.width
            for i in strip.tiles:  # the strip holds its tiles' pixels inside the image
                clipped = inside[i]
                assert clipped is not None and w.contains(clipped)
            if strip.fetch is not None:
                f = strip.fetch
                assert (f.col_off, f.width, f.row_end) == (w.col_off, w.width, w.row_end)
                assert f.row_off == max(w.row_off, held_bottom)  # carried rows are not fetched
                fetched.extend(range(f.row_off, f.row_end))
            else:
                assert w.row_end <= held_bottom  # everything carried
            held_bottom = max(held_bottom, w.row_end)
            # a strip ends on a block edge, at the image's end or at the region's last row
            assert w.row_end % block == 0 or w.row_end in (grid.height, last_row)
            # the budget holds unless a single tile row (up to its block edge) exceeds it
            rows_in_strip = {windows[i].row_off for i in strip.tiles}
            if len(rows_in_strip) > 1:
                assert w.area * bpp <= budget
        assert len(fetched) == len(set(fetched))  # no row, hence no block, fetched twice


def test_one_region_is_one_strip_within_the_budget_and_tile_rows_without() -> None:
    grid = TileGrid(960, 960, 512, 64)  # origins 0 and 448
    windows = [grid.tile(c, r) for r in range(2) for c in range(2)]
    [whole] = plan_strips(windows, 960, 960, block_height=384, budget_bytes=10**9,
                          bytes_per_pixel=3)  # fmt: skip
    assert whole.window == whole.fetch == Window(0, 0, 960, 960)
    first, second = plan_strips(windows, 960, 960, block_height=384, budget_bytes=1,
                                bytes_per_pixel=3)  # fmt: skip
    assert first.window == first.fetch == Window(0, 0, 960, 768)  # tile row 0, to a block edge
    assert second.window == Window(0, 448, 960, 512)  # tile row 1
    assert second.fetch == Window(0, 768, 960, 192)  # rows 448..768 are carried
    assert (first.tiles, second.tiles) == ((0, 1), (2, 3))


def test_windows_outside_the_image_get_no_strip() -> None:
    assert plan_strips([Window(500, 500, 64, 64)], 100, 100, block_height=16,
                       budget_bytes=1, bytes_per_pixel=1) == []  # fmt: skip
