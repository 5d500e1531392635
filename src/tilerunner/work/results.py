"""What a worker reports: a work item's result, and the worker's own heartbeat."""

from __future__ import annotations

from dataclasses import dataclass

from tilerunner.jobs.features import FeatureRows

__all__ = ["WorkResult", "WorkerReport"]


@dataclass(frozen=True, slots=True)
class WorkResult:
    """The owned features of a finished work item and how many tiles it covered."""

    rows: FeatureRows
    n_tiles: int


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """Registration and heartbeat of one worker process."""

    id: str
    host: str
    pid: int
    version: str
    models: tuple[str, ...]
    leases_held: int
    tiles_done: int
    regions_done: int
    tiles_per_second: float
    gpu: str | None = None
