"""``tilerunner run`` end to end: exact results, independent of how the work is cut."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tr_cli import features, pixel_boxes, tilerunner

TRUTH_MODEL = "tilerunner.testing.models:TruthDetector"


def _truth_boxes(path: Path) -> list[tuple[float, ...]]:
    with path.open(newline="") as handle:
        return sorted(
            tuple(float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            for r in csv.DictReader(handle)
        )


def test_osbs_truth_boxes_come_back_exactly(tmp_path: Path, shared_data: Path) -> None:
    """61 real tree boxes, many across tile seams: none lost, none doubled, none partial."""
    out = tmp_path / "trees.geojson"
    done = tilerunner(
        "run", str(shared_data / "OSBS_029.tif"), "--model", TRUTH_MODEL,
        "--model-param", f"truth={shared_data / 'OSBS_029.csv'}",
        "--tile-size", "128", "--overlap", "64", "--region-size", "128", "--merge", "none",
        "-o", str(out), "--state", str(tmp_path / "s.db"), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    truth = _truth_boxes(shared_data / "OSBS_029.csv")
    assert len(truth) == 61
    assert pixel_boxes(out) == truth
    first = features(out)[0]
    assert first["geometry"]["type"] == "Polygon"
    lon, lat = first["geometry"]["coordinates"][0][0]
    assert -83 < lon < -81 and 29 < lat < 30  # OSBS, Florida
    assert first["properties"]["label"] == "Tree"
    assert first["properties"]["image"] == str(shared_data / "OSBS_029.tif")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[tuple[float, ...]]]:
    from tr_scenes import make_scene

    return make_scene(tmp_path_factory.mktemp("scene"))


def _run_scene(
    tmp_path: Path, scene: tuple[Path, Path, object], tag: str, *extra: str
) -> list[tuple[float, ...]]:
    tif, truth, _ = scene
    out = tmp_path / f"{tag}.geojson"
    done = tilerunner(
        "run", str(tif), "--model", TRUTH_MODEL, "--model-param", f"truth={truth}",
        "--tile-size", "128", "--overlap", "48", "-o", str(out),
        "--state", str(tmp_path / f"{tag}.db"), "--quiet", *extra, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return pixel_boxes(out)


@pytest.mark.slow
def test_synthetic_truth_recovered_through_nms(
    tmp_path: Path, scene: tuple[Path, Path, list[tuple[float, ...]]]
) -> None:
    """300 boxes no larger than the overlap, on seams of tiles and regions: exactly the truth."""
    expected = sorted(scene[2])
    got = _run_scene(tmp_path, scene, "nms", "--region-size", "240")
    assert got == [tuple(round(v, 6) for v in b) for b in expected]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("region_tiles", "workers", "batch"),
    [(1, 1, 1), (3, 4, 5), (8, 1, 16), (8, 4, 3), (3, 1, 64)],
)
def test_output_does_not_depend_on_region_size_workers_or_batch(
    tmp_path: Path,
    scene: tuple[Path, Path, list[tuple[float, ...]]],
    region_tiles: int,
    workers: int,
    batch: int,
) -> None:
    stride = 128 - 48
    baseline = _run_scene(tmp_path, scene, "base", "--region-size", str(2 * stride))
    got = _run_scene(
        tmp_path, scene, "other", "--region-size", str(region_tiles * stride),
        "--workers", str(workers), "--batch-size", str(batch),
    )  # fmt: skip
    assert got == baseline
    assert len(got) == 300
