"""The worker pull protocol: ``/v1/work`` for workers that can only dial out.

Every route needs a key with the ``worker`` scope and goes into the same
:class:`~tilerunner.work.WorkService` a direct worker uses, so attempts, dead-lettering and the
idempotent completion transaction are decided in one place. Lease is a long-poll: the request
waits (without holding a server thread) until an item arrives or ``wait_seconds`` pass. A lease
token that the broker no longer honours (expired and redelivered, or already released) answers
409: the worker drops its result and the current holder's counts.

Worker keys are cluster-wide: a worker leases the work of every project whose model it serves
(as a direct worker with the database URL does), so give them only to machines you trust with
the sources of every job.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from tilerunner.api.deps import require
from tilerunner.broker import LeaseLostError
from tilerunner.security.keys import Scope
from tilerunner.work import WorkResult
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.work.wire import (
    CompleteBody,
    CompleteReply,
    ExtendReply,
    FailBody,
    HeartbeatBody,
    LeaseBody,
    LeasedItem,
    LeaseReply,
)

__all__ = ["router"]

_POLL = 0.25
_lock = threading.Lock()

router = APIRouter(
    prefix="/v1/work",
    tags=["work"],
    dependencies=[Depends(require(Scope.WORKER))],
    responses={409: {"description": "The lease is no longer held; drop the result."}},
)


def _service(request: Request) -> WorkService:
    """The app's work service (built once, from the app's store, queues and settings)."""
    state = request.app.state
    with _lock:
        service: WorkService | None = getattr(state, "work", None)
        if service is None:
            settings = state.settings
            service = WorkService(
                state.store,
                state.queue_for,
                WorkServiceOptions(
                    lease_seconds=settings.lease_seconds,
                    max_attempts=settings.max_attempts,
                    verify_leases=True,
                ),
            )
            state.work = service
    return service


Service = Annotated[WorkService, Depends(_service)]


def _lost(error: LeaseLostError) -> HTTPException:
    return HTTPException(409, str(error))


@router.post("/lease", response_model=LeaseReply)
async def lease(body: LeaseBody, service: Service) -> LeaseReply:
    """Lease up to ``max`` work items of these models, waiting up to ``wait_seconds`` for one."""
    deadline = time.monotonic() + body.wait_seconds
    while True:
        got = await run_in_threadpool(service.lease, body.models, body.max, 0.0)
        if got or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
    return LeaseReply(
        items=[
            LeasedItem(
                lease=a.token,
                model=a.model,
                attempt=a.attempt,
                expires_at=a.expires_at,
                item=a.item,
            )
            for a in got
        ]
    )


@router.post("/{lease}/extend", response_model=ExtendReply)
def extend(lease: str, service: Service) -> ExtendReply:
    """Renew the lease for another lease period; use the returned token from now on."""
    try:
        renewed = service.extend(lease)
    except LeaseLostError as error:
        raise _lost(error) from None
    return ExtendReply(lease=renewed.token, expires_at=renewed.expires_at)


@router.post("/{lease}/complete", response_model=CompleteReply)
def complete(lease: str, body: CompleteBody, service: Service) -> CompleteReply:
    """Record the item's features (once: a duplicate delivery records nothing) and release it."""
    result = WorkResult(
        body.features.to_rows(), body.n_tiles, body.failures(), body.outcomes(), tuple(body.crops)
    )
    try:
        recorded = service.complete(lease, result, body.worker)
    except LeaseLostError as error:
        raise _lost(error) from None
    return CompleteReply(recorded=recorded)


@router.post("/{lease}/fail")
def fail(lease: str, body: FailBody, service: Service) -> dict[str, bool]:
    """Report a failed attempt; ``dead`` is true when it was the last one allowed."""
    try:
        dead = service.fail(lease, body.error.code, body.error.message,
                            retryable=body.retryable, worker=body.worker)  # fmt: skip
    except LeaseLostError as error:
        raise _lost(error) from None
    return {"dead": dead}


@router.post("/heartbeat", status_code=204)
def heartbeat(body: HeartbeatBody, service: Service) -> Response:
    """Register the worker, or refresh it (host, version, models, leases, throughput, GPU)."""
    service.heartbeat(body.to_report())
    return Response(status_code=204)


@router.get("/jobs/{job_id}/finished")
def finished(job_id: str, service: Service) -> dict[str, bool]:
    """Whether every region of a job is done or failed (``worker --until-job``)."""
    return {"finished": service.job_finished(job_id)}
