"""Build the demo scene: a large, georeferenced mosaic of two real street photos.

YOLOv3-tiny is trained on ground-level COCO photos and does poorly on overhead imagery, so the
demo composes the two sample photos shipped in the ``ultralytics`` wheel (a bus with people,
two people) at several scales and flips into one big canvas. The photos are placed on a
jittered grid with no regard for the tile grid, so many people and buses straddle tile and
region seams: exactly the case that ownership and merging must get right. The canvas is written
as a tiled, JPEG-compressed GeoTIFF in Web Mercator (the location is arbitrary, chosen so the
output has real map coordinates), so the run reads it window by window like any scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from PIL import Image
from rasterio.transform import from_origin

__all__ = ["DemoScene", "build_demo_scene"]

# Web Mercator origin of the canvas (metres) and its pixel size: arbitrary but real.
_ORIGIN = (-412300.0, 4927000.0)
_PIXEL_METRES = 0.05


@dataclass(frozen=True, slots=True)
class DemoScene:
    path: Path
    width: int
    height: int
    photos_placed: int


def _photo(path: Path, scale: float, flip: bool) -> NDArray[np.uint8]:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        resized = rgb.resize(size, Image.Resampling.LANCZOS)
    if flip:
        resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(resized, dtype=np.uint8)


def build_demo_scene(
    out: Path,
    photos: list[Path],
    *,
    width: int = 6144,
    height: int = 4096,
    cell: int = 560,
    scales: tuple[float, float] = (0.32, 0.5),
    seed: int = 0,
) -> DemoScene:
    """Compose ``photos`` into a ``width`` x ``height`` GeoTIFF at ``out`` (seeded, repeatable)."""
    rng = np.random.default_rng(seed)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = rng.integers(96, 128, size=(1, 1, 3), dtype=np.uint8)
    canvas += rng.integers(0, 12, size=(height, width, 1), dtype=np.uint8)
    placed = 0
    for top in range(0, height, cell):
        for left in range(0, width, cell):
            photo = _photo(
                photos[int(rng.integers(len(photos)))],
                float(rng.uniform(*scales)),
                bool(rng.integers(2)),
            )
            h, w = photo.shape[:2]
            y = top + int(rng.integers(-cell // 6, cell // 6 + 1))
            x = left + int(rng.integers(-cell // 6, cell // 6 + 1))
            y0, x0 = max(0, y), max(0, x)
            y1, x1 = min(height, y + h), min(width, x + w)
            if y1 - y0 < h // 2 or x1 - x0 < w // 2:
                continue
            canvas[y0:y1, x0:x1] = photo[y0 - y : y1 - y, x0 - x : x1 - x]
            placed += 1
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "transform": from_origin(_ORIGIN[0], _ORIGIN[1], _PIXEL_METRES, _PIXEL_METRES),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "JPEG",
        "photometric": "YCBCR",
        "jpeg_quality": 90,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(canvas.transpose(2, 0, 1))
        dst.build_overviews([2, 4, 8, 16], rasterio.enums.Resampling.average)
    return DemoScene(out, width, height, placed)
