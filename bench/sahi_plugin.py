"""A tilerunner model plugin wrapped as a SAHI ``DetectionModel``, for the peer benchmark.

SAHI runs any detector through a ``DetectionModel`` subclass: ``perform_inference`` stores the
raw output of one slice, ``_create_object_prediction_list_from_original_predictions`` turns it
into ``ObjectPrediction`` objects shifted into full-image pixels. This wrapper passes SAHI's
slices to the plugin's ``predict`` in one call per batch (SAHI's documented hook for native
batches, ``perform_batch_inference``), so SAHI runs the model exactly as tilerunner does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sahi.models.base import DetectionModel
from sahi.prediction import ObjectPrediction

__all__ = ["PluginDetectionModel"]


class PluginDetectionModel(DetectionModel):  # type: ignore[misc]
    """``model=`` is an object with ``predict(tiles [B, H, W, C] uint8) -> list[dict]``."""

    def set_device(self, device: str | None = None) -> None:
        # the plugin picks its own device; SAHI's would import torch only to answer "cpu"
        self.device = device or "cpu"

    def load_model(self) -> None:
        raise ValueError("pass the plugin instance as model=")

    def set_model(self, model: Any, **kwargs: Any) -> None:
        self.model = model
        classes = getattr(model, "classes", None) or ["object"]
        self.category_mapping = {str(i): name for i, name in enumerate(classes)}

    def perform_inference(self, image: np.ndarray) -> None:
        self._original_predictions = self.model.predict(np.ascontiguousarray(image)[None])
        self._batch_images = None

    def perform_batch_inference(self, images: list[np.ndarray]) -> None:
        self._original_predictions = self.model.predict(np.stack(images))
        self._original_shapes = [img.shape for img in images]

    def convert_original_predictions(
        self, shift_amount: Any = None, full_shape: Any = None
    ) -> None:
        # the base class would re-run inference image by image when given a batch
        self._create_object_prediction_list_from_original_predictions(shift_amount, full_shape)

    @property
    def num_categories(self) -> int:
        return len(self.category_mapping or {})

    @property
    def has_mask(self) -> bool:
        return False

    @property
    def category_names(self) -> list[str]:
        return list((self.category_mapping or {}).values())

    def _create_object_prediction_list_from_original_predictions(
        self, shift_amount_list: Any = None, full_shape_list: Any = None
    ) -> None:
        shifts = shift_amount_list or [[0, 0]]
        if not isinstance(shifts[0], list | tuple):
            shifts = [shifts]
        shapes = full_shape_list or [None] * len(self._original_predictions)
        if shapes[0] is not None and not isinstance(shapes[0], list | tuple):
            shapes = [shapes]
        per_image = []
        for out, shift, shape in zip(self._original_predictions, shifts, shapes, strict=True):
            found = []
            boxes = np.asarray(out["boxes"], dtype=np.float64).reshape(-1, 4)
            for box, score, label in zip(boxes, out["scores"], out["labels"], strict=True):
                if float(score) < self.confidence_threshold:
                    continue
                found.append(
                    ObjectPrediction(
                        bbox=box.tolist(),
                        category_id=int(label),
                        category_name=self.category_mapping.get(str(int(label)), "object"),
                        score=float(score),
                        shift_amount=list(shift),
                        full_shape=None if shape is None else list(shape),
                    )
                )
            per_image.append(found)
        self._object_prediction_list_per_image = per_image
