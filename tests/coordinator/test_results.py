"""Results: georeferenced from what planning recorded, stored once by aggregation.

On the real rasters in tests/data (affine UTM and Web Mercator) and on RPC-only and GCP-only
files: aggregation works with the source deleted after planning and gives the coordinates that
reading the file gives. While a job runs its results are the merged features of every finished
region, flagged partial; after aggregation they are read back as stored (no merge) and equal
the output file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from tr_georef import make_gcp_raster, make_rpc_raster

import tilerunner.coordinator.results as results_module
from tilerunner.broker import open_queue
from tilerunner.broker.memory import MemoryQueue
from tilerunner.coordinator import (
    aggregate_job,
    job_features,
    job_results,
    process_outbox,
    submit_job,
)
from tilerunner.georef import Georeferencer
from tilerunner.jobs import JobState, parse_job, queue_name
from tilerunner.outputs.geojson import geojson_features
from tilerunner.store import FeatureRows, Store, open_store


@pytest.fixture(autouse=True)
def _fresh_memory_queues() -> Iterator[None]:
    MemoryQueue.reset_all()
    yield
    MemoryQueue.reset_all()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'state.db'}")


def submit(store: Store, *sources: Path, out: Path, task: str = "detect") -> str:
    doc = {
        "sources": [str(s) for s in sources],
        "pipeline": [{"task": task, "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 32, "region_size": 256},
        "merge": {"method": "nms", "iou": 0.5},
        "outputs": [{"uri": str(out)}],
    }
    queue = open_queue("memory://", queue_name("det"))
    job_id, created = submit_job(store, lambda _: queue, parse_job(doc), job_id="j")
    assert created
    return job_id


def rows(*boxes: tuple[float, float, float, float, float], extra: bool = False) -> FeatureRows:
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    n = len(array)
    return FeatureRows(
        boxes=array[:, :4],
        scores=array[:, 4],
        class_ids=np.zeros(n, dtype=np.int64),
        labels=["tree"] * n,
        extra=[{"scores": [float(s), 1 - float(s)]} for s in array[:, 4]] if extra else None,
    )


def complete(
    store: Store, image_idx: int, found: dict[int, FeatureRows], *, only: set[int] | None = None
) -> None:
    """Complete the pending regions of one image (``only`` those, if given)."""
    for image, region in store.pending_regions("j"):
        if image == image_idx and (only is None or region in only):
            assert store.complete_region("j", image, region, found.get(region, FeatureRows()))


def output_features(path: Path) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = json.loads(path.read_text())["features"]
    return features


def no_reopen(*_: object, **__: object) -> NoReturn:
    raise AssertionError("aggregation reopened a source")


@pytest.fixture(params=["OSBS_029.tif", "cogeo.tif", "rpc", "gcp"])
def source(request: pytest.FixtureRequest, shared_data: Path, tmp_path: Path) -> Path:
    """A copy of a sample raster that the test may delete."""
    folder = tmp_path / "sources"
    folder.mkdir()
    name = str(request.param)
    if name == "rpc":
        return make_rpc_raster(folder / "rpc.tif", width=600, height=500)
    if name == "gcp":
        return make_gcp_raster(folder / "gcp.tif", width=400, height=300)
    copy = folder / name
    shutil.copyfile(shared_data / name, copy)
    return copy


BOXES = [(10.0, 12.5, 40.25, 44.0, 0.9), (200.5, 100.0, 230.0, 131.75, 0.8)]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_aggregation_places_boxes_from_the_plan_with_the_source_deleted(
    store: Store, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.geojson"
    submit(store, source, out=out)
    today = Georeferencer.open(str(source))  # what aggregation computed by reading the file
    assert today is not None
    want = today.box_rings(np.array([b[:4] for b in BOXES]))
    complete(store, 0, {0: rows(*BOXES)})
    source.unlink()
    monkeypatch.setattr(Georeferencer, "open", no_reopen)

    result = process_outbox(store, "coordinator")

    assert result is not None and result.status is JobState.SUCCEEDED and result.features == 2
    got = sorted(output_features(out), key=lambda f: f["properties"]["score"], reverse=True)
    assert [f["properties"]["pixel_bbox"] for f in got] == [list(b[:4]) for b in BOXES]
    assert [f["geometry"]["coordinates"][0] for f in got] == want.tolist()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_results_are_partial_while_running_then_read_as_aggregation_stored_them(
    store: Store, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.geojson"
    first, second = shared_data / "OSBS_029.tif", shared_data / "cogeo.tif"
    submit(store, first, second, out=out)
    nothing = job_results(store, "j")
    assert nothing.partial and len(nothing.table) == 0
    # image 0 done; a box seen by regions 0 and 1 on both sides of their seam is merged
    complete(store, 0, {0: rows((250, 20, 270, 40, 0.9)), 1: rows((251, 21, 270, 40, 0.7))})
    # image 1: only region 3 finished so far
    complete(store, 1, {3: rows((700, 50, 720, 80, 0.6), (900, 60, 950, 90, 0.5))}, only={3})
    assert store.images("j")[1].state == "pending"

    running = job_results(store, "j")

    assert running.partial
    assert list(running.table.image) == [str(first), str(second), str(second)]
    assert running.table.pixel_bbox.tolist() == [
        [250, 20, 270, 40],
        [700, 50, 720, 80],
        [900, 60, 950, 90],
    ]
    assert all(g is not None for g in running.table.geometry)

    complete(store, 1, {4: rows((10, 900, 30, 920, 0.4))})
    result = process_outbox(store, "coordinator")
    assert result is not None and result.status is JobState.SUCCEEDED and result.features == 4

    def no_merge(*_: object, **__: object) -> NoReturn:
        raise AssertionError("results were merged again")

    monkeypatch.setattr(results_module, "merge", no_merge)
    monkeypatch.setattr(Georeferencer, "open", no_reopen)
    final = job_results(store, "j")
    assert not final.partial
    assert list(geojson_features(final.table)) == output_features(out)
    assert len(job_features(store, "j")) == 4

    monkeypatch.undo()
    again = aggregate_job(store, "j")  # a repeated aggregation replaces the stored results
    assert again.features == 4
    assert list(geojson_features(job_results(store, "j").table)) == output_features(out)


def test_classification_scores_are_stored_with_the_results(
    store: Store, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.geojson"
    submit(store, shared_data / "OSBS_029.tif", out=out, task="classify")
    complete(store, 0, {0: rows((0, 0, 128, 128, 0.75), (96, 0, 224, 128, 0.25), extra=True)})
    assert process_outbox(store, "coordinator") is not None

    final = job_results(store, "j")

    assert not final.partial and list(final.table.extra["scores"]) == [[0.75, 0.25], [0.25, 0.75]]
    assert list(geojson_features(final.table)) == output_features(out)


def test_a_cancelled_job_has_partial_results_of_what_finished(
    store: Store, shared_data: Path, tmp_path: Path
) -> None:
    submit(store, shared_data / "OSBS_029.tif", out=tmp_path / "out.geojson")
    complete(store, 0, {0: rows((5, 5, 25, 25, 0.5))}, only={0})
    assert store.set_job_state("j", JobState.CANCELLED)

    results = job_results(store, "j")

    assert results.partial and results.table.pixel_bbox.tolist() == [[5, 5, 25, 25]]
    with pytest.raises(LookupError):
        job_results(store, "no-such-job")
