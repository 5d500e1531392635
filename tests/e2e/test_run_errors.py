"""Bad input: a one-line error that names what to change, and nothing half-done."""

from __future__ import annotations

from pathlib import Path

import pytest
from tr_cli import tilerunner
from tr_scenes import make_scene

FAKE = "tilerunner.testing.models:FakeDetector"


@pytest.fixture(scope="module")
def tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("err"), width=300, height=200, n_boxes=3)[0]


def _error(tmp_path: Path, *args: str) -> str:
    done = tilerunner("run", *args, "--state", str(tmp_path / "s.db"), "--quiet", cwd=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_file(tmp_path: Path) -> None:
    line = _error(tmp_path, "nope.tif", "--model", FAKE, "-o", "o.geojson")
    assert "nope.tif" in line
    assert not (tmp_path / "o.geojson").exists()
    assert not (tmp_path / "s.db").exists()


def test_unreadable_raster(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_text("this is not a raster")
    line = _error(tmp_path, str(bad), "--model", FAKE, "-o", "o.geojson")
    assert "bad.tif" in line and "failed" in line


def test_tile_size_not_above_overlap(tmp_path: Path, tif: Path) -> None:
    line = _error(
        tmp_path,
        str(tif),
        "--model",
        FAKE,
        "-o",
        "o.geojson",
        "--tile-size",
        "64",
        "--overlap",
        "64",
    )
    assert "overlap" in line and "tile" in line


def test_unknown_model_suggests_a_name(tmp_path: Path, tif: Path) -> None:
    line = _error(tmp_path, str(tif), "--model", "zoo:yolov3-tiny-coc", "-o", "o.geojson")
    assert "yolov3-tiny-coco" in line


def test_malformed_model_output(tmp_path: Path, tif: Path) -> None:
    line = _error(
        tmp_path, str(tif), "--model", "tilerunner.testing.models:MalformedModel", "-o", "o.geojson"
    )
    assert "model" in line and "failed" in line


def test_unwritable_output_path(tmp_path: Path, tif: Path) -> None:
    line = _error(
        tmp_path, str(tif), "--model", FAKE, "-o", str(tmp_path / "no" / "such" / "o.geojson")
    )
    assert "no/such" in line and "does not exist" in line
    assert not (tmp_path / "s.db").exists()  # nothing stored for an invalid job


def test_unknown_output_format(tmp_path: Path, tif: Path) -> None:
    line = _error(tmp_path, str(tif), "--model", FAKE, "-o", "o.shp")
    assert ".geojson" in line or "geojson" in line


def test_one_unreadable_image_does_not_stop_the_others(tmp_path: Path, tif: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.tif").write_bytes(tif.read_bytes())
    (folder / "b.tif").write_text("broken")
    done = tilerunner(
        "run", str(folder), "--model", FAKE, "-o", "o.geojson", "--state", "s.db", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "partial" in done.stderr and "b.tif" in done.stderr
    assert (tmp_path / "o.geojson").exists()
