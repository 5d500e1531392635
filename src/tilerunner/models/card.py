"""Model cards: the YAML file beside an ONNX model that says how to feed it and read it.

An ONNX graph says nothing about its task, class names, normalisation or the meaning of its
outputs, so every ``model.onnx`` needs a card (``model.onnx.yaml`` or ``model.yaml``)::

    task: detect
    classes: [tree, car]              # or classes_file: names.txt (one per line, relative)
    input:
      size: [640, 640]                # tiles are resized to it; boxes are scaled back
      layout: nchw                    # nchw | nhwc
      channel_order: rgb              # rgb | bgr
      scale: 0.00392156862745098      # multiply uint8 by this, then (x - mean) / std
      mean: [0, 0, 0]
      std: [1, 1, 1]
      dtype: float32                  # float32 | uint8 (uint8: raw pixels, no scaling)
      range: [0, 4095]                # optional: how non-uint8 sources are scaled to uint8
    output:
      decoding: yolo                  # boxes-scores-labels | yolo | classify | segment
      layout: attributes-first        # yolo: anchors-first [B,N,5+K] | attributes-first [B,4+K,N]
      normalised: false
      score_threshold: 0.25           # param threshold= overrides
      iou: 0.45                       # in-tile NMS

Unknown keys are errors (a typo must not silently fall back to a default); validation errors
name the card file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tilerunner.errors import InvalidRequestError

__all__ = [
    "BoxesScoresLabelsOutput",
    "ClassifyOutput",
    "InputSpec",
    "ModelCard",
    "SegmentOutput",
    "YoloOutput",
    "load_card",
]

OutputRef = str | int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """How a uint8 RGB tile becomes the model's input tensor."""

    size: tuple[int, int] | None = Field(default=None, description="[H, W]; None: model shape")
    layout: Literal["nchw", "nhwc"] = "nchw"
    channel_order: Literal["rgb", "bgr"] = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    dtype: Literal["float32", "uint8"] = "float32"
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        if self.size is not None and min(self.size) < 1:
            raise ValueError("size must be two positive ints [H, W]")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must not be 0")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        return self


class _Detector(_Strict):
    score_threshold: float = Field(default=0.25, ge=0.0, le=1.0)


class BoxesScoresLabelsOutput(_Detector):
    """Outputs ``boxes [B, N, 4]``, ``scores [B, N]``, ``labels [B, N]``, by name or index."""

    decoding: Literal["boxes-scores-labels"]
    boxes: OutputRef = 0
    scores: OutputRef = 1
    labels: OutputRef | None = 2
    box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy"
    normalised: bool = False
    iou: float | None = Field(default=None, gt=0.0, le=1.0, description="None: model did NMS")


class YoloOutput(_Detector):
    """One YOLO head output: v3/v5 ``anchors-first`` or v8 ``attributes-first``."""

    decoding: Literal["yolo"]
    output: OutputRef = 0
    layout: Literal["anchors-first", "attributes-first"] = "attributes-first"
    normalised: bool = False
    iou: float = Field(default=0.45, gt=0.0, le=1.0)


class ClassifyOutput(_Strict):
    """Class scores ``[B, K]``; ``softmax: true`` when the model emits logits."""

    decoding: Literal["classify"]
    output: OutputRef = 0
    softmax: bool = False


class SegmentOutput(_Strict):
    """Class ids ``[B, H, W]`` or scores ``[B, K, H, W]`` (``argmax`` turns scores into ids;
    ``argmax: false`` keeps them as probabilities, for blending and probability outputs).
    ``nodata_class`` is the class id the output raster uses for nodata (default 255)."""

    decoding: Literal["segment"]
    output: OutputRef = 0
    argmax: bool = True
    nodata_class: int | None = Field(default=None, ge=0, le=65535)


OutputSpec = Annotated[
    BoxesScoresLabelsOutput | YoloOutput | ClassifyOutput | SegmentOutput,
    Field(discriminator="decoding"),
]
_TASK_OF_DECODING = {
    "boxes-scores-labels": "detect",
    "yolo": "detect",
    "classify": "classify",
    "segment": "segment",
}


class ModelCard(_Strict):
    """A validated model card."""

    task: Literal["detect", "classify", "segment"]
    name: str | None = None
    description: str | None = None
    classes: list[str] | None = None
    classes_file: str | None = None
    input: InputSpec = InputSpec()
    output: OutputSpec

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if self.classes is not None and self.classes_file is not None:
            raise ValueError("give either classes or classes_file, not both")
        expected = _TASK_OF_DECODING[self.output.decoding]
        if expected != self.task:
            raise ValueError(
                f"output decoding {self.output.decoding!r} is for task {expected!r}, "
                f"not {self.task!r}"
            )
        return self


def load_card(path: Path) -> tuple[ModelCard, list[str]]:
    """Read and validate a card; return it with its class names (from ``classes_file`` too)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequestError(f"cannot read model card {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequestError(f"model card {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError(f"model card {path} must be a YAML mapping (task:, output:, ...)")
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidRequestError(
            f"model card {path}: field {field}: {first['msg']}{more}; fix the card"
        ) from exc
    classes = list(card.classes or [])
    if card.classes_file is not None:
        names_path = path.parent / card.classes_file
        try:
            lines = names_path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidRequestError(
                f"model card {path}: classes_file {names_path} cannot be read ({exc})"
            ) from exc
        classes = [line.strip() for line in lines if line.strip()]
    return card, classes
