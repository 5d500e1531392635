"""Where a worker gets its work: the one contract its loop sees.

:class:`WorkSource` is all the worker loop, its heartbeat and its committer use; they import
neither the store nor the broker. ``DirectWorkSource`` (:mod:`tilerunner.work.direct`) calls a
``WorkService`` in the worker's own process (store + broker URLs, inside a cluster);
``HttpWorkSource`` (:mod:`tilerunner.work.http`) reaches the same service through the API (a
worker that can only dial out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tilerunner.errors import TilerunnerError
from tilerunner.work.items import Assignment
from tilerunner.work.results import WorkerReport, WorkResult

__all__ = ["WorkSource"]


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
