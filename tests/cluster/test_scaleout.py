"""Separate serve / worker / submit processes on each engine: nothing lost when things die."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tr_cluster import Cluster, sigkill
from tr_gate import UploadGate
from tr_scenes import make_scene

SLOW = "det=tr_slow:SlowTruthDetector"
CLAIM_SECONDS = 3.0
TAKEOVER_MARGIN = 7.0  # the survivor's poll (1 s), then the aggregation itself on a busy machine


def _scene(tmp_path: Path) -> tuple[Path, Path, list[tuple[float, ...]]]:
    # 21 x 17 tiles of 64 px, one tile per region: 357 regions
    return make_scene(tmp_path, width=1000, height=800, n_boxes=150, max_side=14, seed=3)


def _document(tif: Path, out: Path | str) -> dict[str, object]:
    return {
        "sources": [str(tif)],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 64, "overlap": 16, "region_size": 48},
        "outputs": [{"uri": str(out)}],
    }


def _boxes(path: Path | bytes) -> list[tuple[float, ...]]:
    features = json.loads(path if isinstance(path, bytes) else path.read_text())["features"]
    return sorted(tuple(round(v, 6) for v in f["properties"]["pixel_bbox"]) for f in features)


@pytest.fixture
def gated(cluster: Cluster, moto_server: str) -> Iterator[tuple[UploadGate, str]]:
    """An ``s3://`` output whose first upload hangs: the aggregation that makes it stays in
    progress until its coordinator is killed. Coordinators claim for ``CLAIM_SECONDS``."""
    import boto3

    bucket = f"out-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    gate = UploadGate(moto_server, f"/{bucket}/")
    cluster.env["TILERUNNER_S3_ENDPOINT_URL"] = gate.url
    cluster.env["TILERUNNER_CLAIM_SECONDS"] = str(CLAIM_SECONDS)
    try:
        yield gate, f"s3://{bucket}/out.geojson"
    finally:
        gate.close()


def _s3_boxes(endpoint: str, uri: str) -> list[tuple[float, ...]]:
    import boto3

    parts = urlsplit(uri)
    got = boto3.client("s3", endpoint_url=endpoint).get_object(
        Bucket=parts.netloc, Key=parts.path.lstrip("/")
    )
    return _boxes(got["Body"].read())


def _kill_mid_aggregation(cluster: Cluster, job_id: str, gate: UploadGate) -> tuple[str, float]:
    """Poll the store until a coordinator has claimed the job's aggregation and hangs in its
    upload, see its claim extended, SIGKILL it; returns (its owner name, monotonic kill time)."""
    deadline = time.monotonic() + 300
    owner, until, _ = cluster.aggregation_claim(job_id)
    while owner is None or until is None or not gate.held.is_set():
        assert time.monotonic() < deadline, "no coordinator claimed the aggregation"
        time.sleep(0.1)
        owner, until, _ = cluster.aggregation_claim(job_id)
    extended = until
    while extended is not None and extended <= until:  # the claim keeper extends it
        assert time.monotonic() < deadline, "the aggregation claim was never extended"
        time.sleep(0.1)
        now_owner, extended, done = cluster.aggregation_claim(job_id)
        assert (now_owner, done) == (owner, None)  # held by the same, still in progress
    assert cluster.store.get_job(job_id).status == "aggregating"  # type: ignore[union-attr]
    sigkill(cluster.coordinator_of(owner))
    return owner, time.monotonic()


def _expected(boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in b) for b in boxes)


@pytest.mark.slow
def test_ten_workers_killed_mid_job_lose_nothing(cluster: Cluster, tmp_path: Path) -> None:
    tif, truth, boxes = _scene(tmp_path)
    # Ten kills could kill the same region's worker three times, and a region delivered three
    # times is dead-lettered (the job ends partial, as it should). More attempts than kills: a
    # region that still fails shows a fault, not the luck of the kills.
    cluster.env["TILERUNNER_MAX_ATTEMPTS"] = "11"
    cluster.start_coordinator()
    params = (f"truth={truth}", "seconds_per_tile=0.04")
    for _ in range(4):
        cluster.start_worker(SLOW, *params)
    job_id = cluster.submit(_document(tif, tmp_path / "out.geojson"))
    total = cluster.store.counts(job_id).regions_total
    assert total >= 300
    rng = random.Random(11)
    kills = 0
    deadline = time.monotonic() + 300
    while kills < 10:  # the k-th kill once k/12 of the regions finished: mid-job at any speed
        assert time.monotonic() < deadline, f"job {job_id} stopped making progress"
        if cluster.store.get_job(job_id).status not in ("queued", "running"):  # type: ignore[union-attr]
            break
        if cluster.store.counts(job_id).regions_finished < (kills + 1) * total // 12:
            time.sleep(0.05)
            continue
        slot = rng.randrange(4)
        sigkill(cluster.workers[slot])
        cluster.start_worker(SLOW, *params, slot=slot)
        kills += 1
    assert kills == 10, "the job finished before ten workers could be killed"
    assert cluster.wait(job_id) == "succeeded"
    assert _boxes(tmp_path / "out.geojson") == _expected(boxes)
    counts = cluster.store.counts(job_id)
    assert counts.regions_done == counts.regions_total
    assert counts.features == len(boxes)  # every region's features stored once


@pytest.mark.slow
def test_coordinator_killed_and_restarted_aggregates_once(
    cluster: Cluster, gated: tuple[UploadGate, str], moto_server: str, tmp_path: Path
) -> None:
    """Two coordinators run at once; the one holding the aggregation is killed in the middle
    of it and another is started."""
    gate, uri = gated
    tif, truth, boxes = _scene(tmp_path)
    cluster.start_coordinator()
    cluster.start_coordinator()
    params = (f"truth={truth}", "seconds_per_tile=0.01")
    for _ in range(2):
        cluster.start_worker(SLOW, *params)
    job_id = cluster.submit(_document(tif, uri))
    killed, _ = _kill_mid_aggregation(cluster, job_id, gate)
    cluster.start_coordinator()
    assert cluster.wait(job_id) == "succeeded"
    assert _s3_boxes(moto_server, uri) == _expected(boxes)
    owner, _, done = cluster.aggregation_claim(job_id)
    assert done is not None and owner not in (None, killed)
    kinds = [e["kind"] for e in cluster.store.events(job_id)]
    assert kinds.count("all_regions_finished") == 1
    assert kinds.count("aggregating") == 1
    assert kinds.count("succeeded") == 1
    cluster.stop_workers()  # graceful: their final counters are in the store
    done = sum(w["regions_done"] for w in cluster.store.workers())
    assert done == cluster.store.counts(job_id).regions_total  # each region recorded once


@pytest.mark.slow
@pytest.mark.parametrize(
    "cluster", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)], indirect=True
)
def test_a_killed_coordinators_aggregation_is_taken_over_within_the_claim(
    cluster: Cluster, gated: tuple[UploadGate, str], moto_server: str, tmp_path: Path
) -> None:
    gate, uri = gated
    tif, truth, boxes = _scene(tmp_path)
    cluster.start_coordinator()
    cluster.start_coordinator()
    for _ in range(2):
        cluster.start_worker(SLOW, f"truth={truth}", "seconds_per_tile=0.0")
    job_id = cluster.submit(_document(tif, uri))
    _, killed_at = _kill_mid_aggregation(cluster, job_id, gate)
    assert cluster.wait(job_id, timeout=60) == "succeeded"
    taken_over_in = time.monotonic() - killed_at
    assert taken_over_in < CLAIM_SECONDS + TAKEOVER_MARGIN, f"{taken_over_in:.1f} s after the kill"
    assert _s3_boxes(moto_server, uri) == _expected(boxes)


@pytest.mark.slow
def test_poison_tiles_are_retried_recorded_then_requeued(cluster: Cluster, tmp_path: Path) -> None:
    """One tile per region: a poisoned tile is its item's every tile, so the item is retried
    as a whole (the worker may be at fault), then its tile failure is recorded, the job ends
    partial, and ``queue requeue`` redoes just those tiles once the model is fixed."""
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
    assert {e.code for e in errors} == {"tile_failed"}
    assert all(e.image == str(tif) and e.region is not None for e in errors)
    assert all(e.window is not None and e.window.width == 64 for e in errors)
    assert all("poisoned tile" in e.message for e in errors)
    assert 1 <= len(errors) <= 4  # the tiles that cover the poisoned pixel
    retried = {
        e["region_idx"] for e in cluster.store.events(job_id) if e["kind"] == "attempt_failed"
    }
    assert retried == {e.region for e in errors}
    assert cluster.store.counts(job_id).regions_failed == 0
    depth = tilerunner("queue", "depth", "--store", cluster.store_url, "--broker",
                       cluster.broker_url, cwd=tmp_path)  # fmt: skip
    assert depth.returncode == 0, depth.stderr
    flag.unlink()  # the model is fixed; retry the failed tiles
    again = tilerunner("queue", "requeue", job_id, "--store", cluster.store_url, "--broker",
                       cluster.broker_url, cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"requeued {len(errors)} failed tile(s)" in again.stdout
    assert cluster.wait(job_id) == "succeeded"
    assert _boxes(tmp_path / "out.geojson") == _expected(boxes)
    assert cluster.store.counts(job_id).features == len(boxes)


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
