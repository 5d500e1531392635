"""Plain records passed in and out of the store (not the tables, not the API schemas)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Counts",
    "FeatureRows",
    "ImagePlan",
    "ImageRecord",
    "JobError",
    "JobRecord",
    "OutboxItem",
]


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """One image of a job as the planner cut it: its regions and their tile counts."""

    idx: int
    source_id: str
    url: str
    width: int | None
    height: int | None
    region_tiles: int | None
    region_tile_counts: list[int]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRecord:
    job_id: str
    idx: int
    source_id: str
    url: str
    width: int
    height: int
    region_tiles: int
    state: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    name: str | None
    spec: dict[str, Any]
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    images_total: int
    images_finished: int
    regions_total: int
    tiles_total: int
    outputs: list[str] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    """Progress of a job: done / failed of each total."""

    images_total: int
    images_done: int
    images_failed: int
    regions_total: int
    regions_done: int
    regions_failed: int
    tiles_total: int
    tiles_done: int
    features: int

    @property
    def regions_finished(self) -> int:
        return self.regions_done + self.regions_failed


@dataclass(frozen=True, slots=True)
class JobError:
    """A typed error of a job: which image / region failed and why."""

    code: str
    message: str
    image: str | None
    region: int | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    job_id: str
    kind: str


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
