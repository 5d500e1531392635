"""The OSML and Antenna routes over a real SQLite store and queue, with an in-process worker.

An OSML request runs end to end and writes its GeoJSON to moto's S3 server under the key
ModelRunner would use; refusals are 422s naming the peer's field and store nothing; the routes
need the ``submit`` scope and put the job in the key's project, like ``POST /v1/jobs``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from tr_work import run_truth_worker

from tilerunner.api import create_app
from tilerunner.broker import open_queue
from tilerunner.coordinator import Coordinator
from tilerunner.jobs import CallbackSpec
from tilerunner.jobs.compat import antenna
from tilerunner.security.keys import Scope, generate_key
from tilerunner.settings import Settings
from tilerunner.store import KeyRepository, Store, open_store

App = Callable[..., tuple[TestClient, Store, str]]


@pytest.fixture
def make_app(tmp_path: Path, shared_data: Path) -> App:
    """An API over a fresh store; ``insecure`` as in test_api_jobs.py, settings overridable."""

    def make(insecure: bool = True, **settings: Any) -> tuple[TestClient, Store, str]:
        url = f"sqlite:///{tmp_path / 'state.db'}"
        store = open_store(url)
        config = Settings(
            store_url=url,
            cache_dir=tmp_path / "cache",
            allowed_local_roots=(shared_data, tmp_path),
            **settings,
        )
        queues: dict[str, object] = {}

        def queue_for(name: str):  # type: ignore[no-untyped-def]
            if name not in queues:
                queues[name] = open_queue(url, name)
            return queues[name]

        app = create_app(config, store, queue_for, insecure=insecure)
        return TestClient(app), store, url

    return make


NMS = {"algorithmType": "NMS", "iouThreshold": 0.5}


def _osml(shared_data: Path, **changes: Any) -> dict[str, Any]:
    request = {
        "jobId": "osbs-run-1",
        "jobName": "osbs",
        "imageUrls": [str(shared_data / "OSBS_029.tif")],
        "outputs": [{"type": "S3", "bucket": "results", "prefix": "osml/"}],
        "imageProcessor": {"name": "det", "type": "SM_ENDPOINT"},
        "imageProcessorTileSize": 128,
        "imageProcessorTileOverlap": 64,
        "imageProcessorTileFormat": "GTIFF",
        "postProcessing": [{"step": "FEATURE_DISTILLATION", "algorithm": NMS}],
    }
    return request | changes


def test_osml_request_runs_and_writes_where_model_runner_would(
    make_app: App, shared_data: Path, moto_server: str
) -> None:
    client, store, url = make_app(s3_endpoint_url=moto_server)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    answer = client.post("/v1/compat/osml/image-requests", json=_osml(shared_data))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert (job["jobId"], job["jobName"], job["name"]) == ("osbs-run-1", "osbs", "osbs")
    assert job["status"] == "planning" and answer.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["project"] == "default"
    assert job["outputs"] == [] and job["spec"]["merge"]["iou"] == 0.5
    coordinator = Coordinator(
        store, lambda name: open_queue(url, name), s3_endpoint_url=moto_server
    )
    coordinator.run_once()  # plans the job: planning -> queued
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    run_truth_worker(store, url, shared_data, job["id"])
    coordinator.run_once()
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    written = s3.get_object(Bucket="results", Key="osml/osbs-run-1.geojson")["Body"].read()
    assert written.count(b'"Feature"') == 61


def test_osml_refusals_are_422s_naming_the_field_and_store_nothing(
    make_app: App, shared_data: Path, tmp_path: Path
) -> None:
    client, store, _ = make_app()
    kinesis = {"type": "Kinesis", "stream": "features", "batchSize": 1000}
    cases = {
        "outputs[1].type": _osml(shared_data, outputs=[*_osml(shared_data)["outputs"], kinesis]),
        "imageProcessorTileFormat": _osml(shared_data, imageProcessorTileFormat="TIFF"),
        "imageUrls[0]": _osml(shared_data, imageUrls=["/etc/passwd"]),  # the server's URL check
        "imageProcessorTileSize": _osml(shared_data, imageProcessorTileSize=16384),  # its limit
    }
    for field, request in cases.items():
        answer = client.post("/v1/compat/osml/image-requests", json=request)
        assert answer.status_code == 422, answer.text
        assert f"{field}: " in answer.json()["error"]["message"], answer.text
    assert store.list_jobs() == []


def _antenna(shared_data: Path, **config: Any) -> dict[str, Any]:
    return {
        "pipeline": "det",
        "source_images": [{"id": "7", "url": str(shared_data / "OSBS_029.tif")}],
        "detections": [],
        "config": {"tile_size": 128, "tile_overlap": 64, **config},
    }


def test_antenna_request_runs_and_its_results_fill_antennas_response(
    make_app: App, shared_data: Path
) -> None:
    client, store, url = make_app(allowed_hosts=("127.0.0.1",))
    hook = "http://127.0.0.1:9/antenna/result"
    request = _antenna(shared_data, callback_url=hook, callback_token="antenna-token")
    answer = client.post("/v1/compat/antenna/process", json=request)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["pipeline"] == "det"
    assert job["source_images"] == request["source_images"]
    assert job["spec"]["callback"]["style"] == "antenna"
    assert "antenna-token" not in answer.text  # the token is not echoed
    stored = store.get_job(job["id"])
    assert stored is not None and stored.spec["callback"]["token"] == "antenna-token"
    coordinator = Coordinator(store, lambda name: open_queue(url, name))
    coordinator.run_once()  # plans the job
    run_truth_worker(store, url, shared_data, job["id"])
    coordinator.run_once()  # aggregates it
    view = client.get(f"/v1/jobs/{job['id']}").json()
    assert view["status"] == "succeeded"
    features = client.get(f"/v1/jobs/{job['id']}/results").json()["features"]
    callback = CallbackSpec.model_validate(stored.spec["callback"])
    body, headers = antenna.callback_body(view, callback, features=features)
    result = json.loads(body)
    assert result["pipeline"] == "det" and len(result["detections"]) == 61
    assert {d["source_image_id"] for d in result["detections"]} == {"7"}
    assert headers["Authorization"] == "Token antenna-token"


def test_antenna_callback_to_a_refused_host_names_the_config_key(
    make_app: App, shared_data: Path
) -> None:
    client, store, _ = make_app()  # loopback is not an allowed host here
    request = _antenna(shared_data, callback_url="http://127.0.0.1:9/hook")
    answer = client.post("/v1/compat/antenna/process", json=request)
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("config.callback_url: ")
    detection = {"source_image": {"id": "7", "url": "u"}, "algorithm": {"name": "d", "key": "d"}}
    again = _antenna(shared_data) | {"detections": [detection]}
    answer = client.post("/v1/compat/antenna/process", json=again)
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("detections: ")
    assert store.list_jobs() == []


def test_compat_routes_need_the_submit_scope_and_use_the_keys_project(
    make_app: App, shared_data: Path
) -> None:
    client, store, _ = make_app(insecure=False)
    keys = KeyRepository(store.engine)
    reader, submitter = generate_key(), generate_key()
    keys.create(reader.id, reader.key_hash, project="traps", scopes=[Scope.READ])
    keys.create(submitter.id, submitter.key_hash, project="traps", scopes=[Scope.SUBMIT])
    routes = (
        ("/v1/compat/osml/image-requests", _osml(shared_data, outputs=[])),
        ("/v1/compat/antenna/process", _antenna(shared_data)),
    )
    for route, request in routes:
        assert client.post(route, json=request).status_code == 401
        as_reader = {"Authorization": f"Bearer {reader.key}"}
        assert client.post(route, json=request, headers=as_reader).status_code == 403
        as_submitter = {"Authorization": f"Bearer {submitter.key}"}
        answer = client.post(route, json=request, headers=as_submitter)
        assert answer.status_code == 202, answer.text
        assert answer.json()["project"] == "traps"
    assert len(store.list_jobs(10, project="traps")) == 2
