"""Turn one tile's model output into the features that tile owns, in full-image pixels."""

from __future__ import annotations

import numpy as np

from tilerunner.errors import ModelError
from tilerunner.jobs.features import FeatureRows
from tilerunner.merging import clip_boxes, owned_mask, tile_to_image
from tilerunner.merging.segment import SegmentCanvas
from tilerunner.models import ClassScores, Detections, LoadedModel, SegMask, TileOutput
from tilerunner.tiling import TileRef

__all__ = ["add_mask", "owned_features"]


def add_mask(canvas: SegmentCanvas, tile: TileRef, output: TileOutput) -> None:
    """Put one tile's segmentation into its region's core."""
    if not isinstance(output, SegMask):
        raise ModelError(
            f"a segment job got a {type(output).__name__} output; serve a segmentation model"
        )
    canvas.add(tile, output.classes, output.probabilities)


def owned_features(
    output: TileOutput,
    tile: TileRef,
    model: LoadedModel,
    image_width: int,
    image_height: int,
    min_score: float,
) -> FeatureRows:
    """Features of one tile: detections whose centre lies in the tile's core, or one tile label."""
    if isinstance(output, Detections):
        return _detections(output, tile, model, image_width, image_height, min_score)
    if isinstance(output, ClassScores):
        return _classification(output, tile, model, image_width, image_height, min_score)
    raise ModelError(
        f"model {model.name!r} is a segmentation model but its job is not a segment job; "
        'give the stage task "segment" and a "segment" output'
    )


def _detections(
    output: Detections,
    tile: TileRef,
    model: LoadedModel,
    width: int,
    height: int,
    min_score: float,
) -> FeatureRows:
    if not len(output):
        return FeatureRows()
    boxes = clip_boxes(tile_to_image(output.boxes, tile.window), width, height)
    keep = owned_mask(boxes, tile.core, width, height)
    keep &= output.scores >= min_score
    keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not keep.any():
        return FeatureRows()
    labels = output.labels[keep]
    return FeatureRows(
        boxes=boxes[keep],
        scores=output.scores[keep],
        class_ids=labels,
        labels=[model.label(int(c)) for c in labels],
    )


def _classification(
    output: ClassScores,
    tile: TileRef,
    model: LoadedModel,
    width: int,
    height: int,
    min_score: float,
) -> FeatureRows:
    best = int(np.argmax(output.scores))
    score = float(output.scores[best])
    if score < min_score:
        return FeatureRows()
    w = tile.window
    footprint = clip_boxes(
        np.array([[w.col_off, w.row_off, w.col_end, w.row_end]], dtype=np.float64), width, height
    )
    return FeatureRows(
        boxes=footprint,
        scores=np.array([score]),
        class_ids=np.array([best], dtype=np.int64),
        labels=[model.label(best)],
        extra=[{"scores": [round(float(s), 6) for s in output.scores]}],
    )
