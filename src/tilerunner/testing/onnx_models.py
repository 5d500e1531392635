"""Real ONNX models built in code, with their model cards, for tests and benchmarks.

The graphs are genuine ONNX Runtime workloads: a stack of 3x3 convolutions with seeded random
weights whose cost per tile is set by ``input_size``, ``width`` and ``depth`` (about
``2 * 9 * depth * width**2 * input_size**2`` FLOPs), followed by small heads that emit outputs in
a documented decoding. Nothing is downloaded, so the ONNX backend can be tested end to end
offline, and a benchmark can dial in a model as heavy as it needs. Requires the ``onnx``
package (a development dependency).

The detector ends in ``boxes-scores-labels`` outputs: ``boxes [B, N, 4]`` (cx, cy, w, h,
normalised, w and h at most half the tile), ``scores [B, N]`` (best softmax probability) and
``labels [B, N]`` (its class), so every tile yields exactly ``n_boxes`` detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import yaml
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

__all__ = ["make_classifier_onnx", "make_detector_onnx", "make_segmenter_onnx"]

_OPSET = 17
_IR_VERSION = 8  # readable by every onnxruntime tilerunner supports (>= 1.17)
Layout = Literal["nchw", "nhwc"]
Info = onnx.ValueInfoProto


class _Graph:
    """Accumulates nodes and seeded weights of a conv-stack graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def const(self, name: str, value: NDArray[np.generic]) -> str:
        self.weights.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def he(self, shape: tuple[int, ...], fan_in: int, gain: float = 1.0) -> NDArray[np.float32]:
        std = gain * np.sqrt(2.0 / fan_in)
        return np.asarray(self.rng.standard_normal(shape) * std, dtype=np.float32)

    def features(self, image: str, layout: Layout, width: int, depth: int) -> str:
        """Conv(3x3)+ReLU x depth, then global average pooling -> ``[B, width]``."""
        x = image
        if layout == "nhwc":
            x = self.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        channels = 3
        for i in range(depth):
            w = self.const(f"conv{i}_w", self.he((width, channels, 3, 3), channels * 9))
            b = self.const(f"conv{i}_b", np.full(width, 0.01, np.float32))
            x = self.node("Conv", [x, w, b], f"conv{i}", pads=[1, 1, 1, 1])
            x = self.node("Relu", [x], f"relu{i}")
            channels = width
        x = self.node("GlobalAveragePool", [x], "pooled")
        return self.node("Flatten", [x], "features", axis=1)

    def dense(self, x: str, name: str, n_in: int, n_out: int, gain: float) -> str:
        w = self.const(f"{name}_w", self.he((n_in, n_out), n_in, gain))
        b = self.const(f"{name}_b", (self.rng.standard_normal(n_out) * 0.5).astype(np.float32))
        return self.node("Gemm", [x, w, b], name)

    def save(self, path: Path, name: str, inputs: list[Info], outputs: list[Info]) -> None:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.weights)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="tilerunner"
        )
        model.ir_version = _IR_VERSION
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))


def _image_input(input_size: int, layout: Layout, fixed_batch: int | None) -> onnx.ValueInfoProto:
    batch: int | str = fixed_batch or "batch"
    shape = [batch, 3, input_size, input_size]
    if layout == "nhwc":
        shape = [batch, input_size, input_size, 3]
    return helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)


def _write_card(path: Path, card: dict[str, object]) -> Path:
    card_path = path.with_suffix(".yaml")
    card_path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return card_path


def make_detector_onnx(
    path: Path,
    *,
    input_size: int = 64,
    width: int = 16,
    depth: int = 4,
    n_boxes: int = 4,
    n_classes: int = 3,
    layout: Layout = "nchw",
    fixed_batch: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a detector ``path`` (``.onnx``) and its card ``path.with_suffix('.yaml')``."""
    g = _Graph(seed)
    features = g.features("images", layout, width, depth)
    raw_boxes = g.node("Sigmoid", [g.dense(features, "box_head", width, n_boxes * 4, 1.0)], "sig")
    shaped = g.node("Reshape", [raw_boxes, g.const("box_shape", np.array([-1, n_boxes, 4]))], "b4")
    half_size = g.const("box_scale", np.array([1.0, 1.0, 0.5, 0.5], np.float32))
    g.node("Mul", [shaped, half_size], "boxes")
    logits = g.dense(features, "cls_head", width, n_boxes * n_classes, 4.0)
    class_shape = g.const("cls_shape", np.array([-1, n_boxes, n_classes]))
    per_box = g.node("Reshape", [logits, class_shape], "cls_logits")
    probs = g.node("Softmax", [per_box], "probs", axis=-1)
    g.node("ReduceMax", [probs], "scores", axes=[-1], keepdims=0)
    g.node("ArgMax", [probs], "labels", axis=-1, keepdims=0)
    batch: int | str = fixed_batch or "batch"
    outputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, n_boxes, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, n_boxes]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, [batch, n_boxes]),
    ]
    image = _image_input(input_size, layout, fixed_batch)
    g.save(path, "tilerunner-test-detector", [image], outputs)
    _write_card(
        path,
        {
            "task": "detect",
            "name": path.stem,
            "classes": [f"class{i}" for i in range(n_classes)],
            "input": {"size": [input_size, input_size], "layout": layout, "scale": 1 / 255},
            "output": {
                "decoding": "boxes-scores-labels",
                "boxes": "boxes",
                "scores": "scores",
                "labels": "labels",
                "box_format": "cxcywh",
                "normalised": True,
                "score_threshold": 0.0,
            },
        },
    )
    return path


def make_classifier_onnx(
    path: Path,
    *,
    input_size: int = 32,
    width: int = 8,
    depth: int = 2,
    n_classes: int = 4,
    layout: Layout = "nchw",
    fixed_batch: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a classifier emitting logits ``[B, K]`` and its card (``softmax: true``)."""
    g = _Graph(seed)
    features = g.features("images", layout, width, depth)
    logits = g.dense(features, "logits", width, n_classes, 4.0)
    g.node("Identity", [logits], "scores")
    batch: int | str = fixed_batch or "batch"
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, n_classes])]
    image = _image_input(input_size, layout, fixed_batch)
    g.save(path, "tilerunner-test-classifier", [image], outputs)
    _write_card(
        path,
        {
            "task": "classify",
            "classes": [f"class{i}" for i in range(n_classes)],
            "input": {"size": [input_size, input_size], "layout": layout, "scale": 1 / 255},
            "output": {"decoding": "classify", "output": "scores", "softmax": True},
        },
    )
    return path


def make_segmenter_onnx(
    path: Path,
    *,
    width: int = 32,
    depth: int = 3,
    n_classes: int = 4,
    seed: int = 0,
) -> Path:
    """Write a per-pixel segmenter (any tile size) and its card.

    ``depth`` 1x1 convolutions of ``width`` channels with ReLU, a 1x1 head to ``n_classes``
    logits and the ArgMax in the graph, so it emits class ids ``[B, H, W]`` (int64). Each pixel
    is decided from its own values alone, at about ``2 * (3 * width + (depth - 1) * width**2 +
    width * n_classes)`` FLOPs per pixel: a compute-heavy stand-in for a segmentation network
    whose output needs no blending to be exact.
    """
    g = _Graph(seed)
    x, channels = "images", 3
    for i in range(depth):
        w = g.const(f"pix{i}_w", g.he((width, channels, 1, 1), channels))
        b = g.const(f"pix{i}_b", np.full(width, 0.01, np.float32))
        x = g.node("Relu", [g.node("Conv", [x, w, b], f"pix{i}")], f"pix_relu{i}")
        channels = width
    head_w = g.const("head_w", g.he((n_classes, channels, 1, 1), channels, 4.0))
    head_b = g.const("head_b", np.zeros(n_classes, np.float32))
    logits = g.node("Conv", [x, head_w, head_b], "logits")
    g.node("ArgMax", [logits], "classes", axis=1, keepdims=0)
    image = helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, ["batch", 3, "height", "width"]
    )
    ids = helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch", "height", "width"])
    g.save(path, "tilerunner-test-segmenter", [image], [ids])
    _write_card(
        path,
        {
            "task": "segment",
            "name": path.stem,
            "classes": [f"class{i}" for i in range(n_classes)],
            # centred inputs, so the classes follow the pixels' colours rather than one bias
            "input": {"layout": "nchw", "scale": 1 / 255, "mean": [0.45] * 3, "std": [0.2] * 3},
            "output": {"decoding": "segment", "output": "classes", "argmax": False},
        },
    )
    return path
