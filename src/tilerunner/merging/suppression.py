"""Duplicate removal for detections: NMS, Gaussian soft-NMS and non-maximum merging (NMM).

Ownership (:mod:`tilerunner.merging.ownership`) already removes duplicates caused by tiling;
what is left are the model's own duplicates and objects larger than the overlap, found by two
tiles. This module removes those, at any scale and deterministically:

* **Scale.** No ``N x N`` matrix and no pass over all pairs. A Sort-Tile-Recursive tree (shapely
  ``STRtree``) finds every pair of boxes whose extents meet in vectorised queries, one strip of
  boxes at a time so that memory stays bounded; for axis-aligned boxes extent overlap *is*
  overlap, so no geometric predicate is needed. The greedy
  passes then walk per-box neighbour lists stored as CSR arrays, so the cost follows the number of
  overlapping pairs, not the square of the number of boxes.
* **Determinism.** Boxes are processed in the order ``(score desc, x0, y0, x1, y1, label)`` and
  results are returned in that order, so the output does not depend on the order of the input
  (which depends on tile order, batch size and worker count). Only exact duplicates (same box,
  score and label) are told apart by their input position, which affects ``source`` alone.

Conventions: IoU = intersection / union, IoS = intersection / smaller area; a pair counts as a
duplicate when the metric is *strictly* greater than the threshold. Labels are compared unless
``class_agnostic``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from tilerunner.errors import InvalidRequestError, UnknownNameError
from tilerunner.merging.ownership import as_boxes

__all__ = ["METHODS", "METRICS", "MergeParams", "Merged", "Method", "Metric", "merge"]

Method = Literal["nms", "soft-nms", "nmm", "none"]
Metric = Literal["iou", "ios"]
METHODS: tuple[str, ...] = get_args(Method)
METRICS: tuple[str, ...] = get_args(Metric)

#: Soft-NMS drops a decayed box under this score when no ``min_score`` is set.
SOFT_NMS_FLOOR = 1e-3

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class MergeParams:
    """How to merge: ``method``, the overlap ``metric`` and its ``threshold``, and filters.

    ``sigma`` is the width of the Gaussian soft-NMS decay ``exp(-m**2 / sigma)``; soft-NMS
    decays every overlapping box and does not use ``threshold``.
    """

    method: Method = "nms"
    threshold: float = 0.5
    metric: Metric = "iou"
    class_agnostic: bool = False
    min_score: float = 0.0
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError("merge method", str(self.method), METHODS)
        if self.metric not in METRICS:
            raise UnknownNameError("merge metric", str(self.metric), METRICS)
        if not 0.0 <= self.threshold <= 1.0:
            raise InvalidRequestError(
                f"merge threshold ({self.threshold}) must be between 0 and 1; "
                "set merge.iou to a value in [0, 1]"
            )
        if not (math.isfinite(self.min_score) and self.min_score >= 0.0):
            raise InvalidRequestError(
                f"min_score ({self.min_score}) must be a finite number >= 0; set merge.min_score"
            )
        if not (math.isfinite(self.sigma) and self.sigma > 0.0):
            raise InvalidRequestError(
                f"soft-NMS sigma ({self.sigma}) must be a finite number > 0, e.g. 0.5"
            )


@dataclass(frozen=True, eq=False)
class Merged:
    """What survives a merge, sorted by ``(score desc, x0, y0, x1, y1, label)``.

    ``source`` indexes the input arrays, so callers can carry other columns (tile, image, mask)
    along with each kept detection; for NMM it is the box that absorbed the others.
    """

    boxes: Floats
    scores: Floats
    labels: Ints
    source: Ints

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def merge(boxes: ArrayLike, scores: ArrayLike, labels: ArrayLike, params: MergeParams) -> Merged:
    """Remove duplicate detections according to ``params`` (see the module docstring)."""
    all_boxes, all_scores, all_labels = _validated(boxes, scores, labels)
    candidates = np.flatnonzero(all_scores >= params.min_score)
    order = candidates[
        _priority(all_boxes[candidates], all_scores[candidates], all_labels[candidates])
    ]
    box, score, label = all_boxes[order], all_scores[order], all_labels[order]
    if params.method == "none" or box.shape[0] < 2:
        return Merged(box, score, label, order.astype(np.int64))

    first, second, overlap = _overlapping_pairs(box, label, params)
    if params.method == "soft-nms":
        floor = params.min_score if params.min_score > 0.0 else SOFT_NMS_FLOOR
        kept, score = _soft_nms(score, first, second, overlap, params.sigma, floor)
        box, label, order = box[kept], label[kept], order[kept]
        score = score[kept]
    else:
        above = overlap > params.threshold
        kept, box = _greedy(box, first[above], second[above], absorb=params.method == "nmm")
        box, score, label, order = box[kept], score[kept], label[kept], order[kept]
    final = _priority(box, score, label)
    return Merged(box[final], score[final], label[final], order[final].astype(np.int64))


def _validated(
    boxes: ArrayLike, scores: ArrayLike, labels: ArrayLike
) -> tuple[Floats, Floats, Ints]:
    box = as_boxes(boxes)
    score = np.asarray(scores, dtype=np.float64).reshape(-1)
    label_array = np.asarray(labels).reshape(-1)
    if not (box.shape[0] == score.shape[0] == label_array.shape[0]):
        raise InvalidRequestError(
            f"boxes ({box.shape[0]}), scores ({score.shape[0]}) and labels "
            f"({label_array.shape[0]}) must have the same length; pass one row per detection"
        )
    if label_array.size and not np.issubdtype(label_array.dtype, np.integer):
        raise InvalidRequestError(
            f"labels must be integer class ids, got dtype {label_array.dtype}; map names to ids"
        )
    if not (np.isfinite(box).all() and np.isfinite(score).all()):
        raise InvalidRequestError("boxes and scores must be finite; drop NaN/inf detections first")
    return box, score, label_array.astype(np.int64)


def _priority(box: Floats, score: Floats, label: Ints) -> Ints:
    """Stable permutation ordering detections by (score desc, x0, y0, x1, y1, label)."""
    keys = (label, box[:, 3], box[:, 2], box[:, 1], box[:, 0], -score)
    order: Ints = np.lexsort(keys).astype(np.int64)
    return order


#: Boxes whose overlaps one spatial index answers at a time (see :func:`_overlapping_pairs`).
STRIP_BOXES = 100_000


def _overlapping_pairs(box: Floats, label: Ints, params: MergeParams) -> tuple[Ints, Ints, Floats]:
    """Pairs ``(i, j)`` with ``i < j`` that overlap with positive area, and their metric.

    Grouped by ``i`` (the order inside a group does not matter to any method). Indices are
    priorities, since the boxes arrive in priority order.

    Memory stays bounded at any n: boxes are ranked by ``(y0, index)`` and cut into strips of
    :data:`STRIP_BOXES` ranks. Each strip's boxes query a tree of only the boxes that can reach
    them (lower rank, extent down into the strip), and a pair is kept where its higher-ranked box
    lives, so every pair is found exactly once and no more than one strip's shapely boxes exist.
    """
    x0, y0, x1, y1 = (np.ascontiguousarray(box[:, k]) for k in range(4))
    by_rank = np.argsort(y0, kind="stable").astype(np.int64)
    firsts, seconds = [], []
    for start in range(0, by_rank.size, STRIP_BOXES):
        owners = by_rank[start : start + STRIP_BOXES]
        earlier = by_rank[:start]
        reaching = earlier[y1[earlier] > y0[owners[0]]]  # only these can meet a box of the strip
        near = np.concatenate([reaching, owners])
        tree = shapely.STRtree(shapely.box(x0[near], y0[near], x1[near], y1[near]))
        query, hit = tree.query(shapely.box(x0[owners], y0[owners], x1[owners], y1[owners]))
        # hit ranks below the query's: reaching boxes all rank lower; owners by position
        lower = (hit < reaching.size) | (hit - reaching.size < query)
        a, b = owners[query[lower]], near[hit[lower]]
        firsts.append(np.minimum(a, b))
        seconds.append(np.maximum(a, b))
    first = np.concatenate(firsts) if firsts else np.empty(0, np.int64)
    second = np.concatenate(seconds) if seconds else np.empty(0, np.int64)
    keep = first < second
    if not params.class_agnostic:
        keep &= label[first] == label[second]
    first, second = first[keep], second[keep]
    width = np.minimum(x1[first], x1[second])
    width -= np.maximum(x0[first], x0[second])
    height = np.minimum(y1[first], y1[second])
    height -= np.maximum(y0[first], y0[second])
    positive = (width > 0.0) & (height > 0.0)
    first, second = first[positive].astype(np.int64), second[positive].astype(np.int64)
    inter = width[positive] * height[positive]
    area = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    if params.metric == "iou":
        overlap = inter / (area[first] + area[second] - inter)
    else:
        overlap = inter / np.minimum(area[first], area[second])
    if first.size and not (first[1:] >= first[:-1]).all():  # strips answer out of order
        grouped = np.argsort(first, kind="stable")
        first, second, overlap = first[grouped], second[grouped], overlap[grouped]
    return first, second, overlap


def _csr(first: Ints, n: int) -> Ints:
    """Row pointers for pairs sorted by ``first``: row ``i`` is ``indptr[i]:indptr[i + 1]``."""
    indptr: Ints = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(first, minlength=n), out=indptr[1:])
    return indptr


def _greedy(box: Floats, first: Ints, second: Ints, absorb: bool) -> tuple[Ints, Floats]:
    """Greedy NMS (``absorb=False``) or NMM over duplicate pairs ``first -> second``.

    Walking boxes in priority order, a box not yet removed is kept and removes its lower-priority
    duplicates; with ``absorb`` it also grows to their union extent (SAHI's greedy NMM: the
    metric is taken against the kept box as detected, not as grown). Only boxes that have a
    duplicate are visited, so isolated boxes cost nothing.
    """
    n = box.shape[0]
    indptr = _csr(first, n)
    removed = np.zeros(n, dtype=np.bool_)
    grown = box.copy() if absorb else box
    for i in np.unique(first).tolist():
        if removed[i]:
            continue
        victims = second[indptr[i] : indptr[i + 1]]
        if absorb:
            victims = victims[~removed[victims]]
            if victims.size:
                grown[i, :2] = np.minimum(grown[i, :2], box[victims, :2].min(axis=0))
                grown[i, 2:] = np.maximum(grown[i, 2:], box[victims, 2:].max(axis=0))
        removed[victims] = True
    kept: Ints = np.flatnonzero(~removed).astype(np.int64)
    return kept, grown


def _soft_nms(
    score: Floats, first: Ints, second: Ints, overlap: Floats, sigma: float, floor: float
) -> tuple[Ints, Floats]:
    """Gaussian soft-NMS: pick the best current score, decay its overlapping neighbours.

    Scores change as boxes are picked, so the order is dynamic: a heap keyed by
    ``(-current score, priority)`` keeps ties deterministic. A box whose score decays under
    ``floor`` is dropped. Returns the kept priorities and the decayed scores of all boxes.
    """
    n = score.shape[0]
    both = np.concatenate([first, second])
    by_row = np.argsort(both, kind="stable")
    other = np.concatenate([second, first])[by_row]
    metric = np.concatenate([overlap, overlap])[by_row]
    indptr = _csr(both[by_row], n)
    decay = np.exp(-(metric * metric) / sigma)

    current = score.copy()
    picked = np.zeros(n, dtype=np.bool_)
    dropped = np.zeros(n, dtype=np.bool_)
    # One heap entry per live box, keyed by a score that is never below its current score (scores
    # only decrease). An entry found stale at the top is re-keyed and pushed back, so the box
    # popped with an up-to-date key is the true maximum, and decays need no pushes of their own.
    heap = [(-float(current[i]), int(i)) for i in np.flatnonzero(np.diff(indptr) > 0)]
    heapq.heapify(heap)
    while heap:
        neg_score, i = heapq.heappop(heap)
        if dropped[i]:
            continue
        if -neg_score != current[i]:
            heapq.heappush(heap, (-float(current[i]), i))
            continue
        picked[i] = True
        lo, hi = indptr[i], indptr[i + 1]
        neighbours = other[lo:hi]
        live = ~(picked[neighbours] | dropped[neighbours])
        neighbours = neighbours[live]
        current[neighbours] *= decay[lo:hi][live]
        dropped[neighbours[current[neighbours] < floor]] = True
    kept: Ints = np.flatnonzero(~dropped).astype(np.int64)
    return kept, current
