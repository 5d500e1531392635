from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from tilerunner.errors import InvalidRequestError
from tilerunner.imagery import BandSpec, GdalEnv, RasterReader
from tilerunner.imagery import reader as reader_module
from tilerunner.imagery.reader import _nodata_scalar
from tilerunner.tiling.window import Window

SAMPLES = ("RGB.byte.tif", "cogeo.tif", "test_tiled.tif", "OSBS_029.tif")
MakeRaster = Callable[..., str]


def _reference(path: Path) -> np.ndarray:
    """Full image as [H, W, 3] with GDAL's dataset mask applied, read by rasterio directly."""
    with rasterio.open(path) as ds:
        pixels: np.ndarray = np.moveaxis(ds.read([1, 2, 3]), 0, -1).copy()
        pixels[ds.dataset_mask() == 0] = 0
    return pixels


@pytest.mark.parametrize("name", SAMPLES)
def test_window_equals_slice_of_full_read(data_dir: Path, name: str) -> None:
    path = data_dir / name
    expected = _reference(path)
    with RasterReader(str(path)) as reader:
        full = reader.read(Window(0, 0, reader.info.width, reader.info.height))
        assert full.dtype == np.uint8 and full.shape == expected.shape
        np.testing.assert_array_equal(full, expected)
        window = Window(97, 131, 256, 200)
        part = reader.read(window)
        assert part.shape == (200, 256, 3)
        np.testing.assert_array_equal(part, full[131:331, 97:353])


def test_nodata_pixels_are_zero(data_dir: Path) -> None:
    with RasterReader(str(data_dir / "OSBS_029.tif")) as reader:  # nodata = 255
        full = reader.read(Window(0, 0, 400, 400))
    with rasterio.open(data_dir / "OSBS_029.tif") as ds:
        raw = np.moveaxis(ds.read(), 0, -1)
    all_nodata = (raw == 255).all(axis=2)
    assert all_nodata.any()
    assert (full[all_nodata] == 0).all()
    np.testing.assert_array_equal(full[~all_nodata], raw[~all_nodata])


@pytest.mark.parametrize("name", SAMPLES)
def test_boundless_reads_are_zero_padded(data_dir: Path, name: str) -> None:
    with RasterReader(str(data_dir / name)) as reader:
        w, h = reader.info.width, reader.info.height
        full = reader.read(Window(0, 0, w, h))
        corner = reader.read(Window(w - 100, h - 50, 256, 256))
        assert corner.shape == (256, 256, 3)
        np.testing.assert_array_equal(corner[:50, :100], full[h - 50 :, w - 100 :])
        assert not corner[50:].any() and not corner[:, 100:].any()
        before = reader.read(Window(-30, -40, 64, 64))
        np.testing.assert_array_equal(before[40:, 30:], full[:24, :34])
        assert not before[:40].any() and not before[:, :30].any()
        outside = reader.read(Window(w + 5, 0, 16, 16))
        assert outside.shape == (16, 16, 3) and not outside.any()


def test_uint16_scaled_by_dtype_max_and_explicit_scale(make_raster: MakeRaster) -> None:
    values = np.array([[0, 500, 1000, 2000, 65535, 32768]], dtype=np.uint16)
    path = make_raster(np.stack([values] * 3))
    with RasterReader(path) as reader:
        got = reader.read(Window(0, 0, 6, 1))[0, :, 0]
    # round(v * 255 / 65535), computed by hand
    assert got.tolist() == [0, 2, 4, 8, 255, 128]
    with RasterReader(path, BandSpec(scale=(0, 1000))) as reader:
        got = reader.read(Window(0, 0, 6, 1))[0, :, 0]
    assert got.tolist() == [0, 128, 255, 255, 255, 255]


def test_uint16_nodata_zeroed_and_unrepresentable_nodata_ignored(
    make_raster: MakeRaster,
) -> None:
    values = np.array([[[0, 65535, 1000]]] * 3, dtype=np.uint16).reshape(3, 1, 3)
    values[0, 0, 2] = 0  # only band 1 is zero: the pixel stays valid
    with RasterReader(make_raster(values, "nd0.tif", nodata=0)) as reader:
        got = reader.read(Window(0, 0, 3, 1))[0]
    assert got.tolist() == [[0, 0, 0], [255, 255, 255], [0, 4, 4]]
    # rasterio refuses to write such a file, but GDAL may hand one over: no pixel can match.
    assert _nodata_scalar(-9999.0, np.dtype(np.uint16)) is None
    assert _nodata_scalar(0.5, np.dtype(np.int16)) is None
    assert _nodata_scalar(255.0, np.dtype(np.uint8)) == np.uint8(255)


def test_float_scaled_from_unit_range_and_nan_is_zero(make_raster: MakeRaster) -> None:
    values = np.array([[[-0.5, 0.0, 0.5, 1.0, 2.0, np.nan]]], dtype=np.float32)
    with RasterReader(make_raster(values)) as reader:
        got = reader.read(Window(0, 0, 6, 1))
    assert got.shape == (1, 6, 3)
    assert got[0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]
    assert (got[..., 0] == got[..., 2]).all()  # one band replicated to three


def test_band_selection_and_replication(data_dir: Path, make_raster: MakeRaster) -> None:
    path = str(data_dir / "test_tiled.tif")
    window = Window(300, 200, 128, 96)
    with RasterReader(path) as reader:
        rgb = reader.read(window)
    with RasterReader(path, BandSpec(bands=(3, 1))) as reader:
        picked = reader.read(window)
    assert picked.shape == (96, 128, 2)
    np.testing.assert_array_equal(picked, rgb[..., [2, 0]])
    two_band = make_raster(np.stack([np.full((8, 8), 7), np.full((8, 8), 9)]).astype(np.uint8))
    with RasterReader(two_band) as reader:
        assert reader.read(Window(0, 0, 8, 8)).tolist() == np.full((8, 8, 3), 7).tolist()
    with pytest.raises(InvalidRequestError, match="has 3 band"):
        RasterReader(path, BandSpec(bands=(4,)))


def test_overview_read_is_decimated(data_dir: Path) -> None:
    with RasterReader(str(data_dir / "RGB.byte.tif")) as reader:
        small = reader.read_overview(200)
    assert small.shape == (182, 200, 3)  # 718 * 200 / 791 = 181.5
    assert small.any()


def test_concurrent_reads_from_four_threads(data_dir: Path) -> None:
    path = data_dir / "cogeo.tif"
    expected = _reference(path)
    reader = RasterReader(str(path), env=GdalEnv.default())
    rng = np.random.default_rng(7)
    windows = [Window(int(c), int(r), 200, 150) for c, r in rng.integers(-50, 1000, size=(80, 2))]
    padded = np.zeros((1024 + 400, 1024 + 400, 3), dtype=np.uint8)
    padded[200:1224, 200:1224] = expected
    failures: list[str] = []
    barrier = threading.Barrier(4)

    def work(offset: int) -> None:
        barrier.wait()
        for w in windows[offset::4]:
            got = reader.read(w)
            want = padded[w.row_off + 200 : w.row_end + 200, w.col_off + 200 : w.col_end + 200]
            if not np.array_equal(got, want):
                failures.append(repr(w))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.close()
    assert failures == []
    with pytest.raises(InvalidRequestError, match="closed"):
        reader.read(Window(0, 0, 1, 1))


def test_reads_in_turn_share_the_handle_that_read_the_header(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each open of a remote image is a request: a handle is opened only when every other one
    # is busy, so reads made one after another, from any thread, reuse the first
    opened: list[str] = []
    real_open = reader_module._open

    def counting_open(url: str) -> object:
        opened.append(url)
        return real_open(url)

    monkeypatch.setattr(reader_module, "_open", counting_open)
    path = data_dir / "cogeo.tif"
    expected = _reference(path)
    reader = RasterReader(str(path))
    got: list[np.ndarray] = []
    for offset in range(3):
        thread = threading.Thread(
            target=lambda o=offset: got.append(reader.read(Window(o, 0, 64, 32)))
        )
        thread.start()
        thread.join()
    assert len(opened) == 1
    assert all(np.array_equal(g, expected[0:32, o : o + 64]) for o, g in enumerate(got))
    reader.close()
    with pytest.raises(InvalidRequestError, match="closed"):
        reader.read(Window(0, 0, 1, 1))


def test_a_reader_whose_bands_are_refused_closes_its_handle(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handles: list[Any] = []
    real_open = reader_module._open

    def keeping_open(url: str) -> Any:
        handles.append(real_open(url))
        return handles[-1]

    monkeypatch.setattr(reader_module, "_open", keeping_open)
    with pytest.raises(InvalidRequestError, match="band 9 requested"):
        RasterReader(str(data_dir / "cogeo.tif"), BandSpec(bands=(9,)))
    assert len(handles) == 1 and handles[0].closed
