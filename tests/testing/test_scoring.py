"""Seam scoring: the counts that the peer benchmark's accuracy table rests on, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tilerunner.merging import clip_boxes, owned_mask, tile_to_image
from tilerunner.testing import TruthDetector
from tilerunner.testing.scoring import SeamScore, score_detections
from tilerunner.tiling import TileGrid

TRUTH = np.array(
    [
        [10.0, 10.0, 50.0, 50.0],  # t0: found, and found again one pixel off (a duplicate)
        [100.0, 10.0, 140.0, 50.0],  # t1: only its left half is reported (a partial), so missing
        [200.0, 10.0, 240.0, 50.0],  # t2: nothing reported at all, missing
        [300.0, 10.0, 340.0, 50.0],  # t3: found exactly once
    ]
)


def test_hand_made_case_counts_each_failure_once() -> None:
    predicted = np.array(
        [
            [10.0, 10.0, 50.0, 50.0],
            [11.0, 10.0, 51.0, 50.0],  # IoU 39/41 = 0.95 with t0: a second full detection
            [100.0, 10.0, 120.0, 50.0],  # IoU 0.5 with t1
            [300.0, 10.0, 340.0, 50.0],
            [500.0, 500.0, 520.0, 520.0],  # overlaps no truth box
        ]
    )
    score = score_detections(predicted, TRUTH)
    assert score == SeamScore(
        truth=4, predicted=5, found=2, duplicates=1, partials=1, missing=2, spurious=1
    )
    assert score.found + score.missing == score.truth


def test_a_box_is_matched_to_the_truth_it_overlaps_most() -> None:
    truth = np.array([[0.0, 0.0, 40.0, 40.0], [38.0, 0.0, 78.0, 40.0]])
    # overlaps both; IoU 0.95 with the second, about 0.03 with the first
    predicted = np.array([[39.0, 0.0, 78.0, 40.0]])
    score = score_detections(predicted, truth)
    assert (score.found, score.partials, score.missing, score.spurious) == (1, 0, 1, 0)


def test_full_iou_threshold_decides_full_or_partial() -> None:
    predicted = np.array([[10.0, 10.0, 46.0, 50.0]])  # IoU 0.9 with t0 exactly
    assert score_detections(predicted, TRUTH[:1]).found == 1
    strict = score_detections(predicted, TRUTH[:1], full_iou=0.95)
    assert (strict.found, strict.partials, strict.missing) == (0, 1, 1)


def test_touching_boxes_do_not_match() -> None:
    score = score_detections(np.array([[50.0, 10.0, 90.0, 50.0]]), TRUTH[:1])
    assert (score.spurious, score.partials, score.missing) == (1, 0, 1)


def test_nothing_predicted_or_no_truth() -> None:
    assert score_detections(np.zeros((0, 4)), TRUTH) == SeamScore(4, 0, 0, 0, 0, 4, 0)
    assert score_detections(TRUTH, np.zeros((0, 4))) == SeamScore(0, 4, 0, 0, 0, 0, 4)
    with pytest.raises(ValueError, match="full_iou"):
        score_detections(TRUTH, TRUTH, full_iou=0.0)


def test_raw_tiles_and_owned_tiles_of_a_seam_object() -> None:
    """A square across the seam of two tiles: every tile's raw boxes give one full box, one
    partial; keeping what each tile owns gives the square once, whole."""
    grid = TileGrid(200, 100, tile_size=100, overlap=20)  # origins 0, 80, 100 along x
    truth = np.array([[90.0, 40.0, 110.0, 60.0]])  # cut by the edge x = 100 of the first tile
    detector = TruthDetector(truth)
    raw, owned = [], []
    for row in range(grid.n_rows):
        for col in range(grid.n_cols):
            window = grid.tile(col, row)
            boxes = tile_to_image(detector.in_window(window)["boxes"], window)
            boxes = clip_boxes(boxes, grid.width, grid.height)
            raw.append(boxes)
            owned.append(boxes[owned_mask(boxes, grid.core(col, row), grid.width, grid.height)])
    raw_score = score_detections(np.concatenate(raw), truth)
    assert (raw_score.found, raw_score.duplicates, raw_score.partials) == (1, 0, 2)
    assert score_detections(np.concatenate(owned), truth) == SeamScore(1, 1, 1, 0, 0, 0, 0)
