"""A truth detector that raises on the tile covering one pixel while a flag file exists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tilerunner.testing.models import TruthDetector
from tilerunner.tiling import Window


class PoisonTruthDetector(TruthDetector):
    def __init__(self, truth: str, x: str, y: str, flag: str) -> None:
        super().__init__(truth)
        self.x, self.y = float(x), float(y)
        self.flag = Path(flag)

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> list[object]:
        for w in windows:
            inside = w.col_off <= self.x < w.col_end and w.row_off <= self.y < w.row_end
            if inside and self.flag.exists():
                raise RuntimeError(f"poisoned tile at {w}")
        return list(super().predict(tiles, windows))
