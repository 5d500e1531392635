"""Convert the zoo's Darknet YOLOv3-tiny (cfg + weights) to an ONNX graph and its model card.

The GPU benchmark runs a real detector through ONNX Runtime, and the zoo ships YOLOv3-tiny as
Darknet files for OpenCV. The converters on the package index go through PyTorch or TensorFlow;
this one writes the graph directly with the ``onnx`` helpers (a development dependency), since
the tiny network has only five kinds of layer: convolution (batch norm folded into its weights
and bias, leaky ReLU), max pooling, nearest upsampling, route (concatenation) and the YOLO head.
Each head is decoded inside the graph (sigmoid offsets on the grid, anchors scaled by the
exponent, sigmoid objectness and class scores), so the output is one ``[B, N, 85]`` tensor in
input pixels, which the ONNX backend reads with ``decoding: yolo, layout: anchors-first``.

    python bench/darknet_onnx.py yolov3-tiny.cfg yolov3-tiny.weights coco.names out.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

__all__ = ["convert"]

_OPSET = 17
_IR_VERSION = 8


def _sections(cfg: Path) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for raw in cfg.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            blocks.append({"type": line.strip("[]")})
        else:
            key, _, value = line.partition("=")
            blocks[-1][key.strip()] = value.strip()
    return blocks


class _Builder:
    def __init__(self, weights: NDArray[np.float32]) -> None:
        self.weights = weights
        self.offset = 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def take(self, count: int) -> NDArray[np.float32]:
        chunk = self.weights[self.offset : self.offset + count]
        if len(chunk) != count:
            raise ValueError("the weights file ends before the cfg's layers do")
        self.offset += count
        return chunk

    def const(self, name: str, value: NDArray[Any]) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output


def _conv(b: _Builder, i: int, block: dict[str, str], x: str, channels: int) -> tuple[str, int]:
    filters, size = int(block["filters"]), int(block["size"])
    stride, pad = int(block.get("stride", 1)), size // 2 if int(block.get("pad", 0)) else 0
    if block.get("batch_normalize") == "1":
        beta, gamma, mean, var = (b.take(filters) for _ in range(4))
        kernel = b.take(filters * channels * size * size).reshape(filters, channels, size, size)
        factor = gamma / np.sqrt(var + 1e-5)
        kernel = kernel * factor[:, None, None, None]
        bias = beta - mean * factor
    else:
        bias = b.take(filters)
        kernel = b.take(filters * channels * size * size).reshape(filters, channels, size, size)
    w = b.const(f"w{i}", kernel.astype(np.float32))
    c = b.const(f"b{i}", bias.astype(np.float32))
    y = b.node("Conv", [x, w, c], f"conv{i}", kernel_shape=[size, size], strides=[stride] * 2,
               pads=[pad] * 4)  # fmt: skip
    if block.get("activation") == "leaky":
        y = b.node("LeakyRelu", [y], f"act{i}", alpha=0.1)
    return y, filters


def _maxpool(b: _Builder, i: int, block: dict[str, str], x: str) -> str:
    size, stride = int(block["size"]), int(block.get("stride", 1))
    extra = size - stride  # Darknet pads the right and bottom so the size divides by stride
    return b.node("MaxPool", [x], f"pool{i}", kernel_shape=[size, size], strides=[stride] * 2,
                  pads=[0, 0, extra, extra])  # fmt: skip


def _yolo(b: _Builder, i: int, block: dict[str, str], x: str, hw: tuple[int, int],
          input_hw: tuple[int, int]) -> str:  # fmt: skip
    """Decode one head ``[B, A*(5+K), H, W]`` to ``[B, A*H*W, 5+K]`` (cx, cy, w, h in input
    pixels, objectness, class scores)."""
    mask = [int(v) for v in block["mask"].split(",")]
    anchors = np.array([float(v) for v in block["anchors"].split(",")], np.float32).reshape(-1, 2)
    k, h, w = int(block["classes"]), hw[0], hw[1]
    a = len(mask)
    y = b.node("Reshape", [x, b.const(f"s{i}", np.array([0, a, 5 + k, h, w]))], f"r{i}")
    y = b.node("Transpose", [y], f"t{i}", perm=[0, 1, 3, 4, 2])  # [B, A, H, W, 5+K]
    parts = [f"xy{i}", f"wh{i}", f"rest{i}"]
    b.nodes.append(helper.make_node("Split", [y, b.const(f"sp{i}", np.array([2, 2, 1 + k]))],
                                    parts, axis=-1))  # fmt: skip
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([gx, gy], axis=-1)[None, None]  # [1, 1, H, W, 2]
    stride = np.array([input_hw[1] / w, input_hw[0] / h], np.float32)
    xy = b.node("Add", [b.node("Sigmoid", [parts[0]], f"sxy{i}"), b.const(f"g{i}", grid)],
                f"gxy{i}")  # fmt: skip
    xy = b.node("Mul", [xy, b.const(f"st{i}", stride)], f"pxy{i}")
    wh = b.node("Exp", [parts[1]], f"ewh{i}")
    wh = b.node("Mul", [wh, b.const(f"an{i}", anchors[mask][None, :, None, None, :])], f"pwh{i}")
    rest = b.node("Sigmoid", [parts[2]], f"srest{i}")
    y = b.node("Concat", [xy, wh, rest], f"cat{i}", axis=-1)
    return b.node("Reshape", [y, b.const(f"o{i}", np.array([0, -1, 5 + k]))], f"head{i}")


def convert(cfg: Path, weights: Path, names: Path, out: Path) -> Path:
    """Write ``out`` (``.onnx``) and its card ``out.with_suffix('.yaml')``; returns ``out``."""
    blocks = _sections(cfg)
    net = blocks[0]
    input_hw = (int(net["height"]), int(net["width"]))
    raw = np.fromfile(weights, dtype=np.uint8)
    major, minor = np.frombuffer(raw[:8].tobytes(), np.int32)
    header = 20 if major * 10 + minor >= 2 else 16  # version, then a 64- or 32-bit "seen"
    b = _Builder(np.frombuffer(raw[header:].tobytes(), np.float32))
    x, channels, hw = "images", 3, input_hw
    outputs: list[tuple[str, int, tuple[int, int]]] = []  # per layer: tensor, channels, H x W
    heads: list[str] = []
    for i, block in enumerate(blocks[1:]):
        kind = block["type"]
        if kind == "convolutional":
            x, channels = _conv(b, i, block, x, channels)
            stride = int(block.get("stride", 1))
            hw = (hw[0] // stride, hw[1] // stride)
        elif kind == "maxpool":
            x = _maxpool(b, i, block, x)
            stride = int(block.get("stride", 1))
            hw = (hw[0] // stride, hw[1] // stride)
        elif kind == "upsample":
            scale = float(block.get("stride", 2))
            scales = b.const(f"us{i}", np.array([1, 1, scale, scale], np.float32))
            x = b.node("Resize", [x, "", scales], f"up{i}", mode="nearest")
            hw = (hw[0] * int(scale), hw[1] * int(scale))
        elif kind == "route":
            picks = [int(v) for v in block["layers"].split(",")]
            sources = [outputs[p if p >= 0 else i + p] for p in picks]
            x = sources[0][0] if len(sources) == 1 else b.node(
                "Concat", [s[0] for s in sources], f"route{i}", axis=1
            )  # fmt: skip
            channels, hw = sum(s[1] for s in sources), sources[0][2]
        elif kind == "yolo":
            heads.append(_yolo(b, i, block, x, hw, input_hw))
        else:
            raise ValueError(f"layer [{kind}] is not supported by this converter")
        outputs.append((x, channels, hw))
    if b.offset != len(b.weights):
        raise ValueError(f"{len(b.weights) - b.offset} weights left over: cfg and file differ")
    b.node("Concat", heads, "detections", axis=1)
    classes = [n.strip() for n in names.read_text().splitlines() if n.strip()]
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *input_hw])
    result = helper.make_tensor_value_info("detections", TensorProto.FLOAT,
                                           ["batch", "boxes", 5 + len(classes)])  # fmt: skip
    graph = helper.make_graph(b.nodes, "yolov3-tiny", [image], [result], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out)
    card = {
        "task": "detect",
        "name": out.stem,
        "classes": classes,
        "input": {"size": list(input_hw), "layout": "nchw", "scale": 1 / 255},
        "output": {"decoding": "yolo", "layout": "anchors-first", "normalised": False,
                   "score_threshold": 0.25, "iou": 0.45},
    }  # fmt: skip
    out.with_suffix(".yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    print(convert(*(Path(a) for a in sys.argv[1:])))
