"""The parts of photo jobs that need no worker: sources, stage rules, fitting, the store's
exactly-once stage completion (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tr_stores import store_url  # noqa: F401 - fixture

from tilerunner.errors import InvalidRequestError, SourceError
from tilerunner.jobs import parse_job
from tilerunner.jobs.features import FeatureRows, TileFailure
from tilerunner.jobs.states import ImageState, JobState
from tilerunner.photos.items import crop_failure
from tilerunner.photos.pixels import crop_box, fit
from tilerunner.photos.sources import expand_photos
from tilerunner.store import Store, open_store
from tilerunner.store.outbox import AGGREGATE
from tilerunner.store.photos import PhotoPlan
from tilerunner.tiling import Window
from tilerunner.work.results import MemberOutcome


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_folder_glob_urls_and_manifests_resolve_in_order(tmp_path: Path) -> None:
    _touch(tmp_path, "b.jpg", "a.png", "notes.txt")
    (tmp_path / "m.csv").write_text("id,url,event,lon,lat\nx,a.png,e1,1.5,2.5\ny,,e2,,\n")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"url": "https://example.com/c.jpg", "group": 7}) + "\n\n"
    )
    photos = expand_photos(
        [
            str(tmp_path),
            str(tmp_path / "m.csv"),
            "https://example.com/d.jpg",
            str(tmp_path / "m.jsonl"),
        ]
    )
    assert [p.id for p in photos] == [
        str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "x", "y",
        "https://example.com/d.jpg", "https://example.com/c.jpg",
    ]  # fmt: skip
    x, y = photos[2:4]
    assert (x.url, x.event, x.lon, x.lat, x.error) == (
        str(tmp_path / "a.png"),
        "e1",
        1.5,
        2.5,
        None,
    )
    assert y.error is not None and "m.csv:3: the row has no url" in y.error
    assert photos[-1].event == "7"
    assert [p.id for p in expand_photos([str(tmp_path / "*.jpg")])] == [str(tmp_path / "b.jpg")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,path\na,a.png\n", "no url column"),
        ("id,url\n", "lists no photos"),
        ("id,url\na,a.png\na,b.png\n", "appears more than once"),
    ],
)
def test_a_bad_manifest_is_refused_before_anything_runs(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(SourceError, match=message):
        expand_photos([str(tmp_path / "m.csv")])


def _doc(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sources": ["a.jpg"],
        "photos": {},
        "pipeline": [
            {"task": "detect", "model": "det"},
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.5},
        ],
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"photos": None}, "more than one stage run on photo collections"),
        ({"pipeline": [{"task": "detect", "model": "d"}, {"task": "classify", "model": "c"}]},
         "needs crops_of"),
        ({"pipeline": [{"task": "detect", "model": "d"},
                       {"task": "classify", "model": "c", "crops_of": 1}]}, "earlier stage"),
        ({"pipeline": [{"task": "classify", "model": "d"},
                       {"task": "classify", "model": "c", "crops_of": 0}]}, "from a detect stage"),
        ({"pipeline": [{"task": "detect", "model": "d", "crops_of": 0}]}, "remove its crops_of"),
    ],
)  # fmt: skip
def test_stage_chains_are_checked_when_the_document_is_parsed(
    changes: dict[str, object], message: str
) -> None:
    document = _doc(**changes)
    if document["photos"] is None:
        del document["photos"]
    with pytest.raises(InvalidRequestError, match=message):
        parse_job(document)


def test_a_three_stage_chain_parses() -> None:
    spec = parse_job(
        _doc(
            pipeline=[
                {"task": "detect", "model": "det"},
                {"task": "detect", "model": "faces", "crops_of": 0, "crop_padding": 0.2},
                {"task": "classify", "model": "cls", "crops_of": 1, "min_score": 0.4},
            ]
        )
    )
    assert [s.crops_of for s in spec.pipeline] == [None, 0, 1]


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 900),
    height=st.integers(1, 900),
    size=st.sampled_from([32, 224, 416]),
    mode=st.sampled_from(["letterbox", "resize"]),
    corners=st.tuples(*[st.floats(0, 1)] * 4),
)
def test_boxes_map_back_to_photo_pixels_exactly(
    width: int, height: int, size: int, mode: str, corners: tuple[float, ...]
) -> None:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    fitted, how = fit(pixels, size, mode)  # type: ignore[arg-type]
    assert fitted.shape == (size, size, 3)
    if mode == "letterbox":  # the aspect ratio is kept (to the rounding of a pixel)
        assert abs(how.scale_x - how.scale_y) <= 1 / min(width, height) + 1e-9
    a, b, c, d = corners
    box = np.array([[min(a, c) * width, min(b, d) * height, max(a, c) * width, max(b, d) * height]])
    in_model = box.copy()
    in_model[:, [0, 2]] = box[:, [0, 2]] * how.scale_x + how.pad_x
    in_model[:, [1, 3]] = box[:, [1, 3]] * how.scale_y + how.pad_y
    assert np.allclose(how.to_source(in_model, width, height), box, atol=1e-6)


def test_a_padded_crop_stays_inside_the_photo() -> None:
    assert crop_box((10, 20, 30, 60), 0.5, 100, 100) == Window(0, 0, 40, 80)
    assert crop_box((40, 40, 50, 60), 0.5, 100, 100) == Window(35, 30, 20, 40)
    window = crop_box((90.5, 95.0, 100.0, 100.0), 0.25, 100, 100)
    assert window.col_end <= 100 and window.row_end <= 100 and window.width >= 1
    assert crop_box((100.0, 40.0, 100.0, 100.0), 0.0, 100, 100) == Window(99, 40, 1, 60)
    assert crop_box((3.0, 100.0, 3.0, 100.0), 0.5, 100, 100) == Window(3, 99, 1, 1)


# ------------------------------------------------------------------ store
@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture it uses
    opened = open_store(store_url)
    yield opened
    opened.engine.dispose()


def _detections(images: list[int], scores: list[float], stage: int = 0) -> FeatureRows:
    n = len(scores)
    return FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (n, 1)),
        scores=np.asarray(scores),
        class_ids=np.zeros(n, dtype=np.int64),
        labels=["square"] * n,
        extra=[{"image": i, "key": f"{stage}.{i}.{k}"} for k, i in enumerate(images)],
    )


def test_a_stage_is_recorded_once_and_enqueues_its_consumers_once(store: Store) -> None:
    store.accept_job("j", None, _doc(sources=["x"]))
    plans = [PhotoPlan(i, f"p{i}", f"/p{i}.png", {"event": "e"}) for i in range(3)]
    plans.append(PhotoPlan(3, "nourl", "", {}, error="no url"))
    assert store.add_photo_plans("j", plans, group_size=2)
    assert store.pending_regions("j") == [(0, 0), (2, 0)]
    rows = _detections([0, 0, 1], [0.9, 0.2, 0.7])
    members = [MemberOutcome(0, 40, 30), MemberOutcome(1, error_code="source_error", error="bad")]
    kwargs = {"group_size": 2, "consumers": [(1, 0.5)]}
    first = store.complete_photo_stage("j", 0, 0, rows, members, **kwargs)  # type: ignore[arg-type]
    again = store.complete_photo_stage("j", 0, 0, rows, members, **kwargs)  # type: ignore[arg-type]
    assert (first.recorded, first.new_stages) == (True, (1,))
    assert (again.recorded, again.new_stages) == (False, ())
    assert store.pending_regions("j") == [(0, 1), (2, 0)]
    crops = store.stage_features("j", 0, 2, 0, 0.5)
    assert [(k, i) for k, i, _, _ in crops] == [("0.0.0", 0), ("0.1.2", 1)]
    assert [i.state for i in store.images("j")] == [
        ImageState.PENDING, ImageState.FAILED, ImageState.PENDING, ImageState.FAILED,
    ]  # fmt: skip
    counts = store.counts("j")
    assert (counts.regions_total, counts.tiles_total) == (3, 3 + 2)
    assert store.complete_photo_stage("j", 2, 0, _detections([], []), [MemberOutcome(2, 5, 5)],
                                      **kwargs).new_stages == ()  # type: ignore[arg-type]  # fmt: skip
    assert store.claim_outbox("t", 30, job_id="j", kind=AGGREGATE) is None  # 0 waits for crops
    stage2 = FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (2, 1)), scores=np.array([0.8, 0.6]),
        class_ids=np.array([1, 0]), labels=["b", "a"],
        extra=[{"image": 0, "key": "1.0.0.0", "parent": "0.0.0"},
               {"image": 1, "key": "1.0.1.2", "parent": "0.1.2"}],
    )  # fmt: skip
    assert store.complete_photo_stage("j", 0, 1, stage2, [], group_size=2, consumers=[]).recorded
    assert store.image("j", 0).state is ImageState.DONE
    assert store.claim_outbox("t", 30, job_id="j", kind=AGGREGATE)  # every photo closed
    assert store.get_job("j").status is JobState.RUNNING  # type: ignore[union-attr]
    photos, features = store.photo_rows("j")
    assert [p["meta"]["event"] for p in photos[:3]] == ["e", "e", "e"]
    assert sorted(f["region_idx"] for f in features) == [0, 0, 0, 1, 1]


def test_a_failed_group_and_failed_crops_reopen_and_are_recorded_once(store: Store) -> None:
    store.accept_job("j", None, _doc(sources=["x"]))
    plans = [PhotoPlan(i, f"p{i}", f"/p{i}.png", {}) for i in range(4)]
    assert store.add_photo_plans("j", plans, group_size=2)
    kwargs: dict[str, Any] = {"group_size": 2, "consumers": [(1, 0.5)]}
    # group 0: its detect item fails for good; group 2: photo 3 fails alone, a crop fails
    assert store.fail_photo_stage("j", 0, 0, "model_error: broke", group_size=2)
    members = [MemberOutcome(2, 9, 9), MemberOutcome(3, error_code="source_error", error="bad")]
    store.complete_photo_stage("j", 2, 0, _detections([2, 2], [0.9, 0.8]), members, **kwargs)
    good = FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (1, 1)), scores=np.array([0.7]),
        class_ids=np.array([1]), labels=["b"],
        extra=[{"image": 2, "key": "1.0.2.0", "parent": "0.2.0"}],
    )  # fmt: skip
    refused = crop_failure("0.2.1", "/p2.png", Window(1, 2, 10, 10), "model_error", "no")
    assert isinstance(refused, TileFailure)
    store.complete_photo_stage("j", 2, 1, good, [], group_size=2, consumers=[], failures=[refused])
    states = [i.state for i in store.images("j")]
    assert states == [ImageState.FAILED, ImageState.FAILED, ImageState.DONE, ImageState.FAILED]
    assert store.counts("j").tiles_failed == 1
    assert store.crop_failures("j") == {"0.2.1": [(1, refused.message)]}
    assert store.claim_outbox("t", 30, job_id="j", kind=AGGREGATE)  # every photo closed
    store.set_job_state("j", JobState.AGGREGATING)
    store.set_job_state("j", JobState.PARTIAL)
    assert store.get_job("j").status is JobState.PARTIAL  # type: ignore[union-attr]

    assert store.retry_photo_stage("j", 0, 0, group_size=2)
    assert not store.retry_photo_stage("j", 0, 0, group_size=2)  # once
    assert store.reopen_failed_crops("j", 2) == {(2, 1): 1}
    assert store.reopen_job("j")
    assert store.group_members("j", 0, 2) == [(0, "/p0.png"), (1, "/p1.png")]
    assert store.failed_crop_keys("j", 2, 1) == frozenset({"0.2.1"})
    states = [i.state for i in store.images("j")]
    assert states == [ImageState.PENDING, ImageState.PENDING, ImageState.PENDING, ImageState.FAILED]
    assert store.pending_regions("j") == [(0, 0), (2, 1)]

    redone = FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (1, 1)), scores=np.array([0.6]),
        class_ids=np.array([0]), labels=["a"],
        extra=[{"image": 2, "key": "1.0.2.1", "parent": "0.2.1"}],
    )  # fmt: skip
    assert store.complete_photo_stage("j", 2, 1, redone, [], group_size=2, consumers=[]).recorded
    both = [MemberOutcome(0, 5, 5), MemberOutcome(1, 5, 5)]
    assert store.complete_photo_stage("j", 0, 0, _detections([], []), both, **kwargs).recorded
    states = [i.state for i in store.images("j")]
    assert states == [ImageState.DONE, ImageState.DONE, ImageState.DONE, ImageState.FAILED]
    counts = store.counts("j")
    assert (counts.images_failed, counts.tiles_failed, counts.regions_failed) == (1, 0, 0)
    assert store.claim_outbox("t2", 30, job_id="j", kind=AGGREGATE)  # aggregated again
    _, rows = store.photo_rows("j")
    keys = sorted(str(r["extra"]["key"]) for r in rows)
    assert keys == ["0.2.0", "0.2.1", "1.0.2.0", "1.0.2.1"]  # each once


def test_an_unreadable_photo_is_read_again_and_its_crops_go_on_once(store: Store) -> None:
    store.accept_job("j", None, _doc(sources=["x"]))
    plans = [PhotoPlan(i, f"p{i}", f"/p{i}.png", {}) for i in range(2)]
    plans.append(PhotoPlan(2, "odd", "/p2.png", {}, error="m.csv:4: lon/lat must be numbers"))
    assert store.add_photo_plans("j", plans, group_size=4)
    kwargs: dict[str, Any] = {"group_size": 4, "consumers": [(1, 0.5)]}
    # photo 0 cannot be read; photo 1's detection goes to stage 1, whose crop is refused
    members = [MemberOutcome(0, error="/p0.png: not a photo"), MemberOutcome(1, 9, 9)]
    store.complete_photo_stage("j", 0, 0, _detections([1], [0.9]), members, **kwargs)
    refused = crop_failure("0.1.0", "/p1.png", Window(1, 2, 10, 10), "model_error", "no")
    store.complete_photo_stage("j", 0, 1, _detections([], []), [], group_size=4, consumers=[],
                               failures=[refused])  # fmt: skip
    [crop_error] = [e for e in store.errors("j") if e.code == "tile_failed"]
    assert (crop_error.image, crop_error.detection) == ("p1", "0.1.0")
    states = [i.state for i in store.images("j")]
    assert states == [ImageState.FAILED, ImageState.DONE, ImageState.FAILED]

    # the photo is read again (the one refused while planning is not), with just it in the
    # item; the crop waits for it: the stage 1 item reopens when stage 0 completes
    assert store.reopen_failed_photos("j", 4) == {0: 1}
    assert store.reopen_failed_photos("j", 4) == {}  # once
    assert store.reopen_failed_crops("j", 4) == {}
    assert store.group_members("j", 0, 4) == [(0, "/p0.png")]
    assert store.pending_regions("j") == [(0, 0)]
    mended = FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (2, 1)), scores=np.array([0.8, 0.3]),
        class_ids=np.zeros(2, dtype=np.int64), labels=["square"] * 2,
        extra=[{"image": 0, "key": "0.0.0"}, {"image": 0, "key": "0.0.1"}],
    )  # fmt: skip
    again = store.complete_photo_stage("j", 0, 0, mended, [MemberOutcome(0, 5, 5)], **kwargs)
    assert again.new_stages == (1,)
    assert store.pending_regions("j") == [(0, 1)]
    done = store.stage_cropped("j", 0, 4, 1)
    todo = [k for k, *_ in store.stage_features("j", 0, 4, 0, 0.5) if k not in done]
    assert todo == ["0.1.0", "0.0.0"]  # the refused crop and the new detection, once each
    stage1 = FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (2, 1)), scores=np.array([0.7, 0.6]),
        class_ids=np.array([1, 0]), labels=["b", "a"],
        extra=[{"image": 0, "key": "1.0.0.0", "parent": "0.0.0"},
               {"image": 1, "key": "1.0.1.0", "parent": "0.1.0"}],
    )  # fmt: skip
    assert store.complete_photo_stage("j", 0, 1, stage1, [], group_size=4, consumers=[]).recorded
    assert [i.state for i in store.images("j")] == [ImageState.DONE] * 2 + [ImageState.FAILED]
    assert store.stage_cropped("j", 0, 4, 1) == {"0.0.0", "0.1.0"}
    counts = store.counts("j")
    assert (counts.images_failed, counts.tiles_failed, counts.regions_failed) == (1, 0, 0)
    assert store.claim_outbox("t", 30, job_id="j", kind=AGGREGATE)  # every photo closed
    _, rows = store.photo_rows("j")
    keys = sorted(str(r["extra"]["key"]) for r in rows)
    assert keys == ["0.0.0", "0.0.1", "0.1.0", "1.0.0.0", "1.0.1.0"]  # each once


def test_a_photo_that_stays_unreadable_fails_again_with_its_error(store: Store) -> None:
    store.accept_job("j", None, _doc(sources=["x"]))
    assert store.add_photo_plans("j", [PhotoPlan(i, f"p{i}", f"/p{i}.png", {}) for i in range(2)],
                                 group_size=2)  # fmt: skip
    bad = [MemberOutcome(0, 9, 9), MemberOutcome(1, error="/p1.png: not a photo")]
    kwargs: dict[str, Any] = {"group_size": 2, "consumers": [(1, 0.5)]}
    store.complete_photo_stage("j", 0, 0, _detections([], []), bad, **kwargs)
    assert store.claim_outbox("t", 30, job_id="j", kind=AGGREGATE)
    store.set_job_state("j", JobState.AGGREGATING)
    store.set_job_state("j", JobState.PARTIAL)
    assert store.reopen_failed_photos("j", 2) == {0: 1}
    assert store.reopen_job("j")
    assert store.group_members("j", 0, 2) == [(1, "/p1.png")]
    store.complete_photo_stage("j", 0, 0, _detections([], []), bad[1:], **kwargs)
    assert store.image("j", 1).state is ImageState.FAILED
    sources = [(e.image, e.message) for e in store.errors("j") if e.code == "source_error"]
    assert sources == [("p1", "/p1.png: not a photo")]
    assert store.counts("j").images_failed == 1
    assert store.claim_outbox("t2", 30, job_id="j", kind=AGGREGATE)  # closed again, once
