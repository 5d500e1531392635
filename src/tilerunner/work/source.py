"""Where a worker gets its work: the one contract its loop sees, and the in-cluster source.

:class:`WorkSource` is all the worker loop, its heartbeat and its committer use; they import
neither the store nor the broker. :class:`DirectWorkSource` calls a :class:`WorkService` in the
worker's own process (store + broker URLs, inside a cluster); ``HttpWorkSource``
(:mod:`tilerunner.work.http`) reaches the same service through the API (a worker that can only
dial out).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from tilerunner.errors import RetryableError, TilerunnerError
from tilerunner.work.items import Assignment
from tilerunner.work.results import WorkerReport, WorkResult
from tilerunner.work.service import WorkService

__all__ = ["DirectWorkSource", "WorkSource"]


class WorkSource(Protocol):
    """Lease, extend, complete and fail work items; report the worker; know when a job ended."""

    def lease(
        self, models: Sequence[str], max_items: int, wait_seconds: float
    ) -> list[Assignment]: ...

    def extend(self, assignment: Assignment) -> Assignment:
        """A renewed assignment; raises LeaseLostError when another holder has the item now."""
        ...

    def complete(self, assignment: Assignment, result: WorkResult, worker: str) -> bool:
        """Record the result once and release the item; False for a duplicate delivery."""
        ...

    def fail(self, assignment: Assignment, error: TilerunnerError, worker: str) -> None: ...

    def heartbeat(self, report: WorkerReport) -> None: ...

    def job_finished(self, job_id: str) -> bool: ...

    def close(self) -> None: ...


class DirectWorkSource:
    """A :class:`WorkSource` over a :class:`WorkService` in this process."""

    def __init__(self, service: WorkService) -> None:
        self.service = service
        self._stop = threading.Event()

    def lease(self, models: Sequence[str], max_items: int, wait_seconds: float) -> list[Assignment]:
        return self.service.lease(models, max_items, wait_seconds, stop=self._stop)

    def extend(self, assignment: Assignment) -> Assignment:
        return self.service.extend(assignment.token)

    def complete(self, assignment: Assignment, result: WorkResult, worker: str) -> bool:
        return self.service.complete(assignment.token, result, worker)

    def fail(self, assignment: Assignment, error: TilerunnerError, worker: str) -> None:
        self.service.fail(
            assignment.token,
            error.code,
            str(error),
            retryable=isinstance(error, RetryableError),
            worker=worker,
        )

    def heartbeat(self, report: WorkerReport) -> None:
        self.service.heartbeat(report)

    def job_finished(self, job_id: str) -> bool:
        return self.service.job_finished(job_id)

    def close(self) -> None:
        self._stop.set()
