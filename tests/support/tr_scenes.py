"""Seeded test scenes: a georeferenced raster and truth boxes that never overlap much."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def make_scene(
    folder: Path, *, width: int = 1500, height: int = 1100, n_boxes: int = 300,
    max_side: int = 40, seed: int = 7,
) -> tuple[Path, Path, list[tuple[float, float, float, float]]]:  # fmt: skip
    """A UTM GeoTIFF of seeded noise and a CSV of ``n_boxes`` truth boxes no larger than
    ``max_side`` whose pairwise IoU stays under 0.2 (so NMS must keep every one)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(3, height, width), dtype=np.uint8)
    tif = folder / "scene.tif"
    with rasterio.open(
        tif, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8",
        crs="EPSG:32618", transform=from_origin(500000.0, 4000000.0, 0.5, 0.5),
        tiled=True, blockxsize=256, blockysize=256,
    ) as dst:  # fmt: skip
        dst.write(pixels)
    boxes: list[tuple[float, float, float, float]] = []
    while len(boxes) < n_boxes:
        w, h = rng.uniform(6, max_side, size=2)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = (round(x0, 2), round(y0, 2), round(x0 + w, 2), round(y0 + h, 2))
        if all(_iou(box, other) < 0.2 for other in boxes):
            boxes.append(box)
    truth = folder / "truth.csv"
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["xmin", "ymin", "xmax", "ymax", "label"])
        for i, b in enumerate(boxes):
            writer.writerow([*b, "a" if i % 3 else "b"])
    return tif, truth, boxes


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
