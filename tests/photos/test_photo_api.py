"""A two-stage photo job through the HTTP API with an in-process direct worker: its records per
photo from ``GET /v1/jobs/{id}/results`` a page at a time, a crop the classifier refuses failing
alone, and ``POST /v1/jobs/{id}/retry`` bringing back a failed group of photos and the refused
crops, every detection and stage-2 result stored exactly once."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from photo_checks import iou
from tr_photos import BRIGHT, TruthPhoto, make_photos, mark_red

from tilerunner.api import create_app
from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator import Coordinator
from tilerunner.models import load_model
from tilerunner.settings import Settings
from tilerunner.store import Store, open_store
from tilerunner.work.direct import DirectWorkSource
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.worker import Worker, WorkerOptions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class System:
    """The API, the coordinator and a direct worker over one SQLite store and queue file."""

    def __init__(self, folder: Path) -> None:
        self.url = f"sqlite:///{folder / 'state.db'}"
        self.store: Store = open_store(self.url)
        self.queues: dict[str, Queue] = {}
        settings = Settings(
            store_url=self.url, cache_dir=folder / "cache", allowed_local_roots=(folder,)
        )
        app = create_app(settings, self.store, self.queue_for, insecure=True)
        self.client = TestClient(app)
        self.coordinator = Coordinator(self.store, self.queue_for)
        # one attempt: a failed item is dead-lettered at once
        self.service = WorkService(
            self.store, self.queue_for, WorkServiceOptions(lease_seconds=30, max_attempts=1)
        )

    def queue_for(self, name: str) -> Queue:
        if name not in self.queues:
            self.queues[name] = open_queue(self.url, name, max_attempts=1)
        return self.queues[name]

    def work(self, job_id: str, refuse: Path) -> None:
        """Work the job to its end with ``det`` and ``cls`` in one worker, then aggregate."""
        models = {
            "det": load_model("tr_photos:ShadeDetector", {}, name="det"),
            "cls": load_model("tr_photos:PickyClassifier", {"refuse": str(refuse)}, name="cls"),
        }
        worker = Worker(
            DirectWorkSource(self.service), models, WorkerOptions(lease_seconds=30, batch_size=3)
        )

        def finished() -> bool:
            counts = self.store.counts(job_id)
            return counts.regions_finished >= counts.regions_total

        thread = threading.Thread(target=worker.run, kwargs={"until": finished})
        thread.start()
        thread.join(timeout=120)
        assert not thread.is_alive(), f"job {job_id} not worked to the end in 120 s"
        self.coordinator.run_once()


def _pages(client: TestClient, job_id: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every record, following the next-page cursor."""
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/jobs/{job_id}/results", params=query)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in page.text.splitlines()]
        assert len(lines) <= limit
        records += lines
        cursor = page.headers.get("X-Tilerunner-Next-Cursor")
        if cursor is None:
            return records


def _stage2(record: dict[str, Any], square: tuple[int, int, int, int, int]) -> dict[str, Any]:
    [match] = [d for d in record["detections"] if iou(d["box"], square) > 0.8]
    return match


def test_photo_results_are_paged_and_retry_brings_back_groups_and_crops_once(
    tmp_path: Path,
) -> None:
    truth = make_photos(tmp_path, 7, seed=11)
    n_red = mark_red(tmp_path, truth)
    n_squares = sum(len(t.squares) for t in truth)
    n_bright = sum(1 for t in truth for s in t.squares if s[4] == BRIGHT)
    assert n_red >= 2 and sum(len(t.squares) for t in truth[:3]) >= 1
    refuse = tmp_path / "refuse-red"
    refuse.touch()
    system = System(tmp_path)
    client = system.client
    document = {
        "sources": [str(tmp_path / t.name) for t in truth],
        "photos": {"group_size": 3, "input_size": 192},
        "pipeline": [
            {"task": "detect", "model": "det"},
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.9},
        ],
        "outputs": [{"uri": str(tmp_path / "out.jsonl")}],
    }
    created = client.post("/v1/jobs", json=document)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    system.coordinator.run_once()
    early = client.get(f"/v1/jobs/{job_id}/results")
    assert early.headers["X-Tilerunner-Partial"] == "true"
    assert [r["status"] for r in map(json.loads, early.text.splitlines())] == ["pending"] * 7

    # the first group's detect item fails for good (its one attempt), the rest runs
    [first] = system.service.lease(["det"])
    assert first.item.leader == 0  # type: ignore[union-attr]
    assert system.service.fail(first.token, "model_error", "the detector broke", retryable=False)
    system.work(job_id, refuse)
    view = client.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "partial", view

    records = _pages(client, job_id, limit=3)
    with (tmp_path / "out.jsonl").open() as handle:
        assert records == [json.loads(line) for line in handle]
    assert [r["id"] for r in records] == [str(tmp_path / t.name) for t in truth]
    for record in records[:3]:
        assert record["status"] == "failed" and "the detector broke" in record["error"]
    refused = 0
    for record, photo in zip(records[3:], truth[3:], strict=True):
        assert record["status"] == "done" and len(record["detections"]) == len(photo.squares)
        for square in photo.squares:
            match = _stage2(record, square)
            if square[4] != BRIGHT:
                assert "stages" not in match and "errors" not in match
            elif "errors" in match:  # a refused crop: its error, no stage-2 result
                [error] = match["errors"]
                assert error["stage"] == 1 and "refuses red-centred crops" in error["error"]
                assert "stages" not in match
                refused += 1
            else:
                [stage2] = match["stages"]
                assert stage2["label"] == "bright" and stage2["model"] == "cls"
    assert refused >= 1
    # each refused crop is an error naming the photo it was cut from and its detection
    crops = [
        e for e in client.get(f"/v1/jobs/{job_id}/errors").json() if e["code"] == "tile_failed"
    ]
    by_id = {r["id"]: r for r in records}
    assert len(crops) == refused
    for crop in crops:
        errors = [e for d in by_id[crop["image"]]["detections"] for e in d.get("errors", [])]
        assert crop["detection"] in crop["message"] and errors, crop
        assert crop["detection"].split(".")[1] == str(records.index(by_id[crop["image"]]))

    # filters and formats of the same endpoint
    kept = _pages(client, job_id, limit=100, min_score=0.9, label="square")
    assert all(d["score"] >= 0.9 for r in kept for d in r["detections"])
    assert len(kept) == 7
    as_csv = client.get(f"/v1/jobs/{job_id}/results", params={"format": "csv", "limit": 2})
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["photo"] for r in rows} == {records[0]["id"], records[1]["id"]}
    assert "X-Tilerunner-Next-Cursor" in as_csv.headers
    everything = client.get(f"/v1/jobs/{job_id}/results", params={"format": "csv"})
    failed_crops = [
        r["errors"] for r in csv.DictReader(io.StringIO(everything.text)) if r["errors"]
    ]
    assert len(failed_crops) == refused and all(e.startswith("1:crop ") for e in failed_crops)
    bad = client.get(f"/v1/jobs/{job_id}/results", params={"format": "geoparquet"})
    assert bad.status_code == 422 and "jsonl, csv or geojson" in bad.text
    bad = client.get(f"/v1/jobs/{job_id}/results", params={"cursor": "nonsense"})
    assert bad.status_code == 422 and "X-Tilerunner-Next-Cursor" in bad.text

    # the classifier is mended: retry the failed group and the refused crops
    refuse.unlink()
    retried = client.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["regions"] == 1 and retried.json()["tiles"] == refused
    system.work(job_id, refuse)
    view = client.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "succeeded", view
    records = _pages(client, job_id, limit=4)
    _check_every_square_once(records, truth)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("select count(*) from features").fetchone() == (n_squares + n_bright,)
        assert conn.execute("select count(*) from tile_failures").fetchone() == (0,)


def _check_every_square_once(records: list[dict[str, Any]], truth: list[TruthPhoto]) -> None:
    for record, photo in zip(records, truth, strict=True):
        assert record["status"] == "done" and record["error"] is None
        assert len(record["detections"]) == len(photo.squares)
        for square in photo.squares:
            match = _stage2(record, square)
            assert "errors" not in match
            if square[4] == BRIGHT:
                [stage2] = match["stages"]  # exactly one: a red spot is classified dim
                assert stage2["label"] in ("bright", "dim") and stage2["stage"] == 1
            else:
                assert "stages" not in match
