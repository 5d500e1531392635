"""Test models for tile jobs whose answers follow from the pixels, so tests can predict them."""

from __future__ import annotations

import io
import time

import numpy as np
from numpy.typing import NDArray


class BrightnessClassifier:
    """Scores ``[dark, bright]`` = ``[1 - m, m]`` with ``m`` the tile's mean value / 255;
    ``seconds_per_tile`` makes it as slow as a real model (for tests that kill a worker)."""

    task = "classify"
    classes = ["dark", "bright"]  # noqa: RUF012

    def __init__(self, seconds_per_tile: str | float = 0.0) -> None:
        self.seconds_per_tile = float(seconds_per_tile)

    def predict(self, tiles: NDArray[np.uint8]) -> list[NDArray[np.float64]]:
        time.sleep(self.seconds_per_tile * len(tiles))
        means = tiles.reshape(len(tiles), -1).mean(axis=1) / 255.0
        return [np.array([1.0 - m, m]) for m in means.tolist()]


def brightness(pixels: NDArray[np.uint8]) -> float:
    """The bright score :class:`BrightnessClassifier` gives a tile."""
    return float(pixels.reshape(-1).mean() / 255.0)


def pixels(png: bytes) -> NDArray[np.uint8]:
    """The RGB pixels of PNG bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
