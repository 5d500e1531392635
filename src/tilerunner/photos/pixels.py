"""Photo pixels: decode a whole photo, fit it to the model input, crop detections.

Photos of mixed sizes share a batch because each is fitted to the model's square input:
``letterbox`` scales the long side to the input edge and pads the rest (aspect kept, what
detectors trained on letterboxed images expect), ``resize`` stretches both sides. A
:class:`Fit` remembers the scale and padding, so boxes found in model pixels are mapped back to
photo pixels exactly. Decoding goes through :class:`tilerunner.imagery.RasterReader` (GDAL), so a
photo is read from every place a raster is (local, http(s), s3), and the EXIF GPS tags GDAL
exposes give a photo its location.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tilerunner.imagery import GdalEnv, RasterReader, open_dataset
from tilerunner.tiling import Window

__all__ = ["Fit", "FitMode", "Photo", "PhotoDecoder", "crop_box", "fit"]

FitMode = Literal["letterbox", "resize"]


@dataclass(frozen=True, slots=True)
class Fit:
    """How a ``width`` x ``height`` picture was fitted into the model input."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_source(self, boxes: NDArray[np.float64], width: int, height: int) -> NDArray[np.float64]:
        """Boxes in model pixels -> boxes in the picture's pixels, clipped to it."""
        out = boxes.astype(np.float64, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def fit(pixels: NDArray[np.uint8], size: int, mode: FitMode) -> tuple[NDArray[np.uint8], Fit]:
    """The picture fitted into a ``size`` x ``size`` input, and how it was fitted."""
    from PIL import Image  # photo jobs only: an image's worker does not import Pillow

    height, width = pixels.shape[:2]
    image = Image.fromarray(pixels)
    if mode == "resize":
        out = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
        return out, Fit(size / width, size / height, 0.0, 0.0)
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    canvas = np.full((size, size, pixels.shape[2]), 114, dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Fit(new_w / width, new_h / height, float(pad_x), float(pad_y))


def crop_box(
    box: tuple[float, float, float, float], padding: float, width: int, height: int
) -> Window:
    """The pixel window of a detection widened by ``padding`` x its size, inside the photo."""
    x0, y0, x1, y1 = box
    pad_w, pad_h = (x1 - x0) * padding, (y1 - y0) * padding
    # at least one pixel of the photo, also for a box that is a line on its edge
    col0 = min(width - 1, max(0, int(np.floor(x0 - pad_w))))
    row0 = min(height - 1, max(0, int(np.floor(y0 - pad_h))))
    col1 = min(width, max(col0 + 1, int(np.ceil(x1 + pad_w))))
    row1 = min(height, max(row0 + 1, int(np.ceil(y1 + pad_h))))
    return Window(col0, row0, max(1, col1 - col0), max(1, row1 - row0))


@dataclass(frozen=True, slots=True)
class Photo:
    """A decoded photo: RGB pixels and its EXIF GPS location (lon, lat) if it has one."""

    pixels: NDArray[np.uint8]
    location: tuple[float, float] | None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


class PhotoDecoder:
    """Decodes one photo once, on first use, for any number of readers (thread-safe)."""

    def __init__(self, url: str, env: GdalEnv | None = None) -> None:
        self.url = url
        self._env = env
        self._lock = threading.Lock()
        self._photo: Photo | None = None

    def get(self) -> Photo:
        with self._lock:
            if self._photo is None:
                self._photo = _decode(self.url, self._env)
            return self._photo


def _decode(url: str, env: GdalEnv | None) -> Photo:
    reader = RasterReader(url, env=env)
    try:
        pixels = reader.read(Window(0, 0, reader.info.width, reader.info.height))
    finally:
        reader.close()
    with open_dataset(url, env) as dataset:
        tags = dataset.tags()
    return Photo(pixels, _gps(tags))


def _gps(tags: dict[str, str]) -> tuple[float, float] | None:
    """(lon, lat) from GDAL's EXIF_GPS* tags, e.g. ``(52) (31) (12.5)`` and ``N``."""
    try:
        lat = _degrees(tags["EXIF_GPSLatitude"], tags.get("EXIF_GPSLatitudeRef", "N"), "S")
        lon = _degrees(tags["EXIF_GPSLongitude"], tags.get("EXIF_GPSLongitudeRef", "E"), "W")
    except (KeyError, ValueError):
        return None
    return lon, lat


def _degrees(value: str, ref: str, negative: str) -> float:
    parts = [float(p) for p in value.replace("(", " ").replace(")", " ").split()]
    if len(parts) != 3:
        raise ValueError(value)
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    return -degrees if ref.strip().upper().startswith(negative) else degrees
