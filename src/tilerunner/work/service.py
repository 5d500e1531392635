"""The work service: the one owner of lease -> describe -> extend -> complete / fail.

Direct workers call it in their own process; HTTP workers reach it through ``/v1/work``. It
decides attempts and dead-lettering in one place (``max_attempts``), skips items whose region
or job is already finished, and runs the idempotent completion transaction before it acks, so
a crash at any point means redelivery, never loss, and a duplicate delivery records nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tilerunner.broker import Lease, LeaseLostError, Queue
from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JOB_TERMINAL, JobSpec, JobState, RegionMessage, RegionState, queue_name
from tilerunner.photos.plan import (
    complete_photo_item,
    describe_photo_item,
    fail_photo_item,
    publish_stages,
)
from tilerunner.store import ImageRecord, Store
from tilerunner.work.items import Assignment, RegionItem, SegmentTarget, WorkItem
from tilerunner.work.results import WorkerReport, WorkResult
from tilerunner.work.tokens import decode_token, encode_token
from tilerunner.xyz.items import describe_tile_batch

__all__ = ["WorkService", "WorkServiceOptions"]

log = logging.getLogger(__name__)

QueueFor = Callable[[str], Queue]
_CACHE = 256


@dataclass(frozen=True, slots=True)
class WorkServiceOptions:
    lease_seconds: float = 60.0
    max_attempts: int = 3
    retry_delay: float = 1.0
    poll_seconds: float = 0.2
    verify_leases: bool = False
    """Check a lease with the broker before recording its result (callers outside the process
    hold only a token; the broker's receipt check proves they leased it)."""


class WorkService:
    """Leases, describes, extends, completes and fails work items for a set of models."""

    def __init__(
        self,
        store: Store,
        queue_for: QueueFor,
        options: WorkServiceOptions = WorkServiceOptions(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.queue_for = queue_for
        self.options = options
        self._clock = clock
        self._specs: dict[str, JobSpec] = {}
        self._images: dict[tuple[str, int], ImageRecord] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------- leasing
    def lease(
        self,
        models: Sequence[str],
        max_items: int = 1,
        wait_seconds: float = 0.0,
        stop: threading.Event | None = None,
    ) -> list[Assignment]:
        """Up to ``max_items`` items for these models; waits up to ``wait_seconds`` for one."""
        if not models:
            raise InvalidRequestError("lease needs at least one model name")
        deadline = self._clock() + max(0.0, wait_seconds)
        while True:
            got = self._lease_once(models, max_items)
            if got or self._clock() >= deadline or (stop is not None and stop.is_set()):
                return got
            wait = min(self.options.poll_seconds, max(0.0, deadline - self._clock()))
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)

    def _lease_once(self, models: Sequence[str], max_items: int) -> list[Assignment]:
        out: list[Assignment] = []
        for model in models:
            if len(out) >= max_items:
                break
            queue = self.queue_for(queue_name(model))
            for lease in queue.lease(max_items - len(out), self.options.lease_seconds):
                item = self._describe(queue, lease)
                if item is not None:
                    out.append(
                        Assignment(
                            encode_token(model, lease), model, lease.attempt, lease.expires_at, item
                        )
                    )
        return out

    def _describe(self, queue: Queue, lease: Lease) -> WorkItem | None:
        """The item behind a lease, or None (acked) when its region or job is finished."""
        message = RegionMessage.decode(lease.body)
        job = self.store.get_job(message.job_id)
        state = self.store.region_state(message.job_id, message.image_idx, message.region_idx)
        if job is None or state is not RegionState.PENDING or JobState(job.status) in _STOPPED:
            log.info("skipping %s (region %s, job %s)", message.id, state, job and job.status)
            self._ack(queue, lease)
            return None
        return self._describe_pending(message, job.spec)

    # ---------------------------------------------------- extend / complete
    def extend(self, token: str) -> Assignment:
        """A fresh lease for the same item; LeaseLostError if another holder has it now, or
        if its job was cancelled (the item is released: the worker lets go of it)."""
        model, lease = decode_token(token)
        queue = self.queue_for(queue_name(model))
        message = RegionMessage.decode(lease.body)
        job = self.store.get_job(message.job_id)
        if job is None or JobState(job.status) in _STOPPED:
            self._ack(queue, lease)
            raise LeaseLostError(queue.name, message.id)
        extended = queue.extend(lease, self.options.lease_seconds)
        return Assignment(
            encode_token(model, extended),
            model,
            extended.attempt,
            extended.expires_at,
            self._describe_pending(message, job.spec),
        )

    def complete(self, token: str, result: WorkResult, worker: str = "") -> bool:
        """Record the item's features and failed tiles once, then ack; False for a duplicate
        delivery, and for an item whose every tile failed before its last attempt: that is a
        failed attempt (the whole worker may be at fault), tried again after a back-off."""
        model, lease = decode_token(token)
        queue = self.queue_for(queue_name(model))
        if self.options.verify_leases:
            queue.extend(lease, self.options.lease_seconds)  # LeaseLostError: not the holder
        m = RegionMessage.decode(lease.body)
        spec = self._job_spec(m.job_id)
        if result.all_failed and lease.attempt < self.options.max_attempts:
            first = result.tile_failures[0]
            reason = (
                f"{first.code}: every tile failed ({result.n_tiles}); "
                f"first at {first.window}: {first.message}"
            )
            self.store.note_attempt_failed(m.job_id, m.image_idx, m.region_idx, reason)
            log.warning("region %s attempt %d failed: %s", m.id, lease.attempt, reason)
            self._nack(queue, lease, self.options.retry_delay * 2 ** (lease.attempt - 1), reason)
            return False
        again = False
        if spec is not None and spec.photos is not None:
            outcome = complete_photo_item(self.store, self.queue_for, m, spec, result, worker)
            recorded, again = outcome.recorded, outcome.again
        else:
            recorded = self.store.complete_region(
                m.job_id, m.image_idx, m.region_idx, result.rows, worker, result.tile_failures
            )
        if not recorded:
            log.info("region %s was already recorded (duplicate delivery)", m.id)
        self._ack(queue, lease)
        if again and spec is not None:
            # detections to crop came in while it ran: its message again, once this one is gone
            log.info("region %s runs again for detections that came in meanwhile", m.id)
            publish_stages(self.queue_for, m, spec, [m.region_idx])
        return recorded

    def fail(
        self, token: str, code: str, message: str, *, retryable: bool, worker: str = ""
    ) -> bool:
        """Record a failed attempt; the last allowed one fails the region for good (True)."""
        model, lease = decode_token(token)
        queue = self.queue_for(queue_name(model))
        if self.options.verify_leases:
            queue.extend(lease, self.options.lease_seconds)
        m = RegionMessage.decode(lease.body)
        reason = f"{code}: {message}"
        last = lease.attempt >= self.options.max_attempts and not retryable
        spec = self._job_spec(m.job_id)
        if last and spec is not None and spec.photos is not None:
            fail_photo_item(self.store, m, spec, reason, worker)
        elif last:
            self.store.fail_region(m.job_id, m.image_idx, m.region_idx, reason, worker)
        else:
            self.store.note_attempt_failed(m.job_id, m.image_idx, m.region_idx, reason)
        log.warning("region %s attempt %d failed: %s", m.id, lease.attempt, reason)
        delay = 0.0 if last else self.options.retry_delay * 2 ** (lease.attempt - 1)
        self._nack(queue, lease, delay, reason)
        return last

    # ------------------------------------------------------------ workers
    def heartbeat(self, report: WorkerReport) -> None:
        self.store.worker_heartbeat(
            report.id,
            report.host,
            report.pid,
            list(report.models),
            report.leases_held,
            report.tiles_done,
            report.regions_done,
            report.tiles_per_second,
            version=report.version,
            gpu=report.gpu,
            model_info={m.name: m.as_dict() for m in report.served} or None,
        )

    def job_finished(self, job_id: str) -> bool:
        """True once every region of the job is done or failed, or the job is over (or does not
        exist); never while it is still being planned."""
        job = self.store.get_job(job_id)
        if job is None or JobState(job.status) in _STOPPED:
            return True
        if job.status == JobState.PLANNING:
            return False
        counts = self.store.counts(job_id)
        return counts.regions_finished >= counts.regions_total

    # ------------------------------------------------------------ internals
    def _describe_pending(self, message: RegionMessage, spec_doc: dict[str, object]) -> WorkItem:
        spec = self._spec(message.job_id, spec_doc)
        if spec.photos is not None:
            return describe_photo_item(self.store, message, spec)
        image = self._image(message.job_id, message.image_idx)
        if spec.tiles is not None:
            return describe_tile_batch(self.store, message, spec, image)
        return RegionItem(
            id=message.id,
            job_id=message.job_id,
            image_idx=message.image_idx,
            region_idx=message.region_idx,
            url=image.url,
            width=image.width,
            height=image.height,
            tile_size=spec.tiling.tile_size,
            overlap=spec.tiling.overlap,
            region_tiles=image.region_tiles,
            bands=tuple(spec.tiling.bands) if spec.tiling.bands else None,
            scale=spec.tiling.scale,
            min_score=spec.merge.min_score,
            only_tiles=self.store.failed_tiles(
                message.job_id, message.image_idx, message.region_idx
            )
            or None,
            segment=_segment_target(spec, image),
        )

    def _job_spec(self, job_id: str) -> JobSpec | None:
        with self._lock:
            spec = self._specs.get(job_id)
        if spec is None:
            job = self.store.get_job(job_id)
            return None if job is None else self._spec(job_id, job.spec)
        return spec

    def _spec(self, job_id: str, document: dict[str, object]) -> JobSpec:
        with self._lock:
            spec = self._specs.get(job_id)
        if spec is None:
            spec = JobSpec.model_validate(document)
            with self._lock:
                if len(self._specs) >= _CACHE:
                    self._specs.pop(next(iter(self._specs)))
                self._specs[job_id] = spec
        return spec

    def _image(self, job_id: str, image_idx: int) -> ImageRecord:
        key = (job_id, image_idx)
        with self._lock:
            image = self._images.get(key)
        if image is None:
            image = self.store.image(job_id, image_idx)
            with self._lock:
                if len(self._images) >= _CACHE:
                    self._images.pop(next(iter(self._images)))
                self._images[key] = image
        return image

    @staticmethod
    def _nack(queue: Queue, lease: Lease, delay: float, reason: str) -> None:
        try:
            queue.nack(lease, delay=delay, reason=reason)
        except LeaseLostError:
            log.info("lease of %s was lost before nack", lease.message_id)

    @staticmethod
    def _ack(queue: Queue, lease: Lease) -> None:
        try:
            queue.ack(lease)
        except LeaseLostError:
            log.info("lease of %s was lost before ack; the redelivery will be a no-op", lease)


_STOPPED = JOB_TERMINAL | {JobState.CANCELLING}


def _segment_target(spec: JobSpec, image: ImageRecord) -> SegmentTarget | None:
    seg = spec.pipeline[0].segment
    if seg is None:
        return None
    georef = image.georef
    return SegmentTarget(
        output=seg.output,
        blend=seg.blend,
        probabilities=seg.probabilities,
        transform=georef.transform if georef is not None else None,
        crs_wkt=georef.crs_wkt if georef is not None else None,
    )
