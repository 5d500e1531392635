"""Typed per-tile model outputs and the validation that produces them.

Models are user code, so their outputs are checked once, at the boundary, and turned into
small frozen value objects with fixed dtypes. Everything after this point (ownership, merging,
georeferencing, writers) can then trust shapes and dtypes and stay free of defensive checks.
A malformed output raises :class:`~tilerunner.errors.ModelError` with a one-line message that
names the model, the tile and the field, because the person reading it is debugging a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import ModelError

__all__ = [
    "ClassScores",
    "Detections",
    "SegMask",
    "TileOutput",
    "validate_outputs",
]


@dataclass(frozen=True)
class Detections:
    """Boxes found in one tile: ``[x0, y0, x1, y1]`` in tile pixels, one score and label each."""

    boxes: NDArray[np.float64]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No detections (a tile with nothing in it)."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class ClassScores:
    """One score per class for a whole tile."""

    scores: NDArray[np.float64]


@dataclass(frozen=True)
class SegMask:
    """A tile's segmentation: class ids ``[H, W]`` or probabilities ``[K, H, W]`` (one is set)."""

    classes: NDArray[np.int64] | None = None
    probabilities: NDArray[np.float32] | None = None


TileOutput = Detections | ClassScores | SegMask


class _Check:
    """Builds the error messages for one tile's output of one model."""

    def __init__(self, model_name: str, index: int, n_classes: int | None) -> None:
        self.prefix = f"model {model_name!r} output {index}"
        self.n_classes = n_classes

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.prefix}: {what}")

    def array(self, value: object, field: str) -> NDArray[np.generic]:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise self.fail(f"{field!r} is not an array ({exc})") from exc
        if array.dtype.kind not in "biuf":
            raise self.fail(f"{field!r} has dtype {array.dtype}, expected numbers")
        return array

    def finite(self, array: NDArray[np.float64], field: str) -> None:
        if not np.isfinite(array).all():
            raise self.fail(f"{field!r} contains NaN or infinite values")

    def class_ids(self, values: NDArray[np.generic], field: str) -> NDArray[np.int64]:
        if values.dtype.kind == "f":
            self.finite(values.astype(np.float64), field)
            if not np.array_equal(values, np.round(values)):
                raise self.fail(f"{field!r} has non-integer values; return integer class ids")
        ids = values.astype(np.int64)
        if ids.size and ids.min() < 0:
            raise self.fail(f"{field!r} has negative class id {int(ids.min())}")
        if self.n_classes and ids.size and ids.max() >= self.n_classes:
            raise self.fail(
                f"{field!r} has class id {int(ids.max())} but the model declares "
                f"{self.n_classes} classes (ids 0..{self.n_classes - 1})"
            )
        return ids


def _detections(raw: object, check: _Check) -> Detections:
    if isinstance(raw, Detections):
        raw = {"boxes": raw.boxes, "scores": raw.scores, "labels": raw.labels}
    if not isinstance(raw, Mapping):
        raise check.fail(
            f"is a {type(raw).__name__}, expected a mapping with 'boxes', 'scores', 'labels'"
        )
    missing = [key for key in ("boxes", "scores", "labels") if key not in raw]
    if missing:
        raise check.fail(f"is missing {', '.join(repr(m) for m in missing)}")
    boxes = check.array(raw["boxes"], "boxes").astype(np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise check.fail(f"'boxes' has shape {boxes.shape}, expected (N, 4)")
    n = boxes.shape[0]
    scores = check.array(raw["scores"], "scores").astype(np.float64).reshape(-1)
    labels_raw = check.array(raw["labels"], "labels").reshape(-1)
    if scores.shape[0] != n:
        raise check.fail(f"'scores' length {scores.shape[0]} != boxes {n}")
    if labels_raw.shape[0] != n:
        raise check.fail(f"'labels' length {labels_raw.shape[0]} != boxes {n}")
    check.finite(boxes, "boxes")
    check.finite(scores, "scores")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise check.fail(
            f"box {i} {boxes[i].tolist()} has x1 < x0 or y1 < y0; expected x0,y0,x1,y1"
        )
    labels = check.class_ids(labels_raw, "labels")
    return Detections(boxes, scores, labels)


def _class_scores(raw: object, check: _Check) -> ClassScores:
    if isinstance(raw, ClassScores):
        raw = raw.scores
    scores = check.array(raw, "scores").astype(np.float64)
    if scores.ndim != 1:
        raise check.fail(f"'scores' has shape {scores.shape}, expected (K,)")
    check.finite(scores, "scores")
    if check.n_classes and scores.shape[0] != check.n_classes:
        raise check.fail(
            f"'scores' has {scores.shape[0]} values "
            f"but the model declares {check.n_classes} classes"
        )
    return ClassScores(scores)


def _seg_mask(raw: object, check: _Check, tile_h: int, tile_w: int) -> SegMask:
    if isinstance(raw, SegMask):
        raw = raw.classes if raw.classes is not None else raw.probabilities
    mask = check.array(raw, "mask")
    if mask.shape[-2:] != (tile_h, tile_w) or mask.ndim not in (2, 3):
        raise check.fail(
            f"mask has shape {mask.shape}, expected ({tile_h}, {tile_w}) class ids "
            f"or (K, {tile_h}, {tile_w}) probabilities"
        )
    if mask.ndim == 2:
        return SegMask(classes=check.class_ids(mask, "mask"))
    probabilities = mask.astype(np.float32)
    check.finite(probabilities.astype(np.float64), "mask")
    return SegMask(probabilities=probabilities)


def validate_outputs(
    task: str,
    raw: object,
    n_tiles: int,
    tile_h: int,
    tile_w: int,
    model_name: str,
    *,
    n_classes: int | None = None,
) -> list[TileOutput]:
    """Check a model's raw ``predict`` result for a batch and convert it to typed outputs.

    ``raw`` must hold one entry per tile (a list, tuple, or an array whose first axis is the
    batch). ``n_classes`` (when the model declares classes) bounds labels and class scores.
    """
    if isinstance(raw, Mapping | str | bytes) or not isinstance(raw, Sequence | np.ndarray):
        raise ModelError(
            f"model {model_name!r} returned a {type(raw).__name__}; "
            "predict must return a list with one output per tile"
        )
    if len(raw) != n_tiles:
        raise ModelError(
            f"model {model_name!r} returned {len(raw)} outputs for a batch of {n_tiles} tiles"
        )
    outputs: list[TileOutput] = []
    for index, entry in enumerate(raw):
        check = _Check(model_name, index, n_classes)
        if task == "detect":
            outputs.append(_detections(entry, check))
        elif task == "classify":
            outputs.append(_class_scores(entry, check))
        elif task == "segment":
            outputs.append(_seg_mask(entry, check, tile_h, tile_w))
        else:
            raise ModelError(f"model {model_name!r} has unknown task {task!r}")
    return outputs
