"""A detector that reports, for each tile, whether the collector of reference cycles was on."""

from __future__ import annotations

import gc
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from tilerunner.testing.models import Output


class CollectorProbe:
    """One 2 x 2 px box at the centre of each tile, labelled ``collecting`` or ``paused``."""

    task = "detect"
    classes: ClassVar[list[str]] = ["collecting", "paused"]

    def predict(self, tiles: NDArray[np.uint8]) -> list[Output]:
        label = 0 if gc.isenabled() else 1
        outputs: list[Output] = []
        for tile in tiles:
            cy, cx = tile.shape[0] // 2, tile.shape[1] // 2
            outputs.append(
                {
                    "boxes": np.array([[cx - 1, cy - 1, cx + 1, cy + 1]], np.float64),
                    "scores": np.ones(1),
                    "labels": np.array([label], np.int64),
                }
            )
        return outputs
