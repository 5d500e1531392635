"""The owned features of one region, columnar: what a worker reports and the store records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["FeatureRows"]


@dataclass(slots=True)
class FeatureRows:
    """The owned features of one region, columnar, in full-image pixel coordinates."""

    boxes: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4)))
    scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    class_ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labels: list[str] = field(default_factory=list)
    extra: list[dict[str, Any] | None] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def concat(cls, parts: list[FeatureRows]) -> FeatureRows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        extra: list[dict[str, Any] | None] | None = None
        if any(p.extra is not None for p in parts):
            extra = []
            for p in parts:
                extra.extend(p.extra if p.extra is not None else [None] * len(p))
        return cls(
            boxes=np.concatenate([p.boxes for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            class_ids=np.concatenate([p.class_ids for p in parts]),
            labels=[label for p in parts for label in p.labels],
            extra=extra,
        )
