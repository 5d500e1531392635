"""Workers that can only dial out: real ``serve`` and ``worker --api`` processes on loopback.

Two HTTP workers complete a job with nothing but the API URL and a worker key; one SIGKILLed
while it holds a lease loses nothing (its lease expires, the other finishes, every feature is
counted once); the API SIGKILLed mid-job and restarted: the workers back off and finish.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tr_api import ApiServer, create_key, start_worker, stop_workers, wait_for
from tr_cli import pixel_boxes
from tr_scenes import make_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TERMINAL = {"succeeded", "partial", "failed", "cancelled"}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[ApiServer, list[subprocess.Popen[bytes]]]]:
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    api = ApiServer(store_url, tmp_path, env={"TILERUNNER_ALLOWED_LOCAL_ROOTS": str(tmp_path)})
    workers: list[subprocess.Popen[bytes]] = []
    api.start()
    try:
        yield api, workers
    finally:
        stop_workers(workers)
        api.kill()


def _start_worker(api: ApiServer, token: str, truth_csv: Path) -> subprocess.Popen[bytes]:
    """A worker slow enough (a quarter second a tile: about 10 s of work each for two) that its
    heartbeats, every third of the 5 s lease, see it holding leases."""
    return start_worker(
        api, "--api", api.url, "--token", token, "--model", "det=tr_slow:SlowTruthDetector",
        "--model-param", f"truth={truth_csv}", "--model-param", "seconds_per_tile=0.25",
        "--batch-size", "2",
    )  # fmt: skip


def _submit(api: ApiServer, client: httpx.Client, tif: Path) -> str:
    document = {
        "sources": [str(tif)],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 48, "region_size": 160},
        "merge": {"method": "none"},
        "outputs": [{"uri": str(api.workdir / "out.geojson")}],
    }
    response = client.post("/v1/jobs", json=document)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _final(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        try:
            job = client.get(f"/v1/jobs/{job_id}").json()
        except httpx.HTTPError:
            return None
        return job if job["status"] in TERMINAL else None

    result: dict[str, object] = wait_for(done, timeout, f"job {job_id} finished", every=0.3)
    return result


def _rounded(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in b) for b in boxes)


def test_two_http_workers_finish_a_job_and_a_killed_one_loses_nothing(
    system: tuple[ApiServer, list[subprocess.Popen[bytes]]],
) -> None:
    api, workers = system
    tif, truth_csv, truth = make_scene(api.workdir, width=720, height=560, n_boxes=80)
    worker_key = create_key(api.store_url, api.workdir, "worker")
    user = api.client(create_key(api.store_url, api.workdir, "submit", "read"))
    job_id = _submit(api, user, tif)
    victim = _start_worker(api, worker_key, truth_csv)  # alone at first: sure to take a lease
    workers.append(victim)

    def victim_holds_a_lease() -> bool:
        rows = user.get("/v1/workers").json()
        return any(w["pid"] == victim.pid and w["leases_held"] > 0 for w in rows)

    wait_for(victim_holds_a_lease, 60, "the first worker holds a lease")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    workers.append(_start_worker(api, worker_key, truth_csv))

    job = _final(user, job_id)
    assert job["status"] == "succeeded", job
    counts = job["counts"]
    assert isinstance(counts, dict)
    assert counts["regions"]["done"] == counts["regions"]["total"] == 20
    assert counts["features"]["found"] == 80
    assert pixel_boxes(api.workdir / "out.geojson") == _rounded(truth)
    events = user.get(f"/v1/jobs/{job_id}/events").json()
    assert not [e for e in events if e["kind"] == "region_failed"]


def test_http_workers_back_off_while_the_api_is_down_and_finish_after_it_restarts(
    system: tuple[ApiServer, list[subprocess.Popen[bytes]]],
) -> None:
    api, workers = system
    tif, truth_csv, truth = make_scene(api.workdir, width=720, height=560, n_boxes=80)
    worker_key = create_key(api.store_url, api.workdir, "worker")
    submit_key = create_key(api.store_url, api.workdir, "submit", "read")
    user = api.client(submit_key)
    job_id = _submit(api, user, tif)
    workers += [_start_worker(api, worker_key, truth_csv) for _ in range(2)]

    def some_regions_done() -> bool:
        job = user.get(f"/v1/jobs/{job_id}").json()
        return 0 < job["counts"]["regions"]["done"] < job["counts"]["regions"]["total"]

    wait_for(some_regions_done, 60, "some regions done")
    api.kill()
    log = api.workdir / "workers.log"
    wait_for(lambda: "not reachable" in log.read_text(), 60, "the workers notice the API is down")
    assert all(w.poll() is None for w in workers), "a worker exited instead of backing off"
    api.start()

    job = _final(api.client(submit_key), job_id)
    assert job["status"] == "succeeded", job
    assert pixel_boxes(api.workdir / "out.geojson") == _rounded(truth)
    assert json.loads((api.workdir / "out.geojson").read_text())["features"]
