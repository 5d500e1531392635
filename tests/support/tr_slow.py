"""A truth-replaying detector that takes its time, so a run can be interrupted mid-way."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tilerunner.testing.models import TruthDetector
from tilerunner.tiling import Window


class SlowTruthDetector(TruthDetector):
    def __init__(self, truth: str, seconds_per_tile: str = "0.02") -> None:
        super().__init__(truth)
        self.seconds_per_tile = float(seconds_per_tile)

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> list[object]:
        time.sleep(self.seconds_per_tile * len(tiles))
        return list(super().predict(tiles, windows))
