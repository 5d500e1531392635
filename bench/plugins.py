"""Model plugins of the benchmarks: a compute-heavy detector and one that needs no pixels.

Every tool must run the same model over the same pixels. :class:`HeavyDetector` is
:class:`~tilerunner.testing.models.FakeDetector` (it finds the white squares of the scene
exactly, so accuracy can be scored) behind a real ONNX Runtime workload on every tile: the
conv stack of :func:`tilerunner.testing.onnx_models.make_detector_onnx`, built at the tile size,
whose output is computed and discarded. The plugin is loaded by ``tilerunner run --model
plugins:HeavyDetector`` (``bench/`` on ``PYTHONPATH``), by the SAHI wrapper and by the
plain loop alike. :class:`ScatterDetector` reports a fixed number of boxes per tile for the
scale benchmark, whose sparse scene has no pixels worth looking at.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from tilerunner.testing.models import FakeDetector, Output
from tilerunner.tiling import Window

__all__ = ["HeavyDetector", "ScatterDetector", "make_heavy_onnx"]


def make_heavy_onnx(path: Path, tile_size: int, width: int, depth: int) -> Path:
    """The conv stack at ``tile_size`` (no resize), ``width`` channels, ``depth`` layers."""
    from tilerunner.testing.onnx_models import make_detector_onnx

    if path.exists():
        return path
    return make_detector_onnx(path, input_size=tile_size, width=width, depth=depth)


class HeavyDetector(FakeDetector):
    """FakeDetector's boxes, after running the ONNX model at ``onnx`` over the batch."""

    def __init__(self, onnx: str, min_value: str | int = 250, min_size: str | int = 1) -> None:
        import onnxruntime

        super().__init__(min_value, min_size)
        options = onnxruntime.SessionOptions()
        # as tilerunner's ONNX backend does: idle intra-op threads must not spin on 2 cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            onnx, options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name

    def predict(self, tiles: NDArray[np.uint8]) -> list[Output]:
        images = np.ascontiguousarray(tiles.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        self.session.run(None, {self.input: images})
        return super().predict(tiles)


class ScatterDetector:
    """``boxes_per_tile`` boxes of ``side`` px in every tile, placed by the tile's own position.

    The boxes of a tile are drawn from a generator seeded with the tile's window, inside the
    part of the tile that interior tiles own, so the same tile always yields the same boxes and
    nearly all of them survive ownership: a scene of N tiles yields about
    ``N * boxes_per_tile`` detections without looking at a pixel.
    """

    task = "detect"
    wants_windows = True
    classes: ClassVar[list[str]] = ["thing"]

    def __init__(
        self, boxes_per_tile: str | int = 10, side: str | int = 16, margin: str | int = 32
    ) -> None:
        self.n = int(boxes_per_tile)
        self.side = float(side)
        self.margin = int(margin)

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> list[Output]:
        out = []
        for tile, window in zip(tiles, windows, strict=True):
            rng = np.random.default_rng((window.col_off, window.row_off))
            high = max(self.margin + 1, min(tile.shape[:2]) - self.margin - int(self.side))
            xy = rng.integers(self.margin, high, size=(self.n, 2)).astype(np.float64)
            boxes = np.hstack([xy, xy + self.side])
            out.append(
                {
                    "boxes": boxes,
                    "scores": rng.uniform(0.5, 1.0, self.n),
                    "labels": np.zeros(self.n, np.int64),
                }
            )
        return out
