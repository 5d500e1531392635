"""Workers: the lease loop, heartbeat and result reporting over any work source."""

from tilerunner.worker.readers import ReaderCache
from tilerunner.worker.runner import Worker, WorkerOptions

__all__ = ["ReaderCache", "Worker", "WorkerOptions"]
