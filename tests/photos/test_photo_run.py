"""Photo collections through ``tilerunner run --job``: detect, filter, classify the crops.

Photos of mixed sizes in groups, two stages, several batch sizes, group sizes and worker
counts: every painted square is found once at its place in photo pixels, every detection that
passes the score filter has exactly one stage-2 result and no other detection has one, an
undecodable photo and a manifest row without a url fail alone (the job is ``partial``), and
every output groups results per photo.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from photo_checks import check_photo, read_jsonl
from tr_cli import tilerunner
from tr_photos import BRIGHT, make_photos, mark_red

from tilerunner.testing.onnx_models import make_classifier_onnx

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N_PHOTOS = 9


def _collection(tmp_path: Path, group_size: int) -> tuple[Path, list]:
    truth = make_photos(tmp_path, N_PHOTOS, seed=3, gps_every=4)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows = ["id,url,event,lon,lat"]
    rows += [f"p{i},{t.name},ev{i % 2},," for i, t in enumerate(truth)]
    rows[2] = f"p1,{truth[1].name},ev1,7.5,46.25"  # a manifest location
    rows += ["broken,broken.jpg,ev9,,", "lost,,ev9,,"]
    (tmp_path / "photos.csv").write_text("\n".join(rows) + "\n")
    job = {
        "name": "photos",
        "sources": ["photos.csv"],
        "photos": {"group_size": group_size, "input_size": 192},
        "pipeline": [
            {"task": "detect", "model": "det"},
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.9},
        ],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    return tmp_path / "job.json", truth


@pytest.mark.parametrize(
    ("batch_size", "workers", "group_size", "classifier"),
    [(1, 1, 2, "onnx"), (5, 2, 4, "plugin")],
)
def test_two_stage_photo_job_runs_embedded(
    tmp_path: Path, batch_size: int, workers: int, group_size: int, classifier: str
) -> None:
    job, truth = _collection(tmp_path, group_size)
    cls = "tr_photos:CentreClassifier"
    if classifier == "onnx":
        cls = str(make_classifier_onnx(tmp_path / "cls.onnx", input_size=32, n_classes=4))
    done = tilerunner(
        "run", "--job", str(job), "--model", "det=tr_photos:ShadeDetector",
        "--model", f"cls={cls}", "-o", "out.jsonl", "-o", "out.csv", "-o", "out.geojson",
        "--batch-size", str(batch_size), "--workers", str(workers), "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and "job partial" in done.stderr, done.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in records] == [f"p{i}" for i in range(N_PHOTOS)] + ["broken", "lost"]
    for record, photo in zip(records, truth, strict=False):
        check_photo(record, photo, labelled=classifier == "plugin")
    broken, lost = records[-2:]
    assert broken["status"] == "failed" and "broken.jpg" in broken["error"]
    assert lost["status"] == "failed" and "has no url" in lost["error"]
    assert [r["event"] for r in records[:3]] == ["ev0", "ev1", "ev0"]

    located = json.loads((tmp_path / "out.geojson").read_text())["features"]
    where = {f["properties"]["id"]: f["geometry"]["coordinates"] for f in located}
    expected = {f"p{i}": list(t.gps) for i, t in enumerate(truth) if t.gps}
    assert where.pop("p1") == [7.5, 46.25]
    assert where.keys() == expected.keys()
    for key, (lon, lat) in where.items():
        assert lon == pytest.approx(expected[key][0]) and lat == pytest.approx(expected[key][1])

    with (tmp_path / "out.csv").open() as handle:
        table = list(csv.DictReader(handle))
    n_detections = sum(max(1, len(t.squares)) for t in truth) + 2
    assert len(table) == n_detections
    bright = [r for r in table if r["cls_label"]]
    assert len(bright) == sum(1 for t in truth for s in t.squares if s[4] == 255)


def test_a_refused_crop_fails_alone_and_requeue_classifies_it_once(tmp_path: Path) -> None:
    truth = make_photos(tmp_path, 6, seed=7)
    n_red = mark_red(tmp_path, truth)
    n_bright = sum(1 for t in truth for s in t.squares if s[4] == BRIGHT)
    assert n_red >= 1
    (tmp_path / "refuse-red").touch()
    job = {
        "sources": [t.name for t in truth],
        "photos": {"group_size": 2, "input_size": 192},
        "pipeline": [
            {"task": "detect", "model": "det"},
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.9},
        ],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    args = [
        "run", "--job", "job.json", "--model", "det=tr_photos:ShadeDetector",
        "--model", "cls=tr_photos:PickyClassifier", "-o", "out.jsonl", "-o", "out.csv",
        "--batch-size", "1",
        "--state", "state.db", "--quiet",
    ]  # fmt: skip
    first = tilerunner(*args, cwd=tmp_path)
    assert first.returncode == 1 and "job partial" in first.stderr, first.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    errors = [e for r in records for d in r["detections"] for e in d.get("errors", [])]
    assert len(errors) == n_red and all("refuses red" in e["error"] for e in errors)
    with (tmp_path / "out.csv").open() as handle:
        in_csv = [r["errors"] for r in csv.DictReader(handle) if r["errors"]]
    assert len(in_csv) == n_red and all(e.startswith("1:crop 0.") for e in in_csv)
    labelled = [s for r in records for d in r["detections"] for s in d.get("stages", [])]
    assert len(labelled) == n_bright - n_red and {s["label"] for s in labelled} == {"bright"}
    with sqlite3.connect(tmp_path / "state.db") as conn:
        [(job_id,)] = conn.execute("select id from jobs").fetchall()

    (tmp_path / "refuse-red").unlink()  # the classifier is mended
    store = f"sqlite:///{tmp_path / 'state.db'}"
    requeue = tilerunner("queue", "requeue", job_id, "--store", store, cwd=tmp_path)
    assert requeue.returncode == 0, requeue.stderr
    assert f"requeued {n_red} failed crop(s)" in requeue.stdout
    again = tilerunner(*args, cwd=tmp_path)
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    for record, photo in zip(read_jsonl(tmp_path / "out.jsonl"), truth, strict=True):
        check_photo(record, photo, labelled=False)  # every bright square: one stage-2 result
    with sqlite3.connect(tmp_path / "state.db") as conn:
        n_squares = sum(len(t.squares) for t in truth)
        assert conn.execute("select count(*) from features").fetchone() == (n_squares + n_bright,)
        assert conn.execute("select count(*) from tile_failures").fetchone() == (0,)

    # the stored records, written again by ``results`` in every per-photo format
    done = tilerunner(
        "results", job_id, "--store", store, "-o", "again.jsonl", "-o", "again.csv",
        "-o", "again.geojson", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert read_jsonl(tmp_path / "again.jsonl") == read_jsonl(tmp_path / "out.jsonl")
    with (tmp_path / "again.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == sum(max(1, len(t.squares)) for t in truth)
    assert json.loads((tmp_path / "again.geojson").read_text())["features"] == []  # no GPS
    refused = tilerunner("results", job_id, "--store", store, "-o", "x.parquet", cwd=tmp_path)
    assert refused.returncode != 0 and "end the name in .jsonl, .csv or .geojson" in refused.stderr


def test_an_unreadable_photo_is_read_again_by_requeue_once(tmp_path: Path) -> None:
    # groups of 5: "broken" shares its group with p5, whose bright square makes the group's
    # stage-2 item before "broken" is mended
    job, truth = _collection(tmp_path, 5)
    args = [
        "run", "--job", str(job), "--model", "det=tr_photos:ShadeDetector",
        "--model", "cls=tr_photos:CentreClassifier", "-o", "out.jsonl", "--batch-size", "2",
        "--state", "state.db", "--quiet",
    ]  # fmt: skip
    first = tilerunner(*args, cwd=tmp_path)
    assert first.returncode == 1 and "job partial" in first.stderr, first.stderr
    broken = read_jsonl(tmp_path / "out.jsonl")[-2]
    assert broken["status"] == "failed" and "broken.jpg" in broken["error"]
    with sqlite3.connect(tmp_path / "state.db") as conn:
        [(job_id,)] = conn.execute("select id from jobs").fetchall()
    store = f"sqlite:///{tmp_path / 'state.db'}"

    # still garbage: read again, it fails again with the same message (the url-less row is
    # not retried: nothing can mend it but the manifest)
    requeue = tilerunner("queue", "requeue", job_id, "--store", store, cwd=tmp_path)
    assert requeue.returncode == 0 and "requeued 1 photo(s)" in requeue.stdout, requeue.stdout
    again = tilerunner(*args, cwd=tmp_path)
    assert again.returncode == 1 and "job partial" in again.stderr, again.stderr
    assert read_jsonl(tmp_path / "out.jsonl")[-2] == broken

    # mended (a copy of p1, two bright squares): its squares are found and the bright ones
    # classified, once each; the rest unchanged
    (tmp_path / "broken.jpg").write_bytes((tmp_path / truth[1].name).read_bytes())
    requeue = tilerunner("queue", "requeue", job_id, "--store", store, cwd=tmp_path)
    assert "requeued 1 photo(s)" in requeue.stdout, requeue.stdout
    again = tilerunner(*args, cwd=tmp_path)
    assert again.returncode == 1 and "job partial" in again.stderr, again.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    for record, photo in zip(records, [*truth, truth[1]], strict=False):
        check_photo(record, photo, labelled=True)
    assert records[-1]["status"] == "failed" and "has no url" in records[-1]["error"]
    n_squares = sum(len(t.squares) for t in [*truth, truth[1]])
    n_bright = sum(1 for t in [*truth, truth[1]] for s in t.squares if s[4] == BRIGHT)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("select count(*) from features").fetchone() == (n_squares + n_bright,)
