"""Tile lists and covers: ``tiles cover`` against the slippy-map formula, GeoJSON areas, and a
malformed ``tiles.txt`` line reported with its number before any work starts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tr_cli import tilerunner

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import parse_job
from tilerunner.xyz.cover import cover_bbox, tile_bounds
from tilerunner.xyz.tiles import Tile, read_tiles


def _slippy(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """The OpenStreetMap wiki's formula for the tile holding a point."""
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return x, y


def _known_cover(west: float, south: float, east: float, north: float, zoom: int) -> set[str]:
    x0, y0 = _slippy(west, north, zoom)
    x1, y1 = _slippy(east, south, zoom)
    return {f"{x}-{y}-{zoom}" for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}


def test_cover_cli_prints_the_known_cover_of_a_bbox(tmp_path: Path) -> None:
    bbox = (13.37, 52.50, 13.42, 52.53)  # central Berlin
    done = tilerunner("tiles", "cover", "--bbox", ",".join(map(str, bbox)), "--zoom", "15",
                      cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert len(lines) == len(set(lines))
    assert set(lines) == _known_cover(*bbox, 15)
    assert len(lines) == 36  # columns 17600..17605 x rows 10744..10749
    assert min(lines) == "17600-10744-15" and max(lines) == "17605-10749-15"


def test_cover_of_a_geojson_area_keeps_only_tiles_that_meet_it(tmp_path: Path) -> None:
    # a thin diagonal triangle: its bbox cover has tiles the triangle does not touch
    ring = [[13.30, 52.40], [13.50, 52.40], [13.50, 52.60], [13.30, 52.40]]
    area = tmp_path / "area.geojson"
    polygon = {"type": "Polygon", "coordinates": [ring]}
    feature = {"type": "Feature", "properties": {}, "geometry": polygon}
    area.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    done = tilerunner("tiles", "cover", "--geojson", str(area), "--zoom", "13", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = set(done.stdout.split())
    box = _known_cover(13.30, 52.40, 13.50, 52.60, 13)
    assert found < box
    for text in box - found:  # every dropped tile lies wholly above the diagonal
        x, y, z = (int(v) for v in text.split("-"))
        _, south, east, _ = tile_bounds(Tile(x, y, z))
        assert south - 52.40 > (east - 13.30) - 1e-9  # above the line lat - 52.4 = lon - 13.3


def test_cover_needs_exactly_one_area(tmp_path: Path) -> None:
    done = tilerunner("tiles", "cover", "--zoom", "3", cwd=tmp_path)
    assert done.returncode != 0
    assert "exactly one of --bbox" in done.stderr


def test_cover_bbox_streams_tiles_in_order() -> None:
    tiles = list(cover_bbox((-180.0, -85.0, 180.0, 85.0), 2))
    assert len(tiles) == 16 and len(set(tiles)) == 16


def test_a_malformed_line_is_named_with_its_number_before_any_work(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles.txt"
    tiles.write_text("1-2-3\n\n# a comment\n4-5-6\n7_8_9\n")
    state = tmp_path / "state.db"
    done = tilerunner(
        "run", "--tiles", str(tiles), "--url-template", "http://127.0.0.1:9/{z}/{x}/{y}.png",
        "--model", "tr_tile_models:BrightnessClassifier", "-o", "out.csv",
        "--state", str(state), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "line 5" in done.stderr and "'7_8_9' is not a tile id" in done.stderr
    assert not state.exists()


def test_read_tiles_checks_the_range_of_each_zoom(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles.txt"
    tiles.write_text("0-0-0\n2-1-1\n")
    with pytest.raises(InvalidRequestError, match=r"line 2: tile 2-1-1 is outside zoom 1"):
        list(read_tiles(tiles))


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ({"url_template": "https://h/{z}/{x}/{y}.png?token=abc", "ids": ["0-0-0"]},
         "write 'token={token}' and set TILERUNNER_XYZ_TOKEN"),
        ({"url_template": "https://h/{z}/{x}.png", "ids": ["0-0-0"]}, "must hold {z}, {x}"),
        ({"url_template": "https://h/{z}/{x}/{y}.png", "ids": ["0-0-0"], "zoom": 3},
         "'bbox' and 'zoom' go together"),
        ({"url_template": "https://h/{z}/{x}/{y}.png", "ids": ["9-0-1"]}, "outside zoom 1"),
    ],
)  # fmt: skip
def test_the_tiles_section_says_what_to_fix(tiles: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("{", r"\{").replace("(", r"\(")):
        parse_job({"tiles": tiles, "pipeline": [{"task": "classify", "model": "m"}]})


def test_a_job_runs_sources_or_tiles_not_both() -> None:
    with pytest.raises(InvalidRequestError, match="'sources' \\(images\\) or 'tiles'"):
        parse_job({
            "sources": ["a.tif"], "pipeline": [{"task": "detect", "model": "m"}],
            "tiles": {"url_template": "https://h/{z}/{x}/{y}.png", "ids": ["0-0-0"]},
        })  # fmt: skip


def test_a_bbox_over_too_many_tiles_is_refused_before_anything_runs() -> None:
    with pytest.raises(InvalidRequestError, match="over 50,000,000; use a lower zoom"):
        parse_job({
            "tiles": {"url_template": "https://h/{z}/{x}/{y}.png",
                      "bbox": [-180, -85, 180, 85], "zoom": 14},
            "pipeline": [{"task": "classify", "model": "m"}],
        })  # fmt: skip


def test_run_flags_of_a_tile_job_are_checked_before_the_list_is_read(tmp_path: Path) -> None:
    from tilerunner.cli.tile_options import tile_job_section

    missing = tmp_path / "not-there.txt"  # never opened: the template is wrong first
    with pytest.raises(InvalidRequestError, match=r"--url-template: .*\{z\}, \{x\} and \{y\}"):
        tile_job_section((), missing, None, None, "https://h/{z}/{x}.png", "abc", 256, 0)
    with pytest.raises(InvalidRequestError, match=r"--url-template: .*TILERUNNER_XYZ_TOKEN"):
        tile_job_section((), missing, None, None, "https://h/{z}/{x}/{y}.png?key=s3cret",
                         "abc", 256, 0)  # fmt: skip
    with pytest.raises(InvalidRequestError, match=r"cannot read tile list"):
        tile_job_section((), missing, None, None, "https://h/{z}/{x}/{y}.png", "abc", 256, 0)
