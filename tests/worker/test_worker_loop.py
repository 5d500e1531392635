"""The worker lease loop, in-process: real store, real queues, real rasters, worker threads.

A planned job finishes with exactly the truth; heartbeats keep a slow region's lease so it is
never redelivered; a duplicate delivery (a lease lost while processing, or a message published
again after the region finished) writes and counts nothing; a poison tile fails alone (its
region is done with every other tile's features, the job ends ``partial`` with a tile error
naming the window) and, once repaired, retrying just that tile recovers every object once; an
item whose every tile fails is retried as a whole, then its failures are recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from tr_clock import FakeClock
from tr_scenes import make_scene

from tilerunner.broker import Lease, Message, Queue, open_queue
from tilerunner.broker.memory import MemoryQueue
from tilerunner.coordinator import aggregate_job, retry_failed_tiles, submit_job
from tilerunner.jobs import JobSpec, JobState, RegionMessage, RegionState, parse_job, queue_name
from tilerunner.merging import owned_mask
from tilerunner.models import wrap_model
from tilerunner.store import Store, open_store
from tilerunner.testing import FailingModel, TruthDetector
from tilerunner.tiling import TileGrid, Window
from tilerunner.work.direct import DirectWorkSource
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.worker import Worker, WorkerOptions

pytestmark = pytest.mark.timeout(60)

TILE, OVERLAP, REGION = 128, 48, 160  # stride 80, regions of 2 x 2 tiles
QUEUE = queue_name("det")
MARKER = 255  # make_scene draws noise in 0..254
Boxes = Sequence[tuple[float, ...]]
Outputs = list[dict[str, NDArray[np.generic]]]


@pytest.fixture(autouse=True)
def _fresh_memory_queues() -> Iterator[None]:
    MemoryQueue.reset_all()
    yield
    MemoryQueue.reset_all()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state.db'}")


class RecordingQueue(MemoryQueue):
    """The memory queue, noting every delivery's attempt number and every extension."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, clock=clock)
        self.attempts: list[tuple[str, int]] = []
        self.extensions = 0
        self._note = threading.Lock()

    def lease(self, n: int, visibility: float) -> list[Lease]:
        leases = super().lease(n, visibility)
        with self._note:
            self.attempts += [(le.message_id, le.attempt) for le in leases]
        return leases

    def extend(self, lease: Lease, visibility: float) -> Lease:
        extended = super().extend(lease, visibility)
        with self._note:
            self.extensions += 1
        return extended


class SlowTruth(TruthDetector):
    """Replays the truth, sleeping per tile, and records every window it was given.

    With ``gate`` set, the first call waits for it (after setting ``entered``), so a test can
    act while a region is being processed.
    """

    def __init__(self, truth: Path, seconds_per_tile: float = 0.0, gate: bool = False) -> None:
        super().__init__(truth)
        self.seconds_per_tile = seconds_per_tile
        self.seen: list[Window] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        if not gate:
            self.go.set()
        self._lock = threading.Lock()

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> Outputs:
        with self._lock:
            self.seen += list(windows)
        self.entered.set()
        if not self.go.wait(timeout=30):
            raise RuntimeError("the gated model was never released")
        time.sleep(self.seconds_per_tile * len(tiles))
        return super().predict(tiles, windows)


class MarkedTruth(TruthDetector):
    """Replays the truth, but fails any batch holding a marker pixel (a poison tile)."""

    def __init__(self, truth: Path) -> None:
        super().__init__(truth)
        self.guard = FailingModel(marker_value=MARKER)

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> Outputs:
        self.guard.predict(tiles)
        return super().predict(tiles, windows)


def spec(tif: Path, region_size: int = REGION) -> JobSpec:
    return parse_job(
        {
            "sources": [str(tif)],
            "pipeline": [{"task": "detect", "model": "det"}],
            "tiling": {"tile_size": TILE, "overlap": OVERLAP, "region_size": region_size},
            "merge": {"method": "none"},
        }
    )


def worker(store: Store, queue: Queue, impl: object, name: str, **options: Any) -> Worker:
    """A worker over a direct work source; service options (attempts, retry delay, lease
    period) and worker options (batching, prefetch, polling) are split by name."""
    service_fields = {f.name for f in dataclasses.fields(WorkServiceOptions)}
    service = WorkServiceOptions(
        lease_seconds=options.get("lease_seconds", 30.0),
        poll_seconds=0.02,
        **{k: v for k, v in options.items() if k in service_fields and k != "lease_seconds"},
    )
    defaults = WorkerOptions(batch_size=4, readers=2, poll_seconds=0.02, lease_seconds=30.0)
    source = DirectWorkSource(WorkService(store, lambda _: queue, service))
    return Worker(
        source,
        {"det": wrap_model(impl, name="det", spec=f"tests.worker:{type(impl).__name__}")},
        dataclasses.replace(
            defaults,
            **{k: v for k, v in options.items() if k not in service_fields - {"lease_seconds"}},
        ),
        worker_id=name,
    )


def finished(store: Store, job_id: str) -> Callable[[], bool]:
    def done() -> bool:
        counts = store.counts(job_id)
        return counts.regions_finished >= counts.regions_total

    return done


def in_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as error:  # surfaced by the test's own assertion
            errors.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, errors


def rounded(boxes: NDArray[np.float64] | Boxes) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in b) for b in np.asarray(boxes).tolist())


def worker_row(store: Store, worker_id: str) -> dict[str, Any]:
    return next(w for w in store.workers() if w["id"] == worker_id)


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
def test_planned_job_finishes_with_the_truth(store: Store, tmp_path: Path, engine: str) -> None:
    tif, truth_csv, truth = make_scene(tmp_path, width=400, height=300, n_boxes=30)
    url = "memory://" if engine == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    queue = open_queue(url, QUEUE)
    job_id, created = submit_job(store, lambda _: queue, spec(tif), job_id="j")
    assert created and queue.depth().visible == 6  # 5 x 4 tiles in regions of 2 x 2

    worker(store, queue, TruthDetector(truth_csv), "w1").run(until=finished(store, job_id))

    counts = store.counts(job_id)
    assert (counts.regions_done, counts.regions_failed) == (6, 0)
    assert counts.tiles_done == counts.tiles_total == 20
    assert counts.features == 30
    assert rounded(store.features(job_id, 0).boxes) == rounded(truth)
    assert queue.depth().total == 0
    row = worker_row(store, "w1")
    assert (row["regions_done"], row["tiles_done"]) == (6, 20)
    assert store.pending_outbox(job_id)
    assert aggregate_job(store, job_id).status is JobState.SUCCEEDED


def test_a_worker_holds_a_region_for_each_reader_and_two_more(store: Store, tmp_path: Path) -> None:
    """While the model works on the first regions, the next ones are leased and queued for the
    reader threads (two readers: four held); the rest wait in the queue for other workers."""
    tif, truth_csv, _ = make_scene(tmp_path, width=400, height=300, n_boxes=12)
    queue = open_queue("memory://", QUEUE)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif), job_id="held")
    gated = SlowTruth(truth_csv, gate=True)
    w = worker(store, queue, gated, "w", batch_size=1)
    assert w.prefetch("det") == 4
    thread, errors = in_thread(lambda: w.run(until=finished(store, job_id)))
    assert gated.entered.wait(timeout=30)
    deadline = time.monotonic() + 30
    while queue.depth().total - queue.depth().visible < 4 and time.monotonic() < deadline:
        thread.join(0.02)
    depth = queue.depth()
    assert (depth.total - depth.visible, depth.visible) == (4, 2)  # 6 regions: 4 held
    gated.go.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors
    assert store.counts(job_id).regions_done == 6


def test_heartbeat_keeps_a_slow_region_from_being_redelivered(store: Store, tmp_path: Path) -> None:
    """Each region takes longer than the lease; only heartbeats stop a second delivery."""
    lease_seconds, seconds_per_tile = 1.2, 1.6  # heartbeats every 0.4 s: slack for a loaded machine
    tif, truth_csv, truth = make_scene(tmp_path, width=208, height=208, n_boxes=6)
    queue = RecordingQueue(QUEUE)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif, region_size=80), job_id="slow")
    assert store.counts(job_id).regions_total == 4  # one tile per region
    model = SlowTruth(truth_csv, seconds_per_tile=seconds_per_tile)
    assert seconds_per_tile > lease_seconds
    workers = [
        worker(store, queue, model, f"w{i}", lease_seconds=lease_seconds, prefetch=1, batch_size=1)
        for i in range(2)
    ]
    threads = [in_thread(functools.partial(w.run, until=finished(store, job_id))) for w in workers]
    for thread, errors in threads:
        thread.join(timeout=45)
        assert not thread.is_alive() and not errors

    assert sorted(attempt for _, attempt in queue.attempts) == [1, 1, 1, 1]
    assert len(model.seen) == len(set(model.seen)) == 4  # no tile inferred twice
    assert queue.extensions >= 4
    assert not [e for e in store.events(job_id) if e["kind"] == "attempt_failed"]
    counts = store.counts(job_id)
    assert (counts.regions_done, counts.features) == (4, 6)
    assert rounded(store.features(job_id, 0).boxes) == rounded(truth)
    done = sum(int(worker_row(store, f"w{i}")["regions_done"]) for i in range(2))
    assert done == 4


def test_a_lease_lost_while_processing_is_recorded_once(store: Store, tmp_path: Path) -> None:
    """Worker A stalls past its lease; B takes the redelivery and records it; A's late result
    must write and count nothing, and its ack must not remove anything."""
    tif, truth_csv, truth = make_scene(tmp_path, width=208, height=208, n_boxes=8)
    clock = FakeClock()
    queue = RecordingQueue(QUEUE, clock=clock)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif, region_size=400), job_id="dup")
    assert store.counts(job_id).regions_total == 1
    stalled = SlowTruth(truth_csv, gate=True)
    a = worker(store, queue, stalled, "a", prefetch=1)
    thread, errors = in_thread(lambda: a.run(until=finished(store, job_id)))
    assert stalled.entered.wait(timeout=30)

    clock.advance(31)  # A's 30 s lease has expired; its heartbeat is 10 s of real time away
    b_model = SlowTruth(truth_csv)
    worker(store, queue, b_model, "b").run(until=finished(store, job_id))
    assert store.counts(job_id).features == 8
    stalled.go.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors

    assert queue.attempts == [("dup:0:0", 1), ("dup:0:0", 2)]
    assert len(b_model.seen) == 4 and len(stalled.seen) == 4  # both really processed it
    counts = store.counts(job_id)
    assert (counts.regions_done, counts.features, counts.tiles_done) == (1, 8, 4)
    assert rounded(store.features(job_id, 0).boxes) == rounded(truth)
    assert worker_row(store, "a")["regions_done"] == 0
    assert worker_row(store, "b")["regions_done"] == 1
    assert queue.depth().total == 0


def test_a_message_published_again_after_its_region_is_done_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    tif, truth_csv, _ = make_scene(tmp_path, width=400, height=300, n_boxes=12)
    queue = open_queue("memory://", QUEUE)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif), job_id="again")
    worker(store, queue, TruthDetector(truth_csv), "w1").run(until=finished(store, job_id))
    before = store.counts(job_id)
    events = len(store.events(job_id))

    message = RegionMessage(job_id=job_id, image_idx=0, region_idx=3)
    assert queue.publish([Message(message.id, message.encode())]) == 1
    late = SlowTruth(truth_csv)
    worker(store, queue, late, "w2").run(until=lambda: queue.depth().total == 0)

    assert late.seen == []  # skipped without reading or inferring
    assert store.counts(job_id) == before
    assert len(store.features(job_id, 0)) == 12
    assert len(store.events(job_id)) == events
    assert worker_row(store, "w2")["regions_done"] == 0


def _paint_marker(tif: Path, x: int, y: int) -> None:
    with rasterio.open(tif, "r+") as dst:
        patch = np.full((3, 1, 1), MARKER, dtype=np.uint8)
        dst.write(patch, window=rasterio.windows.Window(x, y, 1, 1))


def _owned_by_tiles(truth: Boxes, grid: TileGrid, tiles: Sequence[tuple[int, int]]) -> list[bool]:
    owned = np.zeros(len(truth), dtype=bool)
    for col, row in tiles:
        owned |= owned_mask(np.asarray(truth), grid.core(col, row), grid.width, grid.height)
    return [bool(v) for v in owned]


def _kept(truth: Boxes, lost: list[bool]) -> list[tuple[float, ...]]:
    return [b for b, gone in zip(truth, lost, strict=True) if not gone]


def test_a_poison_tile_fails_alone_and_retrying_it_recovers_everything(
    store: Store, tmp_path: Path
) -> None:
    tif, truth_csv, truth = make_scene(tmp_path, width=400, height=300, n_boxes=30)
    _paint_marker(tif, 60, 60)  # [48, 80) on both axes: only tile (0, 0), so only region 0
    queue = RecordingQueue(QUEUE)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif), job_id="poison")

    w = worker(store, queue, MarkedTruth(truth_csv), "w1", max_attempts=3, retry_delay=0.01)
    w.run(until=finished(store, job_id))

    # not retried: the region is done at once, with what its three other tiles own
    assert [a for m, a in queue.attempts if m == "poison:0:0"] == [1]
    assert [e["kind"] for e in store.events(job_id) if e["region_idx"] == 0] == ["tiles_failed"]
    assert store.region_state(job_id, 0, 0) == RegionState.DONE
    assert queue.depth().total == 0 and queue.dead_letters() == []
    result = aggregate_job(store, job_id)
    assert result.status is JobState.PARTIAL
    counts = result.counts
    assert (counts.regions_done, counts.regions_failed, counts.tiles_failed) == (6, 0, 1)
    grid = TileGrid(400, 300, TILE, OVERLAP)
    [error] = store.errors(job_id)
    assert (error.code, error.image, error.region) == ("tile_failed", str(tif), 0)
    assert error.window == grid.tile(0, 0) == Window(0, 0, TILE, TILE)
    assert error.message.startswith("model_error:")
    assert "'det'" in error.message and "marker pixel" in error.message
    job = store.get_job(job_id)
    assert job is not None and job.error == error.message

    lost = _owned_by_tiles(truth, grid, [(0, 0)])
    assert 0 < sum(lost) < len(truth)
    assert rounded(store.features(job_id, 0).boxes) == rounded(_kept(truth, lost))
    assert result.features == counts.features == len(truth) - sum(lost)

    # repaired, only the failed tile is redone; everything comes back exactly once
    with rasterio.open(tif, "r+") as dst:
        dst.write(np.zeros((3, 1, 1), dtype=np.uint8), window=rasterio.windows.Window(60, 60, 1, 1))
    assert retry_failed_tiles(store, lambda _: queue, job_id) == 1
    job = store.get_job(job_id)
    assert job is not None and job.status == JobState.RUNNING.value
    assert store.region_state(job_id, 0, 0) == RegionState.PENDING
    again = SlowTruth(truth_csv)
    worker(store, queue, again, "w2").run(until=finished(store, job_id))
    assert again.seen == [grid.tile(0, 0)]
    assert store.errors(job_id) == []
    assert rounded(store.features(job_id, 0).boxes) == rounded(truth)
    assert worker_row(store, "w2")["tiles_done"] == 1
    assert store.pending_outbox(job_id)
    final = aggregate_job(store, job_id)
    assert final.status is JobState.SUCCEEDED
    assert final.counts.features == final.features == len(truth)
    assert (final.counts.tiles_failed, final.counts.tiles_done) == (0, final.counts.tiles_total)
    assert retry_failed_tiles(store, lambda _: queue, job_id) == 0


def test_an_item_whose_every_tile_fails_is_retried_then_recorded(
    store: Store, tmp_path: Path
) -> None:
    tif, truth_csv, truth = make_scene(tmp_path, width=400, height=300, n_boxes=30)
    _paint_marker(tif, 100, 100)  # in [80, 128) on both axes: all four tiles of region 0
    queue = RecordingQueue(QUEUE)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif), job_id="allbad")

    w = worker(store, queue, MarkedTruth(truth_csv), "w1", max_attempts=3, retry_delay=0.01)
    w.run(until=finished(store, job_id))

    assert [a for m, a in queue.attempts if m == "allbad:0:0"] == [1, 2, 3]
    region_events = [e for e in store.events(job_id) if e["region_idx"] == 0]
    kinds = [e["kind"] for e in region_events]
    assert kinds == ["attempt_failed", "attempt_failed", "tiles_failed"]
    assert region_events[0]["message"].startswith("model_error: every tile failed (4)")
    assert store.region_state(job_id, 0, 0) == RegionState.DONE
    assert queue.depth().total == 0 and queue.dead_letters() == []

    result = aggregate_job(store, job_id)
    assert result.status is JobState.PARTIAL
    assert (result.counts.regions_failed, result.counts.tiles_failed) == (0, 4)
    grid = TileGrid(400, 300, TILE, OVERLAP)
    region_tiles = [(0, 0), (1, 0), (0, 1), (1, 1)]
    errors = store.errors(job_id)
    assert [(e.code, e.region) for e in errors] == [("tile_failed", 0)] * 4
    assert [e.window for e in errors] == [grid.tile(c, r) for c, r in region_tiles]
    lost = _owned_by_tiles(truth, grid, region_tiles)
    assert rounded(store.features(job_id, 0).boxes) == rounded(_kept(truth, lost))


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_worker_that_re_leases_its_own_expired_region_keeps_working(
    store: Store, tmp_path: Path
) -> None:
    tif, truth_csv, _ = make_scene(tmp_path, width=208, height=208, n_boxes=6)
    clock = FakeClock()
    queue = RecordingQueue(QUEUE, clock=clock)
    job_id, _ = submit_job(store, lambda _: queue, spec(tif, region_size=80), job_id="self")
    queue.purge()
    first, later = (RegionMessage(job_id=job_id, image_idx=0, region_idx=i) for i in (0, 1))
    queue.publish([Message(first.id, first.encode())])
    stalled = SlowTruth(truth_csv, gate=True)
    a = worker(store, queue, stalled, "a", prefetch=2, batch_size=1)
    thread, errors = in_thread(lambda: a.run())
    try:
        assert stalled.entered.wait(timeout=30)
        clock.advance(31)  # the heartbeat (10 s of real time away) missed the expiry
        assert _wait_for(lambda: (first.id, 2) in queue.attempts, 10)
        stalled.go.set()
        assert _wait_for(lambda: store.region_state(job_id, 0, 0) == "done", 10)
        queue.publish([Message(later.id, later.encode())])
        recorded = _wait_for(lambda: store.region_state(job_id, 0, 1) == "done", 5)
    finally:
        a.stop()
        thread.join(timeout=30)
    assert not thread.is_alive() and not errors
    assert recorded, "the worker leased region 1 but never recorded it"
    assert store.counts(job_id).regions_done == 2
