"""Feature tables built from real ground truth (OSBS_029) and a photo without georeferencing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tilerunner.georef import Georeferencer
from tilerunner.outputs import FeatureTable


@pytest.fixture(scope="session")
def tree_boxes(data_dir: Path) -> np.ndarray:
    with open(data_dir / "OSBS_029.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows])


@pytest.fixture(scope="session")
def trees(data_dir: Path, tree_boxes: np.ndarray) -> FeatureTable:
    """61 real tree boxes georeferenced to lon/lat, plus XYZ-style extra columns."""
    georef = Georeferencer.open(str(data_dir / "OSBS_029.tif"))
    assert georef is not None
    rings = georef.box_rings(tree_boxes)
    n = len(tree_boxes)
    return FeatureTable(
        image=["OSBS_029.tif"] * n,
        label=["Tree"] * n,
        class_id=np.zeros(n, dtype=np.int64),
        score=np.linspace(0.3, 0.99, n),
        pixel_bbox=tree_boxes,
        geometry=list(rings),
        extra={"z": [18] * n, "scores": [[0.1, 0.9]] * n},
    )


@pytest.fixture(scope="session")
def photo() -> FeatureTable:
    """Two detections on a photo: pixel boxes only, no map geometry."""
    return FeatureTable(
        image=["cam/IMG_0001.jpg"] * 2,
        label=["deer", "fox"],
        class_id=np.array([3, 5]),
        score=np.array([0.8, 0.55]),
        pixel_bbox=np.array([[10.0, 20.0, 110.0, 90.0], [200.0, 5.0, 260.0, 60.0]]),
        geometry=[None, None],
        extra={"z": [None, None], "scores": [[0.2], [0.3]]},
    )
