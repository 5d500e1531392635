"""Antenna (AMI camera-trap platform) pipeline requests, mapped to tilerunner job documents.

Antenna sends a processing service ``POST /process`` with a ``PipelineRequest`` and reads a
``PipelineResultsResponse`` (RolnickLab/antenna, ``ami/ml/schemas.py``): the pipeline slug,
``source_images`` ``[{id, url}]``, optional ``detections`` to re-process and a free ``config``
whose keys "are defined by the pipeline in the processing service". Antenna's request carries
no project, job or callback fields; tilerunner, acting as the processing service, therefore
publishes these ``config`` keys:

==================  ==========================================================================
``callback_url``    where the result is POSTed when the job finishes (style ``antenna``)
``callback_token``  sent as ``Authorization: Token <token>``, as Antenna's API expects
``callback_secret`` signs the delivery (16+ characters); a random one when absent
``tile_size``       ``tiling.tile_size`` (default 512)
``tile_overlap``    ``tiling.overlap`` (default 64)
==================  ==========================================================================

Every other ``config`` entry becomes a stage parameter, except keys starting with ``request_``,
which Antenna's schema says processing services must ignore. The callback body is Antenna's
``PipelineResultsResponse``, built by :func:`callback_body`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs.compat.common import (
    ModelMap,
    describe,
    refuse,
    rename,
    resolve_stage,
    tiling,
)
from tilerunner.jobs.spec import CallbackSpec

__all__ = [
    "CONFIG_KEYS",
    "PipelineRequest",
    "callback_body",
    "parse_request",
    "peer_field",
    "peer_fields",
    "results_response",
    "to_job_document",
]

CONFIG_KEYS = ("callback_url", "callback_token", "callback_secret", "tile_size", "tile_overlap")
_IGNORED_PREFIX = "request_"  # Antenna: "Such parameters need to be ignored ... in the service"


class _Antenna(BaseModel):
    # Antenna sends ids as strings (str(pk)); numbers are taken as their text.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class SourceImage(_Antenna):
    id: str = Field(min_length=1)
    url: str = Field(min_length=1)


class BoundingBox(_Antenna):
    x1: float
    y1: float
    x2: float
    y2: float


class AlgorithmReference(_Antenna):
    name: str
    key: str


class DetectionRequest(_Antenna):
    source_image: SourceImage
    bbox: BoundingBox | None = None
    crop_image_url: str | None = None
    algorithm: AlgorithmReference


class PipelineRequest(_Antenna):
    """Antenna's ``PipelineRequest`` (``ami/ml/schemas.py``)."""

    pipeline: str = Field(min_length=1)
    source_images: list[SourceImage] = Field(min_length=1)
    detections: list[DetectionRequest] | None = None
    config: dict[str, JsonValue] | None = None


def parse_request(document: Mapping[str, Any] | str | bytes) -> PipelineRequest:
    """Validate an Antenna pipeline request; the error names the field as Antenna spells it."""
    try:
        if isinstance(document, str | bytes):
            return PipelineRequest.model_validate_json(document)
        return PipelineRequest.model_validate(document)
    except ValidationError as error:
        raise InvalidRequestError(describe(error, "Antenna pipeline request")) from None


def peer_fields(request: PipelineRequest) -> dict[str, Any]:
    """What Antenna identifies the work by: the pipeline slug and the source images."""
    images = [image.model_dump() for image in request.source_images]
    return {"pipeline": request.pipeline, "source_images": images}


def peer_field(field: str) -> str:
    """A field of the mapped job document (``sources[2].url``), as Antenna spells it."""
    table = (
        (r"^sources", "source_images"),
        (r"^tiling\.tile_size$", "config.tile_size"),
        (r"^callback\.url$", "config.callback_url"),
    )
    return rename(field, table)


def to_job_document(
    request: PipelineRequest | Mapping[str, Any], *, models: ModelMap | None = None
) -> dict[str, Any]:
    """The native job document for an Antenna pipeline request.

    ``models`` maps pipeline slugs to the model (or stages) that run them here; without it the
    slug itself must name a model that workers serve. The job's name is the slug, which the
    callback reports back as ``pipeline``. Apart from a random callback secret when the request
    names none, the mapping is pure.
    """
    if not isinstance(request, PipelineRequest):
        request = parse_request(request)
    if request.detections:
        refuse(
            "detections",
            "tilerunner cannot re-process existing detections (a stage that reads another "
            "stage's boxes); send source images only, e.g. turn off "
            "reprocess_existing_detections for this pipeline",
        )
    seen: set[str] = set()
    for i, image in enumerate(request.source_images):
        if image.id in seen:
            refuse(f"source_images[{i}].id", f"{image.id!r} appears twice; ids must be unique")
        seen.add(image.id)
    config = {k: v for k, v in (request.config or {}).items() if v is not None}
    stage = resolve_stage(request.pipeline, "pipeline", models, "detect")
    stage["params"] = {**stage["params"], **_params(config)}
    document: dict[str, Any] = {
        "name": request.pipeline,
        "sources": [{"id": image.id, "url": image.url} for image in request.source_images],
        "pipeline": [stage],
        "tiling": _tiling(config),
    }
    callback = _callback(config)
    if callback is not None:
        document["callback"] = callback
    return document


def _params(config: Mapping[str, JsonValue]) -> dict[str, str | int | float | bool]:
    params: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        if key in CONFIG_KEYS or key.startswith(_IGNORED_PREFIX):
            continue
        if not isinstance(value, str | int | float | bool):
            refuse(f"config.{key}", "stage parameters are strings, numbers or booleans")
        params[key] = value
    return params


def _tiling(config: Mapping[str, JsonValue]) -> dict[str, int]:
    values: dict[str, int] = {}
    for key in ("tile_size", "tile_overlap"):
        value = config.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                refuse(f"config.{key}", "must be a whole number of pixels")
            values[key] = value
    return tiling(
        values.get("tile_size"),
        values.get("tile_overlap"),
        size_field="config.tile_size",
        overlap_field="config.tile_overlap",
    )


def _callback(config: Mapping[str, JsonValue]) -> dict[str, Any] | None:
    url, token, secret = (config.get(k) for k in CONFIG_KEYS[:3])
    for key, value in zip(CONFIG_KEYS[:3], (url, token, secret), strict=True):
        if value is not None and not (isinstance(value, str) and value):
            refuse(f"config.{key}", "must be a non-empty string")
    if url is None:
        if token is not None or secret is not None:
            field = "config.callback_token" if token is not None else "config.callback_secret"
            refuse(field, "needs config.callback_url, the address to send the result to")
        return None
    if isinstance(secret, str) and len(secret) < 16:
        refuse("config.callback_secret", "must be at least 16 characters; or leave it out")
    return {
        "url": url,
        "style": "antenna",
        "token": token,
        "secret": secret if isinstance(secret, str) else secrets.token_urlsafe(24),
    }


def results_response(
    view: Mapping[str, Any], features: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Antenna's ``PipelineResultsResponse`` for a job object (``GET /v1/jobs/{id}``).

    ``features`` are the job's GeoJSON features (or their ``properties``); each becomes a
    detection with one classification (its label and score), both credited to the algorithm
    named after the model, which Antenna must know under that key.
    """
    spec = view.get("spec") or {}
    model = str(spec["pipeline"][0]["model"]) if spec.get("pipeline") else str(view["name"])
    algorithm = {"name": model, "key": model}
    stamps = view.get("timestamps") or {}
    started = float(stamps.get("created_at", 0.0))
    finished = max([started, *(float(t) for t in stamps.values() if t is not None)])
    when = datetime.fromtimestamp(finished, UTC).isoformat()
    detections = []
    for feature in features:
        props = feature.get("properties", feature)
        x0, y0, x1, y1 = (float(v) for v in props["pixel_bbox"])
        scores = props.get("scores") or [props["score"]]
        classification = {
            "classification": str(props["label"]),
            "labels": None,
            "scores": [float(s) for s in scores],
            "logits": None,
            "inference_time": None,
            "algorithm": algorithm,
            "terminal": True,
            "timestamp": when,
        }
        detections.append(
            {
                "source_image_id": str(props["image"]),
                "bbox": {"x1": x0, "y1": y0, "x2": x1, "y2": y1},
                "inference_time": None,
                "algorithm": algorithm,
                "timestamp": when,
                "crop_image_url": None,
                "classifications": [classification],
            }
        )
    errors = [{"error": e["message"], "image_id": e.get("image")} for e in view.get("errors", [])]
    if view.get("error"):
        errors.append({"error": str(view["error"]), "image_id": None})
    return {
        "pipeline": view.get("name") or model,
        "algorithms": {},
        "total_time": finished - started,
        "source_images": [_source(s) for s in spec.get("sources", [])],
        "detections": detections,
        "errors": errors or None,
    }


def callback_body(
    view: Mapping[str, Any],
    spec: CallbackSpec,
    *,
    features: Iterable[Mapping[str, Any]] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Style ``antenna``: the results response as JSON, with the token in
    ``Authorization: Token <token>`` (how Antenna's API authenticates).

    The detections come from ``features``, else from ``view["features"]`` when the caller put
    the job's features there; a job object alone gives a response without detections.
    """
    found = features if features is not None else view.get("features") or ()
    body = json.dumps(results_response(view, found)).encode()
    headers = {"Content-Type": "application/json"}
    if spec.token:
        headers["Authorization"] = f"Token {spec.token}"
    return body, headers


def _source(source: str | Mapping[str, Any]) -> dict[str, str]:
    if isinstance(source, str):
        return {"id": source, "url": source}
    return {"id": str(source.get("id") or source["url"]), "url": str(source["url"])}
