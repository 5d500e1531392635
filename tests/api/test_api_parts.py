"""The API's parts on their own: result filters, progress and ETA, cursors, model liveness."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tilerunner.api import create_app
from tilerunner.api.results import BBox, ResultFilter, filter_table, label_set
from tilerunner.api.routers.jobs import decode_cursor, encode_cursor
from tilerunner.coordinator.views import eta_seconds, progress
from tilerunner.errors import InvalidRequestError
from tilerunner.outputs import FeatureTable
from tilerunner.settings import Settings
from tilerunner.store import Counts, JobRecord, Store, open_store


def _ring(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


TABLE = FeatureTable(
    image=["a", "a", "b", "c"],
    label=["car", "truck", "car", "car"],
    class_id=np.array([0, 1, 0, 0]),
    score=np.array([0.9, 0.5, 0.2, 0.95]),
    pixel_bbox=np.array([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3], [3, 3, 4, 4]], dtype=float),
    geometry=[_ring(10, 50, 11, 51), _ring(12, 50, 13, 51), _ring(20, 40, 21, 41), None],
    extra={"note": ["w", "x", "y", "z"]},
)


@pytest.mark.parametrize(
    ("where", "kept"),
    [
        (ResultFilter(), ["w", "x", "y", "z"]),
        (ResultFilter(min_score=0.5), ["w", "x", "z"]),
        (ResultFilter(labels=frozenset({"truck"})), ["x"]),
        (ResultFilter(min_score=0.6, labels=frozenset({"car"})), ["w", "z"]),
        (ResultFilter(bbox=BBox(10.5, 50.5, 12.5, 60)), ["w", "x"]),  # overlaps both boxes
        (ResultFilter(bbox=BBox(11.5, 49, 11.9, 52)), []),  # between them
        (ResultFilter(bbox=BBox(-180, -90, 180, 90)), ["w", "x", "y"]),  # no geometry: out
        (ResultFilter(bbox=BBox(13, 51, 14, 52), min_score=0.4), ["x"]),  # touching counts
    ],
)
def test_result_filters(where: ResultFilter, kept: list[str]) -> None:
    out = filter_table(TABLE, where)
    assert list(out.extra["note"]) == kept
    assert len(out.image) == len(out.score) == len(out.pixel_bbox) == len(out.geometry) == len(kept)


def test_labels_may_repeat_or_be_comma_separated() -> None:
    assert label_set(None) is None and label_set([]) is None
    assert label_set(["car,truck", " bus "]) == {"car", "truck", "bus"}


def _job(status: str, started_at: float | None) -> JobRecord:
    return JobRecord(
        id="j", name=None, spec={}, status=status, created_at=90.0, started_at=started_at,
        finished_at=None, images_total=1, images_finished=0, regions_total=10,
        tiles_total=100, outputs=None, error=None,
    )  # fmt: skip


def _counts(regions_done: int, regions_failed: int, tiles_done: int) -> Counts:
    return Counts(
        images_total=1, images_done=0, images_failed=0, regions_total=10,
        regions_done=regions_done, regions_failed=regions_failed, tiles_total=100,
        tiles_done=tiles_done, features=0,
    )  # fmt: skip


def test_progress_counts_finished_regions_and_eta_follows_measured_throughput() -> None:
    running = _job("running", started_at=100.0)
    c = _counts(regions_done=2, regions_failed=1, tiles_done=20)
    assert progress(running, c) == pytest.approx(0.3)
    assert eta_seconds(running, c, now=110.0) == pytest.approx(40.0)  # 2 tiles/s, 80 left
    assert eta_seconds(_job("queued", None), _counts(0, 0, 0), now=110.0) is None
    assert eta_seconds(running, _counts(0, 0, 0), now=110.0) is None  # nothing measured
    done = _job("succeeded", started_at=100.0)
    assert progress(done, c) == 1.0 and eta_seconds(done, c, now=110.0) == 0.0


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    assert decode_cursor(encode_cursor(1234.5678901234, "job-x")) == (1234.5678901234, "job-x")
    for bad in ("", "!!!", encode_cursor(1.0, "x")[:-3], "WzEsMl0"):  # [1,2]: id not a string
        with pytest.raises(InvalidRequestError, match="invalid cursor"):
            decode_cursor(bad)


class Clock:
    now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_model_is_live_while_a_worker_heartbeated_within_two_leases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    clock = Clock()
    store = Store(open_store(url).engine, clock=clock)
    clock.now = time.time() - 100  # 100 s ago; with leases of 30 s a model is live for 60 s
    store.worker_heartbeat("w-old", "h", 1, ["det", "cls"], 0, 0, 0, 0.0)
    clock.now = time.time()
    store.worker_heartbeat("w-new", "h", 2, ["det"], 0, 0, 0, 0.0)
    settings = Settings(store_url=url, lease_seconds=30.0, cache_dir=tmp_path)
    app = create_app(settings, store, lambda name: pytest.fail(name), insecure=True)
    with TestClient(app) as client:
        models = client.get("/v1/models").json()
    assert [(m["name"], m["workers"], m["live"]) for m in models] == [
        ("cls", ["w-old"], False),
        ("det", ["w-new", "w-old"], True),
    ]
