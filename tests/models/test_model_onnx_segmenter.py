"""The generated per-pixel ONNX segmenter through the ONNX backend: any tile size, per pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tilerunner.models import SegMask, load_model

pytest.importorskip("onnxruntime")
onnx_models = pytest.importorskip("tilerunner.testing.onnx_models")


def test_segmenter_decides_each_pixel_alone_at_any_tile_size(tmp_path: Path) -> None:
    path = onnx_models.make_segmenter_onnx(tmp_path / "seg.onnx", width=8, depth=2, n_classes=5)
    model = load_model(str(path))
    assert model.task == "segment" and model.classes == [f"class{i}" for i in range(5)]
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 256, size=(1, 96, 80, 3), dtype=np.uint8)
    (whole,) = model.predict(tile)
    (part,) = model.predict(np.ascontiguousarray(tile[:, 17:49, 5:69]))
    assert isinstance(whole, SegMask) and isinstance(part, SegMask)
    assert whole.classes is not None and part.classes is not None
    assert whole.classes.shape == (96, 80) and part.classes.shape == (32, 64)
    np.testing.assert_array_equal(part.classes, whole.classes[17:49, 5:69])
    assert set(np.unique(whole.classes).tolist()) <= set(range(5))
    assert len(np.unique(whole.classes)) > 1  # the seeded weights do separate the pixels
