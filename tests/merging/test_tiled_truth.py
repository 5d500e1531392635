"""End-to-end correctness of tiling + ownership + merging with a detector that sees only its tile.

The simulated detector reports, for each tile, every true box that intersects the tile window,
clipped to the window and in tile pixels (as a real model sees a tree cut by the tile edge).
Keeping what each tile owns must give back the true boxes exactly: none missing, none twice,
none partial, whatever the region size, and merging must leave that set unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tilerunner.merging import MergeParams, clip_boxes, merge, owned_mask, tile_to_image
from tilerunner.tiling import RegionGrid, TileGrid, Window

DATA = Path(__file__).resolve().parents[1] / "data"
OSBS_CSV = DATA / "OSBS_029.csv"


def osbs_truth() -> np.ndarray:
    return np.loadtxt(OSBS_CSV, delimiter=",", skiprows=1, usecols=(1, 2, 3, 4), ndmin=2)


def detect_in_tile(truth: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Boxes in tile pixels, each true box clipped to the tile, and which truth row it came from."""
    offset = np.array([window.col_off, window.row_off] * 2, dtype=np.float64)
    local = truth - offset
    local[:, 0::2] = np.clip(local[:, 0::2], 0, window.width)
    local[:, 1::2] = np.clip(local[:, 1::2], 0, window.height)
    seen = (local[:, 2] > local[:, 0]) & (local[:, 3] > local[:, 1])
    return local[seen], np.flatnonzero(seen)


def run_tiles(
    truth: np.ndarray, grid: TileGrid, region_tiles: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Owned boxes (full-image pixels) over all regions and tiles, and their truth rows."""
    regions = RegionGrid(grid, region_tiles)
    kept_boxes, kept_rows = [], []
    for region in regions.regions():
        for ref in regions.tiles(region):
            local, rows = detect_in_tile(truth, ref.window)
            boxes = clip_boxes(tile_to_image(local, ref.window), grid.width, grid.height)
            owned = owned_mask(boxes, ref.core, grid.width, grid.height)
            kept_boxes.append(boxes[owned])
            kept_rows.append(rows[owned])
    return np.concatenate(kept_boxes), np.concatenate(kept_rows)


def assert_same_box_set(got: np.ndarray, truth: np.ndarray) -> None:
    assert len(got) == len(truth)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, truth.tolist()))


def check_exact_recovery(truth: np.ndarray, grid: TileGrid) -> None:
    boxes, rows = run_tiles(truth, grid)
    assert_same_box_set(boxes, truth)
    assert sorted(rows.tolist()) == list(range(len(truth)))  # each object exactly once
    assert np.array_equal(boxes, truth[rows])  # at full extent, not clipped

    for region_tiles in (1, 3, 8):  # the region size changes nothing
        other, _ = run_tiles(truth, grid, region_tiles)
        assert_same_box_set(other, truth)

    scores = np.linspace(0.99, 0.5, len(truth))[rows]
    for method in ("nms", "nmm", "soft-nms"):
        merged = merge(boxes, scores, np.zeros(len(boxes), dtype=np.int64), MergeParams(method))
        assert_same_box_set(merged.boxes, truth)


@pytest.mark.parametrize(("tile_size", "overlap"), [(128, 64), (160, 80), (100, 64), (512, 0)])
def test_osbs_trees_are_recovered_exactly(tile_size: int, overlap: int) -> None:
    truth = osbs_truth()
    assert truth.shape == (61, 4)
    largest = int(max((truth[:, 2] - truth[:, 0]).max(), (truth[:, 3] - truth[:, 1]).max()))
    assert largest == 64  # the grids above use an even overlap >= the largest side
    grid = TileGrid(400, 400, tile_size=tile_size, overlap=overlap)
    assert grid.n_tiles > 1 or tile_size >= 400
    check_exact_recovery(truth, grid)


def test_osbs_with_too_small_an_overlap_shows_the_failure_the_rule_prevents() -> None:
    truth = osbs_truth()
    boxes, _ = run_tiles(truth, TileGrid(400, 400, tile_size=128, overlap=16))
    got = set(map(tuple, boxes.tolist()))
    assert got != set(map(tuple, truth.tolist()))  # partial boxes replace some true ones


def synthetic_truth(seed: int, width: int, height: int, n: int, max_side: float) -> np.ndarray:
    """``n`` seeded boxes no larger than ``max_side``, no two with IoU above 0.3."""
    rng = np.random.default_rng(seed)
    boxes: list[np.ndarray] = []
    while len(boxes) < n:
        size = rng.uniform(2.0, max_side, 2)
        corner = rng.uniform(0, 1, 2) * (np.array([width, height]) - size)
        box = np.concatenate([corner, corner + size])
        if boxes:
            others = np.array(boxes)
            w = np.clip(
                np.minimum(others[:, 2], box[2]) - np.maximum(others[:, 0], box[0]), 0, None
            )
            h = np.clip(
                np.minimum(others[:, 3], box[3]) - np.maximum(others[:, 1], box[1]), 0, None
            )
            inter = w * h
            areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
            if (inter / (areas + size.prod() - inter)).max() > 0.3:
                continue
        boxes.append(box)
    return np.array(boxes)


@pytest.mark.parametrize(("tile_size", "overlap"), [(256, 64), (300, 100)])
def test_synthetic_boxes_on_a_large_image_are_recovered_exactly(
    tile_size: int, overlap: int
) -> None:
    truth = synthetic_truth(seed=7, width=3000, height=2000, n=500, max_side=overlap)
    check_exact_recovery(truth, TileGrid(3000, 2000, tile_size=tile_size, overlap=overlap))


def test_synthetic_boxes_on_an_image_smaller_than_a_tile() -> None:
    truth = synthetic_truth(seed=3, width=200, height=90, n=40, max_side=30)
    check_exact_recovery(truth, TileGrid(200, 90, tile_size=256, overlap=32))


@pytest.mark.parametrize(
    ("overlap", "side", "exact"), [(64, 64, True), (65, 64, True), (65, 65, False)]
)
def test_the_size_limit_is_twice_half_the_overlap(overlap: int, side: int, exact: bool) -> None:
    """Cores split an odd overlap one pixel short of its middle, so the limit is overlap - 1."""
    rng = np.random.default_rng(11)
    corners = np.floor(rng.uniform(0, 1, (2000, 2)) * (np.array([1500, 1000]) - side) * 2) / 2
    truth = np.concatenate([corners, corners + side], axis=1)  # half-pixel grid hits the seams
    boxes, _ = run_tiles(truth, TileGrid(1500, 1000, tile_size=256, overlap=overlap))
    recovered = sorted(map(tuple, boxes.tolist())) == sorted(map(tuple, truth.tolist()))
    assert recovered is exact
