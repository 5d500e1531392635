"""``tilerunner run`` over XYZ tiles from a real loopback tile server.

The server serves 256 px PNG tiles cut from tests/data/cogeo.tif; among the listed tiles one is
missing (404), one stalls past the client's timeout and one is garbage bytes. The job must end
``partial`` with one clear error per bad tile, every other tile classified with the scores the
model gives its pixels, and the thresholded GeoJSON holding exactly the tiles scoring enough,
as lon/lat tile polygons with their z/x/y.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tr_cli import features, tilerunner
from tr_tile_models import brightness, pixels

from tilerunner.testing.tile_server import TileServer, png_bytes
from tilerunner.xyz.fetch import FetchOptions, TileFetcher, TileFetchError
from tilerunner.xyz.tiles import Tile

pytestmark = pytest.mark.slow
ZOOM = 18
MODEL = "tr_tile_models:BrightnessClassifier"
FAST_FAIL = {"TILERUNNER_XYZ_TIMEOUT_SECONDS": "1", "TILERUNNER_XYZ_RETRIES": "1"}


def _lonlat(x: int, y: int, z: int) -> tuple[float, float]:
    """North-west corner of a tile (the OpenStreetMap wiki's inverse formula)."""
    n = 2**z
    return x / n * 360.0 - 180.0, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))


def _write_list(path: Path, tiles: list[Tile]) -> Path:
    path.write_text("".join(f"{t}\n" for t in tiles))
    return path


def test_tile_job_ends_partial_with_per_tile_errors_and_thresholded_hits(
    tmp_path: Path, cogeo_tiles: dict[Tile, bytes]
) -> None:
    served = sorted(cogeo_tiles)
    missing = Tile(served[0].x - 3, served[0].y, ZOOM)
    stalled, garbage = served[5], served[10]
    good = [t for t in served if t not in (stalled, garbage)]
    scores = {t: brightness(pixels(cogeo_tiles[t])) for t in good}
    ranked = sorted(scores.values())
    cut = round((ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2, 4)  # half pass
    listed = _write_list(tmp_path / "tiles.txt", [*served, missing])
    state = tmp_path / "state.db"
    with TileServer(cogeo_tiles) as server:
        server.stall.add(stalled)
        server.garbage.add(garbage)
        done = tilerunner(
            "run", "--tiles", str(listed), "--url-template", server.url_template,
            "--model", MODEL, "--tiles-per-item", "5", "-o", "tiles.csv", "-o", "hits.geojson",
            "--threshold", f"1:{cut}", "--state", str(state), "--quiet",
            cwd=tmp_path, **FAST_FAIL,
        )  # fmt: skip
        assert server.requests[stalled] >= 1  # the stalled tile was asked for, and timed out
    assert done.returncode != 0
    assert "job partial: 3 error(s)" in done.stderr, done.stderr

    with (tmp_path / "tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["tile"] for r in rows) == sorted(str(t) for t in good)
    for row in rows:
        tile = Tile(int(row["x"]), int(row["y"]), int(row["z"]))
        assert str(tile) == row["tile"]
        dark, bright = json.loads(row["scores"])
        assert bright == pytest.approx(scores[tile], abs=1e-6)
        assert row["label"] == ("bright" if bright > dark else "dark")

    hits = features(tmp_path / "hits.geojson")
    expected = {t for t in good if scores[t] >= cut}
    assert 0 < len(expected) < len(good)
    assert {Tile(f["properties"]["x"], f["properties"]["y"], f["properties"]["z"])
            for f in hits} == expected  # fmt: skip
    for feature in hits:
        p = feature["properties"]
        west, north = _lonlat(p["x"], p["y"], p["z"])
        east, south = _lonlat(p["x"] + 1, p["y"] + 1, p["z"])
        ring = feature["geometry"]["coordinates"][0]
        lons, lats = [c[0] for c in ring], [c[1] for c in ring]
        assert min(lons) == pytest.approx(west, abs=1e-9)
        assert max(lons) == pytest.approx(east, abs=1e-9)
        assert min(lats) == pytest.approx(south, abs=1e-9)
        assert max(lats) == pytest.approx(north, abs=1e-9)

    with sqlite3.connect(state) as db:
        errors = [m for (m,) in db.execute("SELECT message FROM tile_failures ORDER BY message")]
        (job_id,) = db.execute("SELECT id FROM jobs").fetchone()
    # the same outputs from the store afterwards, the class named this time
    again = tilerunner(
        "results", job_id, "--store", f"sqlite:///{state}", "-o", "all.csv",
        "-o", "again.geojson", "--threshold", f"bright:{cut}", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"wrote {len(good)} features to all.csv" in again.stdout
    assert features(tmp_path / "again.geojson") == hits
    assert len(errors) == 3
    by_tile = {t: next(m for m in errors if m.startswith(f"tile {t}"))
               for t in (missing, stalled, garbage)}  # fmt: skip
    assert "HTTP 404" in by_tile[missing]
    assert "timed out after 1 s (2 tries)" in by_tile[stalled]
    assert "bytes received are not an image that decodes" in by_tile[garbage]


def test_tms_service_with_minus_y_template_gives_the_xyz_results(
    tmp_path: Path, cogeo_tiles: dict[Tile, bytes]
) -> None:
    tiles = sorted(cogeo_tiles)[:6]
    listed = _write_list(tmp_path / "tiles.txt", tiles)
    with TileServer(cogeo_tiles, scheme="tms") as server:
        assert "{-y}" in server.url_template
        done = tilerunner(
            "run", "--tiles", str(listed), "--url-template", server.url_template,
            "--model", MODEL, "-o", "tiles.csv", "--state", str(tmp_path / "s.db"), "--quiet",
            cwd=tmp_path, **FAST_FAIL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        # the XYZ row asked of a TMS service is another tile: here, one it does not have
        fetcher = TileFetcher(server.url_template.replace("{-y}", "{y}"), "abc", FetchOptions())
        try:
            with pytest.raises(TileFetchError, match="HTTP 404"):
                fetcher.fetch(tiles[0])
        finally:
            fetcher.close()
    with (tmp_path / "tiles.csv").open() as handle:
        rows = {r["tile"]: json.loads(r["scores"])[1] for r in csv.DictReader(handle)}
    expected = {str(t): brightness(pixels(cogeo_tiles[t])) for t in tiles}
    assert rows == pytest.approx(expected, abs=1e-6)


def test_detections_on_tile_edges_are_found_once_at_full_extent_with_context(
    tmp_path: Path,
) -> None:
    x0, y0 = 140_000, 90_000  # a 3 x 3 block of tiles at ZOOM
    canvas = np.zeros((768, 768, 3), dtype=np.uint8)
    squares = [
        (246, 100, 266, 120),  # across the edge x = 256
        (400, 502, 420, 522),  # across the edge y = 512
        (500, 250, 520, 270),  # across the corner (512, 256)
        (60, 60, 80, 80),  # inside a tile
        (700, 700, 720, 720),  # inside the last tile
    ]
    for a, b, c, d in squares:
        canvas[b:d, a:c] = 255
    served = {
        Tile(x0 + i, y0 + j, ZOOM): png_bytes(
            canvas[j * 256 : (j + 1) * 256, i * 256 : (i + 1) * 256]
        )
        for i in range(3)
        for j in range(3)
    }
    listed = _write_list(tmp_path / "tiles.txt", sorted(served))
    with TileServer(served) as server:
        done = tilerunner(
            "run", "--tiles", str(listed), "--url-template", server.url_template,
            "--model", "tilerunner.testing.models:FakeDetector", "--context", "32",
            "--tiles-per-item", "4", "--merge", "none", "-o", "found.geojson",
            "--state", str(tmp_path / "s.db"), "--quiet", cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = sorted(
        tuple(f["properties"]["pixel_bbox"]) for f in features(tmp_path / "found.geojson")
    )
    expected = sorted(
        (float(x0 * 256 + a), float(y0 * 256 + b), float(x0 * 256 + c), float(y0 * 256 + d))
        for a, b, c, d in squares
    )
    assert found == expected
