"""Score detections against known truth the way tiling fails: duplicates, partial boxes, misses.

A detector run tile by tile goes wrong at tile seams in three ways: it reports an object twice
(once from each tile that saw it), it reports the part of an object that one tile saw (a box
cut by the seam), or it loses the object. mAP folds all three into one number; comparing tiling
tools needs them counted apart, on a scene whose truth is known (objects placed across seams).

Matching, in pixel space (boxes ``[x0, y0, x1, y1]``):

* each predicted box is matched to the truth box it has the highest IoU with (ties go to the
  lower truth index); a prediction that overlaps no truth box is **spurious**;
* a matched prediction with IoU >= ``full_iou`` (default 0.9) is a **full** detection of its
  truth box, any other matched prediction is a **partial** one (what a tile edge cut off);
* **duplicates** are the full detections of a truth box beyond its first;
* a truth box with no full detection is **missing**, even when a partial box of it was
  reported: the object was not found at its extent. ``found + missing == truth``.

Pairs are found with a shapely ``STRtree`` over the truth boxes, so scoring a few million
predictions needs no ``N x M`` matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from tilerunner.merging import as_boxes

__all__ = ["SeamScore", "score_detections"]


@dataclass(frozen=True, slots=True)
class SeamScore:
    """Counts of one tool's boxes against the truth (see the module docstring)."""

    truth: int
    predicted: int
    found: int
    duplicates: int
    partials: int
    missing: int
    spurious: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise IoU of two ``[N, 4]`` box arrays."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    iou: NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def score_detections(predicted: ArrayLike, truth: ArrayLike, *, full_iou: float = 0.9) -> SeamScore:
    """Count found, duplicate, partial, missing and spurious boxes of ``predicted``."""
    if not 0.0 < full_iou <= 1.0:
        raise ValueError(f"full_iou ({full_iou}) must be in (0, 1]")
    pred, true = as_boxes(predicted), as_boxes(truth)
    n_pred, n_true = len(pred), len(true)
    if n_pred == 0 or n_true == 0:
        return SeamScore(n_true, n_pred, 0, 0, 0, n_true, n_pred)
    tree = shapely.STRtree(shapely.box(true[:, 0], true[:, 1], true[:, 2], true[:, 3]))
    pairs = tree.query(shapely.box(pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]))
    p_idx, t_idx = pairs[0].astype(np.int64), pairs[1].astype(np.int64)
    iou = _iou(pred[p_idx], true[t_idx])
    overlapping = iou > 0.0  # the tree also pairs boxes that only touch
    p_idx, t_idx, iou = p_idx[overlapping], t_idx[overlapping], iou[overlapping]
    order = np.lexsort((t_idx, -iou, p_idx))  # per prediction: best IoU first, then truth index
    p_idx, t_idx, iou = p_idx[order], t_idx[order], iou[order]
    best = np.ones(len(p_idx), dtype=bool)
    best[1:] = p_idx[1:] != p_idx[:-1]
    match_truth, match_iou = t_idx[best], iou[best]
    full = match_iou >= full_iou
    full_per_truth = np.bincount(match_truth[full], minlength=n_true)
    found = int(np.count_nonzero(full_per_truth))
    return SeamScore(
        truth=n_true,
        predicted=n_pred,
        found=found,
        duplicates=int(np.clip(full_per_truth - 1, 0, None).sum()),
        partials=int(np.count_nonzero(~full)),
        missing=n_true - found,
        spurious=n_pred - len(match_truth),
    )
