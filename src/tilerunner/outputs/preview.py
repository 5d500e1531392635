"""Preview PNG: a downsampled view of an image with its detections drawn on top.

A preview is for a human glancing at a result, so it never needs full resolution. The pixels
come from :meth:`RasterReader.read_overview`, a decimated read that lets GDAL use the file's
overviews: a preview of a 200,000 px scene reads a few megabytes, not the scene. Boxes are
scaled into the preview, drawn with one colour per label (stable across runs, so the same class
looks the same in every preview) and captioned with label and score.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw, ImageFont

from tilerunner.imagery.reader import RasterReader
from tilerunner.outputs.writers import write_output

__all__ = ["label_colour", "write_preview"]

_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


def label_colour(label: str) -> tuple[int, int, int]:
    """A colour that depends only on the label text."""
    return _PALETTE[zlib.crc32(label.encode("utf-8")) % len(_PALETTE)]


def write_preview(
    png_path: str,
    reader: RasterReader,
    boxes: ArrayLike,
    labels: Sequence[str],
    scores: ArrayLike,
    *,
    max_size: int = 2048,
) -> None:
    """Write a PNG no larger than ``max_size`` on its longer side with ``boxes`` drawn.

    ``boxes`` are full-resolution pixel boxes ``[N, 4]`` (x0, y0, x1, y1) of ``reader``'s image.
    """
    pixels = reader.read_overview(max_size)
    if pixels.shape[2] < 3:  # explicit single/two-band selection: show the first as grey
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    image = Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]))
    sx = image.width / reader.info.width
    sy = image.height / reader.info.height
    scaled = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * (sx, sy, sx, sy)
    score_values = np.asarray(scores, dtype=np.float64).ravel()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    width = max(1, round(max(image.size) / 800))
    for (x0, y0, x1, y1), label, score in zip(
        scaled.tolist(), labels, score_values.tolist(), strict=True
    ):
        colour = label_colour(label)
        draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=colour, width=width)
        caption = f"{label} {score:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), caption, font=font)
        top_y = max(0.0, y0 - (bottom - top) - 2)
        draw.rectangle((x0, top_y, x0 + right - left + 2, top_y + bottom - top + 2), fill=colour)
        draw.text((x0 + 1, top_y), caption, fill=(0, 0, 0), font=font)
    write_output(png_path, lambda path: image.save(path, format="PNG"))
