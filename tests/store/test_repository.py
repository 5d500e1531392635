"""Repository behaviour on SQLite and PostgreSQL: idempotent completion, one aggregation.

Every test runs on the embedded SQLite store and, when the server is reachable, on PostgreSQL
(each test in a fresh schema, dropped afterwards), so the guarded updates and the row locks that
serialise completions are checked on the database a cluster runs.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import func, select, text, update
from tr_clock import FakeClock
from tr_stores import store_url  # noqa: F401 - fixture, also imported by the other store tests

from tilerunner.jobs import JobState
from tilerunner.store import FeatureRows, ImagePlan, Store, open_store
from tilerunner.store.outbox import ClaimKeeper
from tilerunner.store.tables import outbox


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811
    opened = open_store(store_url)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def aggregation_due(store: Store, clock: FakeClock) -> Store:
    """A store on ``clock`` with job j1 planned and both regions of its image done: one
    aggregation row waits in the outbox to be claimed."""
    store = Store(store.engine, clock=clock)
    _plan(store)
    store.complete_region("j1", 0, 0, _rows(1))
    store.complete_region("j1", 0, 1, _rows(1))
    return store


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


def test_expired_outbox_claim_is_taken_over(aggregation_due: Store, clock: FakeClock) -> None:
    store = aggregation_due
    assert store.claim_outbox("a", lease_seconds=10) is not None
    clock.advance(11)
    taken = store.claim_outbox("b", lease_seconds=10)
    assert taken is not None and taken.job_id == "j1"


def test_a_long_transaction_of_the_work_extends_its_own_claim(
    aggregation_due: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # the keeper's thread would wait on the transaction's lock; the transaction renews instead
    store = aggregation_due
    item = store.claim_outbox("agg", lease_seconds=0.3)
    assert item is not None
    until = select(outbox.c.claimed_until).where(outbox.c.id == item.id)
    with (
        ClaimKeeper(store, item, "agg", 0.3) as keeper,
        keeper.within() as renew,
        store.engine.begin() as conn,  # the work's own long transaction
    ):
        conn.execute(update(outbox).where(outbox.c.id == item.id).values(attempts=1))
        clock.now = 2000.0
        deadline = time.monotonic() + 30
        while conn.execute(until).scalar_one() < 2000.0 and time.monotonic() < deadline:
            renew(conn)
    with store.engine.begin() as conn:
        assert conn.execute(until).scalar_one() == pytest.approx(2000.3)
    assert not keeper.lost
    assert "cannot extend" not in caplog.text


def test_features_stream_in_chunks_in_region_then_insertion_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tilerunner.store import features

    _plan(store)
    second = _rows(3, offset=100.0)
    second.labels = ["bus", "car", "bus"]
    second.extra = [{"scores": [0.1, 0.9]}, None, None]
    store.complete_region("j1", 0, 1, second)  # finishes first, but its region comes second
    store.complete_region("j1", 0, 0, _rows(4))
    monkeypatch.setattr(features, "_READ_ROWS", 2)
    seen: list[object] = []
    rows = store.features("j1", 0, renew=seen.append)
    assert len(seen) == 4  # one renewal chance per chunk of two rows
    assert rows.boxes[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0]
    assert rows.class_ids.dtype == np.int64 and rows.scores.tolist() == [0.9] * 7
    assert rows.labels == ["car"] * 4 + ["bus", "car", "bus"]
    assert rows.extra == [None] * 4 + [{"scores": [0.1, 0.9]}, None, None]


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


def test_times_keep_sub_second_precision(store: Store) -> None:
    at = 1_700_000_000.123456  # epoch seconds in a 4-byte float would be off by minutes
    store = Store(store.engine, clock=lambda: at)
    _plan(store)
    job = store.get_job("j1")
    assert job is not None and job.created_at == at


@pytest.mark.parametrize("job_id", [f"race-{i}" for i in range(5)])
def test_concurrent_completions_of_one_image_schedule_one_aggregation(
    store: Store, job_id: str
) -> None:
    regions = 8
    plan = ImagePlan(0, "a.tif", "/data/a.tif", 100, 100, 2, [3] * regions)
    assert store.create_job(job_id, "race", {}, [plan])
    barrier = threading.Barrier(2 * regions)
    won: list[bool] = []
    errors: list[BaseException] = []

    def complete(region: int) -> None:
        try:
            barrier.wait(timeout=30)
            won.append(store.complete_region(job_id, 0, region, _rows(2, offset=10.0 * region)))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    # every region is delivered twice, and all 16 completions race
    threads = [threading.Thread(target=complete, args=(r % regions,)) for r in range(2 * regions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(won) == [False] * regions + [True] * regions
    counts = store.counts(job_id)
    assert (counts.regions_done, counts.tiles_done, counts.features) == (8, 24, 16)
    assert counts.images_done == 1
    assert len(store.features(job_id, 0)) == 16
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1
    kinds = [e["kind"] for e in store.events(job_id)]
    assert kinds.count("all_regions_finished") == 1
    assert store.claim_outbox("agg-1") is not None
    assert store.claim_outbox("agg-2") is None


def test_processes_migrating_a_fresh_database_together_all_succeed(store_url: str) -> None:  # noqa: F811
    # a cluster's workers start together and each brings the schema up to date
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=open_store, args=(store_url,)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0, 0, 0]
    store = open_store(store_url, migrate=False)
    with store.engine.connect() as conn:
        assert len(conn.execute(text("SELECT version_num FROM alembic_version")).all()) == 1
    store.engine.dispose()


def test_a_claim_is_extended_only_by_its_holder_and_then_outlives_its_first_lease(
    aggregation_due: Store, clock: FakeClock
) -> None:
    store = aggregation_due
    item = store.claim_outbox("a", lease_seconds=10)
    assert item is not None
    clock.advance(8)
    assert not store.extend_claim(item, "b", 10)  # not b's claim
    assert store.extend_claim(item, "a", 10)  # now held until 1018
    clock.advance(5)  # past the first lease
    assert store.claim_outbox("b", lease_seconds=10) is None
    clock.advance(6)
    taken = store.claim_outbox("b", lease_seconds=10)  # a stopped extending: taken over
    assert taken is not None and taken.id == item.id
    assert not store.extend_claim(item, "a", 10)  # a learns it lost the claim
    store.finish_outbox(taken)
    assert not store.extend_claim(taken, "b", 10)  # nothing to extend once done


def test_a_final_state_schedules_one_callback_that_aggregation_never_claims(
    store: Store,
) -> None:
    now = [1000.0]
    store = Store(store.engine, clock=lambda: now[0])
    spec = {"callback": {"url": "https://hooks.example/x", "secret": "s" * 16}}
    assert store.create_job("cb", None, spec, [ImagePlan(0, "a.tif", "/a.tif", 9, 9, 1, [1])])
    assert store.set_job_state("cb", JobState.CANCELLED)
    assert not store.set_job_state("cb", JobState.CANCELLED)
    assert store.claim_outbox("agg") is None  # a callback row is not an aggregation
    [first] = store.claim_callbacks("c1", lease_seconds=30, limit=10)
    assert (first.kind, first.attempts) == ("callback:cancelled", 0)
    assert store.claim_callbacks("c2", lease_seconds=30, limit=10) == []  # held
    store.callback_retry(first, "c1", "attempt 1: HTTP 500", delay=5)
    assert store.claim_callbacks("c2", lease_seconds=30, limit=10) == []  # not due yet
    now[0] += 6
    [second] = store.claim_callbacks("c2", lease_seconds=30, limit=10)
    assert (second.id, second.attempts) == (first.id, 1)
    store.callback_delivered(second, "c2", "attempt 2: HTTP 204")
    now[0] += 3600
    assert store.claim_callbacks("c3", lease_seconds=30, limit=10) == []
    assert not store.pending_outbox("cb")
    kinds = [e["kind"] for e in store.events("cb")]
    assert kinds.count("callback_attempt") == 2
    assert store.create_job("plain", None, {"k": 1}, [])
    assert store.set_job_state("plain", JobState.CANCELLED)
    assert store.claim_callbacks("c3", lease_seconds=30, limit=10) == []  # no callback, no row
