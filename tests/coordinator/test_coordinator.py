"""The coordinator against a real store, real queues and real rasters.

Planning is idempotent by job id; a lost message comes back through ``publish_pending``;
messages that died on the queue without a worker saying so become failed regions; aggregation
merges duplicates that regions found on both sides of a seam; and the final state is
``succeeded``, ``partial`` or ``failed`` from what finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tr_clock import FakeClock
from tr_scenes import make_scene

from tilerunner.broker import Message, Queue, open_queue
from tilerunner.broker.memory import MemoryQueue
from tilerunner.coordinator import (
    aggregate_job,
    process_outbox,
    publish_pending,
    reconcile_dead_letters,
    repair,
    submit_job,
)
from tilerunner.jobs import JobState, RegionMessage, parse_job, queue_name
from tilerunner.store import FeatureRows, Store, open_store

QUEUE = queue_name("det")
N_REGIONS = 6  # 400 x 300 px, tiles of 128 with overlap 48 (5 x 4 tiles), regions of 2 x 2


@pytest.fixture(autouse=True)
def _fresh_memory_queues() -> Iterator[None]:
    MemoryQueue.reset_all()
    yield
    MemoryQueue.reset_all()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def tif(tmp_path: Path) -> Path:
    path: Path = make_scene(tmp_path, width=400, height=300, n_boxes=5)[0]
    return path


def document(*sources: Path, outputs: tuple[Path, ...] = (), **merge: Any) -> dict[str, Any]:
    return {
        "sources": [str(s) for s in sources],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 48, "region_size": 160},
        "merge": merge,
        "outputs": [{"uri": str(o)} for o in outputs],
    }


def submit(store: Store, queue: Queue, doc: dict[str, Any], job_id: str = "j") -> tuple[str, bool]:
    return submit_job(store, lambda _: queue, parse_job(doc), job_id=job_id)


def rows(*boxes: tuple[float, float, float, float, float, int]) -> FeatureRows:
    """Features of one region: ``(x0, y0, x1, y1, score, class_id)``; labels ``a``, ``b``..."""
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    return FeatureRows(
        boxes=array[:, :4],
        scores=array[:, 4],
        class_ids=array[:, 5].astype(np.int64),
        labels=["ab"[int(c)] for c in array[:, 5]],
    )


def complete_all(store: Store, job_id: str, found: dict[int, FeatureRows] | None = None) -> None:
    for image_idx, region_idx in list(store.pending_regions(job_id)):
        region_rows = (found or {}).get(region_idx, FeatureRows())
        assert store.complete_region(job_id, image_idx, region_idx, region_rows, "w")


def message_ids(queue: Queue) -> list[str]:
    return sorted(lease.message_id for lease in queue.lease(100, 30.0))


# ------------------------------------------------------------------------------------ tests


def test_submitting_a_job_id_twice_plans_once_and_publishes_nothing_new(
    store: Store, tif: Path
) -> None:
    queue = open_queue("memory://", QUEUE)
    assert submit(store, queue, document(tif)) == ("j", True)
    assert queue.depth().visible == N_REGIONS
    in_flight = queue.lease(2, 30.0)
    tif.unlink()  # planning again would have to open it

    assert submit(store, queue, document(tif)) == ("j", False)
    depth = queue.depth()
    assert (depth.visible, depth.in_flight, depth.total) == (N_REGIONS - 2, 2, N_REGIONS)
    assert [e["kind"] for e in store.events("j")].count("queued") == 1
    [image] = store.images("j")
    assert image.state == "pending"
    assert store.counts("j").regions_total == N_REGIONS
    assert sorted(le.message_id for le in in_flight) == ["j:0:0", "j:0:1"]


def test_publish_pending_after_a_lost_message_republishes_exactly_the_pending_regions(
    store: Store, tif: Path
) -> None:
    queue = open_queue("memory://", QUEUE)
    submit(store, queue, document(tif))
    assert store.complete_region("j", 0, 2, FeatureRows(), "w")
    assert queue.purge() == N_REGIONS  # the broker lost everything

    assert publish_pending(store, lambda _: queue, "j") == N_REGIONS - 1
    assert publish_pending(store, lambda _: queue, "j") == 0  # still queued: deduplicated
    assert repair(store, lambda _: queue, "j") == (0, 0)
    expected = sorted(
        RegionMessage(job_id="j", image_idx=0, region_idx=r).id for r in (0, 1, 3, 4, 5)
    )
    assert message_ids(queue) == expected
    assert publish_pending(store, lambda _: queue, "no-such-job") == 0


@pytest.mark.parametrize(
    ("done_first", "status"), [(False, JobState.FAILED), (True, JobState.PARTIAL)]
)
def test_reconcile_dead_letters_fails_regions_whose_worker_died_on_the_last_attempt(
    store: Store, tif: Path, tmp_path: Path, done_first: bool, status: JobState
) -> None:
    clock = FakeClock()
    queue = open_queue(f"sqlite:///{tmp_path / 'queue.db'}", QUEUE, max_attempts=2, clock=clock)
    submit(store, queue, document(tif))
    queue.publish([Message("not-a-region", b"garbage")])
    for _ in range(2):  # every delivery's worker dies: the lease simply expires
        assert len(queue.lease(100, 10.0)) == N_REGIONS + 1
        clock.now += 11.0
    if done_first:  # this one's worker recorded the result, then died before acking
        assert store.complete_region("j", 0, 1, FeatureRows(), "w")

    changed = reconcile_dead_letters(store, queue)

    assert changed == N_REGIONS - done_first
    assert reconcile_dead_letters(store, queue) == 0
    assert store.region_state("j", 0, 1) == ("done" if done_first else "failed")
    errors = store.errors("j")
    assert [e.region for e in errors] == [
        r for r in range(N_REGIONS) if not (done_first and r == 1)
    ]
    assert all(e.message == "lease expired 2 times (worker died or was too slow)" for e in errors)
    assert all(e.code == "region_failed" and e.image == str(tif) for e in errors)
    assert store.pending_outbox("j")
    result = aggregate_job(store, "j")
    assert result.status is status
    assert (result.counts.regions_failed, result.counts.regions_done) == (changed, done_first)


@pytest.mark.parametrize(("agnostic", "kept"), [(False, 3), (True, 2)])
def test_aggregation_merges_duplicates_found_on_both_sides_of_a_region_seam(
    store: Store, tif: Path, tmp_path: Path, agnostic: bool, kept: int
) -> None:
    out = tmp_path / "out.geojson"
    doc = document(tif, outputs=(out,), method="nms", iou=0.5, class_agnostic=agnostic)
    queue = open_queue("memory://", QUEUE)
    submit(store, queue, doc)
    # regions 0 and 1 meet at x = 184, where the cores of tile columns 1 and 2 meet
    complete_all(
        store,
        "j",
        {
            0: rows((168, 40, 198, 70, 0.9, 0)),
            1: rows((171, 41, 200, 71, 0.8, 0), (170, 40, 198, 69, 0.7, 1)),
            4: rows((300, 250, 320, 270, 0.6, 0)),
        },
    )

    result = process_outbox(store, "coordinator")
    assert process_outbox(store, "coordinator") is None  # aggregated once
    assert result is not None and result.status is JobState.SUCCEEDED
    assert result.features == kept and result.outputs == [str(out)]
    features = json.loads(out.read_text())["features"]
    got = sorted((f["properties"]["label"], tuple(f["properties"]["pixel_bbox"])) for f in features)
    expected = [("a", (168.0, 40.0, 198.0, 70.0)), ("a", (300.0, 250.0, 320.0, 270.0))]
    if not agnostic:
        expected.append(("b", (170.0, 40.0, 198.0, 69.0)))
    assert got == expected
    assert all(f["geometry"]["type"] == "Polygon" for f in features)
    job = store.get_job("j")
    assert job is not None and job.status == JobState.SUCCEEDED and job.outputs == [str(out)]


def test_an_image_that_fails_its_probe_makes_the_job_partial(
    store: Store, tif: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    queue = open_queue("memory://", QUEUE)
    submit(store, queue, document(tif, broken))
    assert queue.depth().visible == N_REGIONS  # nothing queued for the broken image
    complete_all(store, "j", {0: rows((10, 10, 30, 30, 0.9, 0))})

    result = aggregate_job(store, "j")

    assert result.status is JobState.PARTIAL
    assert (result.counts.images_done, result.counts.images_failed) == (1, 1)
    assert result.features == 1
    [error] = store.errors("j")
    assert (error.code, error.image, error.region) == ("source_error", str(broken), None)
    assert "broken.tif" in error.message


def test_a_job_whose_every_image_fails_is_failed(store: Store, tmp_path: Path) -> None:
    sources = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for path in sources:
        path.write_text("not a raster")
    queue = open_queue("memory://", QUEUE)
    submit(store, queue, document(*sources))
    assert queue.depth().total == 0

    result = process_outbox(store, "coordinator")  # planning scheduled it: nothing to wait for

    assert result is not None and result.status is JobState.FAILED
    assert result.features == 0
    assert [e.image for e in store.errors("j")] == [str(p) for p in sources]
    job = store.get_job("j")
    assert job is not None and job.status == JobState.FAILED
    assert job.error is not None and "a.tif" in job.error
