"""Killing a run mid-way loses nothing: rerunning finishes it with the same output."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tr_cli import cli_env, pixel_boxes, tilerunner
from tr_scenes import make_scene

SLOW_MODEL = "tr_slow:SlowTruthDetector"


def _regions_done(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return int(
                conn.execute("select count(*) from regions where state='done'").fetchone()[0]
            )
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])  # a thread of the run; two worker processes
def test_sigkill_mid_run_then_rerun_equals_a_clean_run(tmp_path: Path, workers: str) -> None:
    tif, truth, boxes = make_scene(tmp_path, width=1200, height=900, n_boxes=150)
    args = [
        "run", str(tif), "--model", SLOW_MODEL, "--model-param", f"truth={truth}",
        "--model-param", "seconds_per_tile=0.05", "--tile-size", "128", "--overlap", "48",
        "--region-size", "160", "--workers", workers, "--batch-size", "4", "--quiet",
    ]  # fmt: skip
    clean = tilerunner(*args, "-o", "clean.geojson", "--state", "clean.db", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr

    state = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilerunner", *args, "-o", "killed.geojson", "--state", str(state)],
        cwd=tmp_path, env=cli_env(TILERUNNER_LEASE_SECONDS="2"), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _regions_done(state) < 5:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-region
    proc.wait()
    done_before = _regions_done(state)
    with sqlite3.connect(state) as conn:
        total = conn.execute("select count(*) from regions").fetchone()[0]
    assert 5 <= done_before < total
    assert not (tmp_path / "killed.geojson").exists()

    again = tilerunner(
        *args, "-o", "killed.geojson", "--state", str(state), cwd=tmp_path,
        TILERUNNER_LEASE_SECONDS="2",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert pixel_boxes(tmp_path / "killed.geojson") == pixel_boxes(tmp_path / "clean.geojson")
    assert len(pixel_boxes(tmp_path / "clean.geojson")) == len(boxes)
    with sqlite3.connect(state) as conn:
        # each region recorded exactly once, none recomputed after it was done
        rows = conn.execute("select count(*), sum(n_features) from regions where state='done'")
        n_done, n_features = rows.fetchone()
        assert n_done == total
        assert conn.execute("select count(*) from features").fetchone()[0] == n_features


def _assert_held_by_the_state_file_alone(state: Path) -> None:
    """Every connection of the run closed: the write-ahead log went into the state file, and a
    copy of that file alone holds the finished job."""
    wal = state.with_name(f"{state.name}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copied = state.with_name("copy.db")
    copied.write_bytes(state.read_bytes())
    with contextlib.closing(sqlite3.connect(copied)) as conn:
        assert conn.execute("select status from jobs").fetchall() == [("succeeded",)]


def test_a_run_with_worker_processes_leaves_the_state_file_whole(tmp_path: Path) -> None:
    tif, truth, _ = make_scene(tmp_path, width=400, height=300, n_boxes=20)
    done = tilerunner(
        "run", str(tif), "--model", "tilerunner.testing.models:TruthDetector",
        "--model-param", f"truth={truth}", "--tile-size", "128", "--overlap", "48",
        "--region-size", "256", "--workers", "2", "-o", "out.geojson", "--state", "s.db",
        "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_held_by_the_state_file_alone(tmp_path / "s.db")


def test_rerun_of_a_finished_job_recomputes_nothing(tmp_path: Path) -> None:
    tif, truth, _ = make_scene(tmp_path, width=400, height=300, n_boxes=20)
    args = [
        "run", str(tif), "--model", "tilerunner.testing.models:TruthDetector",
        "--model-param", f"truth={truth}", "--tile-size", "128", "--overlap", "48",
        "-o", "out.geojson", "--state", "s.db", "--quiet",
    ]  # fmt: skip
    first = tilerunner(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    _assert_held_by_the_state_file_alone(tmp_path / "s.db")
    (tmp_path / "out.geojson").unlink()
    second = tilerunner(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    assert len(pixel_boxes(tmp_path / "out.geojson")) == 20
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("select count(*) from workers").fetchone()[0] == 1


def test_one_worker_is_a_thread_of_the_run_that_logs_to_the_workers_log(tmp_path: Path) -> None:
    tif, truth, _ = make_scene(tmp_path, width=400, height=300, n_boxes=20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilerunner", "-vv", "run", str(tif), "--model",
         "tilerunner.testing.models:TruthDetector", "--model-param", f"truth={truth}",
         "--tile-size", "128", "--overlap", "48", "-o", "out.geojson", "--state", "s.db",
         "--quiet"],
        # nothing read ahead: the worker thread opens the image itself, and logs it
        cwd=tmp_path, env=cli_env(TILERUNNER_READ_AHEAD_MB="0"), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(pixel_boxes(tmp_path / "out.geojson")) == 20
    with sqlite3.connect(tmp_path / "s.db") as conn:
        ((worker_pid, regions_done),) = conn.execute("select pid, regions_done from workers")
        (regions,) = conn.execute("select count(*) from regions").fetchone()
    assert (worker_pid, regions_done) == (proc.pid, regions)  # the run served every region
    # the run's own records on its standard error, the worker threads' in the workers' log
    assert "run: every region finished" in stderr
    assert "tilerunner.imagery.reader: opened" not in stderr
    logged = (tmp_path / "s.workers.log").read_text(encoding="utf-8")
    assert "tilerunner.imagery.reader: opened" in logged
    assert "run: every region finished" not in logged
