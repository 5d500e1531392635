"""Segmentation cores: regions partition the image, blending sees every covering tile, and the
canvas is exact whatever order its tiles arrive in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilerunner.errors import ModelError
from tilerunner.merging.segment import (
    SegmentCanvas,
    blend_weights,
    class_counts,
    region_core,
    region_tiles,
)
from tilerunner.tiling import RegionGrid, TileGrid


@settings(max_examples=30, deadline=None)
@given(
    width=st.integers(1, 200),
    height=st.integers(1, 200),
    tile=st.integers(16, 80),
    overlap_share=st.floats(0.0, 0.9),
    per_region=st.integers(1, 4),
)
def test_region_cores_partition_the_image(
    width: int, height: int, tile: int, overlap_share: float, per_region: int
) -> None:
    grid = TileGrid(width, height, tile, int(tile * overlap_share))
    regions = RegionGrid(grid, per_region)
    cover = np.zeros((height, width), dtype=np.int64)
    for region in regions.regions():
        core = region_core(regions, region)
        cover[core.row_off : core.row_end, core.col_off : core.col_end] += 1
        for blend in ("none", "cosine"):
            tiles = region_tiles(regions, region, blend)  # type: ignore[arg-type]
            seen = np.zeros_like(cover)
            for t in tiles:
                w = t.window
                seen[max(0, w.row_off) : w.row_end, max(0, w.col_off) : w.col_end] = 1
            assert seen[core.row_off : core.row_end, core.col_off : core.col_end].all()
        # blending runs every tile whose window reaches into the core, and no other
        wanted = {
            (c, r)
            for r in range(grid.n_rows)
            for c in range(grid.n_cols)
            if grid.tile(c, r).intersection(core) is not None
        }
        assert {(t.col, t.row) for t in region_tiles(regions, region, "linear")} == wanted
    assert (cover == 1).all()


@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_blend_weights_fall_towards_edges_and_stay_positive(blend: str) -> None:
    weights = blend_weights(64, 16, blend)  # type: ignore[arg-type]
    assert weights.min() > 0 and weights[32, 32] == 1.0
    assert weights[0, 32] < weights[8, 32] < weights[15, 32] <= 1.0


def test_blend_is_the_same_in_any_tile_order() -> None:
    grid = TileGrid(150, 110, 48, 20)
    regions = RegionGrid(grid, 2)
    region = regions.region(1)
    tiles = region_tiles(regions, region, "cosine")
    rng = np.random.default_rng(4)
    probs = {t: rng.random((3, 48, 48)).astype(np.float32) for t in tiles}
    results = []
    for order in (list(tiles), list(reversed(tiles))):
        canvas = SegmentCanvas(region_core(regions, region), 48, 20, blend="cosine")
        for t in order:
            canvas.add(t, None, probs[t])
        canvas.finish()
        assert canvas.probabilities is not None and canvas.filled.all()
        results.append((canvas.ids.copy(), canvas.probabilities.copy()))
    assert np.array_equal(results[0][0], results[1][0])
    assert results[0][1].tobytes() == results[1][1].tobytes()


def test_class_ids_beyond_the_raster_are_refused() -> None:
    grid = TileGrid(40, 40, 40, 0)
    regions = RegionGrid(grid, 1)
    canvas = SegmentCanvas(region_core(regions, regions.region(0)), 40, 0, max_class=254)
    (tile,) = region_tiles(regions, regions.region(0), "none")
    with pytest.raises(ModelError, match="class id 255"):
        canvas.add(tile, np.full((40, 40), 255, dtype=np.int64), None)
    with pytest.raises(ModelError, match="returns probabilities"):
        SegmentCanvas(canvas.core, 40, 0, keep_probabilities=True).add(
            tile, np.zeros((40, 40), dtype=np.int64), None
        )


def test_class_counts_match_a_count_of_the_valid_pixels() -> None:
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 7, size=(700, 333)).astype(np.uint16)  # more rows than one band
    valid = rng.random(ids.shape) > 0.05
    valid[300:, :] = True  # bands with and without invalid pixels
    values, counts = np.unique(ids[valid], return_counts=True)
    assert class_counts(ids, valid) == dict(zip(values.tolist(), counts.tolist(), strict=True))
    values, counts = np.unique(ids, return_counts=True)
    assert class_counts(ids, None) == dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert class_counts(ids, np.zeros(ids.shape, dtype=np.bool_)) == {}
