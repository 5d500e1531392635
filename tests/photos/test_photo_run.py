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
from pathlib import Path

import pytest
from photo_checks import check_photo, read_jsonl
from tr_cli import tilerunner
from tr_photos import make_photos

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
