"""Models that take the source's own values (``native_input``) and declare their band count.

A uint16 scene (values up to 4000, nodata 0) goes through the real reader and pipeline to a
model that reports what it saw: the values unscaled, NaN for nodata and for the padding past
the image edge. ``input_bands`` refuses a band selection of the wrong size before any work.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from numpy.typing import NDArray
from tr_cli import tilerunner

from tilerunner.errors import InvalidRequestError
from tilerunner.imagery import BandSpec, RasterReader
from tilerunner.models import wrap_model
from tilerunner.pipeline import RegionResult, RegionWork, TilePipeline
from tilerunner.store import FeatureRows
from tilerunner.tiling import RegionGrid, TileGrid, Window

WIDTH, HEIGHT, TILE = 100, 70, 32


class NativeStats:
    """Classifies each tile by what it holds: [share of NaN pixels, largest value / 10000]."""

    task = "classify"
    classes = ("nodata", "max")  # type: ignore[assignment]
    native_input = True
    input_bands = 2

    def __init__(self) -> None:
        self.dtypes: set[str] = set()

    def predict(self, tiles: NDArray[np.float32]) -> list[NDArray[np.float64]]:
        self.dtypes.add(str(tiles.dtype))
        out = []
        for tile in tiles:
            nan_share = float(np.isnan(tile).all(axis=2).mean())
            largest = float(np.nanmax(tile)) / 10000 if not np.isnan(tile).all() else 0.0
            out.append(np.array([nan_share, largest]))
        return out


@pytest.fixture
def uint16_scene(tmp_path: Path) -> tuple[str, NDArray[np.uint16]]:
    rng = np.random.default_rng(3)
    data = rng.integers(300, 4001, size=(2, HEIGHT, WIDTH), dtype=np.uint16)
    data[:, 10:20, 10:20] = 0  # nodata in both bands
    data[1, 40:45, 50:60] = 0  # nodata in band 2 only
    path = tmp_path / "scene.tif"
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 2, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(30, 0, 500000, 0, -30, 6000000), "nodata": 0,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path), data


def test_read_native_gives_unscaled_values_and_nan_for_no_data(
    uint16_scene: tuple[str, NDArray[np.uint16]],
) -> None:
    path, data = uint16_scene
    with RasterReader(path, BandSpec(bands=(2, 1))) as reader:
        pixels = reader.read_native(Window(WIDTH - 40, 0, 64, 64))
        scaled = reader.read(Window(0, 0, WIDTH, HEIGHT))
    assert pixels.dtype == np.float32 and pixels.shape == (64, 64, 2)
    np.testing.assert_array_equal(pixels[:, :40, 0], data[1, :64, WIDTH - 40 :])
    np.testing.assert_array_equal(pixels[:, :40, 1], data[0, :64, WIDTH - 40 :])
    assert np.isnan(pixels[:, 40:]).all()  # past the image edge
    with RasterReader(path, BandSpec(bands=(1, 2))) as reader:
        corner = reader.read_native(Window(0, 0, 32, 32))
    assert np.isnan(corner[10:20, 10:20]).all() and not np.isnan(corner[:10]).any()
    with RasterReader(path, BandSpec(bands=(1, 2))) as reader:
        one_band = reader.read_native(Window(50, 40, 10, 5))
    assert not np.isnan(one_band[..., 0]).any() and np.isnan(one_band[..., 1]).all()
    assert scaled.dtype == np.uint8 and scaled.max() <= 16  # the uint8 read still scales


def test_the_pipeline_hands_native_values_to_the_model(
    uint16_scene: tuple[str, NDArray[np.uint16]],
) -> None:
    path, data = uint16_scene
    impl = NativeStats()
    model = wrap_model(impl, name="native", spec="tests.pipeline:NativeStats")
    assert model.native_input and model.input_bands == 2
    grid = TileGrid(WIDTH, HEIGHT, TILE, 0)
    regions = RegionGrid(grid, 2)
    results: dict[Hashable, RegionResult] = {}
    pipeline = TilePipeline(model, lambda r: results.__setitem__(r.key, r), batch_size=3)
    with RasterReader(path, BandSpec(bands=(1, 2))) as reader:
        for region in regions.regions():
            tiles = tuple(regions.tiles(region))
            pipeline.submit(RegionWork(region.index, reader, tiles, WIDTH, HEIGHT))
        pipeline.close()
    assert impl.dtypes == {"float32"}
    rows = FeatureRows.concat([r.rows for r in results.values()])
    assert len(rows) == grid.n_tiles
    assert rows.extra is not None
    for box, extra in zip(rows.boxes.tolist(), rows.extra, strict=True):
        x0, y0, x1, y1 = (int(v) for v in box)
        window = data[:, y0:y1, x0:x1]
        nan_share, largest = extra["scores"]
        assert largest == pytest.approx(window.max() / 10000, abs=1e-6)  # not squeezed to 0..255
        expected_nodata = (window == 0).all(axis=0).sum() / (TILE * TILE)
        assert nan_share == pytest.approx(expected_nodata, abs=1e-6)  # rounded in rows
    assert max(e["scores"][0] for e in rows.extra) > 0  # the nodata square was seen


def test_native_models_take_float32_and_uint8_others_only_uint8() -> None:
    native = wrap_model(NativeStats(), name="native", spec="m:NativeStats")
    tiles = np.full((1, 8, 8, 2), 7, dtype=np.uint8)
    (out,) = native.predict(tiles)  # uint8 readers (photos) hand over their values as float32
    assert out.scores.tolist() == [0.0, pytest.approx(0.0007)]

    class Plain(NativeStats):
        native_input = False

    plain = wrap_model(Plain(), name="plain", spec="m:Plain")
    with pytest.raises(InvalidRequestError, match="takes uint8 tiles"):
        plain.predict(tiles.astype(np.float32))


@pytest.mark.parametrize(
    ("bands", "message"),
    [(None, "the default 3 bands"), ([4, 3, 2], r"3 band\(s\) \[4, 3, 2\]")],
)
def test_a_band_selection_of_the_wrong_size_is_refused(bands: Any, message: str) -> None:
    model = wrap_model(NativeStats(), name="native", spec="m:NativeStats")
    model.check_bands([1, 2])
    with pytest.raises(InvalidRequestError, match=f"takes 2 bands but the job reads {message}"):
        model.check_bands(bands)


@pytest.mark.parametrize("bad", [0, "6", 2.5])
def test_input_bands_must_be_a_positive_int(bad: object) -> None:
    class Bad(NativeStats):
        input_bands = bad  # type: ignore[assignment]

    with pytest.raises(InvalidRequestError, match="input_bands must be a positive int"):
        wrap_model(Bad(), name="bad", spec="m:Bad")


def test_run_refuses_the_wrong_band_count_before_any_work(
    uint16_scene: tuple[str, NDArray[np.uint16]], tmp_path: Path
) -> None:
    path, _ = uint16_scene
    result = tilerunner(
        "run", path, "--model", "test_pipeline_native_input:NativeStats", "--bands", "1,2,1",
        "-o", str(tmp_path / "out.geojson"), "--state", str(tmp_path / "state.db"),
        cwd=Path(__file__).parent,  # the model class is this module's
    )  # fmt: skip
    assert result.returncode != 0
    assert "takes 2 bands but the job reads 3 band(s) [1, 2, 1]" in result.stderr
    assert not (tmp_path / "state.db").exists() and not (tmp_path / "out.geojson").exists()
