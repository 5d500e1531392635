"""The shipped fake models behave as documented (other packages' tests rely on them)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilerunner.models import ClassScores, Detections, load_model, wrap_model
from tilerunner.testing.models import (
    ConstantClassifier,
    FakeDetector,
    MalformedModel,
    SleepModel,
    TruthDetector,
    _all_at_least,
    bright_boxes,
)
from tilerunner.tiling import TileGrid, Window


def test_fake_detector_finds_painted_squares_exactly() -> None:
    tiles = np.full((2, 64, 64, 3), 90, np.uint8)
    tiles[0, 10:20, 5:15] = 255
    tiles[0, 30:50, 40:44] = 252
    tiles[0, 0:3, 60:64] = 255  # at the tile edge
    tiles[0, 55:60, 5:10, 1] = 255  # bright in one channel only: not a detection
    (first, second) = wrap_model(FakeDetector(), name="fake", spec="x:F").predict(tiles)
    assert isinstance(first, Detections) and isinstance(second, Detections)
    assert first.boxes.tolist() == [[60, 0, 64, 3], [5, 10, 15, 20], [40, 30, 44, 50]]
    assert first.scores.tolist() == [1.0, 1.0, 1.0] and first.labels.tolist() == [0, 0, 0]
    assert len(second) == 0


@settings(max_examples=30, deadline=None)
@given(
    channels=st.integers(1, 5),
    threshold=st.integers(0, 255),
    seed=st.integers(0, 2**32 - 1),
)
def test_fake_detector_mask_is_every_channel_at_least_the_threshold(
    channels: int, threshold: int, seed: int
) -> None:
    tile = np.random.default_rng(seed).integers(0, 256, (24, 20, channels), dtype=np.uint8)
    expected = (tile >= threshold).all(axis=2)
    assert np.array_equal(_all_at_least(tile, threshold), expected)


def test_fake_detector_min_size_ignores_specks() -> None:
    tile = np.zeros((1, 32, 32, 3), np.uint8)
    tile[0, 2, 2] = 255
    tile[0, 10:20, 10:20] = 255
    (out,) = FakeDetector(min_size="3").predict(tile)
    assert out["boxes"].tolist() == [[10, 10, 20, 20]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 14),
                          st.integers(1, 14)), max_size=10))  # fmt: skip
def test_bright_boxes_recovers_separated_rectangles(
    cells: list[tuple[int, int, int, int]],
) -> None:
    """Rectangles in distinct cells of a 4 x 4 grid of 16 px (gap >= 2 px) come back exactly."""
    mask = np.zeros((64, 64), bool)
    expected = set()
    for col, row, w, h in {(c, r): (c, r, w, h) for c, r, w, h in cells}.values():
        x0, y0 = col * 16 + 1, row * 16 + 1
        mask[y0 : y0 + h, x0 : x0 + w] = True
        expected.add((x0, y0, x0 + w, y0 + h))
    assert set(bright_boxes(mask)) == expected


def test_truth_detector_replays_osbs_boxes_per_window(osbs_truth_csv: Path) -> None:
    model = load_model(
        "tilerunner.testing.models:TruthDetector", {"truth": str(osbs_truth_csv)}, name="truth"
    )
    assert model.wants_windows and model.classes == ["Tree"]
    truth = TruthDetector(osbs_truth_csv).boxes
    assert truth.shape == (61, 4)
    grid = TileGrid(400, 400, 128, 32)
    windows = [grid.tile(*grid.tile_at(i)) for i in range(grid.n_tiles)]
    outputs = model.predict(np.zeros((len(windows), 128, 128, 3), np.uint8), windows)
    seen = np.zeros(len(truth), bool)
    for window, out in zip(windows, outputs, strict=True):
        assert isinstance(out, Detections)
        assert (out.boxes >= 0).all() and (out.boxes <= 128).all()
        back = out.boxes + [window.col_off, window.row_off] * 2
        for box in back:  # every returned box is a truth box clipped to this window
            clipped = np.clip(truth, [window.col_off, window.row_off] * 2,
                              [window.col_end, window.row_end] * 2)  # fmt: skip
            match = np.flatnonzero(np.all(np.isclose(clipped, box), axis=1))
            assert match.size >= 1
            seen[match] = True
    assert seen.all()


def test_truth_detector_clips_and_keeps_scores() -> None:
    model = TruthDetector([[10, 10, 30, 30], [100, 100, 110, 110]], scores="0.5,0.9", labels="1,2")
    out = model.predict(np.zeros((1, 20, 20, 3), np.uint8), [Window(20, 0, 20, 20)])[0]
    assert out["boxes"].tolist() == [[0, 10, 10, 20]]
    assert out["scores"].tolist() == [0.5] and out["labels"].tolist() == [1]


def test_sleep_model_sleeps_per_batch_and_tile() -> None:
    model = SleepModel(seconds_per_batch="0.02", seconds_per_tile="0.01")
    start = time.perf_counter()
    out = model.predict(np.zeros((3, 4, 4, 3), np.uint8))
    assert time.perf_counter() - start >= 0.05
    assert len(out) == 3 and all(len(o["boxes"]) == 0 for o in out)


def test_constant_classifier_and_argument_checks() -> None:
    model = load_model(
        "tilerunner.testing.models:ConstantClassifier", {"scores": "0.1,0.9", "classes": "a,b"}
    )
    (out,) = model.predict(np.zeros((1, 4, 4, 3), np.uint8))
    assert isinstance(out, ClassScores) and out.scores.tolist() == [0.1, 0.9]
    assert model.label(1) == "b"
    with pytest.raises(ValueError, match="2 classes but 3 scores"):
        ConstantClassifier("1,2,3", "a,b")
    with pytest.raises(ValueError, match="kind must be one of"):
        MalformedModel("weird")
