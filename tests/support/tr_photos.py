"""Photo test data and the plugin models photo tests run (importable by worker processes).

:func:`make_photos` paints squares on small photos of mixed sizes, so the truth is known:
each square's box, and its shade (255: ``bright``, 200: ``dim``). :class:`ShadeDetector` finds
the squares with a score of their mean shade / 255 (bright about 1.0, dim about 0.78), so a
score filter between stages keeps only the bright ones; :class:`CentreClassifier` labels a crop
by its centre pixel, so a crop cut in the wrong place is labelled wrongly.
:func:`mark_red` puts a red spot at the centre of some bright squares, which
:class:`PickyClassifier` refuses (a model error for that crop alone) while its refusal file
exists: remove the file and a retry classifies them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image

from tilerunner.errors import ModelError
from tilerunner.testing.models import bright_boxes

BRIGHT, DIM, BACKGROUND = 255, 200, 20


@dataclass(frozen=True)
class TruthPhoto:
    name: str
    width: int
    height: int
    squares: list[tuple[int, int, int, int, int]]  # x0, y0, x1, y1, shade
    gps: tuple[float, float] | None = None


def make_photos(folder: Path, n: int, seed: int = 0, gps_every: int = 0) -> list[TruthPhoto]:
    """``n`` photos of mixed sizes (PNG, and JPEG for those with an EXIF GPS location)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        width, height = int(rng.integers(90, 420)), int(rng.integers(90, 420))
        pixels = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
        squares: list[tuple[int, int, int, int, int]] = []
        for _ in range(int(rng.integers(0, 4))):
            size = int(rng.integers(max(24, min(width, height) // 6), min(width, height) // 3))
            x0, y0 = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
            box = (x0 - 6, y0 - 6, x0 + size + 6, y0 + size + 6)
            if any(not (box[2] <= s[0] or s[2] <= box[0] or box[3] <= s[1] or s[3] <= box[1])
                   for s in squares):  # fmt: skip
                continue
            shade = BRIGHT if rng.random() < 0.6 else DIM
            pixels[y0 : y0 + size, x0 : x0 + size] = shade
            squares.append((x0, y0, x0 + size, y0 + size, shade))
        gps = (13.4 + i / 100, 52.5) if gps_every and i % gps_every == 0 else None
        image = Image.fromarray(pixels)
        if gps is None:
            name = f"photo{i:03d}.png"
            image.save(folder / name)
        else:
            name = f"photo{i:03d}.jpg"
            exif = Image.Exif()
            exif[ExifTags.IFD.GPSInfo] = {
                1: "N",
                2: (gps[1], 0.0, 0.0),
                3: "E",
                4: (gps[0], 0.0, 0.0),
            }
            image.save(folder / name, quality=98, exif=exif)
        out.append(TruthPhoto(name, width, height, squares, gps))
    return out


class ShadeDetector:
    """Squares of pixels at least 150 in every channel; score = the square's mean / 255."""

    task = "detect"
    classes: ClassVar[list[str]] = ["square"]

    def __init__(self, seconds_per_tile: str = "0") -> None:
        self.seconds_per_tile = float(seconds_per_tile)

    def predict(self, tiles: NDArray[np.uint8]) -> list[dict[str, Any]]:
        time.sleep(self.seconds_per_tile * len(tiles))
        out = []
        for tile in tiles:
            found = [
                b
                for b in bright_boxes((tile >= 150).all(axis=2))
                if min(b[2] - b[0], b[3] - b[1]) >= 3
            ]
            scores = [float(tile[y0:y1, x0:x1].mean()) / 255 for x0, y0, x1, y1 in found]
            out.append(
                {
                    "boxes": np.asarray(found, dtype=np.float64).reshape(-1, 4),
                    "scores": np.asarray(scores, dtype=np.float64),
                    "labels": np.zeros(len(found), dtype=np.int64),
                }
            )
        return out


class CentreClassifier:
    """``bright`` when the crop's centre pixel is at least 240, else ``dim``."""

    task = "classify"
    classes: ClassVar[list[str]] = ["dim", "bright"]
    version = "centre-1"

    def __init__(self, seconds_per_tile: str = "0") -> None:
        self.seconds_per_tile = float(seconds_per_tile)

    def predict(self, tiles: NDArray[np.uint8]) -> list[NDArray[np.float64]]:
        time.sleep(self.seconds_per_tile * len(tiles))
        h, w = tiles.shape[1:3]
        return [
            np.array([0.1, 0.9]) if tile[h // 2, w // 2].min() >= 240 else np.array([0.9, 0.1])
            for tile in tiles
        ]


def mark_red(folder: Path, photos: list[TruthPhoto], every: int = 2) -> int:
    """A red 8 x 8 spot at the centre of every ``every``-th bright square of the PNG photos
    (still found by :class:`ShadeDetector`, above its 0.9 score); how many were marked."""
    marked = seen = 0
    for photo in photos:
        if not photo.name.endswith(".png"):
            continue
        pixels = np.asarray(Image.open(folder / photo.name)).copy()
        for x0, y0, x1, y1, shade in photo.squares:
            if shade != BRIGHT:
                continue
            seen += 1
            if seen % every:
                continue
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            pixels[cy - 4 : cy + 4, cx - 4 : cx + 4] = (255, 0, 0)
            marked += 1
        Image.fromarray(pixels).save(folder / photo.name)
    return marked


class PickyClassifier(CentreClassifier):
    """:class:`CentreClassifier` that refuses a crop with a red centre while ``refuse`` exists."""

    def __init__(self, seconds_per_tile: str = "0", refuse: str = "refuse-red") -> None:
        super().__init__(seconds_per_tile)
        self.refuse = Path(refuse)

    def predict(self, tiles: NDArray[np.uint8]) -> list[NDArray[np.float64]]:
        h, w = tiles.shape[1:3]
        centres = tiles[:, h // 2, w // 2].astype(int)
        red = (centres[:, 0] >= 200) & (centres[:, 1] <= 80) & (centres[:, 2] <= 80)
        if red.any() and self.refuse.exists():
            raise ModelError("this classifier refuses red-centred crops")
        return super().predict(tiles)
