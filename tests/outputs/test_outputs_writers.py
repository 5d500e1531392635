from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tilerunner.errors import InvalidRequestError
from tilerunner.imagery import RasterReader
from tilerunner.outputs import (
    FeatureTable,
    check_writable,
    write_output,
    write_preview,
    writer_for,
)
from tilerunner.outputs.preview import label_colour


def test_check_writable_accepts_good_targets(tmp_path: Path) -> None:
    check_writable(str(tmp_path / "out.geojson"))
    check_writable("s3://bucket/results/out.parquet")


def test_check_writable_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "out.geojson"
    with pytest.raises(InvalidRequestError) as info:
        check_writable(str(target))
    assert str(info.value) == (
        f"cannot write output {str(target)!r}: directory {str(target.parent)!r} does not exist; "
        "create it or choose another -o path"
    )


def test_check_writable_rejects_directory_and_bucket_only(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="is a directory"):
        check_writable(str(tmp_path))
    with pytest.raises(InvalidRequestError, match="bucket and a key"):
        check_writable("s3://bucket")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_check_writable_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InvalidRequestError, match="not writable"):
            check_writable(str(locked / "out.csv"))
    finally:
        locked.chmod(0o700)


def test_check_writable_unwritable_directory_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tilerunner.outputs.writers.os.access", lambda *_: False)
    with pytest.raises(InvalidRequestError) as info:
        check_writable(str(tmp_path / "out.csv"))
    assert f"directory {str(tmp_path)!r} is not writable" in str(info.value)


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.geojson"

    def explode(path: str) -> None:
        Path(path).write_text('{"type": "FeatureCollection", "features": [')
        raise RuntimeError("model crashed mid-write")

    with pytest.raises(RuntimeError):
        write_output(str(target), explode)
    assert list(tmp_path.iterdir()) == []

    target.write_text("previous result")
    with pytest.raises(RuntimeError):
        write_output(str(target), explode)
    assert target.read_text() == "previous result"
    assert list(tmp_path.iterdir()) == [target]


def test_failed_table_write_keeps_old_file(tmp_path: Path, photo: FeatureTable) -> None:
    target = tmp_path / "out.geojson"
    target.write_text("old")
    bad = FeatureTable(
        photo.image, photo.label, photo.class_id, photo.score, photo.pixel_bbox, photo.geometry,
        extra={"blob": [object(), object()]},  # not JSON serialisable
    )  # fmt: skip
    with pytest.raises(TypeError):
        writer_for(str(target))(bad, str(target))
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.geojson"]


def test_written_file_has_ordinary_permissions(tmp_path: Path, photo: FeatureTable) -> None:
    target = tmp_path / "out.csv"
    writer_for(str(target))(photo, str(target))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_s3_output_is_uploaded(moto_server: str, trees: FeatureTable) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="outputs-test")
    uri = "s3://outputs-test/jobs/1/result.geojson"
    check_writable(uri)
    writer_for(uri, s3_endpoint_url=moto_server)(trees, uri)
    body = s3.get_object(Bucket="outputs-test", Key="jobs/1/result.geojson")["Body"].read()
    assert len(json.loads(body)["features"]) == 61
    with pytest.raises(InvalidRequestError, match="bucket exists"):
        writer_for("s3://no-such-bucket/x.csv", s3_endpoint_url=moto_server)(
            trees, "s3://no-such-bucket/x.csv"
        )


def test_preview_png_size_and_boxes(tmp_path: Path, data_dir: Path, tree_boxes: np.ndarray) -> None:
    out = tmp_path / "preview.png"
    labels = ["Tree"] * len(tree_boxes)
    scores = np.full(len(tree_boxes), 0.9)
    with RasterReader(str(data_dir / "OSBS_029.tif")) as reader:
        write_preview(str(out), reader, tree_boxes, labels, scores, max_size=200)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (200, 200)
        pixels = np.asarray(img.convert("RGB"))
    # Box 1 spans x 256..288, y 99..140 at full size; its bottom edge lies at y = 70 in the preview.
    colour = np.array(label_colour("Tree"))
    assert (pixels[70, 130:143] == colour).all(axis=1).sum() >= 10


def test_preview_limits_the_long_side(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "scene.png"
    with RasterReader(str(data_dir / "RGB.byte.tif")) as reader:
        write_preview(str(out), reader, np.empty((0, 4)), [], np.empty(0), max_size=256)
    with Image.open(out) as img:
        assert img.size == (256, 232)  # 791 x 718 scaled by 256 / 791
