"""The job document: what ``tilerunner submit job.json`` reads and ``tilerunner run`` builds.

Unknown fields are an error, never ignored, so a typo such as ``"overlapp"`` is reported instead
of silently running with the default.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs.stages import check_stages
from tilerunner.xyz.spec import TileSetSpec
from tilerunner.xyz.thresholds import parse_threshold

__all__ = [
    "CallbackSpec",
    "JobSpec",
    "MergeSpec",
    "OutputSpec",
    "PhotosSpec",
    "SegmentSpec",
    "SourceSpec",
    "StageSpec",
    "TilingSpec",
    "parse_job",
]

Task = Literal["detect", "classify", "segment"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """One source with an explicit id (the id is what output features carry as ``image``)."""

    url: str = Field(min_length=1)
    id: str | None = None


class SegmentSpec(_Strict):
    """What a segment stage writes: one class-id COG on the source's grid (see
    docs/segmentation.md), optionally blended, with probabilities and vectors beside it."""

    output: str = Field(min_length=1, description="The class-id COG (.tif), local or s3://.")
    blend: Literal["none", "linear", "cosine"] = "none"
    probabilities: Literal["none", "uint8", "float32"] = "none"
    vectorize: str | None = Field(default=None, description="Polygons per class (.parquet ...).")
    overwrite: bool = False

    @field_validator("output")
    @classmethod
    def _raster(cls, value: str) -> str:
        if not value.lower().endswith((".tif", ".tiff")):
            raise ValueError(
                f"the segmentation output {value!r} is a raster: give a .tif name "
                "(polygons go to vectorize, e.g. classes.parquet)"
            )
        return value


class StageSpec(_Strict):
    """One pipeline stage: the task and the name of a model that workers serve.

    A later stage of a photo job runs on crops: ``crops_of`` names the earlier detect stage
    (its index in ``pipeline``) whose detections it consumes, ``min_score`` filters those
    detections first and ``crop_padding`` widens each crop by that fraction of the box size.
    """

    task: Task
    model: str = Field(pattern=r"^[A-Za-z0-9_-]{1,60}$")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    crops_of: int | None = Field(default=None, ge=0)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    crop_padding: float = Field(default=0.0, ge=0.0, le=2.0)
    segment: SegmentSpec | None = None

    @model_validator(mode="after")
    def _segment_fields(self) -> StageSpec:
        if self.task == "segment" and self.segment is None:
            raise ValueError(
                'a segment stage needs "segment": {"output": "classes.tif"} '
                "(where the class raster goes)"
            )
        if self.task != "segment" and self.segment is not None:
            raise ValueError(f'"segment" is for segment stages, not {self.task!r}; remove it')
        return self


class PhotosSpec(_Strict):
    """The sources are a photo collection: whole photos, many to a work item, no tiling."""

    group_size: int = Field(default=16, ge=1, le=1024, description="Photos per work item.")
    resize: Literal["letterbox", "resize"] = "letterbox"
    input_size: int | None = Field(
        default=None, ge=16, le=8192, description="Model input edge (else the model's own)."
    )


class TilingSpec(_Strict):
    tile_size: int = Field(default=512, ge=16, le=16384)
    overlap: int = Field(default=64, ge=0)
    region_size: int = Field(default=4096, ge=1)
    bands: list[int] | None = None
    scale: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> TilingSpec:
        if self.overlap >= self.tile_size:
            raise ValueError(
                f"overlap ({self.overlap}) must be smaller than tile_size ({self.tile_size}); "
                "lower --overlap or raise --tile-size"
            )
        return self

    @field_validator("bands")
    @classmethod
    def _bands_positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(b < 1 for b in value)):
            raise ValueError("bands are 1-based band numbers, e.g. [1, 2, 3]")
        return value


class MergeSpec(_Strict):
    method: Literal["nms", "soft-nms", "nmm", "none"] = "nms"
    iou: float = Field(default=0.5, ge=0.0, le=1.0)
    metric: Literal["iou", "ios"] = "iou"
    class_agnostic: bool = False
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


class OutputSpec(_Strict):
    uri: str = Field(min_length=1)
    format: str | None = None
    thresholds: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="CLASS:SCORE: write only the features passing one (map outputs).",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                parse_threshold(text)
            except InvalidRequestError as error:
                raise ValueError(str(error).removeprefix("--threshold ")) from None
        return value


class CallbackSpec(_Strict):
    """Where the job object is POSTed at each final state and at optional progress milestones.

    Every request is signed with ``secret`` (HMAC-SHA256 over the timestamp and the body; see
    docs/callbacks.md). ``style`` chooses the body and headers; ``token`` serves other styles.
    """

    url: str = Field(min_length=1)
    secret: str = Field(default="", validate_default=True, repr=False)
    progress: list[float] | None = Field(default=None, max_length=20)
    style: Literal["tilerunner", "antenna"] = "tilerunner"
    token: str | None = Field(default=None, repr=False)

    @field_validator("secret")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if len(value) < 16:
            raise ValueError(
                "a callback needs a secret of at least 16 characters, which signs every "
                'delivery; add "secret" (for example 32 random characters)'
            )
        return value

    @field_validator("progress")
    @classmethod
    def _fractions(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(not 0.0 < f < 1.0 for f in value)):
            raise ValueError(
                "progress milestones are fractions of the tiles done, between 0 and 1 "
                "(exclusive), e.g. [0.25, 0.5, 0.75]"
            )
        return None if value is None else sorted(set(value))


class JobSpec(_Strict):
    name: str | None = None
    sources: list[str | SourceSpec] = Field(default_factory=list)
    tiles: TileSetSpec | None = Field(
        default=None, description="XYZ map tiles to run instead of sources (docs/xyz-tiles.md)."
    )
    pipeline: list[StageSpec] = Field(min_length=1)
    tiling: TilingSpec = Field(default_factory=TilingSpec)
    merge: MergeSpec = Field(default_factory=MergeSpec)
    outputs: list[OutputSpec] = Field(default_factory=list)
    callback: CallbackSpec | None = None
    photos: PhotosSpec | None = None

    @model_validator(mode="after")
    def _sources_or_tiles(self) -> JobSpec:
        if bool(self.sources) == (self.tiles is not None):
            raise ValueError(
                "name what to run: 'sources' (images) or 'tiles' (XYZ map tiles), one of them"
            )
        if self.tiles is not None and self.pipeline[0].task == "segment":
            raise ValueError("tile jobs run detect or classify models, not segment")
        return self

    @model_validator(mode="after")
    def _stages(self) -> JobSpec:
        check_stages(self.pipeline, photos=self.photos is not None)
        if any(stage.segment is not None for stage in self.pipeline) and (
            len(self.sources) > 1 or self.photos is not None
        ):
            raise ValueError(
                "a segment job writes one raster on one source's grid; submit one job per source"
            )
        return self

    def fingerprint(self) -> str:
        """A stable hash of the document: the same command resumes the same job."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def public_dump(self) -> dict[str, Any]:
        """The document as JSON data, with ``callback.secret`` and ``callback.token`` blanked."""
        data = self.model_dump(mode="json")
        callback = data.get("callback")
        if callback:
            callback["secret"] = ""
            if callback.get("token") is not None:
                callback["token"] = ""
        return data

    def source_pairs(self) -> list[str | tuple[str, str]]:
        """Sources in the form :func:`tilerunner.imagery.expand_sources` takes."""
        return [s if isinstance(s, str) else (s.id or s.url, s.url) for s in self.sources]


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "job"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        parts.append(f"{where}: {message}")
    return "invalid job document: " + "; ".join(parts)


def parse_job(document: dict[str, Any] | str | bytes) -> JobSpec:
    """Validate a job document (dict or JSON text); InvalidRequestError says what to fix."""
    try:
        if isinstance(document, str | bytes):
            return JobSpec.model_validate_json(document)
        return JobSpec.model_validate(document)
    except ValidationError as error:
        raise InvalidRequestError(_describe(error)) from None
