"""OversightML (OSML) ModelRunner image requests, mapped to tilerunner job documents.

The request is the ``ImageRequest`` message that OSML clients put on ModelRunner's SQS queue
(awslabs/osml-model-runner: ``MODELRUNNER_API.md`` and ``api/image_request.py``). Field names,
defaults and accepted values follow ModelRunner's parser:

* ``imageUrls``: ModelRunner reads only the first URL, so a second one is refused here rather
  than dropped;
* tiles: ``imageProcessorTileSize`` 1024 and ``imageProcessorTileOverlap`` 50 by default;
* ``postProcessing``: at most one ``FEATURE_DISTILLATION`` step, ``NMS`` (IoU 0.75 by default,
  per class, also when the field is absent) or Gaussian ``SOFT_NMS``;
* an ``S3`` output writes ``s3://<bucket>/<prefix>/<jobId>.geojson`` (``os.path.join(prefix,
  jobId + ".geojson")`` in ModelRunner's sink); ``outputBucket`` + ``outputPrefix`` is the legacy
  spelling of one S3 output, used only when ``outputs`` is empty.

What tilerunner cannot do is refused with the field named, never ignored: Kinesis outputs, IAM
roles (tilerunner reads and writes with its own credentials), ``regionOfInterest`` and
``featureProperties``. Unknown fields are errors too (ModelRunner ignores them silently).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs.compat.common import (
    ModelMap,
    describe,
    refuse,
    rename,
    resolve_stage,
    tiling,
)
from tilerunner.merging import MergeParams

__all__ = [
    "ImageRequest",
    "parse_request",
    "peer_field",
    "peer_fields",
    "to_job_document",
]

#: The width of the Gaussian decay of tilerunner's soft-NMS; the job document has no field
#: for it yet, so an OSML ``sigma`` must equal it.
SOFT_NMS_SIGMA = MergeParams.sigma
_TAGS = frozenset({"S3", "Kinesis", "NMS", "SOFT_NMS"})
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")  # what boto3 takes as a bucket name


def _bucket_name(value: str) -> str:
    if not _BUCKET_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a bucket name; give the name only (not an ARN or URL)")
    return value


_BUCKET = Annotated[str, AfterValidator(_bucket_name)]
_ROLE = "tilerunner reads images and writes results with its own credentials and cannot assume"


class _Osml(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)


class ImageProcessor(_Osml):
    name: str = Field(min_length=1)
    type: Literal["SM_ENDPOINT", "HTTP_ENDPOINT"] = "SM_ENDPOINT"
    assumed_role: str | None = None


class S3Output(_Osml):
    type: Literal["S3"]
    bucket: _BUCKET
    prefix: str
    role: str | None = None


class KinesisOutput(_Osml):
    type: Literal["Kinesis"]
    stream: str
    batch_size: int | None = None
    assumed_role: str | None = None


class NmsAlgorithm(_Osml):
    algorithm_type: Literal["NMS"]
    iou_threshold: float = Field(default=0.75, ge=0.0, le=1.0)


class SoftNmsAlgorithm(_Osml):
    algorithm_type: Literal["SOFT_NMS"]
    iou_threshold: float = Field(default=0.75, ge=0.0, le=1.0)
    skip_box_threshold: float = Field(default=0.0001, ge=0.0, le=1.0)
    sigma: float = Field(default=0.1, gt=0.0)


class PostProcessing(_Osml):
    step: Literal["FEATURE_DISTILLATION"]
    algorithm: Annotated[NmsAlgorithm | SoftNmsAlgorithm, Field(discriminator="algorithm_type")]


class ImageRequest(_Osml):
    """An OSML ModelRunner ``ImageRequest`` (camelCase on the wire)."""

    job_id: str = Field(min_length=1)
    job_name: str | None = None
    image_urls: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    outputs: list[Annotated[S3Output | KinesisOutput, Field(discriminator="type")]] | None = None
    output_bucket: _BUCKET | None = None
    output_prefix: str | None = None
    image_processor: ImageProcessor
    image_processor_parameters: dict[str, str | int | float | bool] | None = None
    image_processor_tile_size: int = 1024
    image_processor_tile_overlap: int = 50
    image_processor_tile_format: Literal["NITF", "JPEG", "PNG", "GTIFF"] | None = None
    image_processor_tile_compression: Literal["NONE", "JPEG", "J2K", "LZW"] | None = None
    image_read_role: str | None = None
    region_of_interest: str | None = None
    feature_properties: list[dict[str, Any]] | None = None
    post_processing: list[PostProcessing] | None = None


def parse_request(document: Mapping[str, Any] | str | bytes) -> ImageRequest:
    """Validate an OSML image request; the error names the field in OSML's spelling."""
    try:
        if isinstance(document, str | bytes):
            return ImageRequest.model_validate_json(document)
        return ImageRequest.model_validate(document)
    except ValidationError as error:
        raise InvalidRequestError(describe(error, "OSML image request", _TAGS)) from None


def peer_fields(request: ImageRequest) -> dict[str, Any]:
    """The OSML ids a client looks for in the answer: ``jobId`` and ``jobName``."""
    return {"jobId": request.job_id, "jobName": request.job_name}


def peer_field(field: str, request: ImageRequest) -> str:
    """A field of the mapped job document (``outputs[0].uri``), as the request spells it."""
    output = r"outputs[\1].bucket" if request.outputs else "outputBucket"
    table = (
        (r"^sources", "imageUrls"),
        (r"^tiling\.tile_size$", "imageProcessorTileSize"),
        (r"^outputs\[(\d+)\]\.uri$", output),
    )
    return rename(field, table)


def to_job_document(
    request: ImageRequest | Mapping[str, Any], *, models: ModelMap | None = None
) -> dict[str, Any]:
    """The native job document for an OSML image request (pure; nothing is read or written).

    ``models`` maps ``imageProcessor.name`` (a SageMaker endpoint name or an HTTP endpoint URL)
    to the model workers serve; without it the name itself must be a tilerunner model name.
    """
    if not isinstance(request, ImageRequest):
        request = parse_request(request)
    if len(request.image_urls) > 1:
        refuse("imageUrls[1]", "ModelRunner processes one image per request; send one per image")
    if request.image_read_role:
        refuse("imageReadRole", f"{_ROLE} a role; remove it and grant tilerunner read access")
    if request.image_processor.assumed_role:
        refuse("imageProcessor.assumedRole", f"{_ROLE} a role to call a model; remove it")
    if request.region_of_interest:
        refuse("regionOfInterest", "tilerunner processes whole images; remove it or crop the image")
    if request.feature_properties:
        refuse("featureProperties", "tilerunner cannot add properties to features; remove them")
    stage = resolve_stage(request.image_processor.name, "imageProcessor.name", models, "detect")
    stage["params"] = {**stage["params"], **(request.image_processor_parameters or {})}
    return {
        "name": request.job_name or request.job_id,
        "sources": [request.image_urls[0]],
        "pipeline": [stage],
        "tiling": tiling(
            request.image_processor_tile_size,
            request.image_processor_tile_overlap,
            size_field="imageProcessorTileSize",
            overlap_field="imageProcessorTileOverlap",
        ),
        "merge": _merge(request.post_processing or []),
        "outputs": _outputs(request),
    }


def _merge(steps: list[PostProcessing]) -> dict[str, Any]:
    if len(steps) > 1:
        refuse("postProcessing[1]", "ModelRunner takes one FEATURE_DISTILLATION step; keep one")
    if not steps:
        return {"method": "nms", "iou": NmsAlgorithm.model_fields["iou_threshold"].default}
    algorithm = steps[0].algorithm
    if isinstance(algorithm, NmsAlgorithm):
        return {"method": "nms", "iou": algorithm.iou_threshold}
    if algorithm.sigma != SOFT_NMS_SIGMA:
        refuse(
            "postProcessing[0].algorithm.sigma",
            f"tilerunner's soft-NMS uses sigma {SOFT_NMS_SIGMA} (ModelRunner's default is 0.1); "
            f"set sigma to {SOFT_NMS_SIGMA} or use NMS",
        )
    return {
        "method": "soft-nms",
        "iou": algorithm.iou_threshold,
        "min_score": algorithm.skip_box_threshold,
    }


def _outputs(request: ImageRequest) -> list[dict[str, Any]]:
    key = posixpath.basename(request.job_id) + ".geojson"
    if not request.outputs:
        bucket, prefix = request.output_bucket, request.output_prefix
        if bucket is None and prefix is None:
            return []
        if bucket is None or prefix is None:
            field = "outputBucket" if bucket is None else "outputPrefix"
            refuse(field, "outputBucket and outputPrefix go together; set both, or use outputs")
        return [_s3(bucket, prefix, key)]
    documents = []
    for i, output in enumerate(request.outputs):
        if isinstance(output, KinesisOutput):
            refuse(
                f"outputs[{i}].type",
                "Kinesis streams are not a tilerunner output; remove it and read the features "
                "from an S3 output or GET /v1/jobs/{id}/results",
            )
        if output.role:
            refuse(f"outputs[{i}].role", f"{_ROLE} a role; remove it and grant write access")
        documents.append(_s3(output.bucket, output.prefix, key))
    return documents


def _s3(bucket: str, prefix: str, key: str) -> dict[str, Any]:
    return {"uri": f"s3://{bucket}/{posixpath.join(prefix, key)}", "format": "geojson"}
