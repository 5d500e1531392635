"""A segmentation run that cannot succeed says why in one line, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from tr_cli import tilerunner
from tr_segment import PIXEL, make_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("seg") / "scene.tif", 90, 70, seed=1)


def _run(tmp_path: Path, scene: Path, *args: str) -> tuple[int, str]:
    done = tilerunner(
        "run", str(scene), "--tile-size", "32", "--overlap", "8", "--state",
        str(tmp_path / "s.db"), "--quiet", *args, cwd=tmp_path,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, lines[-1] if lines else ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", PIXEL, "--model-param", "crop=2", "-o", "c.tif"],
         "mask has shape (28, 28), expected (32, 32)"),
        (["--model", PIXEL, "--model-param", "input_bands=4", "--bands", "1,2,3,4",
          "-o", "c.tif"], "reads 4 bands but"),
        (["--model", PIXEL, "-o", "c.geojson"], "give one -o ending in .tif"),
        (["--model", PIXEL, "-o", "c.tif", "--blend", "cosine"],
         "need a model that returns class probabilities"),
        (["--model", "tilerunner.testing.models:FakeDetector", "-o", "c.tif"],
         "a .tif output is a class raster, for segmentation models"),
    ],
)  # fmt: skip
def test_bad_segment_runs_fail_in_one_line(
    tmp_path: Path, scene: Path, args: list[str], message: str
) -> None:
    code, last = _run(tmp_path, scene, *args)
    assert code != 0
    assert message in last
    assert not (tmp_path / "s.db").exists()  # refused before the state was opened


def test_existing_output_needs_overwrite(tmp_path: Path, scene: Path) -> None:
    (tmp_path / "c.tif").write_bytes(b"old")
    code, last = _run(tmp_path, scene, "--model", PIXEL, "-o", "c.tif")
    assert code != 0 and "exists; pass --overwrite" in last
    assert (tmp_path / "c.tif").read_bytes() == b"old"
