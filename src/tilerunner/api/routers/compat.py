"""``/v1/compat``: requests in the formats of peer systems, run as native jobs.

* ``POST /v1/compat/osml/image-requests`` takes an OversightML ModelRunner ``ImageRequest``;
* ``POST /v1/compat/antenna/process`` takes an Antenna ``PipelineRequest`` (``/process`` is the
  path Antenna calls on a processing service).

Each request is validated in the peer's format, mapped to a job document
(:mod:`tilerunner.jobs.compat`) and submitted through the native ``POST /v1/jobs`` handler
itself, so the ``submit`` scope, the caller's project and the URL checks are the same. The answer
is ``202`` with the job object plus the peer's own ids; a refusal is ``422`` naming the field as
the peer spells it. See docs/compat.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field

from tilerunner.api.deps import Caller, SettingsDep, StoreDep, SubmitCaller
from tilerunner.api.routers import jobs
from tilerunner.api.schemas import Job
from tilerunner.errors import RefusedUrlError
from tilerunner.jobs.compat import antenna, osml
from tilerunner.settings import Settings
from tilerunner.store import Store

__all__ = ["AntennaJob", "OsmlJob", "router"]

router = APIRouter(prefix="/v1/compat", tags=["compat"])

_OSML_EXAMPLE = {
    "jobId": "scene-7-run-1",
    "jobName": "scene-7",
    "imageUrls": ["s3://imagery/scene-7.tif"],
    "outputs": [{"type": "S3", "bucket": "results", "prefix": "scene-7/"}],
    "imageProcessor": {"name": "aircraft", "type": "SM_ENDPOINT"},
    "imageProcessorTileSize": 512,
    "imageProcessorTileOverlap": 128,
    "postProcessing": [
        {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.5}}
    ],
}
_ANTENNA_EXAMPLE = {
    "pipeline": "moth-detector",
    "source_images": [{"id": "123", "url": "https://images.example.org/trap-1/123.jpg"}],
    "config": {"callback_url": "https://antenna.example.org/hook", "callback_token": "..."},
}


class OsmlJob(Job):
    """The job object, with the OSML ids of the request."""

    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(alias="jobId")
    job_name: str | None = Field(alias="jobName")


class AntennaSourceImage(BaseModel):
    id: str
    url: str


class AntennaJob(Job):
    """The job object, with the Antenna pipeline slug and source images of the request."""

    pipeline: str
    source_images: list[AntennaSourceImage]


def _submit(
    caller: Caller,
    store: Store,
    settings: Settings,
    document: dict[str, Any],
    response: Response,
    peer_field: Callable[[str], str],
) -> Job:
    """Submit a mapped document through the native handler; URL refusals name the peer field."""
    try:
        return jobs.submit(caller, store, settings, document, response)
    except RefusedUrlError as error:
        reason = str(error).removeprefix(f"{error.field}: ")
        raise RefusedUrlError(peer_field(error.field), reason) from None


@router.post("/osml/image-requests", status_code=202, response_model=OsmlJob)
def osml_image_request(
    caller: SubmitCaller,
    store: StoreDep,
    settings: SettingsDep,
    body: Annotated[
        dict[str, Any],
        Body(description="An OSML ModelRunner ImageRequest.", examples=[_OSML_EXAMPLE]),
    ],
    response: Response,
) -> OsmlJob:
    """Run an OSML image request as a job; the answer carries its ``jobId`` and ``jobName``."""
    request = osml.parse_request(body)
    document = osml.to_job_document(request)
    job = _submit(
        caller,
        store,
        settings,
        document,
        response,
        lambda field: osml.peer_field(field, request),
    )
    return OsmlJob.model_validate({**job.model_dump(), **osml.peer_fields(request)})


@router.post("/antenna/process", status_code=202, response_model=AntennaJob)
def antenna_process(
    caller: SubmitCaller,
    store: StoreDep,
    settings: SettingsDep,
    body: Annotated[
        dict[str, Any],
        Body(description="An Antenna PipelineRequest.", examples=[_ANTENNA_EXAMPLE]),
    ],
    response: Response,
) -> AntennaJob:
    """Run an Antenna pipeline request as a job; the result goes to ``config.callback_url``."""
    request = antenna.parse_request(body)
    document = antenna.to_job_document(request)
    job = _submit(caller, store, settings, document, response, antenna.peer_field)
    return AntennaJob.model_validate({**job.model_dump(), **antenna.peer_fields(request)})
