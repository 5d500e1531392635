"""The /v1/work routes in-process (FastAPI's test client) over a real SQLite store and queue.

The same WorkService a direct worker uses decides everything: a lease long-polls and returns
nothing when there is nothing; extend hands back a new token; complete records once (a second
completion of the same item records nothing); a lease another holder took answers 409; the
last failed attempt dead-letters; a worker's large result body is accepted on /v1/work while
other routes keep the small limit; a malformed token is a 422, never a 500.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tilerunner.api import create_app
from tilerunner.broker import Queue, open_queue
from tilerunner.jobs import parse_job
from tilerunner.jobs.features import FeatureRows
from tilerunner.settings import Settings
from tilerunner.store import ImagePlan, Store, open_store
from tilerunner.work.wire import FeaturesBody


@pytest.fixture
def system(tmp_path: Path) -> tuple[TestClient, Store, dict[str, Queue]]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    settings = Settings(store_url=url, cache_dir=tmp_path / "cache", max_attempts=2)
    queues: dict[str, Queue] = {}

    def queue_for(name: str) -> Queue:
        return queues.setdefault(name, open_queue(url, name, max_attempts=2))

    from tilerunner.coordinator import publish_pending

    spec = parse_job({"sources": ["unused.tif"], "pipeline": [{"task": "detect", "model": "det"}],
                      "tiling": {"tile_size": 64, "overlap": 0, "region_size": 64}})  # fmt: skip
    plan = ImagePlan(0, "img", "unused.tif", 64 * 3, 64, 1, [1, 1, 1])
    store.create_job("j", None, spec.model_dump(mode="json"), [plan])
    publish_pending(store, queue_for, "j")
    client = TestClient(create_app(settings, store, queue_for, insecure=True))
    return client, store, queues


def _lease(client: TestClient, **body: object) -> list[dict[str, object]]:
    response = client.post("/v1/work/lease", json={"models": ["det"], **body})
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_lease_describes_the_item_and_complete_records_it_once(
    system: tuple[TestClient, Store, dict[str, Queue]],
) -> None:
    client, store, _ = system
    [leased] = _lease(client)
    item = leased["item"]
    assert isinstance(item, dict)
    assert (item["kind"], item["job_id"], item["url"], item["tile_size"]) == (
        "region", "j", "unused.tif", 64,
    )  # fmt: skip
    token = str(leased["lease"])
    renewed = client.post(f"/v1/work/{token}/extend")
    assert renewed.status_code == 200, renewed.text
    token2 = renewed.json()["lease"]
    assert renewed.json()["expires_at"] >= leased["expires_at"]  # type: ignore[operator]

    features = {"boxes": [[1, 2, 3, 4]], "scores": [0.9], "class_ids": [0], "labels": ["a"]}
    done = client.post(f"/v1/work/{token2}/complete", json={"features": features, "n_tiles": 1})
    assert done.status_code == 200 and done.json() == {"recorded": True}
    again = client.post(f"/v1/work/{token2}/complete", json={"features": features, "n_tiles": 1})
    assert again.status_code == 409  # released: the broker no longer honours the lease
    region = (int(item["image_idx"]), int(item["region_idx"]))  # type: ignore[call-overload]
    assert store.counts("j").features == 1
    assert region not in store.pending_regions("j")


def test_an_empty_queue_long_polls_then_answers_nothing(
    system: tuple[TestClient, Store, dict[str, Queue]],
) -> None:
    client, _, _ = system
    assert len(_lease(client, max=3)) == 3
    started = time.monotonic()
    assert _lease(client, wait_seconds=0.6) == []
    assert time.monotonic() - started >= 0.5


def test_the_last_failed_attempt_dead_letters(
    system: tuple[TestClient, Store, dict[str, Queue]],
) -> None:
    client, store, queues = system
    body = {"error": {"code": "model_error", "message": "boom"}, "retryable": False}
    [first] = _lease(client)
    assert client.post(f"/v1/work/{first['lease']}/fail", json=body).json() == {"dead": False}
    deadline = time.monotonic() + 10
    second: list[dict[str, object]] = []
    while not second and time.monotonic() < deadline:  # the retry comes back after its back-off
        second = [i for i in _lease(client, max=3, wait_seconds=0.5) if i["attempt"] == 2]
    assert second, "the failed item was not redelivered"
    assert client.post(f"/v1/work/{second[0]['lease']}/fail", json=body).json() == {"dead": True}
    assert len(store.failed_regions("j")) == 1
    assert len(queues["regions-det"].dead_letters()) == 1


def test_a_large_result_is_accepted_on_work_routes_only(
    system: tuple[TestClient, Store, dict[str, Queue]],
) -> None:
    client, store, _ = system
    n = 40_000
    rows = FeatureRows(
        boxes=np.tile([1.0, 2.0, 3.0, 4.0], (n, 1)), scores=np.full(n, 0.5),
        class_ids=np.zeros(n, dtype=np.int64), labels=["thing"] * n,
    )  # fmt: skip
    body = {"features": FeaturesBody.from_rows(rows).model_dump(mode="json"), "n_tiles": 1}
    [leased] = _lease(client)
    done = client.post(f"/v1/work/{leased['lease']}/complete", json=body)
    assert len(done.request.content) > 1024 * 1024  # over the limit of every other route
    assert done.status_code == 200, done.text[:300]
    assert store.counts("j").features == n
    big = client.post("/v1/jobs", content=done.request.content,
                      headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413


@pytest.mark.parametrize("token", ["nope", "e30", "eyJtIjoiZGV0In0", "x" * 300])
def test_a_malformed_token_is_refused_with_422(
    system: tuple[TestClient, Store, dict[str, Queue]], token: str
) -> None:
    client, _, _ = system
    for action in ("extend", "complete", "fail"):
        body = {"n_tiles": 1} if action == "complete" else {}
        if action == "fail":
            body = {"error": {"code": "x", "message": "y"}}
        response = client.post(f"/v1/work/{token}/{action}", json=body)
        assert response.status_code == 422, (action, response.text)
