"""``/v1/jobs``: submit, list, get, cancel, events, errors and results of a project's jobs.

Submitting and cancelling need the ``submit`` scope, everything else ``read``. A key sees only
its own project: another project's job answers 404, exactly like a missing one, and never
appears in a listing. Listing pages with an opaque cursor that encodes the last job's
(created_at, id), so pages stay stable while new jobs arrive.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from starlette.responses import Response as StarletteResponse

from tilerunner.api.cursors import pack_cursor, unpack_cursor
from tilerunner.api.deps import (
    QueueForDep,
    ReadCaller,
    SettingsDep,
    StoreDep,
    SubmitCaller,
    job_of,
)
from tilerunner.api.photo_results import NEXT_CURSOR_HEADER, photo_results
from tilerunner.api.results import (
    ResultFilter,
    ResultFormat,
    filter_table,
    label_set,
    parse_bbox,
    result_response,
)
from tilerunner.api.schemas import (
    Event,
    Job,
    JobErrorItem,
    JobList,
    RetryReport,
    job_from_view,
    job_summary,
)
from tilerunner.coordinator import accept_job, cancel_job, job_results, job_view, retry_failed
from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JobSpec, JobState, parse_job
from tilerunner.security.urls import check_job_document
from tilerunner.store import Store

PARTIAL_HEADER = "X-Tilerunner-Partial"
# a photo job's results are final once aggregated, as a raster job's
_AGGREGATED = frozenset({JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED})

__all__ = ["decode_cursor", "encode_cursor", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def encode_cursor(created_at: float, job_id: str) -> str:
    return pack_cursor([created_at, job_id])


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (created_at, id) a cursor encodes; a clear error for a cursor we did not make."""
    value = unpack_cursor(cursor)
    if isinstance(value, list) and len(value) == 2:
        created_at, job_id = value
        if isinstance(created_at, int | float) and isinstance(job_id, str):
            return float(created_at), job_id
    raise InvalidRequestError(
        f"invalid cursor {cursor!r}; pass the next_cursor of the previous page unchanged"
    )


def _view(store: Store, job_id: str) -> Job:
    view = job_view(store, job_id)
    assert view is not None  # job_of checked that it exists
    return job_from_view(view)


@router.post("", status_code=202, response_model=Job)
def submit(
    caller: SubmitCaller,
    store: StoreDep,
    settings: SettingsDep,
    document: Annotated[dict[str, Any], Body(description="A job document (docs/job-document.md).")],
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Submitting again with the same key answers with the job it made.",
        ),
    ] = None,
) -> Job:
    """Validate a job document and accept it in the key's project: 202 with the job in
    ``planning``; the coordinator opens its images and queues its regions (``queued``).

    With an ``Idempotency-Key``, the job's id is derived from the project and the key, so a
    client that retries after losing the answer gets the job it made, never a second one.
    """
    spec = parse_job(document)
    check_job_document(spec, settings.url_policy())  # sources, outputs, callback: allowed?
    job_id = accept_job(
        store, spec, project=caller.project, job_id=_idempotent_id(caller.project, idempotency_key)
    )
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return _view(store, job_id)


def _idempotent_id(project: str, key: str | None) -> str | None:
    if key is None:
        return None
    digest = hashlib.sha256(f"{project}\0{key}".encode()).hexdigest()
    return f"job-i{digest[:15]}"


@router.get("", response_model=JobList)
def list_jobs(
    caller: ReadCaller,
    store: StoreDep,
    status: JobState | None = None,
    project: Annotated[str | None, Query(description="Only the key's own project.")] = None,
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JobList:
    """The project's jobs, newest first, filtered by status and name, paged by cursor."""
    if project is not None and project != caller.project:
        return JobList(jobs=[], next_cursor=None)  # another project's jobs do not exist here
    after = decode_cursor(cursor) if cursor is not None else None
    rows = store.list_jobs(limit + 1, project=caller.project, status=status, name=name, after=after)
    more = len(rows) > limit
    page = rows[:limit]
    last = page[-1] if more else None
    return JobList(
        jobs=[job_summary(j) for j in page],
        next_cursor=None if last is None else encode_cursor(last.created_at, last.id),
    )


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, caller: ReadCaller, store: StoreDep) -> Job:
    """One job: status, timestamps, counts, progress, ETA, errors and outputs."""
    job_of(store, caller, job_id)
    return _view(store, job_id)


@router.post("/{job_id}/cancel", response_model=Job)
def cancel(job_id: str, caller: SubmitCaller, store: StoreDep) -> Job:
    """Cancel a job, keeping what finished: ``cancelling`` until its workers let go (one
    lease period), then ``cancelled``; a job still planning is cancelled at once. A finished
    job stays as it is."""
    job_of(store, caller, job_id)
    cancel_job(store, job_id)
    return _view(store, job_id)


@router.post("/{job_id}/retry", response_model=RetryReport)
def retry(
    job_id: str, caller: SubmitCaller, store: StoreDep, queue_for: QueueForDep
) -> RetryReport:
    """Retry what failed (``tilerunner queue requeue``): dead-lettered regions whole, and just
    the tiles that failed alone; the job reopens and is aggregated again."""
    job_of(store, caller, job_id)
    done = retry_failed(store, queue_for, job_id)
    return RetryReport(
        regions=done.regions, tiles=done.tiles, photos=done.photos, job=_view(store, job_id)
    )


@router.get("/{job_id}/events", response_model=list[Event])
def events(job_id: str, caller: ReadCaller, store: StoreDep) -> list[Event]:
    """The job's timeline, oldest first."""
    job_of(store, caller, job_id)
    return [Event.model_validate(e) for e in store.events(job_id)]


@router.get("/{job_id}/errors", response_model=list[JobErrorItem])
def errors(job_id: str, caller: ReadCaller, store: StoreDep) -> list[JobErrorItem]:
    """Typed errors: failed images, failed regions and tiles that failed alone."""
    job_of(store, caller, job_id)
    return [JobErrorItem.model_validate(e, from_attributes=True) for e in store.errors(job_id)]


@router.get(
    "/{job_id}/results",
    response_class=StarletteResponse,
    responses={
        200: {
            "description": "The merged features, streamed (a photo job: its records per photo, "
            f"a page at a time, the next page's cursor in {NEXT_CURSOR_HEADER}). While the job "
            f"runs they are those of the finished images and regions so far, and "
            f"{PARTIAL_HEADER} is true.",
            "content": {
                "application/geo+json": {},
                "application/vnd.apache.parquet": {},
                "text/csv": {},
                "application/x-ndjson": {},
            },
        }
    },
)
def results(
    job_id: str,
    caller: ReadCaller,
    store: StoreDep,
    settings: SettingsDep,
    format: Annotated[
        ResultFormat | None,
        Query(
            description="geojson (default), geoparquet or csv; photo jobs: jsonl (default), "
            "csv or geojson."
        ),
    ] = None,
    min_score: Annotated[float | None, Query(ge=0.0)] = None,
    label: Annotated[list[str] | None, Query(description="Repeatable; any of them.")] = None,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Photo jobs: photos a page.")] = 100,
    cursor: Annotated[
        str | None, Query(description=f"Photo jobs: the {NEXT_CURSOR_HEADER} of the last page.")
    ] = None,
) -> StarletteResponse:
    """The job's merged features as GeoJSON, GeoParquet or CSV, filtered; a photo job's
    records per photo as JSON Lines, CSV or GeoJSON, paged."""
    job = job_of(store, caller, job_id)
    where = ResultFilter(
        min_score=min_score,
        labels=label_set(label),
        bbox=None if bbox is None else parse_bbox(bbox),
    )
    if JobSpec.model_validate(job.spec).photos is not None:
        response = photo_results(store, job_id, format, where, limit, cursor)
        partial = JobState(job.status) not in _AGGREGATED
    else:
        fmt = format or ResultFormat.GEOJSON
        if fmt is ResultFormat.JSONL:
            raise InvalidRequestError(
                "format=jsonl is for photo jobs; ask for geojson, geoparquet or csv"
            )
        found = job_results(store, job_id, settings.gdal_env())
        response = result_response(filter_table(found.table, where), fmt, job_id)
        partial = found.partial
    response.headers[PARTIAL_HEADER] = "true" if partial else "false"
    return response
