"""The README's demo: the real zoo detector over the composed street-photo scene."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tr_cli import tilerunner


@pytest.mark.slow
@pytest.mark.network
def test_demo_finds_people_and_buses_with_map_coordinates(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = tilerunner("demo", "--out", str(out), "--quiet", cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    features = json.loads((out / "detections.geojson").read_text())["features"]
    labels = Counter(f["properties"]["label"] for f in features)
    # 82 pasted photos, each with 2-5 people; about half show a bus
    assert labels["person"] > 150
    assert labels["bus"] > 20
    assert (out / "preview.png").stat().st_size > 100_000
    lon, lat = features[0]["geometry"]["coordinates"][0][0]
    assert -3.8 < lon < -3.6 and 40.3 < lat < 40.5
    # no object reported twice: same-label boxes never overlap above the merge threshold
    for label in ("person", "bus"):
        boxes = np.array(
            [f["properties"]["pixel_bbox"] for f in features if f["properties"]["label"] == label]
        )
        x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
        y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
        x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
        y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / (area[:, None] + area[None, :] - inter)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.5
