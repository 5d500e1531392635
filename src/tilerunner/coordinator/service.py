"""The coordinator loop that ``tilerunner serve`` runs: planning, aggregations, callbacks, sweeps.

Safe to run in several processes at once: an aggregation is claimed through its outbox row
(an expiring claim, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), final job states are guarded
transitions, and re-publishing pending regions is deduplicated by message id. Planning a job
accepted by the API (opening its images) is claimed the same way, through its ``plan`` row,
and moves the job ``planning -> queued`` in one guarded transaction. A claim is a
short lease that a background thread extends while the work goes on, so when a coordinator dies
another takes its aggregation over within about ``claim_seconds``. Callbacks are delivered on a
small thread pool (:mod:`tilerunner.coordinator.callbacks`) and never hold the loop up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from tilerunner.coordinator.aggregator import process_outbox
from tilerunner.coordinator.callbacks import CallbackDispatcher, Milestones
from tilerunner.coordinator.cancel import finish_cancelling
from tilerunner.coordinator.planner import QueueFor, process_plans
from tilerunner.coordinator.sweeper import repair
from tilerunner.errors import QueueError, RetryableError, StoreError
from tilerunner.imagery import GdalEnv
from tilerunner.store import Store
from tilerunner.store.outbox import CLAIM_SECONDS

__all__ = ["Coordinator"]

log = logging.getLogger(__name__)


class Coordinator:
    """Runs pending aggregations promptly, delivers callbacks and sweeps active jobs every
    ``sweep_seconds``; progress milestones are checked every ``progress_seconds``."""

    def __init__(
        self,
        store: Store,
        queue_for: QueueFor,
        *,
        env: GdalEnv | None = None,
        s3_endpoint_url: str | None = None,
        sweep_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        claim_seconds: float = CLAIM_SECONDS,
        callbacks: CallbackDispatcher | None = None,
        progress_seconds: float = 5.0,
        lease_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.queue_for = queue_for
        self.env = env
        self.s3_endpoint_url = s3_endpoint_url
        self.sweep_seconds = sweep_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"coordinator-{socket.gethostname()}-{os.getpid()}"
        self.claim_seconds = claim_seconds
        self.callbacks = callbacks or CallbackDispatcher(store, self.owner)
        self.milestones = Milestones(store, every=progress_seconds)
        self.lease_seconds = lease_seconds
        self._last_sweep = 0.0

    def run_once(self) -> int:
        """Plan and aggregate what is pending, start due callbacks, sweep if due; returns
        aggregations run (callbacks started here are delivered in the background:
        ``callbacks.drain``)."""
        done = 0
        self.callbacks.dispatch()
        while (
            process_plans(
                self.store,
                self.queue_for,
                self.owner,
                self.env,
                claim_seconds=self.claim_seconds,
            )
            is not None
        ):
            pass
        while (
            process_outbox(
                self.store,
                self.owner,
                self.env,
                self.s3_endpoint_url,
                claim_seconds=self.claim_seconds,
            )
            is not None
        ):
            done += 1
        self.milestones.check()
        self.callbacks.dispatch()
        if time.monotonic() - self._last_sweep >= self.sweep_seconds:
            finish_cancelling(self.store, self.lease_seconds)
            for job_id in self.store.active_jobs():
                published, failed = repair(self.store, self.queue_for, job_id)
                if published or failed:
                    log.info("sweep of %s: %d re-published, %d dead", job_id, published, failed)
            self._last_sweep = time.monotonic()
        return done

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; transient store/broker failures back off and retry."""
        try:
            self._loop(stop)
        finally:
            self.close()

    def close(self) -> None:
        """Wait for callback deliveries in flight; start no new ones."""
        self.callbacks.close()

    def _loop(self, stop: threading.Event) -> None:
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
