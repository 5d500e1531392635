"""The worker: lease regions, stream them through the model, record results, then ack.

One :class:`~tilerunner.pipeline.TilePipeline` per model served, one queue per model. A
heartbeat thread extends every held lease well before it expires; a region is acked only after
its features are committed, so a crash at any point means redelivery, never loss. A failed
attempt is nacked with a back-off; the last allowed attempt marks the region failed in the store
and the queue dead-letters its message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from tilerunner.broker import Lease, LeaseLostError, Queue
from tilerunner.errors import QueueError, RetryableError, StoreError, TilerunnerError
from tilerunner.jobs import JOB_TERMINAL, JobState, RegionMessage
from tilerunner.models import LoadedModel
from tilerunner.pipeline import RegionResult, RegionWork, TilePipeline
from tilerunner.store import Store
from tilerunner.worker.context import RegionContexts

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    batch_size: int = 8
    readers: int = 2
    lease_seconds: float = 60.0
    prefetch: int = 2
    poll_seconds: float = 0.2
    max_attempts: int = 3
    retry_delay: float = 1.0


@dataclass(slots=True)
class _Held:
    lease: Lease
    message: RegionMessage
    model: str
    queue: Queue


class Worker:
    """Serves the given models from their queues until :meth:`stop` (or ``until`` says so)."""

    def __init__(
        self,
        store: Store,
        queues: dict[str, Queue],
        models: dict[str, LoadedModel],
        contexts: RegionContexts,
        options: WorkerOptions = WorkerOptions(),
        *,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.queues = queues
        self.models = models
        self.contexts = contexts
        self.options = options
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tiles_done = 0
        self._regions_done = 0
        self._started = time.monotonic()
        self._pipelines = {
            name: TilePipeline(
                model, self._on_result, batch_size=options.batch_size, readers=options.readers
            )
            for name, model in models.items()
        }

    # ------------------------------------------------------------------ API
    def stop(self) -> None:
        """Stop leasing; regions already leased are finished and recorded."""
        self._stop.set()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Lease and process regions until stopped, or until ``until()`` is true while idle."""
        self._report()  # register at once; the heartbeat thread keeps it fresh
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    got = self._lease_round()
                    if not got and until is not None and not self._held and until():
                        break
                    failures = 0
                except (RetryableError, QueueError, StoreError) as error:
                    # broker or database unreachable: back off and try again; held leases
                    # that cannot be acked expire and are redelivered, so nothing is lost
                    failures += 1
                    wait = min(30.0, self.options.poll_seconds * 2**failures)
                    log.warning("worker %s: %s; retrying in %.1f s", self.id, error, wait)
                    self._stop.wait(wait)
                    continue
                if not got:
                    self._stop.wait(self.options.poll_seconds)
        finally:
            for pipeline in self._pipelines.values():
                pipeline.close()
            self._stop.set()
            beat.join()
            self.contexts.close()
            self._report()

    # -------------------------------------------------------------- leasing
    def _lease_round(self) -> bool:
        got = False
        for name, queue in self.queues.items():
            with self._lock:
                held = sum(1 for h in self._held.values() if h.model == name)
            if held >= self.options.prefetch:
                continue
            for lease in queue.lease(1, self.options.lease_seconds):
                got = True
                self._start(name, queue, lease)
        return got

    def _start(self, model: str, queue: Queue, lease: Lease) -> None:
        message = RegionMessage.decode(lease.body)
        held = _Held(lease, message, model, queue)
        job = self.store.get_job(message.job_id)
        state = self.store.region_state(message.job_id, message.image_idx, message.region_idx)
        if job is None or state != "pending" or JobState(job.status) in JOB_TERMINAL:
            log.info("skipping %s (region %s, job %s)", message.id, state, job and job.status)
            self._ack(held)
            return
        try:
            context = self.contexts.image(message.job_id, message.image_idx)
            tiles = context.tiles(message.region_idx)
        except TilerunnerError as error:
            self._failed(held, error)
            return
        with self._lock:
            if message.id in self._held:
                # our own lease expired and we leased the message again: it is already in the
                # pipeline, so only the newer lease is kept (and extended, acked) from now on
                self._held[message.id].lease = lease
                return
            self._held[message.id] = held
        self._pipelines[model].submit(
            RegionWork(
                key=message.id,
                reader=context.reader,
                tiles=tiles,
                image_width=context.width,
                image_height=context.height,
                min_score=context.spec.merge.min_score,
            )
        )

    # -------------------------------------------------------------- results
    def _on_result(self, result: RegionResult) -> None:
        with self._lock:
            held_or_none = self._held.pop(str(result.key), None)
        if held_or_none is None:
            log.warning("result for %s arrived without a held lease; ignored", result.key)
            return
        held = held_or_none
        try:
            self._record(held, result)
        except TilerunnerError as error:
            # not acked: the lease expires and the region is redelivered
            log.warning(
                "region %s not recorded (%s); it will be redelivered", held.message.id, error
            )

    def _record(self, held: _Held, result: RegionResult) -> None:
        if result.error is not None:
            self._failed(held, result.error)
            return
        m = held.message
        recorded = self.store.complete_region(
            m.job_id, m.image_idx, m.region_idx, result.rows, self.id
        )
        if recorded:
            self._tiles_done += result.n_tiles
            self._regions_done += 1
        else:
            log.info("region %s was already recorded (duplicate delivery)", m.id)
        self._ack(held)

    def _failed(self, held: _Held, error: TilerunnerError) -> None:
        m = held.message
        reason = f"{error.code}: {error}"
        last = held.lease.attempt >= self.options.max_attempts and not isinstance(
            error, RetryableError
        )
        if last:
            self.store.fail_region(m.job_id, m.image_idx, m.region_idx, reason, self.id)
        else:
            self.store.note_attempt_failed(m.job_id, m.image_idx, m.region_idx, reason)
        log.warning("region %s attempt %d failed: %s", m.id, held.lease.attempt, reason)
        try:
            delay = self.options.retry_delay * 2 ** (held.lease.attempt - 1)
            held.queue.nack(held.lease, delay=0.0 if last else delay, reason=reason)
        except LeaseLostError:
            log.info("lease of %s was lost before nack", m.id)

    def _ack(self, held: _Held) -> None:
        try:
            held.queue.ack(held.lease)
        except LeaseLostError:
            log.info(
                "lease of %s was lost before ack; the redelivery will be a no-op", held.message.id
            )

    # ------------------------------------------------------------ heartbeat
    def _heartbeat_loop(self) -> None:
        interval = max(0.05, self.options.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held.items())
            for key, entry in held:
                try:
                    extended = entry.queue.extend(entry.lease, self.options.lease_seconds)
                except LeaseLostError:
                    log.warning("lease of %s lost; its result will be a duplicate", key)
                    continue
                except (RetryableError, QueueError) as error:
                    log.warning("cannot extend the lease of %s: %s", key, error)
                    continue
                with self._lock:
                    if key in self._held:
                        self._held[key].lease = extended
            self._report()

    def _report(self) -> None:
        elapsed = max(1e-9, time.monotonic() - self._started)
        with self._lock:
            leases = len(self._held)
        try:
            self.store.worker_heartbeat(
                self.id,
                socket.gethostname(),
                os.getpid(),
                sorted(self.models),
                leases,
                self._tiles_done,
                self._regions_done,
                self._tiles_done / elapsed,
            )
        except TilerunnerError as error:
            log.warning("worker heartbeat not recorded: %s", error)
