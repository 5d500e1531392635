"""Jobs accepted in planning, plans added once, and stored results, on SQLite and PostgreSQL.

The fixtures of ``test_repository`` run every test on the embedded SQLite store and, when the
server is reachable, on PostgreSQL.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import func, select
from test_repository import store, store_url  # noqa: F401 - fixtures

from tilerunner.georef import ImageGeoref
from tilerunner.jobs import JobState
from tilerunner.store import FeatureRows, ImagePlan, ImageResults, Store
from tilerunner.store import results as stored_results
from tilerunner.store.plans import PLAN
from tilerunner.store.tables import outbox, regions

GEOREF = ImageGeoref(
    width=100,
    height=80,
    count=3,
    dtype="uint8",
    crs_wkt="EPSG:32617",
    transform=(0.1, 0.0, 404211.95, 0.0, -0.1, 3285102.85),
)


def _plans() -> list[ImagePlan]:
    return [
        ImagePlan(0, "a.tif", "/data/a.tif", 100, 80, 2, [4, 2], georef=GEOREF),
        ImagePlan(1, "b.tif", "/data/b.tif", None, None, None, [], error="cannot open 'b.tif'"),
    ]


def _outbox_kinds(db: Store, job_id: str) -> list[str]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.kind).where(outbox.c.job_id == job_id)).all()
    return sorted(str(r.kind) for r in rows)


def test_an_accepted_job_is_planning_with_no_images_and_one_plan_row(store: Store) -> None:  # noqa: F811
    assert store.accept_job("j1", "scene", {"k": 1}, project="p1")
    assert not store.accept_job("j1", "again", {}, project="p1")
    job = store.get_job("j1")
    assert job is not None and job.status == JobState.PLANNING and job.project == "p1"
    assert store.images("j1") == []
    assert store.counts("j1").regions_total == 0
    assert _outbox_kinds(store, "j1") == [PLAN]
    assert store.claim_outbox("agg") is None  # a plan row is not an aggregation
    item = store.claim_outbox("planner", kind=PLAN)
    assert item is not None and item.job_id == "j1"
    assert "j1" not in store.active_jobs()  # nothing to sweep yet
    assert [e["kind"] for e in store.events("j1")] == ["planning"]


def test_plans_are_added_once_and_queue_the_job(store: Store) -> None:  # noqa: F811
    store.accept_job("j1", None, {})
    assert store.add_plans("j1", _plans())
    assert not store.add_plans("j1", _plans())  # planned already: nothing written twice
    job = store.get_job("j1")
    assert job is not None and job.status == JobState.QUEUED
    counts = store.counts("j1")
    assert (counts.images_total, counts.regions_total, counts.tiles_total) == (2, 2, 6)
    assert counts.images_failed == 1
    a, b = store.images("j1")
    assert a.georef == GEOREF and b.georef is None
    assert [e["kind"] for e in store.events("j1")] == ["planning", "queued", "image_failed"]
    assert "j1" in store.active_jobs()


def test_a_job_cancelled_or_failed_while_planning_gets_no_plans(store: Store) -> None:  # noqa: F811
    store.accept_job("c", None, {})
    store.accept_job("f", None, {})
    assert store.set_job_state("c", JobState.CANCELLED)
    assert store.set_job_state("f", JobState.FAILED, error="planning failed: gone")
    assert not store.add_plans("c", _plans())
    assert not store.add_plans("f", _plans())
    assert store.images("c") == [] and store.images("f") == []
    job = store.get_job("f")
    assert job is not None and job.status == JobState.FAILED and job.error is not None


def test_planning_with_every_image_unreadable_schedules_the_aggregation(store: Store) -> None:  # noqa: F811
    store.accept_job("j1", None, {})
    broken = [ImagePlan(0, "b.tif", "/b.tif", None, None, None, [], error="cannot open")]
    assert store.add_plans("j1", broken)
    assert _outbox_kinds(store, "j1") == ["aggregate", PLAN]


def test_concurrent_planners_write_the_plans_once(store: Store) -> None:  # noqa: F811
    store.accept_job("race", None, {})
    barrier = threading.Barrier(4)
    won: list[bool] = []

    def plan() -> None:
        barrier.wait(timeout=30)
        won.append(store.add_plans("race", _plans()))

    threads = [threading.Thread(target=plan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(won) == [False, False, False, True]
    with store.engine.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(regions).where(regions.c.job_id == "race")
        ).scalar_one()
    assert n == 2


def _results(image_idx: int, n: int, offset: float) -> ImageResults:
    boxes = np.array([[offset + i / 3, 0.1, offset + i + 5.7, 5.3] for i in range(n)])
    rows = FeatureRows(
        boxes=boxes,
        scores=np.linspace(0.123456789012345, 0.9, n),
        class_ids=np.arange(n, dtype=np.int64) % 2,
        labels=["car", "truck"] * (n // 2) + ["car"] * (n % 2),
        extra=[{"scores": [0.1, 0.9]} for _ in range(n)],
    )
    rng = np.random.default_rng(image_idx)
    geometry = [rng.uniform(-180, 180, size=(5, 2)) for _ in range(n - 1)] + [None]
    return ImageResults(image_idx, rows, geometry)


def test_results_are_replaced_and_read_back_exactly(store: Store) -> None:  # noqa: F811
    store.create_job("j1", None, {}, _plans())
    assert store.results("j1") == []
    assert store.replace_results("j1", [_results(0, 7, 0.0), _results(1, 1, 50.0)]) == 8
    written = [_results(0, 3, 10.0)]
    assert store.replace_results("j1", written) == 3  # a second aggregation replaces the first

    [got] = store.results("j1")
    want = written[0]
    assert got.image_idx == 0
    np.testing.assert_array_equal(got.rows.boxes, want.rows.boxes)
    np.testing.assert_array_equal(got.rows.scores, want.rows.scores)
    np.testing.assert_array_equal(got.rows.class_ids, want.rows.class_ids)
    assert got.rows.labels == want.rows.labels and got.rows.extra == want.rows.extra
    for g, w in zip(got.geometry, want.geometry, strict=True):
        assert (g is None and w is None) or np.array_equal(g, w)  # type: ignore[arg-type]


def test_results_need_one_geometry_per_feature() -> None:
    rows = FeatureRows(boxes=np.zeros((2, 4)), scores=np.zeros(2), labels=["a", "a"])
    with pytest.raises(ValueError, match="one geometry"):
        ImageResults(0, rows, [None])


def test_results_written_in_several_batches_keep_every_row_in_order(
    store: Store,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stored_results, "_BATCH", 3)  # 7 and 4 rows: full, full, part batches
    store.create_job("j1", None, {}, _plans())
    written = [_results(0, 7, 0.0), _results(1, 4, 50.0)]
    assert store.replace_results("j1", written) == 11
    got = store.results("j1")
    assert [g.image_idx for g in got] == [0, 1]
    for g, w in zip(got, written, strict=True):
        np.testing.assert_array_equal(g.rows.boxes, w.rows.boxes)
        assert g.rows.labels == w.rows.labels and g.rows.extra == w.rows.extra
        assert [x is None for x in g.geometry] == [x is None for x in w.geometry]
