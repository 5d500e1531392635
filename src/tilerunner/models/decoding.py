"""Turn raw network tensors into per-tile outputs (pure numpy, no runtime needed).

Backends only run networks; what the numbers mean is decided here, once, for ONNX and OpenCV
alike, and can be tested on hand-made arrays. Boxes come out as ``[x0, y0, x1, y1]`` in tile
pixels, clipped to the tile. Non-maximum suppression here is the cheap in-tile kind (a tile
holds few candidates); suppression across tiles happens later, in :mod:`tilerunner.merging`.
Convention, as everywhere in tilerunner: a box is suppressed when IoU > threshold (strict).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import ModelError
from tilerunner.models.outputs import Detections

__all__ = [
    "BoxFormat",
    "decode_boxes_scores_labels",
    "decode_classify",
    "decode_segment",
    "decode_yolo",
    "detections_from_candidates",
    "nms",
    "to_xyxy",
]

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
FloatArray = NDArray[np.float64]


def to_xyxy(boxes: NDArray[np.floating], box_format: BoxFormat) -> FloatArray:
    """Convert ``[N, 4]`` boxes from ``box_format`` to corner form."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if box_format == "xyxy":
        return b.copy()
    if box_format == "xywh":
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    half = b[:, 2:] / 2.0
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def nms(
    boxes: FloatArray, scores: FloatArray, iou: float, labels: NDArray[np.int64] | None = None
) -> NDArray[np.intp]:
    """Indices of kept boxes, best score first; class-aware when ``labels`` is given."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    b = boxes
    if labels is not None:  # shift each class to its own region so classes never overlap
        span = float(np.abs(boxes).max()) * 2.0 + 1.0
        b = boxes + (labels.astype(np.float64) * span)[:, None]
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.intp)


def detections_from_candidates(
    boxes_xyxy: FloatArray,
    scores: FloatArray,
    labels: NDArray[np.int64],
    *,
    tile_hw: tuple[int, int],
    threshold: float,
    iou: float | None,
) -> Detections:
    """Threshold, clip to the tile, drop empty boxes and run class-aware NMS (if ``iou``)."""
    tile_h, tile_w = tile_hw
    keep = scores >= threshold
    boxes = boxes_xyxy[keep]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, tile_w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, tile_h)
    scores, labels = scores[keep], labels[keep]
    solid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[solid], scores[solid], labels[solid]
    if iou is not None:
        kept = nms(boxes, scores, iou, labels)
        boxes, scores, labels = boxes[kept], scores[kept], labels[kept]
    return Detections(boxes, scores.astype(np.float64), labels.astype(np.int64))


def _scale(in_hw: tuple[int, int], tile_hw: tuple[int, int], normalised: bool) -> FloatArray:
    """Multipliers ``[sx, sy, sx, sy]`` from model box units to tile pixels."""
    if normalised:
        sy, sx = float(tile_hw[0]), float(tile_hw[1])
    else:
        sy, sx = tile_hw[0] / in_hw[0], tile_hw[1] / in_hw[1]
    return np.array([sx, sy, sx, sy])


def _batch(array: NDArray[np.generic], ndim: int, what: str, n_tiles: int) -> NDArray[np.generic]:
    if array.ndim != ndim or array.shape[0] != n_tiles:
        raise ModelError(
            f"{what} output has shape {array.shape}; expected {ndim} dimensions with the batch "
            f"({n_tiles}) first. Check the output names/decoding in the model card"
        )
    return array


def decode_boxes_scores_labels(
    boxes: NDArray[np.generic],
    scores: NDArray[np.generic],
    labels: NDArray[np.generic] | None,
    *,
    box_format: BoxFormat,
    normalised: bool,
    in_hw: tuple[int, int],
    tile_hw: tuple[int, int],
    threshold: float,
    iou: float | None,
) -> list[Detections]:
    """Decode ``boxes [B, N, 4]``, ``scores [B, N]``, ``labels [B, N]`` (None: all class 0)."""
    n_tiles = boxes.shape[0]
    _batch(boxes, 3, "boxes", n_tiles)
    scores_b = _batch(scores, 2, "scores", n_tiles).astype(np.float64)
    labels_b = (
        np.zeros(scores_b.shape, dtype=np.int64)
        if labels is None
        else _batch(labels, 2, "labels", n_tiles).astype(np.int64)
    )
    scale = _scale(in_hw, tile_hw, normalised)
    results = []
    for i in range(n_tiles):
        xyxy = to_xyxy(boxes[i].astype(np.float64), box_format) * scale
        results.append(
            detections_from_candidates(
                xyxy, scores_b[i], labels_b[i], tile_hw=tile_hw, threshold=threshold, iou=iou
            )
        )
    return results


def decode_yolo(
    output: NDArray[np.generic],
    *,
    layout: Literal["anchors-first", "attributes-first"],
    normalised: bool,
    in_hw: tuple[int, int],
    tile_hw: tuple[int, int],
    threshold: float,
    iou: float | None,
) -> list[Detections]:
    """Decode a YOLO head.

    ``anchors-first`` is ``[B, N, 5 + K]`` (cx, cy, w, h, objectness, K class probabilities;
    YOLOv3/v5): score = objectness x best class probability. ``attributes-first`` is
    ``[B, 4 + K, N]`` without objectness (YOLOv8): score = best class score. Boxes are
    centre/size in input pixels, or in ``[0, 1]`` when ``normalised``.
    """
    rows = _batch(output, 3, "yolo", output.shape[0]).astype(np.float64)
    if layout == "attributes-first":
        rows = rows.transpose(0, 2, 1)
    first_class = 5 if layout == "anchors-first" else 4
    if rows.shape[2] <= first_class:
        raise ModelError(
            f"yolo output has shape {output.shape}; with layout {layout!r} it needs more than "
            f"{first_class} values per box. Check output.layout in the model card"
        )
    scale = _scale(in_hw, tile_hw, normalised)
    results = []
    for tile_rows in rows:
        class_scores = tile_rows[:, first_class:]
        labels = class_scores.argmax(axis=1).astype(np.int64)
        scores = class_scores.max(axis=1)
        if layout == "anchors-first":
            scores = scores * tile_rows[:, 4]
        xyxy = to_xyxy(tile_rows[:, :4], "cxcywh") * scale
        results.append(
            detections_from_candidates(
                xyxy, scores, labels, tile_hw=tile_hw, threshold=threshold, iou=iou
            )
        )
    return results


def decode_classify(output: NDArray[np.generic], *, softmax: bool) -> list[FloatArray]:
    """``[B, K]`` class scores, optionally through a (numerically stable) softmax."""
    scores = output.astype(np.float64).reshape(output.shape[0], -1)
    if softmax:
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = shifted / shifted.sum(axis=1, keepdims=True)
    return list(scores)


def decode_segment(
    output: NDArray[np.generic], *, argmax: bool, tile_hw: tuple[int, int]
) -> list[NDArray[np.generic]]:
    """Class ids ``[B, H, W]`` or scores ``[B, K, H, W]``, resized (nearest) to the tile."""
    if output.ndim == 4 and argmax:
        output = output.argmax(axis=1)
    if output.ndim not in (3, 4):
        raise ModelError(
            f"segment output has shape {output.shape}; expected [B, H, W] or [B, K, H, W]"
        )
    out_h, out_w = output.shape[-2:]
    resized = output
    if (out_h, out_w) != tuple(tile_hw):  # the usual case needs no gather of every pixel
        rows = (np.arange(tile_hw[0]) * out_h) // tile_hw[0]
        cols = (np.arange(tile_hw[1]) * out_w) // tile_hw[1]
        resized = output[..., rows[:, None], cols[None, :]]
    if resized.ndim == 3:
        return list(resized.astype(np.int64))
    return list(resized.astype(np.float32))
