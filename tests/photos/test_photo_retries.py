"""Retries of a photo job driven step by step through the work service (on SQLite and
PostgreSQL): a later stage's item redone while an earlier stage of its group is redone and finds
more loses none of the new detections, whatever the order of the two; a reopened crop item crops
only the detections never cropped (the crops it ran named in its result, over HTTP too); a page
of results reads only its own photos' failed crops."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tr_stores import store_url  # noqa: F401 - fixture

from tilerunner.api import create_app
from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator.planner import publish_pending
from tilerunner.coordinator.requeue import retry_failed
from tilerunner.jobs.features import FeatureRows
from tilerunner.jobs.states import ImageState, JobState, RegionState
from tilerunner.photos.items import CropItem, PhotoGroupItem, crop_failure
from tilerunner.photos.results import photo_records
from tilerunner.settings import Settings
from tilerunner.store import Store, open_store
from tilerunner.store.outbox import AGGREGATE
from tilerunner.store.photos import PhotoPlan
from tilerunner.tiling import Window
from tilerunner.work.results import MemberOutcome, WorkResult
from tilerunner.work.service import Assignment, WorkService, WorkServiceOptions


@dataclass
class Photos:
    """A photo job's store, its queues and the work service, driven by hand."""

    url: str
    store: Store
    queues: dict[str, Queue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        options = WorkServiceOptions(lease_seconds=30, max_attempts=1)
        self.service = WorkService(self.store, self.queue_for, options)

    def queue_for(self, name: str) -> Queue:
        if name not in self.queues:
            self.queues[name] = open_queue(self.url, name, max_attempts=1)
        return self.queues[name]

    def submit(self, pipeline: list[dict[str, Any]], n_photos: int, group_size: int) -> None:
        document = {"sources": ["x"], "photos": {"group_size": group_size}, "pipeline": pipeline}
        self.store.accept_job("j", None, document)
        plans = [PhotoPlan(i, f"p{i}", f"/p{i}.png", {}) for i in range(n_photos)]
        assert self.store.add_photo_plans("j", plans, group_size)
        publish_pending(self.store, self.queue_for, "j")

    def lease(self, model: str) -> Assignment:
        [assignment] = self.service.lease([model])
        return assignment

    def ends_partial(self) -> None:
        """The job's work is over with something failed: aggregated, it ends partial."""
        counts = self.store.counts("j")
        assert counts.regions_finished == counts.regions_total
        assert self.store.claim_outbox("t", 30, job_id="j", kind=AGGREGATE)
        self.store.set_job_state("j", JobState.AGGREGATING)
        self.store.set_job_state("j", JobState.PARTIAL)


@pytest.fixture
def photos(store_url: str) -> Iterator[Photos]:  # noqa: F811 - the fixture it uses
    system = Photos(store_url, open_store(store_url))
    yield system
    for queue in system.queues.values():
        queue.close()
    system.store.engine.dispose()


def _rows(found: list[tuple[int, str, str | None]], stage: int, score: float = 0.9) -> FeatureRows:
    """One feature per (photo, key, parent): a detection, or a later stage's result."""
    n = len(found)
    return FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (n, 1)),
        scores=np.full(n, score),
        class_ids=np.zeros(n, dtype=np.int64),
        labels=["thing"] * n,
        extra=[
            {"image": i, "key": k, "parent": p, "stage": stage, "task": "detect"}
            for i, k, p in found
        ],
    )


def _crop_keys(assignment: Assignment) -> list[str]:
    assert isinstance(assignment.item, CropItem)
    return [c.key for c in assignment.item.crops]


def _outcomes_per_detection(store: Store, stage: int, of: int) -> Counter[str]:
    """How many results of ``stage`` each detection of stage ``of`` has (0 for none)."""
    _, rows = store.photo_rows("j")
    counts: Counter[str] = Counter()
    for row in rows:
        extra = row["extra"]
        if row["region_idx"] == of:
            counts[extra["key"]] += 0
        elif row["region_idx"] == stage:
            counts[extra["parent"]] += 1
    return counts


DETECT_CLASSIFY = [
    {"task": "detect", "model": "det"},
    {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.5},
]
UNREADABLE = MemberOutcome(1, error_code="source_error", error="/p1.png: not a photo")


def _classified(keys: list[str]) -> WorkResult:
    """The classifier's result on the crops of ``keys`` (photo index is the key's second)."""
    rows = _rows([(int(k.split(".")[1]), f"1.{k}", k) for k in keys], stage=1)
    return WorkResult(rows, len(keys), crops=tuple(keys))


@pytest.mark.parametrize(
    "order",
    [
        "crop item runs across the redo",  # leased before the redo completes, done after it
        "crop item done before the redo",
        "crop item leased after the redo",
    ],
)
def test_a_redone_crop_item_loses_no_detection_of_a_redone_earlier_stage(
    photos: Photos, order: str
) -> None:
    photos.submit(DETECT_CLASSIFY, n_photos=2, group_size=2)
    # photo 0 has a detection, photo 1 cannot be read; the classifier fails for good
    det = photos.lease("det")
    found = _rows([(0, "0.0.0", None)], stage=0)
    assert photos.service.complete(det.token, WorkResult(found, 2, members=(
        MemberOutcome(0, 40, 30), UNREADABLE)))  # fmt: skip
    cls = photos.lease("cls")
    assert _crop_keys(cls) == ["0.0.0"]
    assert photos.service.fail(cls.token, "model_error", "the classifier broke", retryable=False)
    photos.ends_partial()

    # both mended: the failed crop item and the unreadable photo are put back
    retried = retry_failed(photos.store, photos.queue_for, "j")
    assert (retried.regions, retried.photos) == (1, 1)
    mended = WorkResult(_rows([(1, "0.1.0", None)], stage=0), 1, members=(
        MemberOutcome(1, 40, 30),))  # fmt: skip
    if order == "crop item leased after the redo":
        det = photos.lease("det")
        assert photos.service.complete(det.token, mended)
        cls = photos.lease("cls")
        assert _crop_keys(cls) == ["0.0.0", "0.1.0"]
        assert photos.service.complete(cls.token, _classified(["0.0.0", "0.1.0"]))
    else:
        cls = photos.lease("cls")
        assert _crop_keys(cls) == ["0.0.0"]  # photo 1 is not read yet
        det = photos.lease("det")
        assert isinstance(det.item, PhotoGroupItem) and len(det.item.members) == 1
        if order == "crop item done before the redo":
            assert photos.service.complete(cls.token, _classified(["0.0.0"]))
            assert photos.store.region_state("j", 0, 1) is RegionState.DONE
            assert photos.service.complete(det.token, mended)  # reopens the done crop item
        else:
            assert photos.service.complete(det.token, mended)  # while the crop item runs
            assert photos.service.complete(cls.token, _classified(["0.0.0"]))
        # the crop item goes back to pending for the detection that came in meanwhile
        assert photos.store.region_state("j", 0, 1) is RegionState.PENDING
        again = photos.lease("cls")
        assert _crop_keys(again) == ["0.1.0"]
        assert photos.service.complete(again.token, _classified(["0.1.0"]))

    assert _outcomes_per_detection(photos.store, 1, of=0) == {"0.0.0": 1, "0.1.0": 1}
    assert [i.state for i in photos.store.images("j")] == [ImageState.DONE] * 2
    counts = photos.store.counts("j")
    assert counts.regions_finished == counts.regions_total
    assert (counts.regions_failed, counts.tiles_failed, counts.images_failed) == (0, 0, 0)
    assert photos.store.claim_outbox("t2", 30, job_id="j", kind=AGGREGATE)  # aggregated again
    assert photos.service.lease(["cls", "det"]) == []
    nothing = retry_failed(photos.store, photos.queue_for, "j")
    assert (nothing.regions, nothing.photos, nothing.tiles) == (0, 0, 0)


def test_a_result_delivered_twice_to_a_reopened_crop_item_is_stored_once(
    photos: Photos,
) -> None:
    photos.submit(DETECT_CLASSIFY, n_photos=2, group_size=2)
    det = photos.lease("det")
    found = WorkResult(_rows([(0, "0.0.0", None)], stage=0), 2, members=(
        MemberOutcome(0, 4, 4), UNREADABLE))  # fmt: skip
    assert photos.service.complete(det.token, found)
    cls = photos.lease("cls")
    assert photos.service.fail(cls.token, "model_error", "broke", retryable=False)
    photos.ends_partial()
    retry_failed(photos.store, photos.queue_for, "j")
    cls = photos.lease("cls")
    det = photos.lease("det")
    mended = WorkResult(_rows([(1, "0.1.0", None)], stage=0), 1, members=(
        MemberOutcome(1, 4, 4),))  # fmt: skip
    assert photos.service.complete(det.token, mended)
    assert photos.service.complete(cls.token, _classified(["0.0.0"]))  # goes back to pending
    # the same completion again (a worker that did not hear the answer and sends it again)
    photos.service.complete(cls.token, _classified(["0.0.0"]))
    assert _outcomes_per_detection(photos.store, 1, of=0) == {"0.0.0": 1, "0.1.0": 0}
    assert photos.store.region_state("j", 0, 1) is RegionState.PENDING
    again = photos.lease("cls")
    assert _crop_keys(again) == ["0.1.0"]
    assert photos.service.complete(again.token, _classified(["0.1.0"]))
    assert _outcomes_per_detection(photos.store, 1, of=0) == {"0.0.0": 1, "0.1.0": 1}
    counts = photos.store.counts("j")
    assert counts.regions_finished == counts.regions_total


def test_a_reopened_detect_crop_item_crops_only_the_detections_never_cropped(
    photos: Photos,
) -> None:
    pipeline = [
        {"task": "detect", "model": "det"},
        {"task": "detect", "model": "faces", "crops_of": 0, "min_score": 0.5},
    ]
    photos.submit(pipeline, n_photos=2, group_size=2)
    det = photos.lease("det")
    found = _rows([(0, "0.0.0", None), (0, "0.0.1", None)], stage=0)
    assert photos.service.complete(det.token, WorkResult(found, 2, members=(
        MemberOutcome(0, 40, 30), UNREADABLE)))  # fmt: skip
    faces = photos.lease("faces")
    assert _crop_keys(faces) == ["0.0.0", "0.0.1"]
    # a face in the first crop, nothing in the second
    one_face = _rows([(0, "1.0.0.0.0", "0.0.0")], stage=1)
    cropped = ("0.0.0", "0.0.1")
    assert photos.service.complete(faces.token, WorkResult(one_face, 2, crops=cropped))
    assert photos.store.stage_cropped("j", 0, 2, 1) == {"0.0.0", "0.0.1"}
    photos.ends_partial()

    retried = retry_failed(photos.store, photos.queue_for, "j")
    assert (retried.regions, retried.photos, retried.tiles) == (0, 1, 0)
    det = photos.lease("det")
    mended = _rows([(1, "0.1.0", None)], stage=0)
    assert photos.service.complete(det.token, WorkResult(mended, 1, members=(
        MemberOutcome(1, 40, 30),)))  # fmt: skip
    faces = photos.lease("faces")
    assert _crop_keys(faces) == ["0.1.0"]  # the crop that found nothing is not cropped again
    assert photos.service.complete(faces.token, WorkResult(FeatureRows(), 1, crops=("0.1.0",)))
    assert photos.store.stage_cropped("j", 0, 2, 1) == {"0.0.0", "0.0.1", "0.1.0"}
    counts = photos.store.counts("j")
    assert counts.regions_finished == counts.regions_total
    assert [i.state for i in photos.store.images("j")] == [ImageState.DONE] * 2
    assert photos.service.lease(["faces", "det"]) == []


def test_a_page_of_results_reads_only_its_own_photos_failed_crops(photos: Photos) -> None:
    photos.submit(DETECT_CLASSIFY, n_photos=5, group_size=2)
    refused: dict[str, str] = {}
    for _ in range(3):  # groups 0, 2, 4: every photo has one detection, every crop is refused
        det = photos.lease("det")
        assert isinstance(det.item, PhotoGroupItem)
        members = [m.image_idx for m in det.item.members]
        found = _rows([(i, f"0.{i}.0", None) for i in members], stage=0)
        outcomes = tuple(MemberOutcome(i, 9, 9) for i in members)
        assert photos.service.complete(det.token, WorkResult(found, len(members),
                                                              members=outcomes))  # fmt: skip
    for _ in range(3):
        cls = photos.lease("cls")
        keys = _crop_keys(cls)
        failures = []
        for key in keys:
            failures.append(crop_failure(key, "/p.png", Window(0, 0, 4, 4), "model_error", "no"))
            refused[key] = failures[-1].message
        assert photos.service.complete(
            cls.token, WorkResult(FeatureRows(), len(keys), tuple(failures), crops=tuple(keys))
        )
    assert set(photos.store.crop_failures("j")) == {f"0.{i}.0" for i in range(5)}
    # a page that starts inside a group: photos 1 to 2 of groups 0 and 2
    assert photos.store.crop_failures("j", 1, 2) == {
        "0.1.0": [(1, refused["0.1.0"])],
        "0.2.0": [(1, refused["0.2.0"])],
    }
    assert set(photos.store.crop_failures("j", 4, 4)) == {"0.4.0"}
    page = photo_records(photos.store, "j", after=0, limit=2)
    assert [r["id"] for r in page] == ["p1", "p2"]
    errors = [e["error"] for r in page for d in r["detections"] for e in d.get("errors", [])]
    assert errors == [refused["0.1.0"], refused["0.2.0"]]


def test_a_crop_items_result_over_http_names_its_crops(photos: Photos, tmp_path: Path) -> None:
    pipeline = [
        {"task": "detect", "model": "det"},
        {"task": "detect", "model": "faces", "crops_of": 0},
    ]
    photos.submit(pipeline, n_photos=1, group_size=1)
    det = photos.lease("det")
    found = _rows([(0, "0.0.0", None), (0, "0.0.1", None)], stage=0)
    assert photos.service.complete(det.token, WorkResult(found, 1, members=(
        MemberOutcome(0, 40, 30),)))  # fmt: skip
    settings = Settings(store_url=photos.url, cache_dir=tmp_path / "cache")
    client = TestClient(create_app(settings, photos.store, photos.queue_for, insecure=True))
    leased = client.post("/v1/work/lease", json={"models": ["faces"]})
    assert leased.status_code == 200, leased.text
    [item] = leased.json()["items"]
    assert [c["key"] for c in item["item"]["crops"]] == ["0.0.0", "0.0.1"]
    face = {"boxes": [[2, 3, 4, 5]], "scores": [0.8], "class_ids": [0], "labels": ["face"],
            "extra": [{"image": 0, "key": "1.0.0.0.0", "parent": "0.0.0"}]}  # fmt: skip
    body = {"features": face, "n_tiles": 2, "crops": ["0.0.0", "0.0.1"]}
    done = client.post(f"/v1/work/{item['lease']}/complete", json=body)
    assert done.status_code == 200 and done.json() == {"recorded": True}, done.text
    assert photos.store.stage_cropped("j", 0, 1, 1) == {"0.0.0", "0.0.1"}  # one found nothing
    assert photos.store.image("j", 0).state is ImageState.DONE
