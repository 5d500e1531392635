"""A two-stage photo job on a cluster: ``serve`` over PostgreSQL, one pool per model.

The document is submitted over HTTP. Stage 1 is served by HTTP workers (``--api``), stage 2
by a direct worker on the database: each stage's items reach only the pool that serves its
model. A detect worker SIGKILLed while it holds a lease loses nothing and doubles nothing:
its items are redelivered, and every photo is reported once with every square found once,
every bright square with exactly one stage-2 result.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from photo_checks import check_photo, read_jsonl
from tr_api import ApiServer, create_key, start_worker, stop_workers, wait_for
from tr_cli import tilerunner
from tr_pg import pg_schema_url
from tr_photos import make_photos

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]

TERMINAL = {"succeeded", "partial", "failed", "cancelled"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ApiServer, list[subprocess.Popen[bytes]]]]:
    with pg_schema_url() as store_url:
        api = ApiServer(store_url, tmp_path, env={"TILERUNNER_ALLOWED_LOCAL_ROOTS": str(tmp_path)})
        workers: list[subprocess.Popen[bytes]] = []
        api.start()
        try:
            yield api, workers
        finally:
            stop_workers(workers)
            api.kill()


def _worker(api: ApiServer, *args: str) -> subprocess.Popen[bytes]:
    return start_worker(api, "--batch-size", "3", *args)


def test_stages_run_on_their_own_pools_and_a_killed_worker_loses_nothing(
    cluster: tuple[ApiServer, list[subprocess.Popen[bytes]]],
) -> None:
    api, workers = cluster
    truth = make_photos(api.workdir, 10, seed=5)
    user = api.client(create_key(api.store_url, api.workdir, "submit", "read"))
    worker_key = create_key(api.store_url, api.workdir, "worker")
    document = {
        "sources": [str(api.workdir / t.name) for t in truth],
        "photos": {"group_size": 2, "input_size": 160},
        "pipeline": [
            {"task": "detect", "model": "det"},
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.9},
        ],
        "outputs": [{"uri": str(api.workdir / "out.jsonl")}],
    }
    job = user.post("/v1/jobs", json=document)
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    detect = ["--api", api.url, "--token", worker_key, "--model", "det=tr_photos:ShadeDetector"]
    slow = ["--model-param", "seconds_per_tile=0.3"]
    victim = _worker(api, *detect, *slow)  # alone at first, so it is sure to take a lease
    workers.append(victim)

    def victim_holds_a_lease() -> bool:
        rows = user.get("/v1/workers").json()
        return any(w["pid"] == victim.pid and w["leases_held"] > 0 for w in rows)

    wait_for(victim_holds_a_lease, 60, "the first detect worker holds a lease")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    workers.append(_worker(api, *detect, *slow))
    workers.append(
        _worker(api, "--store", api.store_url, "--model", "cls=tr_photos:CentreClassifier")
    )

    def finished() -> dict[str, object] | None:
        try:
            view = user.get(f"/v1/jobs/{job_id}").json()
        except httpx.HTTPError:
            return None
        return view if view["status"] in TERMINAL else None

    view = wait_for(finished, 180, f"job {job_id} finished", every=0.3)
    assert view["status"] == "succeeded", view
    records = read_jsonl(api.workdir / "out.jsonl")
    assert [r["id"] for r in records] == [str(api.workdir / t.name) for t in truth]
    for record, photo in zip(records, truth, strict=True):
        check_photo(record, photo, labelled=True)
    served = {w["pid"]: w["models"] for w in user.get("/v1/workers").json()}
    assert served[workers[-1].pid] == ["cls"] and served[workers[1].pid] == ["det"]

    # the same records from serve's PostgreSQL store: over HTTP a page at a time, and by
    # ``tilerunner results`` in each per-photo format
    paged, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = user.get(f"/v1/jobs/{job_id}/results", params=params)
        assert page.status_code == 200 and page.headers["X-Tilerunner-Partial"] == "false"
        paged += [json.loads(line) for line in page.text.splitlines()]
        cursor = page.headers.get("X-Tilerunner-Next-Cursor")
        if cursor is None:
            break
    assert paged == records
    done = tilerunner(
        "results", job_id, "--store", api.store_url, "-o", "again.jsonl", "-o", "again.csv",
        "-o", "again.geojson", cwd=api.workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert read_jsonl(api.workdir / "again.jsonl") == records
    with (api.workdir / "again.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == sum(max(1, len(t.squares)) for t in truth)
    assert json.loads((api.workdir / "again.geojson").read_text())["type"] == "FeatureCollection"
