"""Workers: the lease loop, heartbeats and result reporting."""

from tilerunner.worker.context import ImageContext, RegionContexts
from tilerunner.worker.runner import Worker, WorkerOptions

__all__ = ["ImageContext", "RegionContexts", "Worker", "WorkerOptions"]
