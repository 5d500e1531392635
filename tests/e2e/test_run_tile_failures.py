"""A corrupted block of a real GeoTIFF fails only the tiles that read it, not their regions.

The scene is written as a tiled, DEFLATE-compressed GeoTIFF with 256 px blocks; the bytes of
one block are then overwritten, so GDAL fails to decode it. ``tilerunner run`` must end
``partial`` with exactly the objects owned by the tiles touching that block missing, and
``queue requeue`` after the file is repaired must bring every object back exactly once.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import rasterio
from tr_cli import pixel_boxes, tilerunner
from tr_scenes import make_scene

from tilerunner.merging import owned_mask
from tilerunner.tiling import TileGrid, Window

TRUTH_MODEL = "tilerunner.testing.models:TruthDetector"
WIDTH, HEIGHT, TILE, OVERLAP, REGION = 1000, 800, 128, 48, 400
BLOCK = (1, 1)  # block row, column: pixels [256, 512) on both axes


def _deflate_copy(source: Path, target: Path) -> None:
    with rasterio.open(source) as src:
        profile = {**src.profile, "compress": "deflate", "blockxsize": 256, "blockysize": 256}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read())


def _corrupt_block(tif: Path, row: int, col: int) -> Window:
    """Overwrite the bytes of one block (pixel-interleaved: one block holds every band)."""
    with rasterio.open(tif) as src:
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        assert src.block_shapes[0] == (256, 256)
        block = src.block_window(1, row, col)
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    with tif.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * size)
    return Window(int(block.col_off), int(block.row_off), int(block.width), int(block.height))


def _rounded(boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in b) for b in boxes)


def test_a_corrupted_block_fails_only_its_tiles_and_requeue_recovers_them(
    tmp_path: Path,
) -> None:
    raw, truth_csv, truth = make_scene(tmp_path, width=WIDTH, height=HEIGHT, n_boxes=150)
    tif, pristine = tmp_path / "scene-deflate.tif", tmp_path / "pristine.tif"
    _deflate_copy(raw, tif)
    shutil.copy(tif, pristine)
    bad = _corrupt_block(tif, *BLOCK)

    grid = TileGrid(WIDTH, HEIGHT, TILE, OVERLAP)
    touching = [
        (col, row)
        for row in range(grid.n_rows)
        for col in range(grid.n_cols)
        if grid.tile(col, row).intersection(bad) is not None
    ]
    boxes = np.asarray(truth)
    lost = np.zeros(len(truth), dtype=bool)
    for col, row in touching:
        lost |= owned_mask(boxes, grid.core(col, row), WIDTH, HEIGHT)
    kept = [b for b, gone in zip(truth, lost.tolist(), strict=True) if not gone]
    assert 0 < lost.sum() < len(truth) and len(touching) == 25

    state = tmp_path / "state.db"
    args = [
        "run", str(tif), "--model", TRUTH_MODEL, "--model-param", f"truth={truth_csv}",
        "--tile-size", str(TILE), "--overlap", str(OVERLAP), "--region-size", str(REGION),
        "--merge", "none", "-o", "out.geojson", "--state", str(state), "--quiet",
    ]  # fmt: skip
    first = tilerunner(*args, cwd=tmp_path)
    assert first.returncode != 0
    assert "job partial: 25 error(s)" in first.stderr and "source_error" in first.stderr
    assert pixel_boxes(tmp_path / "out.geojson") == _rounded(kept)
    with sqlite3.connect(state) as conn:
        [(job_id,)] = conn.execute("select id from jobs").fetchall()
        assert conn.execute("select count(*) from regions where state != 'done'").fetchone() == (0,)
        windows = conn.execute(
            "select col_off, row_off, width, height, code from tile_failures"
        ).fetchall()
    expected = {(*_window(grid, c, r), "source_error") for c, r in touching}
    assert set(windows) == expected and len(windows) == len(expected)

    shutil.copy(pristine, tif)  # the file is repaired
    requeue = tilerunner("queue", "requeue", job_id, "--store", f"sqlite:///{state}", cwd=tmp_path)
    assert requeue.returncode == 0, requeue.stderr
    assert f"requeued {len(touching)} failed tile(s)" in requeue.stdout

    again = tilerunner(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert pixel_boxes(tmp_path / "out.geojson") == _rounded(list(truth))  # each exactly once
    with sqlite3.connect(state) as conn:
        assert conn.execute("select count(*) from tile_failures").fetchone() == (0,)
        assert conn.execute("select count(*) from features").fetchone() == (len(truth),)
        assert conn.execute("select status from jobs").fetchone() == ("succeeded",)


def _window(grid: TileGrid, col: int, row: int) -> tuple[int, int, int, int]:
    w = grid.tile(col, row)
    return (w.col_off, w.row_off, w.width, w.height)
