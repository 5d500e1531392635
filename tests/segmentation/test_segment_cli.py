"""``tilerunner run`` with a segmentation model, as a user runs it: worker processes, class
statistics in the job object, polygons, and a worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tr_cli import cli_env, tilerunner
from tr_segment import PIXEL, make_scene, read_raster, whole_image


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("seg") / "scene.tif", 333, 257, seed=5)


ARGS = ["--tile-size", "64", "--overlap", "16", "--region-size", "96", "--quiet"]


@pytest.mark.slow
def test_run_writes_raster_statistics_and_polygons(tmp_path: Path, scene: Path) -> None:
    done = tilerunner(
        "run", str(scene), "--model", PIXEL, "-o", "classes.tif", "--vectorize", "classes.parquet",
        "--workers", "2", "--state", "s.db", *ARGS, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = whole_image(scene, PIXEL, {})
    assert np.array_equal(read_raster(tmp_path / "classes.tif"), expected)
    assert "class1" in done.stdout  # pixels per class in the summary

    job_id = sqlite3.connect(tmp_path / "s.db").execute("select id from jobs").fetchone()[0]
    status = tilerunner(
        "status", job_id, "--json", "--store", f"sqlite:///{tmp_path / 's.db'}", cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr
    stats = {s["class_id"]: s for s in json.loads(status.stdout)["statistics"]}
    ids, counts = np.unique(expected[expected != 255], return_counts=True)
    assert {c: stats[c]["pixels"] for c in stats} == dict(
        zip(ids.tolist(), counts.tolist(), strict=True)
    )
    assert stats[1]["area"] == pytest.approx(stats[1]["pixels"] * 0.25)  # 0.5 m pixels
    assert stats[1]["label"] == "class1"

    polygons = pq.read_table(tmp_path / "classes.parquet").to_pylist()
    assert polygons and {p["label"] for p in polygons} <= {"class1", "class2"}  # 0: background
    per_class: dict[str, int] = {}
    for p in polygons:
        per_class[p["label"]] = per_class.get(p["label"], 0) + p["pixel_count"]
    assert per_class == {f"class{c}": stats[c]["pixels"] for c in stats if c != 0}


def _worker_holding_a_lease(db: Path) -> int | None:
    if not db.exists():
        return None
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            done = conn.execute("select count(*) from regions where state='done'").fetchone()[0]
            row = conn.execute("select pid from workers where leases_held > 0").fetchone()
        except sqlite3.OperationalError:
            return None
    return int(row[0]) if row and done >= 3 else None


@pytest.mark.slow
def test_worker_killed_mid_run_output_equals_a_clean_run(tmp_path: Path, scene: Path) -> None:
    args = ["run", str(scene), "--model", PIXEL, "--model-param", "seconds_per_tile=0.1",
            "--workers", "2", *ARGS]  # fmt: skip
    clean = tilerunner(*args, "-o", "clean.tif", "--state", "clean.db", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr

    state = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilerunner", *args, "-o", "killed.tif", "--state", str(state)],
        cwd=tmp_path, env=cli_env(TILERUNNER_LEASE_SECONDS="2"), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while (pid := _worker_holding_a_lease(state)) is None:
        assert proc.poll() is None, "the run finished before a worker could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)  # one worker, mid-region; the run starts another
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert (
        read_raster(tmp_path / "killed.tif").tobytes()
        == read_raster(tmp_path / "clean.tif").tobytes()
    )
    assert not (tmp_path / "killed.tif.parts").exists()
    with sqlite3.connect(state) as conn:
        assert conn.execute("select count(*) from regions where state != 'done'").fetchone()[0] == 0
