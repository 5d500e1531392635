"""Fake segmentation models: exact, cheap, and defined on any image size.

Both run on a whole image as well as on a tile, which is what the tests compare:
:class:`PixelSegmenter` decides each pixel from that pixel alone (tiled output must equal the
whole-image output bit for bit), and :class:`MeanFilterSegmenter` looks at a 5 x 5 window (equal
wherever the overlap covers half its receptive field). Integer arithmetic throughout, so no
floating-point rounding can differ between a tile and the whole image. Parameters are strings,
so both load through ``--model tilerunner.testing.segmenters:PixelSegmenter --model-param``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["MeanFilterSegmenter", "PixelSegmenter"]


def _bool(value: str | bool) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}


class PixelSegmenter:
    """Class of a pixel from its brightness: ``(R + G + B) * classes // 766``.

    ``probabilities=true`` returns ``[K, H, W]`` probabilities instead: a triangle around
    each class's brightness band, whose argmax is the class above. ``input_bands`` is the
    band count it declares it needs; ``crop`` px cut from each side of its output make it
    malformed (a mask smaller than the tile); ``seconds_per_tile`` makes it slow.
    """

    task = "segment"

    def __init__(self, classes: str | int = 3, probabilities: str | bool = False,
                 input_bands: str | int = 3, crop: str | int = 0,
                 seconds_per_tile: str | float = 0.0) -> None:  # fmt: skip
        self.n = int(classes)
        self.classes = [f"class{k}" for k in range(self.n)]
        self.probabilities = _bool(probabilities)
        self.input_bands = int(input_bands)
        self.crop = int(crop)
        self.seconds_per_tile = float(seconds_per_tile)

    def predict(self, tiles: NDArray[np.uint8]) -> Sequence[NDArray[np.generic]]:
        if self.seconds_per_tile:
            time.sleep(self.seconds_per_tile * len(tiles))  # a slow model, without CPU use
        brightness = tiles[..., :3].astype(np.int64).sum(axis=-1)
        if self.crop:
            brightness = brightness[:, self.crop : -self.crop, self.crop : -self.crop]
        ids = brightness * self.n // 766
        if not self.probabilities:
            return list(ids)
        centre = ids[:, None]
        k = np.arange(self.n)[None, :, None, None]
        score = np.maximum(0, 8 - 4 * np.abs(k - centre)).astype(np.float32)
        return list(score / score.sum(axis=1, keepdims=True))


class MeanFilterSegmenter:
    """Class of a pixel from the mean brightness of its 5 x 5 neighbourhood (edges repeated).

    Its receptive field reaches 2 px: a tile's output equals the whole image's wherever the
    pixel is at least 2 px from a tile edge that is not an image edge.
    """

    task = "segment"

    def __init__(self, classes: str | int = 4) -> None:
        self.n = int(classes)
        self.classes = [f"class{k}" for k in range(self.n)]

    def predict(self, tiles: NDArray[np.uint8]) -> Sequence[NDArray[np.generic]]:
        brightness = tiles[..., :3].astype(np.int64).sum(axis=-1)
        padded = np.pad(brightness, ((0, 0), (2, 2), (2, 2)), mode="edge")
        height, width = brightness.shape[1:]
        total = np.zeros_like(brightness)
        for dy in range(5):
            for dx in range(5):
                total += padded[:, dy : dy + height, dx : dx + width]
        return list(total * self.n // (25 * 766))
