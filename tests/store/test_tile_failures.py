"""Tiles that failed alone, in the store: recorded with their region, counted, retried.

The fixtures of ``test_repository`` run every test on the embedded SQLite store and, when the
server is reachable, on PostgreSQL.
"""

from __future__ import annotations

import numpy as np
from test_repository import store, store_url

from tilerunner.jobs import JobState, RegionState
from tilerunner.jobs.features import TileFailure
from tilerunner.store import FeatureRows, ImagePlan, Store
from tilerunner.tiling import Window

FIXTURES = (store, store_url)  # from test_repository: each test on SQLite and PostgreSQL

BAD = (
    TileFailure(Window(80, 0, 128, 128), "source_error", "cannot read 'a.tif': Read failed"),
    TileFailure(Window(0, 80, 128, 128), "model_error", "model 'm' raised ValueError: boom"),
)


def _rows(n: int, offset: float = 0.0) -> FeatureRows:
    boxes = np.array([[offset + i, 0, offset + i + 5, 5] for i in range(n)], dtype=np.float64)
    return FeatureRows(
        boxes=boxes,
        scores=np.full(n, 0.9),
        class_ids=np.zeros(n, dtype=np.int64),
        labels=["car"] * n,
    )


def _plan(store: Store) -> None:
    assert store.create_job(
        "j1", "t", {}, [ImagePlan(0, "a.tif", "/data/a.tif", 300, 300, 2, [4, 4])]
    )


def test_failures_are_recorded_once_with_the_region(store: Store) -> None:
    _plan(store)
    assert store.complete_region("j1", 0, 0, _rows(3), "w1", BAD)
    assert not store.complete_region("j1", 0, 0, _rows(3), "w2", BAD[:1])  # a duplicate
    counts = store.counts("j1")
    assert (counts.regions_done, counts.features, counts.tiles_failed) == (1, 3, 2)
    errors = store.errors("j1")
    assert [(e.code, e.image, e.region, e.window) for e in errors] == [
        ("tile_failed", "a.tif", 0, Window(80, 0, 128, 128)),
        ("tile_failed", "a.tif", 0, Window(0, 80, 128, 128)),
    ]
    assert errors[0].message == "source_error: cannot read 'a.tif': Read failed"
    assert store.failed_tiles("j1", 0, 0) == ((80, 0), (0, 80))
    assert [e["kind"] for e in store.events("j1") if e["region_idx"] == 0] == ["tiles_failed"]


def test_reopening_failed_tiles_adds_features_and_replaces_failures(store: Store) -> None:
    _plan(store)
    store.complete_region("j1", 0, 0, _rows(3), tile_failures=BAD)
    store.complete_region("j1", 0, 1, _rows(2, offset=100))
    store.set_job_state("j1", JobState.AGGREGATING)
    assert store.set_job_state("j1", JobState.PARTIAL)
    assert store.image("j1", 0).state == "done"

    assert store.reopen_failed_tiles("j1") == {(0, 0): 2}
    assert store.reopen_job("j1")
    assert store.region_state("j1", 0, 0) == RegionState.PENDING
    assert store.image("j1", 0).state == "pending"
    counts = store.counts("j1")
    assert (counts.regions_done, counts.tiles_failed, counts.features) == (1, 0, 2)
    assert store.errors("j1") == []  # failures count only while their region is done
    assert store.failed_tiles("j1", 0, 0) == ((80, 0), (0, 80))  # the tiles to redo
    assert store.reopen_failed_tiles("j1") == {}  # pending now: nothing more to reopen

    # the redo: one tile recovers (4 features), the other fails again
    again = (TileFailure(Window(0, 80, 128, 128), "model_error", "still broken"),)
    assert store.complete_region("j1", 0, 0, _rows(4, offset=50), tile_failures=again)
    counts = store.counts("j1")
    assert (counts.regions_done, counts.features, counts.tiles_failed) == (2, 9, 1)
    assert len(store.features("j1", 0)) == 9
    [error] = store.errors("j1")
    assert (error.window, error.message) == (Window(0, 80, 128, 128), "model_error: still broken")
    assert store.image("j1", 0).state == "done"
    assert store.pending_outbox("j1")  # the reopened job is aggregated again


def test_a_fresh_region_starts_with_no_tiles_to_redo(store: Store) -> None:
    _plan(store)
    assert store.failed_tiles("j1", 0, 1) == ()
    assert store.complete_region("j1", 0, 1, _rows(1))
    assert store.counts("j1").tiles_failed == 0 and store.errors("j1") == []
