"""What a worker reports: a work item's result, and the worker's own heartbeat."""

from __future__ import annotations

from dataclasses import dataclass

from tilerunner.jobs.features import FeatureRows, TileFailure

__all__ = ["MemberOutcome", "ServedModel", "WorkResult", "WorkerReport"]


@dataclass(frozen=True, slots=True)
class MemberOutcome:
    """What became of one member of a multi-photo item: its size and location, or its error."""

    image_idx: int
    width: int = 0
    height: int = 0
    location: tuple[float, float] | None = None
    error_code: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkResult:
    """The owned features of a finished work item, how many tiles it covered, and the tiles
    that failed alone (their owned features are missing from ``rows``); items of many photos
    also say what became of each photo (``members``), items of crops which detections they
    cropped (``crops``, their keys)."""

    rows: FeatureRows
    n_tiles: int
    tile_failures: tuple[TileFailure, ...] = ()
    members: tuple[MemberOutcome, ...] = ()
    crops: tuple[str, ...] = ()

    @property
    def all_failed(self) -> bool:
        """Every tile failed: the whole worker may be at fault, not the tiles."""
        return self.n_tiles > 0 and len(self.tile_failures) >= self.n_tiles


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What a worker says about a model it serves (``GET /v1/models`` shows it)."""

    name: str
    task: str
    classes: tuple[str, ...] = ()
    backend: str = ""
    spec: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "classes": list(self.classes),
            "backend": self.backend,
            "spec": self.spec,
        }


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
    served: tuple[ServedModel, ...] = ()
