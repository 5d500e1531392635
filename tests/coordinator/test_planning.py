"""Planning off the caller's request: accept at once, a coordinator opens the images later.

``accept_job`` stores a job in ``planning`` without opening any source; the coordinator loop
(a real :class:`Coordinator` on a thread, with a real SQLite store and queue) claims the plan,
records each image's header and moves the job to ``queued``. Planning that fails fails the job;
a job cancelled while planning is never queued; neither sweep nor ``active_jobs`` touches a job
that is still planning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tr_scenes import make_scene

import tilerunner.coordinator.planner as planner
from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator import (
    Coordinator,
    accept_job,
    job_view,
    plan_job,
    process_outbox,
    repair,
    submit_job,
)
from tilerunner.errors import SourceError
from tilerunner.imagery import ImageInfo
from tilerunner.jobs import JobState, parse_job, queue_name
from tilerunner.store import Store, open_store

N_REGIONS = 6  # 400 x 300 px, tiles of 128 with overlap 48, regions of 160 px


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    return open_queue(f"sqlite:///{tmp_path / 'queue.db'}", queue_name("det"))


@pytest.fixture
def tif(tmp_path: Path) -> Path:
    path: Path = make_scene(tmp_path, width=400, height=300, n_boxes=5)[0]
    return path


def document(*sources: Path, out: Path | None = None) -> dict[str, Any]:
    return {
        "sources": [str(s) for s in sources],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 48, "region_size": 160},
        "outputs": [] if out is None else [{"uri": str(out)}],
    }


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def status(store: Store, job_id: str) -> str:
    job = store.get_job(job_id)
    assert job is not None
    return job.status


@pytest.fixture
def coordinator(store: Store, queue: Queue) -> Iterator[Coordinator]:
    """A coordinator loop running on its own thread, as ``tilerunner serve`` runs it."""
    running = Coordinator(store, lambda _: queue, poll_seconds=0.02, sweep_seconds=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_accepting_returns_before_any_image_is_opened_and_the_coordinator_plans_it(
    store: Store, queue: Queue, tif: Path, monkeypatch: pytest.MonkeyPatch, coordinator: Any
) -> None:
    opened: list[str] = []
    release = threading.Event()
    real_probe = planner.probe

    def slow_probe(url: str, env: Any = None) -> ImageInfo:
        opened.append(url)
        assert release.wait(30), "test never released the probe"
        return real_probe(url, env)

    monkeypatch.setattr(planner, "probe", slow_probe)

    job_id = accept_job(store, parse_job(document(tif)), project="p7")

    view = job_view(store, job_id)
    assert view is not None and view["status"] == "planning" and view["project"] == "p7"
    assert "planning_at" in view["timestamps"]
    wait_for(lambda: opened == [str(tif)])  # the coordinator is opening it, off the request
    assert status(store, job_id) == JobState.PLANNING
    assert store.images(job_id) == []
    assert job_id not in store.active_jobs()
    assert repair(store, lambda _: queue, job_id) == (0, 0)  # a planning job is not stuck
    assert queue.depth().total == 0

    release.set()
    wait_for(lambda: status(store, job_id) == JobState.QUEUED)
    wait_for(lambda: queue.depth().visible == N_REGIONS)
    [image] = store.images(job_id)
    assert image.georef is not None and image.georef.has_affine
    assert (image.georef.width, image.georef.height, image.georef.count) == (400, 300, 3)
    assert image.georef.dtype == "uint8" and "32618" in (image.georef.crs_wkt or "")
    kinds = [e["kind"] for e in store.events(job_id)]
    assert kinds[:2] == ["planning", "queued"]
    # the plan row is marked done just after the regions are published; nothing else is due
    wait_for(lambda: not store.pending_outbox(job_id))


def test_accepting_checks_what_it_can_and_stores_nothing_for_an_invalid_job(
    store: Store, tmp_path: Path
) -> None:
    with pytest.raises(SourceError, match=r"nope\.tif"):
        accept_job(store, parse_job(document(tmp_path / "nope.tif")))
    assert store.list_jobs() == []


def test_planning_that_fails_moves_the_job_to_failed_with_the_error(
    store: Store, queue: Queue, tif: Path
) -> None:
    job_id = accept_job(store, parse_job(document(tif)))
    tif.unlink()  # gone before the coordinator got to it

    assert Coordinator(store, lambda _: queue).run_once() == 0

    job = store.get_job(job_id)
    assert job is not None and job.status == JobState.FAILED
    assert job.error is not None and "planning failed" in job.error and "scene.tif" in job.error
    assert store.images(job_id) == [] and queue.depth().total == 0
    assert not store.pending_outbox(job_id)


def test_a_job_cancelled_while_planning_is_never_queued(
    store: Store, queue: Queue, tif: Path
) -> None:
    job_id = accept_job(store, parse_job(document(tif)))
    assert store.set_job_state(job_id, JobState.CANCELLED)

    Coordinator(store, lambda _: queue).run_once()

    assert status(store, job_id) == JobState.CANCELLED
    assert store.images(job_id) == [] and queue.depth().total == 0


def test_a_job_with_no_readable_image_is_aggregated_after_planning(
    store: Store, queue: Queue, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    job_id = accept_job(store, parse_job(document(broken)))

    Coordinator(store, lambda _: queue).run_once()  # plans, then runs the aggregation it made

    job = store.get_job(job_id)
    assert job is not None and job.status == JobState.FAILED
    [error] = store.errors(job_id)
    assert error.code == "source_error" and error.image == str(broken)


def test_planning_twice_plans_once(store: Store, queue: Queue, tif: Path) -> None:
    job_id = accept_job(store, parse_job(document(tif)))
    assert plan_job(store, lambda _: queue, job_id) == N_REGIONS
    tif.unlink()  # a second planning would have to open it
    assert plan_job(store, lambda _: queue, job_id) == 0  # re-publishes, deduplicated
    assert store.counts(job_id).regions_total == N_REGIONS
    assert [e["kind"] for e in store.events(job_id)].count("queued") == 1


def test_submit_still_plans_at_once_and_resumes_a_job_left_in_planning(
    store: Store, queue: Queue, tif: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.geojson"
    job_id, created = submit_job(store, lambda _: queue, parse_job(document(tif, out=out)))
    assert created and status(store, job_id) == JobState.QUEUED
    assert queue.depth().visible == N_REGIONS

    # a run that crashed between accepting and planning: the same command resumes it
    left = accept_job(store, parse_job(document(tif)), job_id="left")
    assert status(store, left) == JobState.PLANNING
    assert submit_job(store, lambda _: queue, parse_job(document(tif)), job_id="left") == (
        "left",
        False,
    )
    assert status(store, left) == JobState.QUEUED
    assert queue.depth().visible == 2 * N_REGIONS
    assert process_outbox(store, "c") is None  # nothing is due: the plan rows are done
