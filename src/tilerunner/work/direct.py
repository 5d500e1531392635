"""The in-cluster work source: a :class:`~tilerunner.work.service.WorkService` in the worker's
own process, over the store and broker URLs. The only work source that needs the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from tilerunner.errors import RetryableError, TilerunnerError
from tilerunner.work.items import Assignment
from tilerunner.work.results import WorkerReport, WorkResult
from tilerunner.work.service import WorkService

__all__ = ["DirectWorkSource"]


class DirectWorkSource:
    """A :class:`WorkSource` over a :class:`WorkService` in this process; ``release``, when
    given, is called by :meth:`close` to let go of what the source owns (the store's and the
    queues' connections, for a source opened from URLs)."""

    def __init__(self, service: WorkService, release: Callable[[], None] | None = None) -> None:
        self.service = service
        self._stop = threading.Event()
        self._release = release

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
        release, self._release = self._release, None
        if release is not None:
            release()
