"""OpenCV DNN backend: Darknet ``*.cfg`` + ``*.weights`` (YOLOv3/v4, tiny variants).

OpenCV runs Darknet networks on the CPU with no extra runtime and stays the simplest way to
use the many YOLO weights published in Darknet form. ``opencv-python-headless`` is pinned
below 5 because 5.x dropped the Darknet importer.

Two facts, checked against the reference photo in the zoo test, decide the decoding:

* tiles are RGB and Darknet networks were trained on RGB, so the blob is built *without*
  ``swapRB`` (swapping would feed BGR and cost 0.02-0.15 of confidence per person);
* OpenCV's YOLO output rows are ``cx, cy, w, h`` (normalised), objectness, then K class
  scores that OpenCV has *already multiplied* by objectness, so the score of a row is its best
  class column as it is (multiplying by objectness again would square it).

Parameters (``--model-param``): ``weights=PATH`` (default: same stem ``.weights``), ``names=PATH``
(class names, one per line; default: same stem ``.names`` if present), ``input_size`` (default:
the cfg's width/height), ``threshold`` (0.25) and ``iou`` (0.45, in-tile class-aware NMS).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import InvalidRequestError, ModelError
from tilerunner.models.contract import LoadedModel
from tilerunner.models.decoding import detections_from_candidates, to_xyxy
from tilerunner.models.plugin import ModelParams, wrap_model

__all__ = ["DarknetModel", "load_darknet_model", "read_cfg_input_size"]

logger = logging.getLogger(__name__)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise InvalidRequestError(
            "Darknet models need OpenCV; install the extra: pip install 'tilerunner[opencv]'"
        ) from exc
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise InvalidRequestError(
            f"OpenCV {cv2.__version__} cannot read Darknet models; install opencv-python-headless<5"
        )
    return cv2


def read_cfg_input_size(cfg: Path) -> tuple[int, int]:
    """``(height, width)`` from the ``[net]`` section of a Darknet cfg."""
    values: dict[str, str] = {}
    try:
        section = ""
        for raw in cfg.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line.startswith("["):
                section = line
            elif section in ("[net]", "[network]") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
        return int(values["height"]), int(values["width"])
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidRequestError(
            f"cannot read width/height from the [net] section of {cfg} ({exc!r}); "
            "fix the cfg or pass --model-param input_size=416"
        ) from exc


class DarknetModel:
    """A Darknet YOLO network run by OpenCV DNN on whole batches."""

    task = "detect"

    def __init__(
        self,
        cfg: Path,
        weights: Path,
        classes: list[str],
        *,
        input_hw: tuple[int, int],
        threshold: float = 0.25,
        iou: float = 0.45,
    ) -> None:
        cv2 = _cv2()
        try:
            self._net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        except cv2.error as exc:
            raise InvalidRequestError(
                f"OpenCV cannot load Darknet model {cfg} with {weights}: {exc}; "
                "check that the weights belong to this cfg"
            ) from exc
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        self._cv2_error: type[Exception] = cv2.error
        self._blob = cv2.dnn.blobFromImages
        self._lock = threading.Lock()  # a cv2 Net is not safe to share between threads
        self.classes = classes
        self.input_hw = input_hw
        self.tile_size = input_hw[0] if input_hw[0] == input_hw[1] else None
        self.threshold, self.iou = threshold, iou
        logger.info("Darknet model %s: input %s, %d classes", cfg.name, input_hw, len(classes))

    def _forward(self, tiles: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Rows ``[B, N, 5 + K]`` of all YOLO heads for a batch."""
        images = [np.ascontiguousarray(t[..., :3]) for t in tiles]
        height, width = self.input_hw
        try:
            blob = self._blob(images, 1.0 / 255.0, (width, height), swapRB=False, crop=False)
            with self._lock:
                self._net.setInput(blob)
                heads = self._net.forward(self._outputs)
        except self._cv2_error as exc:
            raise ModelError(f"OpenCV DNN failed on a batch of {tiles.shape}: {exc}") from exc
        per_head = [h.reshape(len(images), -1, h.shape[-1]) for h in heads]
        return np.concatenate(per_head, axis=1)

    def predict(self, tiles: NDArray[np.uint8]) -> list[object]:
        """Detections per tile, boxes in tile pixels (the whole tile is resized, no crop)."""
        tile_hw = (int(tiles.shape[1]), int(tiles.shape[2]))
        if tiles.shape[0] == 0:
            return []
        rows = self._forward(tiles).astype(np.float64)
        scale = np.array([tile_hw[1], tile_hw[0], tile_hw[1], tile_hw[0]], dtype=np.float64)
        results: list[object] = []
        for tile_rows in rows:
            class_scores = tile_rows[:, 5:]
            results.append(
                detections_from_candidates(
                    to_xyxy(tile_rows[:, :4], "cxcywh") * scale,
                    class_scores.max(axis=1),
                    class_scores.argmax(axis=1).astype(np.int64),
                    tile_hw=tile_hw,
                    threshold=self.threshold,
                    iou=self.iou,
                )
            )
        return results


def read_names(path: Path) -> list[str]:
    """Class names, one per line (Darknet ``.names``)."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line]
    except OSError as exc:
        raise InvalidRequestError(f"cannot read class names from {path}: {exc}") from exc


def load_darknet_model(cfg: Path, params: Mapping[str, str], *, name: str) -> LoadedModel:
    """Load a Darknet cfg (+ weights, + names) into a :class:`LoadedModel`."""
    reader = ModelParams(params, f"Darknet model {cfg.name}")
    weights = Path(reader.get_str("weights") or cfg.with_suffix(".weights"))
    names_param = reader.get_str("names")
    size = reader.get_int("input_size", None)
    threshold = reader.get_float("threshold", 0.25)
    iou = reader.get_float("iou", 0.45)
    reader.check_all_used()
    for path, what in ((cfg, "cfg"), (weights, "weights")):
        if not path.is_file():
            raise InvalidRequestError(
                f"Darknet {what} file {path} does not exist; check the path"
                + (" or pass --model-param weights=PATH" if what == "weights" else "")
            )
    names_path = Path(names_param) if names_param else cfg.with_suffix(".names")
    classes = read_names(names_path) if names_param or names_path.is_file() else []
    input_hw = (size, size) if size else read_cfg_input_size(cfg)
    impl = DarknetModel(cfg, weights, classes, input_hw=input_hw, threshold=threshold, iou=iou)
    return wrap_model(impl, name=name, spec=str(cfg), backend="opencv-darknet")
