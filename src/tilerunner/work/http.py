"""A work source over the API: for workers that can only dial out (SLURM jobs, boxes behind a
firewall). Needs only the API URL and a key with the ``worker`` scope.

Lease is a long-poll (the server holds the request until an item arrives or ``wait_seconds``
pass), so an idle worker costs one request per wait, not a busy loop. An API that cannot be
reached, or that answers 5xx, raises :class:`~tilerunner.errors.RetryableError`: the worker loop
backs off and tries again, and leases it could not extend expire and are redelivered. A key
that is refused (401/403) is an :class:`~tilerunner.errors.InvalidRequestError`: retrying
cannot help.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from tilerunner.errors import InvalidRequestError, LeaseLostError, RetryableError, TilerunnerError
from tilerunner.work.items import Assignment, parse_item
from tilerunner.work.results import WorkerReport, WorkResult
from tilerunner.work.wire import (
    CompleteBody,
    CompleteReply,
    ExtendReply,
    FailBody,
    FeaturesBody,
    HeartbeatBody,
    LeaseBody,
    MemberBody,
    TileFailureBody,
)

__all__ = ["HttpWorkSource"]


class _Leased(BaseModel):
    """A leased item as it arrives, before its kind decides how the item is read."""

    lease: str
    model: str
    attempt: int
    expires_at: float
    item: dict[str, Any]


class _LeaseEnvelope(BaseModel):
    items: list[_Leased]


_TIMEOUT = 30.0


class HttpWorkSource:
    """A :class:`~tilerunner.work.source.WorkSource` that talks to ``tilerunner serve``."""

    def __init__(
        self, api_url: str, token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise InvalidRequestError(
                f"--api {api_url!r} must be an http(s):// URL, e.g. https://tilerunner.example"
            )
        if not token:
            raise InvalidRequestError(
                "an API worker needs a key with the worker scope: --token or TILERUNNER_API_TOKEN"
            )
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=_TIMEOUT,
            transport=transport,
            follow_redirects=False,
        )

    def lease(self, models: Sequence[str], max_items: int, wait_seconds: float) -> list[Assignment]:
        body = LeaseBody(models=list(models), max=max_items, wait_seconds=wait_seconds)
        data = self._post("/v1/work/lease", body.model_dump(), timeout=wait_seconds + _TIMEOUT)
        try:
            reply = _LeaseEnvelope.model_validate(data)
        except ValidationError as error:
            raise RetryableError(f"the API's lease answer is malformed: {error}") from None
        # each item by its kind: one this worker does not know says to upgrade it
        return [
            Assignment(i.lease, i.model, i.attempt, i.expires_at, parse_item(i.item))
            for i in reply.items
        ]

    def extend(self, assignment: Assignment) -> Assignment:
        reply = ExtendReply.model_validate(self._post(f"/v1/work/{assignment.token}/extend", {}))
        return Assignment(
            reply.lease, assignment.model, assignment.attempt, reply.expires_at, assignment.item
        )

    def complete(self, assignment: Assignment, result: WorkResult, worker: str) -> bool:
        body = CompleteBody(
            features=FeaturesBody.from_rows(result.rows),
            n_tiles=result.n_tiles,
            worker=worker,
            tile_failures=[TileFailureBody.from_failure(f) for f in result.tile_failures],
            members=[MemberBody.from_outcome(m) for m in result.members],
            crops=list(result.crops),
        )
        data = self._post(f"/v1/work/{assignment.token}/complete", body.model_dump(mode="json"))
        return CompleteReply.model_validate(data).recorded

    def fail(self, assignment: Assignment, error: TilerunnerError, worker: str) -> None:
        body = FailBody.model_validate(
            {
                "error": {"code": error.code, "message": str(error)[:4000]},
                "retryable": isinstance(error, RetryableError),
                "worker": worker,
            }
        )
        self._post(f"/v1/work/{assignment.token}/fail", body.model_dump())

    def heartbeat(self, report: WorkerReport) -> None:
        self._post("/v1/work/heartbeat", HeartbeatBody.from_report(report).model_dump())

    def job_finished(self, job_id: str) -> bool:
        data = self._request("GET", f"/v1/work/jobs/{job_id}/finished", None)
        return bool(data["finished"])

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------ internals
    def _post(self, path: str, body: dict[str, Any], timeout: float = _TIMEOUT) -> Any:
        return self._request("POST", path, body, timeout)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float = _TIMEOUT
    ) -> Any:
        try:
            response = self._client.request(method, path, json=body, timeout=timeout)
        except httpx.HTTPError as error:
            raise RetryableError(
                f"the API is not reachable ({type(error).__name__}: {error})"
            ) from None
        if response.status_code in (401, 403):
            raise InvalidRequestError(
                f"the API refused the worker key ({response.status_code}): use a key with the "
                "worker scope (tilerunner keys create --scope worker)"
            )
        if response.status_code == 409:
            raise LeaseLostError("api", _message(response))
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"the API answered {response.status_code}: {_message(response)}")
        if response.status_code >= 400:
            raise InvalidRequestError(
                f"the API refused {method} {path.split('/v1/work/')[-1][:40]}: "
                f"{response.status_code} {_message(response)}"
            )
        return response.json() if response.content else None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", data))
    return str(data)[:200]
