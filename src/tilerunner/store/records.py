"""Plain records passed in and out of the store (not the tables, not the API schemas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tilerunner.georef.record import ImageGeoref
from tilerunner.jobs.features import FeatureRows
from tilerunner.jobs.states import ImageState, JobState
from tilerunner.tiling.window import Window

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
    """One image of a job as the planner cut it: its regions and their tile counts, and what
    its header said (``georef``; None when it could not be opened)."""

    idx: int
    source_id: str
    url: str
    width: int | None
    height: int | None
    region_tiles: int | None
    region_tile_counts: list[int]
    error: str | None = None
    georef: ImageGeoref | None = None


@dataclass(frozen=True, slots=True)
class ImageRecord:
    job_id: str
    idx: int
    source_id: str
    url: str
    width: int
    height: int
    region_tiles: int
    state: ImageState
    georef: ImageGeoref | None = None
    """What planning recorded from the header; None for images planned before it was."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    name: str | None
    spec: dict[str, Any]
    status: JobState
    created_at: float
    started_at: float | None
    finished_at: float | None
    images_total: int
    images_finished: int
    regions_total: int
    tiles_total: int
    outputs: list[str] | None
    error: str | None
    project: str = "default"


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
    tiles_failed: int = 0
    """Tiles of done regions that failed alone (counted in ``tiles_done`` too)."""

    @property
    def regions_finished(self) -> int:
        return self.regions_done + self.regions_failed


@dataclass(frozen=True, slots=True)
class JobError:
    """A typed error of a job: which image / region (/ tile ``window``) failed and why; a
    photo job's failed crop names the photo as ``image`` and the detection's key."""

    code: str
    message: str
    image: str | None
    region: int | None
    window: Window | None = None
    detection: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    job_id: str
    kind: str
