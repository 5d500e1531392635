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


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_input_normalised_per_channel_as_the_card_says(tmp_path: Path, layout: str) -> None:
    """A graph that returns its input as [K, H, W] scores shows what the model was fed:
    ``(uint8 * scale - mean) / std`` per channel in float32, in either layout, even from a
    BGR-ordered card (a strided view of the tiles)."""
    import onnx
    import yaml
    from onnx import TensorProto, helper

    shape = ["batch", 3, "height", "width"] if layout == "nchw" else ["batch", "height", "width", 3]
    perm = [0, 1, 2, 3] if layout == "nchw" else [0, 3, 1, 2]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["images"], ["scores"], perm=perm)],
        "echo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
    )
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_proto.ir_version = 8
    path = tmp_path / "echo.onnx"
    onnx.save(model_proto, str(path))
    mean, std, scale = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1 / 255
    card = {"task": "segment", "classes": ["r", "g", "b"],
            "input": {"layout": layout, "scale": scale, "mean": mean, "std": std,
                      "channel_order": "bgr"},
            "output": {"decoding": "segment", "output": "scores", "argmax": False}}  # fmt: skip
    path.with_suffix(".yaml").write_text(yaml.safe_dump(card), encoding="utf-8")
    model = load_model(str(path))
    tiles = np.random.default_rng(2).integers(0, 256, size=(2, 40, 24, 3), dtype=np.uint8)
    masks = model.predict(tiles)
    bgr = tiles[..., ::-1].astype(np.float32) * np.float32(scale)
    want = (bgr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    for mask, expected in zip(masks, want, strict=True):
        assert isinstance(mask, SegMask) and mask.probabilities is not None
        np.testing.assert_array_equal(mask.probabilities, expected.transpose(2, 0, 1))
