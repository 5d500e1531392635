"""Cancelling keeps what finished: ``cancelling`` until the workers let go, then ``cancelled``.

Real SQLite store and queue, the real work service: after the cancel no item of the job is
handed out, a held lease cannot be extended (the worker lets go of it), the finished region's
features stay, and after one lease period the coordinator's sweep marks the job cancelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tr_scenes import make_scene

from tilerunner.broker import LeaseLostError, Queue, open_queue
from tilerunner.coordinator import Coordinator, accept_job, cancel_job, submit_job
from tilerunner.jobs import JobState, parse_job
from tilerunner.jobs.features import FeatureRows
from tilerunner.store import Store, open_store
from tilerunner.work import WorkResult
from tilerunner.work.service import WorkService, WorkServiceOptions


@pytest.fixture
def system(tmp_path: Path) -> tuple[Store, Queue, WorkService, str]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    queue = open_queue(url, "regions-det")
    tif, _, _ = make_scene(tmp_path, width=400, height=300, n_boxes=4)
    document = {"sources": [str(tif)], "pipeline": [{"task": "detect", "model": "det"}],
                "tiling": {"tile_size": 128, "overlap": 48, "region_size": 160}}  # fmt: skip
    job_id, _ = submit_job(store, lambda _: queue, parse_job(document), job_id="c")
    service = WorkService(store, lambda _: queue, WorkServiceOptions(lease_seconds=30))
    return store, queue, service, job_id


def test_a_running_job_is_cancelling_until_its_leases_are_let_go(
    system: tuple[Store, Queue, WorkService, str],
) -> None:
    store, queue, service, job_id = system
    first, held = service.lease(["det"], 2)
    one = FeatureRows(boxes=np.array([[1.0, 1.0, 9.0, 9.0]]), scores=np.array([0.8]),
                      class_ids=np.array([0]), labels=["x"])  # fmt: skip
    assert service.complete(first.token, WorkResult(one, 4))

    assert cancel_job(store, job_id) is JobState.CANCELLING
    assert service.lease(["det"], 10) == []  # no more of its items are handed out
    with pytest.raises(LeaseLostError):
        service.extend(held.token)  # the worker holding one lets go of it
    assert queue.depth().total == 0  # every message of the job released

    coordinator = Coordinator(store, lambda _: queue, sweep_seconds=0, lease_seconds=3600)
    coordinator.run_once()
    assert store.get_job(job_id).status == JobState.CANCELLING  # type: ignore[union-attr]
    coordinator.lease_seconds = 0.0  # as if a lease period had passed
    coordinator.run_once()
    job = store.get_job(job_id)
    assert job is not None and job.status == JobState.CANCELLED
    assert store.counts(job_id).features == 1  # what finished is kept
    assert cancel_job(store, job_id) is None  # already over


def test_a_job_still_planning_is_cancelled_at_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    tif, _, _ = make_scene(tmp_path, width=200, height=200, n_boxes=2)
    spec = parse_job({"sources": [str(tif)], "pipeline": [{"task": "detect", "model": "det"}]})
    job_id = accept_job(store, spec)
    assert cancel_job(store, job_id) is JobState.CANCELLED


def test_regions_finishing_after_a_cancel_are_kept_but_nothing_is_aggregated(
    system: tuple[Store, Queue, WorkService, str], tmp_path: Path
) -> None:
    store, queue, _, job_id = system
    assert cancel_job(store, job_id) is JobState.CANCELLING
    for image_idx, region_idx in store.pending_regions(job_id):  # late results still land
        assert store.complete_region(job_id, image_idx, region_idx, FeatureRows(), "late")
    assert store.pending_outbox(job_id)  # the last region scheduled the aggregation
    Coordinator(store, lambda _: queue, sweep_seconds=1e9).run_once()
    job = store.get_job(job_id)
    assert job is not None and job.status == JobState.CANCELLING and not job.outputs
    assert not store.pending_outbox(job_id)
