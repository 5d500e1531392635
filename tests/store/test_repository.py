"""Repository behaviour on the embedded SQLite store: idempotent completion, one aggregation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tilerunner.jobs import JobState
from tilerunner.store import FeatureRows, ImagePlan, Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state.db'}")


def _rows(n: int, offset: float = 0.0) -> FeatureRows:
    boxes = np.array([[offset + i, 0, offset + i + 5, 5] for i in range(n)], dtype=np.float64)
    return FeatureRows(
        boxes=boxes,
        scores=np.full(n, 0.9),
        class_ids=np.zeros(n, dtype=np.int64),
        labels=["car"] * n,
    )


def _plan(store: Store, job_id: str = "j1", regions: list[int] | None = None) -> None:
    plans = [
        ImagePlan(0, "a.tif", "/data/a.tif", 100, 100, 2, regions or [4, 2]),
        ImagePlan(1, "b.tif", "/data/b.tif", None, None, None, [], error="cannot open 'b.tif'"),
    ]
    assert store.create_job(job_id, "test", {"k": 1}, plans)


def test_create_job_is_idempotent_by_id(store: Store) -> None:
    _plan(store)
    assert not store.create_job("j1", "again", {}, [])
    counts = store.counts("j1")
    assert (counts.images_total, counts.regions_total, counts.tiles_total) == (2, 2, 6)
    assert counts.images_failed == 1
    assert list(store.pending_regions("j1")) == [(0, 0), (0, 1)]


def test_duplicate_completion_writes_and_counts_nothing(store: Store) -> None:
    _plan(store)
    assert store.complete_region("j1", 0, 0, _rows(3), worker="w1")
    assert not store.complete_region("j1", 0, 0, _rows(3), worker="w2")
    counts = store.counts("j1")
    assert counts.regions_done == 1
    assert counts.features == 3
    assert counts.tiles_done == 4
    assert len(store.features("j1", 0)) == 3
    job = store.get_job("j1")
    assert job is not None and job.status == JobState.RUNNING


def test_last_region_schedules_exactly_one_aggregation(store: Store) -> None:
    _plan(store)
    store.complete_region("j1", 0, 0, _rows(1))
    assert store.claim_outbox("agg") is None
    store.fail_region("j1", 0, 1, "model 'm' raised ValueError: boom")
    first = store.claim_outbox("agg-1")
    assert first is not None and first.job_id == "j1"
    assert store.claim_outbox("agg-2") is None  # claimed, not yet expired
    store.finish_outbox(first)
    assert store.claim_outbox("agg-3") is None
    errors = store.errors("j1")
    assert [(e.code, e.image, e.region) for e in errors] == [
        ("source_error", "b.tif", None),
        ("region_failed", "a.tif", 1),
    ]


def test_expired_outbox_claim_is_taken_over(tmp_path: Path) -> None:
    now = [1000.0]
    base = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store = Store(base.engine, clock=lambda: now[0])
    _plan(store)
    store.complete_region("j1", 0, 0, _rows(1))
    store.complete_region("j1", 0, 1, _rows(1))
    assert store.claim_outbox("a", lease_seconds=10) is not None
    now[0] += 11
    taken = store.claim_outbox("b", lease_seconds=10)
    assert taken is not None and taken.job_id == "j1"


def test_guarded_transitions_never_resurrect_a_finished_job(store: Store) -> None:
    _plan(store)
    assert store.set_job_state("j1", JobState.AGGREGATING)
    assert store.set_job_state("j1", JobState.SUCCEEDED)
    assert not store.set_job_state("j1", JobState.RUNNING)
    assert not store.set_job_state("j1", JobState.FAILED)
    job = store.get_job("j1")
    assert job is not None and job.status == JobState.SUCCEEDED and job.finished_at is not None
    kinds = [e["kind"] for e in store.events("j1")]
    assert kinds[0] == "queued" and kinds[-1] == "succeeded"


def test_failed_region_can_be_retried(store: Store) -> None:
    _plan(store)
    store.complete_region("j1", 0, 0, _rows(1))
    store.fail_region("j1", 0, 1, "boom")
    assert store.retry_region("j1", 0, 1)
    assert list(store.pending_regions("j1")) == [(0, 1)]
    assert not store.retry_region("j1", 0, 1)
