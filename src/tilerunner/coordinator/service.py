"""The coordinator loop that ``tilerunner serve`` runs: aggregations and repair sweeps.

Safe to run in several processes at once: an aggregation is claimed through its outbox row
(an expiring claim, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), final job states are guarded
transitions, and re-publishing pending regions is deduplicated by message id.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from tilerunner.coordinator.aggregator import process_outbox
from tilerunner.coordinator.planner import QueueFor
from tilerunner.coordinator.sweeper import repair
from tilerunner.errors import QueueError, RetryableError, StoreError
from tilerunner.imagery import GdalEnv
from tilerunner.store import Store

__all__ = ["Coordinator"]

log = logging.getLogger(__name__)


class Coordinator:
    """Runs pending aggregations promptly and sweeps active jobs every ``sweep_seconds``."""

    def __init__(
        self,
        store: Store,
        queue_for: QueueFor,
        *,
        env: GdalEnv | None = None,
        s3_endpoint_url: str | None = None,
        sweep_seconds: float = 30.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.queue_for = queue_for
        self.env = env
        self.s3_endpoint_url = s3_endpoint_url
        self.sweep_seconds = sweep_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"coordinator-{socket.gethostname()}-{os.getpid()}"
        self._last_sweep = 0.0

    def run_once(self) -> int:
        """Aggregate what is pending, sweep if due; returns aggregations run."""
        done = 0
        while process_outbox(self.store, self.owner, self.env, self.s3_endpoint_url) is not None:
            done += 1
        if time.monotonic() - self._last_sweep >= self.sweep_seconds:
            for job_id in self.store.active_jobs():
                published, failed = repair(self.store, self.queue_for, job_id)
                if published or failed:
                    log.info("sweep of %s: %d re-published, %d dead", job_id, published, failed)
            self._last_sweep = time.monotonic()
        return done

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; transient store/broker failures back off and retry."""
        failures = 0
        while not stop.is_set():
            try:
                self.run_once()
                failures = 0
            except (StoreError, QueueError, RetryableError) as error:
                failures += 1
                wait = min(30.0, self.poll_seconds * 2**failures)
                log.warning("coordinator: %s; retrying in %.1f s", error, wait)
                stop.wait(wait)
                continue
            stop.wait(self.poll_seconds)
