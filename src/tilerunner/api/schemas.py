"""Response models of the HTTP API (what /docs shows; separate from tables and records).

The job object is modelled on batch APIs people know: a status, a timestamp per transition,
counts of done / failed work, progress and an ETA from measured throughput, typed errors and
output locations.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tilerunner.jobs import JobState
from tilerunner.store import JobRecord

__all__ = [
    "Event",
    "Health",
    "Job",
    "JobCounts",
    "JobErrorItem",
    "JobList",
    "JobSummary",
    "ModelInfo",
    "RetryReport",
    "WindowItem",
    "WorkerInfo",
    "job_from_view",
    "job_summary",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CountRow(_Out):
    total: int
    done: int
    failed: int


class TileCount(_Out):
    total: int
    done: int
    failed: int = Field(default=0, description="Tiles that failed alone (see errors).")


class FeatureCount(_Out):
    found: int = Field(description="Features recorded by finished regions (before merging).")


class ClassStatistic(_Out):
    class_id: int
    label: str
    pixels: int = Field(description="Valid pixels of this class in the output raster.")
    area: float | None = Field(description="Their area in the CRS's units squared; null: no CRS.")


class JobCounts(_Out):
    images: CountRow
    regions: CountRow
    tiles: TileCount
    features: FeatureCount


class Timestamps(_Out):
    """Unix times (seconds) of each transition the job went through."""

    created_at: float
    planning_at: float | None = None
    queued_at: float | None = None
    running_at: float | None = None
    aggregating_at: float | None = None
    succeeded_at: float | None = None
    partial_at: float | None = None
    failed_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None


class WindowItem(_Out):
    """A tile's read window in full-image pixels."""

    col_off: int
    row_off: int
    width: int
    height: int


class JobErrorItem(_Out):
    code: str = Field(description="source_error, region_failed or tile_failed, ...")
    message: str
    image: str | None
    region: int | None
    window: WindowItem | None = Field(default=None, description="The failed tile, if one.")
    detection: str | None = Field(
        default=None,
        description="A photo job's failed crop: the key of the detection it came from "
        "(``image`` is then the photo's id).",
    )


class Job(_Out):
    id: str
    name: str | None
    project: str
    status: JobState
    timestamps: Timestamps
    counts: JobCounts
    progress: float = Field(ge=0.0, le=1.0, description="Share of regions finished, 0-1.")
    eta_seconds: float | None = Field(
        description="Seconds left at the tiles/s measured since the job started; null if unknown."
    )
    errors: list[JobErrorItem]
    outputs: list[str]
    error: str | None
    statistics: list[ClassStatistic] | None = Field(
        default=None, description="Segment jobs: pixels and area per class (finished regions)."
    )
    spec: dict[str, Any] = Field(description="The job document, callback secret and token blanked.")


class RetryReport(_Out):
    regions: int = Field(description="Dead-lettered regions put back on the queue.")
    tiles: int = Field(description="Tiles that had failed alone, put back to be redone.")
    photos: int = Field(
        default=0,
        description="A photo job's photos that could not be read, put back to be read again.",
    )
    job: Job


class JobSummary(_Out):
    """A job in a listing: no counts, so listing stays one query."""

    id: str
    name: str | None
    project: str
    status: JobState
    created_at: float
    started_at: float | None
    finished_at: float | None
    images_total: int
    regions_total: int
    tiles_total: int
    outputs: list[str] | None


class JobList(_Out):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


class Event(_Out):
    id: int
    at: float
    kind: str
    message: str
    image_idx: int | None
    region_idx: int | None


class WorkerInfo(_Out):
    id: str
    host: str
    pid: int
    models: list[str]
    started_at: float
    last_seen: float
    leases_held: int
    tiles_done: int
    regions_done: int
    tiles_per_second: float
    version: str | None = Field(default=None, description="The worker's tilerunner version.")
    gpu: str | None = Field(default=None, description="Its GPU, when it has one.")
    model_info: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Per model: task, classes, backend and spec."
    )


class ModelInfo(_Out):
    name: str
    workers: list[str] = Field(description="Workers that registered this model.")
    live: bool = Field(description="Whether any of them was seen in the last two lease periods.")
    last_seen: float
    task: str | None = Field(
        default=None, description="detect, classify or segment, as its newest worker says."
    )
    classes: list[str] | None = Field(default=None, description="Class names, index = class id.")
    backend: str | None = Field(default=None, description="onnx, opencv, plugin, ...")
    spec: str | None = Field(default=None, description="What the worker loaded (path, zoo:...).")


class Health(_Out):
    status: str


def job_from_view(view: dict[str, Any]) -> Job:
    """The response model of :func:`tilerunner.coordinator.job_view`'s dict."""
    return Job.model_validate(view)  # the view's spec is already public (secret blanked)


def job_summary(job: JobRecord) -> JobSummary:
    return JobSummary.model_validate(job, from_attributes=True)
