"""Separate serve / worker / submit processes on each engine: nothing lost when things die."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from tr_cluster import Cluster, sigkill
from tr_scenes import make_scene

SLOW = "det=tr_slow:SlowTruthDetector"


def _scene(tmp_path: Path) -> tuple[Path, Path, list[tuple[float, ...]]]:
    # 21 x 17 tiles of 64 px, one tile per region: 357 regions
    return make_scene(tmp_path, width=1000, height=800, n_boxes=150, max_side=14, seed=3)


def _document(tif: Path, out: Path) -> dict[str, object]:
    return {
        "sources": [str(tif)],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 64, "overlap": 16, "region_size": 48},
        "outputs": [{"uri": str(out)}],
    }


def _boxes(path: Path) -> list[tuple[float, ...]]:
    import json

    features = json.loads(path.read_text())["features"]
    return sorted(tuple(round(v, 6) for v in f["properties"]["pixel_bbox"]) for f in features)


def _expected(boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in b) for b in boxes)


@pytest.mark.slow
def test_ten_workers_killed_mid_job_lose_nothing(cluster: Cluster, tmp_path: Path) -> None:
    tif, truth, boxes = _scene(tmp_path)
    cluster.start_coordinator()
    params = (f"truth={truth}", "seconds_per_tile=0.04")
    for _ in range(4):
        cluster.start_worker(SLOW, *params)
    job_id = cluster.submit(_document(tif, tmp_path / "out.geojson"))
    assert cluster.store.counts(job_id).regions_total >= 300
    rng = random.Random(11)
    kills = 0
    while kills < 10:
        time.sleep(0.8)
        if cluster.store.get_job(job_id).status not in ("queued", "running"):  # type: ignore[union-attr]
            break
        slot = rng.randrange(4)
        sigkill(cluster.workers[slot])
        cluster.start_worker(SLOW, *params, slot=slot)
        kills += 1
    assert kills == 10, "the job finished before ten workers could be killed; slow the model"
    assert cluster.wait(job_id) == "succeeded"
    assert _boxes(tmp_path / "out.geojson") == _expected(boxes)
    counts = cluster.store.counts(job_id)
    assert counts.regions_done == counts.regions_total
    assert counts.features == len(boxes)  # every region's features stored once


@pytest.mark.slow
def test_coordinator_killed_and_restarted_aggregates_once(cluster: Cluster, tmp_path: Path) -> None:
    """Two coordinators run at once; one is killed mid-job and restarted."""
    tif, truth, boxes = _scene(tmp_path)
    doomed = cluster.start_coordinator()
    cluster.start_coordinator()
    params = (f"truth={truth}", "seconds_per_tile=0.01")
    for _ in range(2):
        cluster.start_worker(SLOW, *params)
    job_id = cluster.submit(_document(tif, tmp_path / "out.geojson"))
    time.sleep(1.0)
    sigkill(doomed)
    time.sleep(1.0)
    cluster.start_coordinator()
    assert cluster.wait(job_id) == "succeeded"
    assert _boxes(tmp_path / "out.geojson") == _expected(boxes)
    kinds = [e["kind"] for e in cluster.store.events(job_id)]
    assert kinds.count("all_regions_finished") == 1
    assert kinds.count("aggregating") == 1
    assert kinds.count("succeeded") == 1
    cluster.stop_workers()  # graceful: their final counters are in the store
    done = sum(w["regions_done"] for w in cluster.store.workers())
    assert done == cluster.store.counts(job_id).regions_total  # each region recorded once


@pytest.mark.slow
def test_poison_region_is_dead_lettered_then_requeued(cluster: Cluster, tmp_path: Path) -> None:
    from tr_cli import tilerunner

    tif, truth, boxes = _scene(tmp_path)
    flag = tmp_path / "poison.flag"
    flag.touch()
    cluster.start_coordinator()
    cluster.start_worker(
        "det=tr_poison:PoisonTruthDetector", f"truth={truth}", "x=500", "y=400", f"flag={flag}"
    )
    job_id = cluster.submit(_document(tif, tmp_path / "out.geojson"))
    assert cluster.wait(job_id) == "partial"
    errors = cluster.store.errors(job_id)
    assert {e.code for e in errors} == {"region_failed"}
    assert all(e.image == str(tif) and e.region is not None for e in errors)
    assert all("poisoned tile" in e.message for e in errors)
    assert 1 <= len(errors) <= 4  # the regions whose tile covers the poisoned pixel
    depth = tilerunner("queue", "depth", "--store", cluster.store_url, "--broker",
                       cluster.broker_url, cwd=tmp_path)  # fmt: skip
    assert depth.returncode == 0, depth.stderr
    dead = tilerunner("queue", "dead-letters", "--store", cluster.store_url, "--broker",
                      cluster.broker_url, cwd=tmp_path)  # fmt: skip
    assert "poisoned tile" in dead.stdout
    flag.unlink()  # the model is fixed; retry the failed regions
    again = tilerunner("queue", "requeue", job_id, "--store", cluster.store_url, "--broker",
                       cluster.broker_url, cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert cluster.wait(job_id) == "succeeded"
    assert _boxes(tmp_path / "out.geojson") == _expected(boxes)


@pytest.mark.slow
def test_broker_restarted_mid_job_loses_nothing(
    restartable_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = restartable_cluster
    tif, truth, boxes = _scene(tmp_path)
    cluster.start_coordinator()
    params = (f"truth={truth}", "seconds_per_tile=0.02")
    for _ in range(2):
        cluster.start_worker(SLOW, *params)
    job_id = cluster.submit(_document(tif, tmp_path / "out.geojson"))
    deadline = time.monotonic() + 120
    while cluster.store.counts(job_id).regions_done < 20:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stop, start = cluster.restart
    try:
        stop()
        time.sleep(1.0)
    finally:
        start()
    assert (
        cluster.store.counts(job_id).regions_finished < cluster.store.counts(job_id).regions_total
    )
    assert cluster.wait(job_id) == "succeeded"
    assert _boxes(tmp_path / "out.geojson") == _expected(boxes)
