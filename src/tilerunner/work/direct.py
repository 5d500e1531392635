"""The in-cluster work source: a :class:`~tilerunner.work.service.WorkService` in the worker's
own process, over the store and broker URLs. The only work source that needs the store."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tilerunner.errors import RetryableError, TilerunnerError
from tilerunner.work.items import Assignment
from tilerunner.work.results import WorkerReport, WorkResult
from tilerunner.work.service import WorkService

__all__ = ["DirectWorkSource"]


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
