"""Submitting a watch's jobs to a remote ``tilerunner serve`` (``watch --api URL --token KEY``).

The watcher's record of what it took stays in its own store (``--store``, a local SQLite file by
default); the jobs go to the API. Exactly once still holds, in two steps: the members of a job
are given its id in the local record first (one transaction), then the job is POSTed with that
id as its ``Idempotency-Key``, and the record notes the submission. A watcher killed between
the two POSTs the same job again after its restart, and the API answers with the job the first
POST made instead of making a second.

A refusal (4xx: a document or source the server's policy refuses, a key without the submit
scope) stops the watcher with the server's message: every later job would be refused alike.
Failures that may pass (no answer, 5xx, 429) are retried by the watch loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tilerunner.errors import (
    AuthenticationError,
    InvalidRequestError,
    PermissionDeniedError,
    RetryableError,
)
from tilerunner.store import Store
from tilerunner.store.watched import WatchedObject
from tilerunner.watch.rolling import job_id_for
from tilerunner.watch.template import JobTemplate

__all__ = ["IDEMPOTENCY_HEADER", "RemoteJobs"]

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"


class RemoteJobs:
    """Makes a watch's jobs through ``POST {api}/v1/jobs``."""

    def __init__(self, store: Store, watch: str, template: JobTemplate, api_url: str,
                 token: str, *, timeout: float = 30.0) -> None:  # fmt: skip
        try:
            import httpx
        except ImportError:
            raise InvalidRequestError(
                "submitting to --api needs httpx: pip install 'tilerunner[client]'"
            ) from None
        self.store = store
        self.watch = watch
        self.template = template
        self.client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        self._http_error: type[Exception] = httpx.HTTPError

    def make(
        self, batches: Sequence[Sequence[WatchedObject]]
    ) -> list[tuple[str, list[WatchedObject]]]:
        """Give each batch its job id in the record, then submit every job recorded but not
        submitted yet (these and any a killed watcher left); returns the server's job id and
        the members of each job submitted."""
        for members in batches:
            self.store.assign_objects(self.watch, job_id_for(self.watch, members), members)
        made = []
        for job_id, members in self.store.unsubmitted_jobs(self.watch).items():
            remote_id = self._post(job_id, members)
            self.store.mark_submitted(self.watch, job_id)
            log.info("job %s (%s): %d object(s) of %s", remote_id, job_id, len(members), self.watch)
            made.append((remote_id, members))
        return made

    def _post(self, job_id: str, members: Sequence[WatchedObject]) -> str:
        document = self.template.spec_for(members, job_id).model_dump(mode="json")
        try:
            reply = self.client.post(
                "/v1/jobs", json=document, headers={IDEMPOTENCY_HEADER: job_id}
            )
        except self._http_error as error:
            raise RetryableError(f"cannot reach {self.client.base_url}: {error}") from None
        if reply.status_code in (408, 429) or reply.status_code >= 500:
            raise RetryableError(f"{self.client.base_url} answered {reply.status_code}")
        if reply.status_code >= 400:
            raise _refusal(reply.status_code, _message(reply))
        return str(reply.json()["id"])

    def close(self) -> None:
        self.client.close()


def _message(reply: Any) -> str:
    try:
        body = reply.json()
    except ValueError:
        return str(reply.text)[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:200]


def _refusal(status: int, message: str) -> Exception:
    text = f"the API refused the job ({status}): {message}"
    if status == 401:
        return AuthenticationError(f"{text}; check --token")
    if status == 403:
        return PermissionDeniedError(f"{text}; the key needs the submit scope")
    return InvalidRequestError(text)
