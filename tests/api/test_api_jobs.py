"""The HTTP API over a real SQLite store and queue, with an in-process worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tr_work import run_truth_worker

from tilerunner.api import create_app
from tilerunner.broker import open_queue
from tilerunner.coordinator import Coordinator
from tilerunner.settings import Settings
from tilerunner.store import Store, open_store


@pytest.fixture
def system(tmp_path: Path, shared_data: Path) -> tuple[TestClient, Store, str]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    settings = Settings(
        store_url=url,
        cache_dir=tmp_path / "cache",
        allowed_local_roots=(shared_data, tmp_path),  # the sources and outputs of these documents
    )
    queues: dict[str, object] = {}

    def queue_for(name: str):  # type: ignore[no-untyped-def]
        if name not in queues:
            queues[name] = open_queue(url, name)
        return queues[name]

    # insecure: every caller is an admin of project "default" (keys: tests/api/test_api_auth.py)
    return TestClient(create_app(settings, store, queue_for, insecure=True)), store, url


def _document(shared_data: Path, tmp_path: Path) -> dict[str, object]:
    return {
        "name": "trees",
        "sources": [str(shared_data / "OSBS_029.tif")],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 64, "region_size": 128},
        "merge": {"method": "none"},
        "outputs": [{"uri": str(tmp_path / "trees.geojson")}],
    }


def test_submit_process_aggregate_and_read_results(
    system: tuple[TestClient, Store, str], shared_data: Path, tmp_path: Path
) -> None:
    client, store, url = system
    created = client.post("/v1/jobs", json=_document(shared_data, tmp_path))
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] == "planning"  # accepted; the coordinator opens the images
    assert created.headers["Location"] == f"/v1/jobs/{job['id']}"
    coordinator = Coordinator(store, lambda name: open_queue(url, name))
    coordinator.run_once()
    planned = client.get(f"/v1/jobs/{job['id']}").json()
    assert planned["status"] == "queued"
    assert planned["counts"]["regions"] == {"total": 9, "done": 0, "failed": 0}
    early = client.get(f"/v1/jobs/{job['id']}/results")
    assert early.headers["X-Tilerunner-Partial"] == "true" and early.json()["features"] == []
    run_truth_worker(store, url, shared_data, job["id"])
    coordinator.run_once()
    got = client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "succeeded"
    assert got["counts"]["features"] == {"found": 61}
    assert {
        "created_at",
        "planning_at",
        "queued_at",
        "running_at",
        "aggregating_at",
        "succeeded_at",
    } <= set(got["timestamps"])
    results = client.get(f"/v1/jobs/{job['id']}/results")
    assert results.headers["content-type"].startswith("application/geo+json")
    assert results.headers["X-Tilerunner-Partial"] == "false"
    assert len(results.json()["features"]) == 61
    assert (tmp_path / "trees.geojson").exists()
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job['id']}/events").json()]
    assert "queued" in kinds and kinds[-1] == "succeeded"
    assert [w["regions_done"] for w in client.get("/v1/workers").json()] == [9]
    metrics = client.get("/metrics").text
    assert 'tilerunner_jobs{status="succeeded"} 1.0' in metrics


def test_bad_documents_are_rejected_and_store_nothing(
    system: tuple[TestClient, Store, str], shared_data: Path, tmp_path: Path
) -> None:
    client, store, _ = system
    typo = _document(shared_data, tmp_path) | {"tilling": {}}
    answer = client.post("/v1/jobs", json=typo)
    assert answer.status_code == 422
    assert "tilling" in answer.json()["error"]["message"]
    missing = _document(shared_data, tmp_path) | {"sources": [str(tmp_path / "nope.tif")]}
    answer = client.post("/v1/jobs", json=missing)
    assert answer.status_code == 422 and "nope.tif" in answer.json()["error"]["message"]
    assert store.list_jobs() == []
    assert client.get("/v1/jobs/job-unknown").status_code == 404


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"uri": "trees.shp"}, "unknown output format '.shp'; use .geojson, .parquet or .csv"),
        ({"uri": "no/such/dir/trees.geojson"}, "does not exist; create it"),
        ({"uri": "trees.out", "format": "kml"}, "unknown output format 'kml'"),
    ],
)
def test_a_document_with_a_bad_output_is_refused_before_anything_is_stored(
    system: tuple[TestClient, Store, str],
    shared_data: Path,
    tmp_path: Path,
    output: dict[str, str],
    message: str,
) -> None:
    client, store, _ = system
    uri = str(tmp_path / output["uri"])
    document = _document(shared_data, tmp_path)
    document["outputs"] = [*document["outputs"], {**output, "uri": uri}]  # type: ignore[misc]
    answer = client.post("/v1/jobs", json=document)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]["message"]
    assert error.startswith(f"outputs[1] {uri!r}: ") and message in error
    assert store.list_jobs() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db", *_sqlite_sidecars(tmp_path)]


def _sqlite_sidecars(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("state.db-"))


def test_cancel_stops_a_queued_job(
    system: tuple[TestClient, Store, str], shared_data: Path, tmp_path: Path
) -> None:
    client, _, _ = system
    job = client.post("/v1/jobs", json=_document(shared_data, tmp_path)).json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
