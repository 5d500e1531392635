"""Segmentation written core by core equals the model run on the whole image at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from tr_segment import (
    MEAN,
    PIXEL,
    make_scene,
    read_raster,
    run_in_process,
    segment_job,
    whole_image,
)

from tilerunner.jobs import JobState


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("seg") / "scene.tif", 437, 301, seed=3)


@pytest.mark.parametrize(
    ("tile", "overlap", "region", "workers"),
    [
        (64, 16, 128, 2),
        pytest.param(50, 7, 50, 1, marks=pytest.mark.slow),
        (96, 0, 1000, 1),
        (128, 40, 200, 3),
        (512, 0, 512, 1),
    ],
)
def test_pixel_model_tiled_equals_whole_image(
    tmp_path: Path, scene: Path, tile: int, overlap: int, region: int, workers: int
) -> None:
    """Any tile size, overlap, region size and worker count: bit-identical to one whole run
    (the 512 px tile is larger than the image: one padded tile)."""
    out = tmp_path / "classes.tif"
    spec = segment_job(scene, out, PIXEL, {}, tile=tile, overlap=overlap, region=region)
    _, result = run_in_process(tmp_path / "s.db", spec, PIXEL, {}, workers)
    assert result.status is JobState.SUCCEEDED
    expected = whole_image(scene, PIXEL, {})
    got = read_raster(out)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    with rasterio.open(out) as dst, rasterio.open(scene) as src:
        assert (dst.transform, dst.crs, dst.nodata) == (src.transform, src.crs, 255)
        assert dst.profile["tiled"]
    assert not (tmp_path / "classes.tif.parts").exists()
    pixels = dict(zip(*np.unique(expected[expected != 255], return_counts=True), strict=True))
    assert result.labels == {f"class{k}": int(n) for k, n in pixels.items()}


def test_receptive_field_equal_where_overlap_covers_half_of_it(tmp_path: Path, scene: Path) -> None:
    """A 5 x 5 mean filter reaches 2 px: an overlap of 4 keeps every core 2 px from a seam."""
    out = tmp_path / "mean.tif"
    spec = segment_job(scene, out, MEAN, {}, tile=48, overlap=4, region=90)
    run_in_process(tmp_path / "s.db", spec, MEAN, {}, 2)
    assert np.array_equal(read_raster(out), whole_image(scene, MEAN, {}))


@pytest.mark.slow
def test_receptive_field_without_overlap_differs_at_seams(tmp_path: Path, scene: Path) -> None:
    """The same filter without overlap differs (the test above can fail)."""
    out = tmp_path / "mean.tif"
    spec = segment_job(scene, out, MEAN, {}, tile=48, overlap=0, region=90)
    run_in_process(tmp_path / "s.db", spec, MEAN, {}, 1)
    assert not np.array_equal(read_raster(out), whole_image(scene, MEAN, {}))


@pytest.mark.slow
@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_blended_probabilities(tmp_path: Path, scene: Path, blend: str) -> None:
    """Blending a per-pixel model changes no class and keeps probabilities within 1/254;
    region size and worker count change no bit of the blend."""
    params = {"probabilities": "true"}
    outputs = []
    for region, workers in ((60, 2), (400, 1)):
        out = tmp_path / f"{region}.tif"
        spec = segment_job(scene, out, PIXEL, params, tile=64, overlap=24, region=region,
                           blend=blend, probabilities="uint8")  # fmt: skip
        run_in_process(tmp_path / f"{region}.db", spec, PIXEL, params, workers)
        with rasterio.open(tmp_path / f"{region}.probabilities.tif") as src:
            outputs.append((read_raster(out), src.read()))
    (ids_a, probs_a), (ids_b, probs_b) = outputs
    assert np.array_equal(ids_a, whole_image(scene, PIXEL, params))
    assert np.array_equal(ids_a, ids_b) and np.array_equal(probs_a, probs_b)
    assert probs_a.shape == (3, 301, 437)
    valid = ids_a != 255
    assert (probs_a[:, ~valid] == 255).all()
    assert (probs_a.argmax(axis=0)[valid] == ids_a[valid]).all()
    exact = _whole_probabilities(scene, params)
    assert np.abs(probs_a[:, valid].astype(int) - exact[:, valid]).max() <= 1


def _whole_probabilities(scene: Path, params: dict[str, str]) -> np.ndarray:
    from tilerunner.imagery import RasterReader
    from tilerunner.models import load_model
    from tilerunner.tiling import Window

    with RasterReader(str(scene)) as reader:
        pixels = reader.read(Window(0, 0, 437, 301))
    (output,) = load_model(PIXEL, params, name="m").predict(pixels[None])
    assert output.probabilities is not None  # type: ignore[union-attr]
    return np.round(output.probabilities * 254).astype(int)  # type: ignore[union-attr]
