"""The HTTP pull protocol's bodies (``/v1/work/...``), shared by the API and ``HttpWorkSource``."""

from __future__ import annotations

import re
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tilerunner.jobs.features import MESSAGE_LIMIT, FeatureRows, TileFailure
from tilerunner.tiling import Window
from tilerunner.work.items import AnyItem
from tilerunner.work.results import MemberOutcome, ServedModel, WorkerReport

__all__ = [
    "CompleteBody",
    "CompleteReply",
    "ErrorBody",
    "ExtendReply",
    "FailBody",
    "FeaturesBody",
    "HeartbeatBody",
    "LeaseBody",
    "LeaseReply",
    "LeasedItem",
    "MemberBody",
    "ServedModelBody",
    "TileFailureBody",
    "WindowBody",
]

_MODEL_NAME = r"^[A-Za-z0-9_-]{1,60}$"
_PRINTABLE = r"^[\x20-\x7e]*$"  # host names, versions, ids: printable ASCII


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeaseBody(_Body):
    models: list[str] = Field(min_length=1, max_length=32, description="Model names served.")
    max: int = Field(default=1, ge=1, le=64, description="At most this many items.")
    wait_seconds: float = Field(
        default=0.0, ge=0.0, le=30.0, description="Long-poll: wait this long for an item."
    )

    @model_validator(mode="after")
    def _names(self) -> LeaseBody:
        bad = [m for m in self.models if not re.match(_MODEL_NAME, m)]
        if bad:
            raise ValueError(f"model names are letters, digits, '-' and '_': {bad}")
        return self


class LeasedItem(_Body):
    lease: str = Field(description="Opaque lease token for extend / complete / fail.")
    model: str
    attempt: int
    expires_at: float
    item: AnyItem


class LeaseReply(_Body):
    items: list[LeasedItem]


class ExtendReply(_Body):
    lease: str
    expires_at: float


class FeaturesBody(_Body):
    """A region's owned features, columnar, in full-image pixels."""

    boxes: list[tuple[float, float, float, float]] = Field(default_factory=list)
    scores: list[float] = Field(default_factory=list)
    class_ids: list[int] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    extra: list[dict[str, Any] | None] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> FeaturesBody:
        n = len(self.scores)
        lengths = {len(self.boxes), len(self.class_ids), len(self.labels), n}
        if self.extra is not None:
            lengths.add(len(self.extra))
        if len(lengths) != 1:
            raise ValueError("boxes, scores, class_ids, labels (and extra) must be equally long")
        return self

    @classmethod
    def from_rows(cls, rows: FeatureRows) -> FeaturesBody:
        return cls(
            boxes=[(b[0], b[1], b[2], b[3]) for b in rows.boxes.tolist()],
            scores=rows.scores.tolist(),
            class_ids=rows.class_ids.tolist(),
            labels=list(rows.labels),
            extra=rows.extra,
        )

    def to_rows(self) -> FeatureRows:
        if not self.scores:
            return FeatureRows()
        return FeatureRows(
            boxes=np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4),
            scores=np.asarray(self.scores, dtype=np.float64),
            class_ids=np.asarray(self.class_ids, dtype=np.int64),
            labels=list(self.labels),
            extra=self.extra,
        )


class WindowBody(_Body):
    """A tile's read window in full-image pixels."""

    col_off: int
    row_off: int
    width: int = Field(ge=0)
    height: int = Field(ge=0)


class TileFailureBody(_Body):
    """One tile that could not be read or that the model rejected."""

    window: WindowBody
    code: str = Field(pattern=_PRINTABLE, max_length=64)
    message: str = Field(max_length=MESSAGE_LIMIT)

    @classmethod
    def from_failure(cls, failure: TileFailure) -> TileFailureBody:
        w = failure.window
        return cls(
            window=WindowBody(col_off=w.col_off, row_off=w.row_off, width=w.width, height=w.height),
            code=failure.code[:64],
            message=failure.message[:MESSAGE_LIMIT],
        )

    def to_failure(self) -> TileFailure:
        w = self.window
        return TileFailure(Window(w.col_off, w.row_off, w.width, w.height), self.code, self.message)


class MemberBody(_Body):
    """What became of one photo of a multi-photo item."""

    image_idx: int = Field(ge=0)
    width: int = Field(default=0, ge=0)
    height: int = Field(default=0, ge=0)
    location: tuple[float, float] | None = None
    error_code: str | None = Field(default=None, pattern=_PRINTABLE, max_length=64)
    error: str | None = Field(default=None, max_length=MESSAGE_LIMIT)

    @classmethod
    def from_outcome(cls, outcome: MemberOutcome) -> MemberBody:
        return cls(
            image_idx=outcome.image_idx,
            width=outcome.width,
            height=outcome.height,
            location=outcome.location,
            error_code=None if outcome.error_code is None else outcome.error_code[:64],
            error=None if outcome.error is None else outcome.error[:MESSAGE_LIMIT],
        )

    def to_outcome(self) -> MemberOutcome:
        return MemberOutcome(
            self.image_idx, self.width, self.height, self.location, self.error_code, self.error
        )


class CompleteBody(_Body):
    features: FeaturesBody = Field(default_factory=FeaturesBody)
    n_tiles: int = Field(ge=0, le=2**31)
    worker: str = Field(default="", pattern=_PRINTABLE, max_length=255)
    tile_failures: list[TileFailureBody] = Field(
        default_factory=list,
        max_length=10_000,
        description="Tiles that failed alone; their owned features are missing.",
    )

    @model_validator(mode="after")
    def _failures_fit(self) -> CompleteBody:
        if len(self.tile_failures) > self.n_tiles:
            raise ValueError("more tile_failures than n_tiles")
        return self

    members: list[MemberBody] = Field(
        default_factory=list, max_length=1024, description="Photos of a multi-photo item."
    )
    crops: list[Annotated[str, Field(pattern=_PRINTABLE, max_length=255)]] = Field(
        default_factory=list,
        max_length=100_000,
        description="The keys of the detections a crop item cropped.",
    )

    def failures(self) -> tuple[TileFailure, ...]:
        return tuple(f.to_failure() for f in self.tile_failures)

    def outcomes(self) -> tuple[MemberOutcome, ...]:
        return tuple(m.to_outcome() for m in self.members)


class CompleteReply(_Body):
    recorded: bool = Field(description="False when the item was recorded before (a duplicate).")


class ErrorBody(_Body):
    code: str = Field(pattern=_PRINTABLE, max_length=64)
    message: str = Field(max_length=4000)


class FailBody(_Body):
    error: ErrorBody
    retryable: bool = False
    worker: str = Field(default="", pattern=_PRINTABLE, max_length=255)


class ServedModelBody(_Body):
    """A model a worker serves: its task, classes, backend and spec."""

    name: str = Field(pattern=_MODEL_NAME)
    task: str = Field(pattern=r"^[a-z]{1,32}$")
    classes: list[str] = Field(default_factory=list, max_length=100_000)
    backend: str = Field(default="", pattern=_PRINTABLE, max_length=64)
    spec: str = Field(default="", pattern=_PRINTABLE, max_length=1000)


class HeartbeatBody(_Body):
    id: str = Field(pattern=_PRINTABLE, min_length=1, max_length=128)
    host: str = Field(pattern=_PRINTABLE, max_length=255)
    pid: int = Field(ge=0, le=2**31)
    version: str = Field(pattern=_PRINTABLE, max_length=64)
    models: list[str] = Field(max_length=32)
    leases_held: int = Field(ge=0, le=1_000_000)
    tiles_done: int = Field(ge=0, le=2**62)
    regions_done: int = Field(ge=0, le=2**62)
    tiles_per_second: float = Field(ge=0.0, le=1e9)
    gpu: str | None = Field(default=None, pattern=_PRINTABLE, max_length=255)
    served: list[ServedModelBody] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _names(self) -> HeartbeatBody:
        bad = [m for m in self.models if not re.match(_MODEL_NAME, m)]
        if bad:
            raise ValueError(f"model names are letters, digits, '-' and '_': {bad}")
        return self

    @classmethod
    def from_report(cls, report: WorkerReport) -> HeartbeatBody:
        return cls(
            id=report.id,
            host=report.host,
            pid=report.pid,
            version=report.version,
            models=list(report.models),
            leases_held=report.leases_held,
            tiles_done=report.tiles_done,
            regions_done=report.regions_done,
            tiles_per_second=report.tiles_per_second,
            gpu=report.gpu,
            served=[
                ServedModelBody(
                    name=m.name,
                    task=m.task,
                    classes=list(m.classes),
                    backend=m.backend,
                    spec=m.spec,
                )
                for m in report.served
            ],
        )

    def to_report(self) -> WorkerReport:
        return WorkerReport(
            id=self.id,
            host=self.host,
            pid=self.pid,
            version=self.version,
            models=tuple(self.models),
            leases_held=self.leases_held,
            tiles_done=self.tiles_done,
            regions_done=self.regions_done,
            tiles_per_second=self.tiles_per_second,
            gpu=self.gpu,
            served=tuple(
                ServedModel(m.name, m.task, tuple(m.classes), m.backend, m.spec)
                for m in self.served
            ),
        )
