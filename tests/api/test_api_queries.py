"""Listing and reading jobs on a real ``tilerunner serve``: filters, cursor paging, the job
object, results in every format with their filters, models and workers.

A real worker process runs one job to the end (a detector that replays the 61 annotated trees
of OSBS_029); the serve process aggregates it.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from tr_api import ApiServer, create_key, wait_for
from tr_cli import cli_env

import tilerunner

TREES = 61


def document(data: Path, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sources": [str(data / "OSBS_029.tif")],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 64, "region_size": 128},
    }


@dataclass
class Deployment:
    api: ApiServer
    client: httpx.Client  # an admin key of project "default"
    lister: httpx.Client  # an admin key of project "listing"
    job: dict[str, Any]  # the finished job, as GET /v1/jobs/{id} answered


def _run_worker(workdir: Path, store_url: str, truth: Path, job_id: str) -> None:
    log = (workdir / "worker.log").open("ab")
    worker = subprocess.run(
        [sys.executable, "-m", "tilerunner", "worker", "--store", store_url,
         "--model", "det=tilerunner.testing.models:TruthDetector",
         "--model-param", f"truth={truth}", "--until-job", job_id],
        cwd=workdir, env=cli_env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        timeout=300, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, (workdir / "worker.log").read_text()[-2000:]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("queries")
    # a lease of 60 s: a model stays "live" for two of them after its worker's last heartbeat
    env = {"TILERUNNER_ALLOWED_LOCAL_ROOTS": str(shared_data), "TILERUNNER_LEASE_SECONDS": "60"}
    api = ApiServer(f"sqlite:///{workdir / 'state.db'}", workdir, env=env)
    admin = create_key(api.store_url, workdir, "admin")
    lister = create_key(api.store_url, workdir, "admin", project="listing")
    api.start()
    client, listing = api.client(admin), api.client(lister)
    try:
        created = client.post("/v1/jobs", json=document(shared_data, "trees"))
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        assert created.headers["location"] == f"/v1/jobs/{job_id}"
        _run_worker(workdir, api.store_url, shared_data / "OSBS_029.csv", job_id)

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "partial", "failed") else None

        job = wait_for(finished, 120, f"job {job_id} aggregated by serve")
        yield Deployment(api, client, listing, job)
    finally:
        client.close()
        listing.close()
        api.kill()


def test_the_job_object_of_a_finished_job(deployment: Deployment) -> None:
    job = deployment.job
    assert job["status"] == "succeeded" and job["project"] == "default"
    assert job["name"] == "trees"
    assert job["progress"] == 1.0 and job["eta_seconds"] == 0.0
    assert job["counts"]["regions"] == {"total": 9, "done": 9, "failed": 0}
    assert job["counts"]["images"] == {"total": 1, "done": 1, "failed": 0}
    assert job["counts"]["tiles"]["done"] == job["counts"]["tiles"]["total"] > 0
    stamps = job["timestamps"]
    assert stamps["created_at"] <= stamps["running_at"] <= stamps["succeeded_at"]
    assert stamps["failed_at"] is None and job["errors"] == [] and job["error"] is None


def test_a_new_job_has_no_progress_and_no_eta_yet(
    deployment: Deployment, shared_data: Path
) -> None:
    created = deployment.client.post("/v1/jobs", json=document(shared_data, "waiting"))
    job = created.json()
    assert job["status"] in ("planning", "queued")
    assert job["progress"] == 0.0 and job["eta_seconds"] is None


def _features(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return list(response.json()["features"])


def _results(deployment: Deployment, **params: Any) -> httpx.Response:
    return deployment.client.get(f"/v1/jobs/{deployment.job['id']}/results", params=params)


def test_results_stream_as_geojson_and_filter_by_score_and_label(deployment: Deployment) -> None:
    everything = _results(deployment)
    assert everything.headers["content-type"].startswith("application/geo+json")
    assert len(_features(everything)) == TREES
    assert len(_features(_results(deployment, label="Tree"))) == TREES
    assert _features(_results(deployment, label="Car")) == []
    assert len(_features(_results(deployment, label=["Car", "Tree"]))) == TREES
    assert len(_features(_results(deployment, min_score=1.0))) == TREES  # replayed at 1.0
    assert _features(_results(deployment, min_score=1.01)) == []


def _bounds(feature: dict[str, Any]) -> tuple[float, float, float, float]:
    ring = feature["geometry"]["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def test_results_filter_by_a_lon_lat_box(deployment: Deployment) -> None:
    features = _features(_results(deployment))
    bounds = [_bounds(f) for f in features]
    west = sorted(b[0] for b in bounds)[len(bounds) // 2]  # about half lie west of it
    south = min(b[1] for b in bounds) - 1
    north = max(b[3] for b in bounds) + 1
    expected = sorted(
        f["properties"]["pixel_bbox"] for f, b in zip(features, bounds, strict=True) if b[0] <= west
    )
    box = f"{west - 1},{south},{west},{north}"
    got = _features(_results(deployment, bbox=box))
    assert 0 < len(got) < TREES
    assert sorted(f["properties"]["pixel_bbox"] for f in got) == expected


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "3,0,1,1", "0,0,1,nan"])
def test_a_bad_box_is_422(deployment: Deployment, bbox: str) -> None:
    answer = _results(deployment, bbox=bbox)
    assert answer.status_code == 422
    assert "minx,miny,maxx,maxy" in answer.json()["error"]["message"]


def test_results_as_csv_and_geoparquet(deployment: Deployment) -> None:
    answer = _results(deployment, format="csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == TREES and {r["label"] for r in rows} == {"Tree"}
    assert all(r["wkt"].startswith("POLYGON") for r in rows)
    assert (
        len(list(csv.DictReader(io.StringIO(_results(deployment, format="csv", label="Car").text))))
        == 0
    )
    parquet = _results(deployment, format="geoparquet", min_score=0.5)
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == TREES and b"geo" in (table.schema.metadata or {})
    assert 'filename="' in parquet.headers["content-disposition"]
    assert _results(deployment, format="shapefile").status_code == 422


def test_models_and_workers_name_the_worker_that_ran(
    deployment: Deployment, shared_data: Path
) -> None:
    workers = deployment.client.get("/v1/workers").json()
    assert len(workers) == 1 and workers[0]["models"] == ["det"]
    assert workers[0]["regions_done"] == 9
    assert workers[0]["version"] == tilerunner.__version__
    with (shared_data / "OSBS_029.csv").open() as truth:
        labels = sorted({row["label"] for row in csv.DictReader(truth)})
    models = deployment.client.get("/v1/models").json()
    assert models == [
        {
            "name": "det",
            "workers": [workers[0]["id"]],
            "live": True,
            "last_seen": workers[0]["last_seen"],
            "task": "detect",
            "classes": labels,
            "backend": "plugin",
            "spec": "tilerunner.testing.models:TruthDetector",
        }
    ]


def test_listing_filters_and_pages_with_a_cursor(deployment: Deployment, shared_data: Path) -> None:
    lister = deployment.lister
    ids = []
    for i in range(5):
        created = lister.post(
            "/v1/jobs", json=document(shared_data, "even" if i % 2 == 0 else "odd")
        )
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    # cancelled at once while planning, else cancelling for a lease period (60 s here)
    stopped = {j: lister.post(f"/v1/jobs/{j}/cancel").json()["status"] for j in ids[:2]}
    assert set(stopped.values()) <= {"cancelled", "cancelling"}
    newest_first = list(reversed(ids))
    assert [j["id"] for j in lister.get("/v1/jobs").json()["jobs"]] == newest_first

    seen: list[str] = []
    cursor = None
    late = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = lister.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        if late is None:  # a job submitted while paging does not shift later pages
            late = lister.post("/v1/jobs", json=document(shared_data, "late")).json()["id"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first

    def listed(**params: Any) -> list[str]:
        answer = lister.get("/v1/jobs", params=params)
        assert answer.status_code == 200, answer.text
        return [j["id"] for j in answer.json()["jobs"]]

    for status in set(stopped.values()):
        assert listed(status=status) == [j for j in (ids[1], ids[0]) if stopped[j] == status]
    assert listed(name="odd") == [ids[3], ids[1]]
    assert listed(name="even", status=stopped[ids[0]]) == [ids[0]]
    assert listed(name="late") == [late]
    assert listed(project="listing", name="late") == [late]
    assert listed(project="default") == []  # only the key's own project, ever
    assert deployment.job["id"] not in listed(limit=500)
    assert lister.get("/v1/jobs", params={"status": "sleeping"}).status_code == 422
    bad = lister.get("/v1/jobs", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and "next_cursor" in bad.json()["error"]["message"]
    assert lister.get("/v1/jobs", params={"limit": 0}).status_code == 422
