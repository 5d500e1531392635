"""Fake models that honour the model contract, for tests, demos and benchmarks.

Each fake is deterministic and cheap, and each isolates one behaviour the system must handle:
content-driven detections (:class:`FakeDetector`), exact known truth per tile window
(:class:`TruthDetector`), failures (:class:`FailingModel`), contract violations
(:class:`MalformedModel`), slow inference without CPU use (:class:`SleepModel`) and a
classifier (:class:`ConstantClassifier`). All accept their parameters as strings, so they load
through ``--model tilerunner.testing.models:FakeDetector --model-param key=value`` like any
plugin.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from tilerunner.tiling import Window

__all__ = [
    "ConstantClassifier",
    "FailingModel",
    "FakeDetector",
    "MalformedModel",
    "SleepModel",
    "TruthDetector",
    "bright_boxes",
    "empty_detections",
]

Output = dict[str, NDArray[np.generic]]


def empty_detections() -> Output:
    """A valid detect output with no boxes."""
    return {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)}


def _spans(present: NDArray[np.bool_], offset: int) -> list[tuple[int, int]]:
    """``[start, end)`` runs of True in a 1-D mask, shifted by ``offset``."""
    padded = np.concatenate([[False], present, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [
        (int(a) + offset, int(b) + offset) for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]


def bright_boxes(mask: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` (exclusive ends) of the blobs of a boolean mask.

    A recursive XY cut: split by empty rows, then by empty columns, until nothing splits.
    Every step is a vectorised projection, so painted rectangles that can be separated by a
    straight empty line are found exactly; touching or interlocking shapes merge into one box.
    """
    boxes: list[tuple[int, int, int, int]] = []
    stack = [(0, 0, mask.shape[1], mask.shape[0])]
    while stack:
        x0, y0, x1, y1 = stack.pop()
        sub = mask[y0:y1, x0:x1]
        rows = _spans(np.asarray(sub.any(axis=1)), y0)
        cols = _spans(np.asarray(sub.any(axis=0)), x0)
        if len(rows) == 1 and len(cols) == 1:
            boxes.append((cols[0][0], rows[0][0], cols[0][1], rows[0][1]))
        elif len(rows) > 1:
            stack.extend((x0, r0, x1, r1) for r0, r1 in rows)
        else:
            stack.extend((c0, y0, c1, y1) for c0, c1 in cols)
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _all_at_least(tile: NDArray[np.uint8], value: int) -> NDArray[np.bool_]:
    """``(tile >= value).all(axis=2)``, one channel plane at a time: numpy reduces a short last
    axis pixel by pixel, about ten times slower than comparing whole planes."""
    mask: NDArray[np.bool_] = tile[..., 0] >= value
    for channel in range(1, tile.shape[2]):
        mask &= tile[..., channel] >= value
    return mask


class FakeDetector:
    """Detects bright solid shapes: pixels whose every channel is >= ``min_value``.

    A synthetic raster with white squares painted on it is therefore "detected" exactly: each
    square's box is its pixel extent, score 1.0, label 0 (``square``). Shapes smaller than
    ``min_size`` pixels on either side are ignored.
    """

    task = "detect"
    classes: ClassVar[list[str]] = ["square"]

    def __init__(self, min_value: str | int = 250, min_size: str | int = 1) -> None:
        self.min_value = int(min_value)
        self.min_size = int(min_size)

    def detect(self, tile: NDArray[np.uint8]) -> Output:
        """Detections of one ``[H, W, C]`` tile."""
        found = [
            b
            for b in bright_boxes(_all_at_least(tile, self.min_value))
            if b[2] - b[0] >= self.min_size and b[3] - b[1] >= self.min_size
        ]
        if not found:
            return empty_detections()
        boxes = np.asarray(found, dtype=np.float64)
        return {"boxes": boxes, "scores": np.ones(len(found)), "labels": np.zeros(len(found), int)}

    def predict(self, tiles: NDArray[np.uint8]) -> list[Output]:
        return [self.detect(tile) for tile in tiles]


class TruthDetector:
    """Replays known boxes: each tile gets every truth box that meets its window, clipped.

    ``truth`` is an ``[N, 4]`` array of ``x0, y0, x1, y1`` in full-image pixels, or the path of
    a CSV with columns ``xmin, ymin, xmax, ymax`` and optionally ``label`` (the OSBS_029.csv
    format; label names become classes in sorted order). Boxes come back in tile coordinates
    with score 1.0 (or ``scores``). Because the output of a tile depends only on its window,
    this is the reference model for tests of ownership and merging.
    """

    task = "detect"
    wants_windows = True

    def __init__(
        self,
        truth: str | Path | NDArray[np.floating] | Sequence[Sequence[float]],
        labels: str | Sequence[int] | NDArray[np.integer] | None = None,
        scores: str | Sequence[float] | NDArray[np.floating] | None = None,
        classes: Sequence[str] | str | None = None,
    ) -> None:
        self.classes: list[str] = [] if classes is None else _names(classes)
        if isinstance(truth, str | Path):
            boxes, names = _read_truth_csv(Path(truth))
            self.classes = self.classes or sorted(set(names))
            labels = [self.classes.index(n) for n in names] if labels is None else labels
        else:
            boxes = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
        self.boxes = boxes
        n = boxes.shape[0]
        self.labels = np.zeros(n, np.int64) if labels is None else _numbers(labels, np.int64, n)
        self.scores = np.ones(n) if scores is None else _numbers(scores, np.float64, n)

    def in_window(self, window: Window) -> Output:
        """Truth boxes meeting ``window`` (positive overlap), clipped, in window pixels."""
        b = self.boxes
        hit = (
            (b[:, 0] < window.col_end)
            & (b[:, 2] > window.col_off)
            & (b[:, 1] < window.row_end)
            & (b[:, 3] > window.row_off)
        )
        low = np.array([window.col_off, window.row_off] * 2, dtype=np.float64)
        high = np.array([window.col_end, window.row_end] * 2, dtype=np.float64)
        clipped = np.clip(b[hit], low, high) - low
        return {"boxes": clipped, "scores": self.scores[hit], "labels": self.labels[hit]}

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> list[Output]:
        if len(windows) != len(tiles):
            raise ValueError(f"{len(windows)} windows for {len(tiles)} tiles")
        return [self.in_window(w) for w in windows]


def _numbers(values: object, dtype: type[np.generic], n: int) -> NDArray[np.generic]:
    """A per-box array from a list or a comma-separated string (one value repeats)."""
    items = values.split(",") if isinstance(values, str) else values
    array = np.asarray(items, dtype=np.float64).astype(dtype).reshape(-1)
    if array.shape[0] == 1:
        array = np.repeat(array, n)
    if array.shape[0] != n:
        raise ValueError(f"{array.shape[0]} values given for {n} truth boxes")
    return array


def _names(classes: Sequence[str] | str) -> list[str]:
    return [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes)


def _read_truth_csv(path: Path) -> tuple[NDArray[np.float64], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    boxes = np.array(
        [[float(r["xmin"]), float(r["ymin"]), float(r["xmax"]), float(r["ymax"])] for r in rows]
    ).reshape(-1, 4)
    return boxes, [r.get("label") or "object" for r in rows]


class FailingModel:
    """Raises ``RuntimeError`` on the ``fail_on_call``-th call (1-based, every later call too
    when ``always`` is true) or on any batch holding a pixel whose channels all equal
    ``marker_value``; otherwise returns no detections."""

    task = "detect"

    def __init__(
        self,
        fail_on_call: str | int | None = None,
        marker_value: str | int | None = None,
        always: str | bool = False,
    ) -> None:
        self.fail_on_call = None if fail_on_call is None else int(fail_on_call)
        self.marker_value = None if marker_value is None else int(marker_value)
        self.always = str(always).lower() in ("1", "true", "yes")
        self.calls = 0
        self._lock = threading.Lock()

    def predict(self, tiles: NDArray[np.uint8]) -> list[Output]:
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.fail_on_call is not None and (
            call == self.fail_on_call or (self.always and call > self.fail_on_call)
        ):
            raise RuntimeError(f"planned failure on call {call}")
        if self.marker_value is not None:
            marked = (tiles == self.marker_value).all(axis=3).any(axis=(1, 2))
            if marked.any():
                raise RuntimeError(
                    f"marker pixel {self.marker_value} in tile {int(marked.argmax())}"
                )
        return [empty_detections() for _ in tiles]


class MalformedModel:
    """Breaks the output contract in one chosen way (``kind``), to test validation."""

    task = "detect"
    classes: ClassVar[list[str]] = ["a", "b"]
    KINDS = (
        "count",
        "not-a-list",
        "not-a-mapping",
        "missing-key",
        "boxes-shape",
        "scores-length",
        "nan-boxes",
        "label-out-of-range",
        "inverted-box",
    )

    def __init__(self, kind: str = "count") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}, not {kind!r}")
        self.kind = kind

    def predict(self, tiles: NDArray[np.uint8]) -> object:
        good: Output = {"boxes": np.array([[1.0, 1.0, 5.0, 5.0]]), "scores": np.ones(1),
                        "labels": np.zeros(1, np.int64)}  # fmt: skip
        bad: object = dict(good)
        if self.kind == "count":
            return [good] * (len(tiles) + 1)
        if self.kind == "not-a-list":
            return good
        if self.kind == "not-a-mapping":
            bad = np.zeros((1, 4))
        elif self.kind == "missing-key":
            bad = {"boxes": good["boxes"], "scores": good["scores"]}
        elif self.kind == "boxes-shape":
            bad = {**good, "boxes": np.zeros((1, 3))}
        elif self.kind == "scores-length":
            bad = {**good, "scores": np.ones(2)}
        elif self.kind == "nan-boxes":
            bad = {**good, "boxes": np.array([[np.nan, 1.0, 5.0, 5.0]])}
        elif self.kind == "label-out-of-range":
            bad = {**good, "labels": np.array([2])}
        else:
            bad = {**good, "boxes": np.array([[5.0, 1.0, 1.0, 5.0]])}
        return [good] * (len(tiles) - 1) + [bad]


class SleepModel:
    """Takes ``seconds_per_batch + seconds_per_tile * B`` of wall time without using CPU.

    Stands in for a remote or accelerator-bound model when measuring how well I/O and
    inference overlap; returns no detections.
    """

    task = "detect"

    def __init__(self, seconds_per_batch: str | float = 0.0, seconds_per_tile: str | float = 0.0):
        self.seconds_per_batch = float(seconds_per_batch)
        self.seconds_per_tile = float(seconds_per_tile)

    def predict(self, tiles: NDArray[np.uint8]) -> list[Output]:
        time.sleep(self.seconds_per_batch + self.seconds_per_tile * len(tiles))
        return [empty_detections() for _ in tiles]


class ConstantClassifier:
    """Classifies every tile with the same scores (``scores="0.2,0.8"``, ``classes="a,b"``)."""

    task = "classify"

    def __init__(
        self,
        scores: str | Sequence[float] = "0.25,0.75",
        classes: str | Sequence[str] | None = None,
    ) -> None:
        values = scores.split(",") if isinstance(scores, str) else scores
        self.scores = np.asarray([float(v) for v in values], dtype=np.float64)
        self.classes = (
            _names(classes) if classes else [f"class{i}" for i in range(len(self.scores))]
        )
        if len(self.classes) != len(self.scores):
            raise ValueError(f"{len(self.classes)} classes but {len(self.scores)} scores")

    def predict(self, tiles: NDArray[np.uint8]) -> list[NDArray[np.float64]]:
        return [self.scores.copy() for _ in tiles]
