"""The worker's cache of open readers keeps at most ``max_readers``, adopted ones included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from tilerunner.errors import InvalidRequestError
from tilerunner.imagery import BandSpec, RasterReader
from tilerunner.tiling import Window
from tilerunner.worker import ReaderCache

WINDOW = Window(0, 0, 8, 8)


def _image(path: Path) -> str:
    with rasterio.open(
        path, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8"
    ) as dst:
        dst.write(np.full((3, 16, 16), 7, np.uint8))
    return str(path)


def _assert_closed(reader: RasterReader) -> None:
    with pytest.raises(InvalidRequestError, match="closed"):
        reader.read(WINDOW)


def test_an_adopted_reader_counts_against_the_bound(tmp_path: Path) -> None:
    first, second, third = (_image(tmp_path / f"{name}.tif") for name in "abc")
    cache = ReaderCache(max_readers=2)
    a = cache.get(first, BandSpec())
    b = cache.get(second, BandSpec())
    c = RasterReader(third)
    cache.adopt(c, BandSpec())
    _assert_closed(a)  # the least recently opened made room
    assert cache.get(second, BandSpec()) is b
    assert cache.get(third, BandSpec()) is c
    assert cache.get(third, BandSpec()).read(WINDOW).max() == 7
    cache.close()
    _assert_closed(b)
    _assert_closed(c)


def test_adopting_a_reader_for_an_open_image_closes_the_earlier_one(tmp_path: Path) -> None:
    image = _image(tmp_path / "a.tif")
    cache = ReaderCache(max_readers=1)
    earlier = cache.get(image, BandSpec())
    adopted = RasterReader(image)
    cache.adopt(adopted, BandSpec())
    _assert_closed(earlier)
    assert cache.get(image, BandSpec()) is adopted
    cache.close()
