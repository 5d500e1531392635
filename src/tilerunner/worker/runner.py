"""The worker: lease work items from a work source, stream them through the model, report.

One :class:`~tilerunner.pipeline.TilePipeline` per model served. The loop sees only a
:class:`~tilerunner.work.WorkSource` (direct: store + broker in this process; HTTP: the API),
never the store or the broker. A heartbeat thread extends every held lease well before it
expires and reports the worker; a committer thread reports each finished item off the
pipeline's post-processing thread, so a slow store or API never stalls decoding. An item is
released only after its result is recorded, so a crash at any point means redelivery, never
loss; attempts and dead-lettering are the work service's decision.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tilerunner import __version__
from tilerunner.errors import (
    InvalidRequestError,
    LeaseLostError,
    QueueError,
    RetryableError,
    StoreError,
    TilerunnerError,
)
from tilerunner.imagery import BandSpec, GdalEnv, RasterReader
from tilerunner.models import LoadedModel
from tilerunner.photos.items import CropItem, PhotoGroupItem
from tilerunner.photos.worker import PhotoItems
from tilerunner.pipeline import (
    STRIP_BYTES,
    PipelineStats,
    RegionResult,
    RegionWork,
    TilePipeline,
    default_batch_size,
)
from tilerunner.pipeline.work import PixelReader
from tilerunner.work import (
    Assignment,
    RegionItem,
    ServedModel,
    TileBatchItem,
    WorkerReport,
    WorkResult,
    WorkSource,
)
from tilerunner.worker.readers import ReaderCache
from tilerunner.worker.segment import publish_region, segment_tiles
from tilerunner.xyz.fetch import FetchOptions
from tilerunner.xyz.reader import TileReaders

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger(__name__)

_TRANSIENT = (RetryableError, QueueError, StoreError)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    batch_size: int | None = None
    """Tiles per model call; None: :func:`~tilerunner.pipeline.default_batch_size` of each
    model's task (2 for segmentation, 8 otherwise)."""
    readers: int = 2
    lease_seconds: float = 60.0
    """The lease period the source grants; leases are extended every third of it."""
    prefetch: int | None = None
    """Items held per model at once: those in the pipeline and the next ones waiting. None:
    ``readers + 2``, so that a reader thread done with its region finds the next one queued
    instead of waiting for a lease while the model works on the tiles it read (a queued
    region holds its item, not its pixels: memory stays bounded by the strips and queues);
    2 for segmentation models, whose regions each hold a canvas as soon as they start."""
    poll_seconds: float = 0.2
    wait_seconds: float = 0.0
    """Long-poll wait of each lease call (HTTP sources); 0 polls every ``poll_seconds``."""
    read_retries: int = 3
    """Tries again of a tile read that failed transiently, before the tile counts as failed."""
    strip_bytes: int = STRIP_BYTES
    """Budget of one strip of a region read at once; 0 reads tile by tile."""
    fetch: FetchOptions = field(default_factory=FetchOptions)
    """How XYZ tiles are fetched (concurrency, timeouts, retries, headers, token, cache)."""
    s3_endpoint_url: str | None = None
    """Where segment regions upload their parts when the output is ``s3://``."""


class Worker:
    """Serves the given models from a work source until :meth:`stop` (or ``until`` says so)."""

    def __init__(
        self,
        source: WorkSource,
        models: dict[str, LoadedModel],
        options: WorkerOptions = WorkerOptions(),
        *,
        env: GdalEnv | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.source = source
        self.models = models
        self.options = options
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._readers = ReaderCache(env)
        self._tile_readers = TileReaders(options.fetch)
        self._photos = PhotoItems(env)
        self._held: dict[str, Assignment] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # set when an item finishes or on stop: the lease loop wakes at once instead of
        # sleeping out its poll (a worker with ``until`` notices the end of its job promptly)
        self._wake = threading.Event()
        self._results: queue.Queue[RegionResult | None] = queue.Queue()
        self._tiles_done = 0
        self._regions_done = 0
        self._started = time.monotonic()
        self._gpu = _gpu_name()
        self._pipelines = {
            name: TilePipeline(
                model,
                self._results.put,
                batch_size=options.batch_size or default_batch_size(model.task),
                readers=options.readers,
                read_retries=options.read_retries,
                strip_bytes=options.strip_bytes,
            )
            for name, model in models.items()
        }

    # ------------------------------------------------------------------ API
    def adopt_reader(self, reader: RasterReader, bands: BandSpec) -> None:
        """Read the items of ``reader``'s image with ``bands`` (and the item's scale, or the
        model's input range, equal to ``bands.scale``) through ``reader``; it is closed with
        the worker."""
        self._readers.adopt(reader, bands)

    def stop(self) -> None:
        """Stop leasing; items already leased are finished and recorded."""
        self._stop.set()
        self._wake.set()

    def pipeline_stats(self) -> dict[str, PipelineStats]:
        """Each served model's pipeline counters (batches, tiles inferred, read and model time)."""
        return {name: pipeline.stats for name, pipeline in self._pipelines.items()}

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Lease and process items until stopped, or until ``until()`` is true while idle."""
        self._report()  # register at once; the heartbeat thread keeps it fresh
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        committer = threading.Thread(target=self._commit_loop, name="committer", daemon=True)
        beat.start()
        committer.start()
        failures = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()  # a finish from now on cuts the next wait short
                try:
                    got = self._lease_round()
                    if not got and until is not None and not self._held_count() and until():
                        break
                    failures = 0
                except _TRANSIENT as error:
                    # store, broker or API unreachable: back off and try again; held leases
                    # that cannot be extended expire and are redelivered, so nothing is lost
                    failures += 1
                    wait = min(30.0, self.options.poll_seconds * 2**failures)
                    log.warning("worker %s: %s; retrying in %.1f s", self.id, error, wait)
                    self._stop.wait(wait)
                    continue
                if not got and not self.options.wait_seconds:
                    self._wake.wait(self.options.poll_seconds)
        finally:
            for pipeline in self._pipelines.values():
                pipeline.close()
            self._results.put(None)
            committer.join()
            self._stop.set()
            beat.join()
            self._readers.close()
            self._tile_readers.close()
            self._report()
            self.source.close()

    # -------------------------------------------------------------- leasing
    def _held_count(self, model: str | None = None) -> int:
        with self._lock:
            return sum(1 for a in self._held.values() if model is None or a.model == model)

    def prefetch(self, model: str) -> int:
        """How many items of ``model`` this worker holds at once (:attr:`WorkerOptions.prefetch`
        or its default for the model's task)."""
        if self.options.prefetch is not None:
            return self.options.prefetch
        return 2 if self.models[model].task == "segment" else self.options.readers + 2

    def _lease_round(self) -> bool:
        room_of = {m: self.prefetch(m) - self._held_count(m) for m in self.models}
        wanted = [m for m, room in room_of.items() if room > 0]
        if not wanted:
            self._wake.wait(self.options.poll_seconds)
            return True  # busy, not idle
        room = sum(room_of[m] for m in wanted)
        was_idle = not self._held_count()
        assignments = self.source.lease(wanted, room, self.options.wait_seconds)
        for assignment in assignments:
            self._start(assignment)
        if assignments and was_idle:
            self._report()  # idle -> busy shows in `status` now, not at the next heartbeat
        return bool(assignments)

    def _raster_reader(self, item: RegionItem, model: LoadedModel) -> RasterReader:
        scale = item.scale or model.input_range
        return self._readers.get(item.url, BandSpec(bands=item.bands, scale=scale))

    def _start(self, assignment: Assignment) -> None:
        item = assignment.item
        if isinstance(item, PhotoGroupItem | CropItem):  # its photos or crops as members
            with self._lock:
                known = item.id in self._held
                self._held[item.id] = assignment
            if not known:
                model = self.models[assignment.model]
                self._photos.submit(
                    item, assignment.model, model, self._pipelines[assignment.model]
                )
            return
        model = self.models[assignment.model]
        reader: PixelReader
        canvas = None
        try:
            if isinstance(item, TileBatchItem):
                reader = self._tile_readers.reader(item)
                tiles = item.tiles()
            else:
                model.check_bands(item.bands)
                reader = self._raster_reader(item, model)
                if item.segment is not None:
                    tiles, canvas = segment_tiles(item, model)
                else:
                    tiles = item.tiles()
        except TilerunnerError as error:
            self._report_failure(assignment, error)
            return
        with self._lock:
            if item.id in self._held:
                # our own lease expired and we leased the item again: it is already in the
                # pipeline, so only the newer lease is kept (and extended, released) from now on
                self._held[item.id] = assignment
                return
            self._held[item.id] = assignment
        self._pipelines[assignment.model].submit(
            RegionWork(
                key=item.id,
                reader=reader,
                tiles=tiles,
                image_width=item.width,
                image_height=item.height,
                min_score=item.min_score,
                canvas=canvas,
            )
        )

    # -------------------------------------------------------------- results
    def _commit_loop(self) -> None:
        while (result := self._results.get()) is not None:
            if isinstance(result.key, tuple):  # one member of a photo item
                gathered = self._photos.collect(result)
                if gathered is None:
                    continue
                key, work = gathered
            else:
                key, work = (
                    str(result.key),
                    WorkResult(result.rows, result.n_tiles, result.tile_failures),
                )
            with self._lock:
                assignment = self._held.pop(key, None)
            if assignment is None:
                log.warning("result for %s arrived without a held lease; ignored", key)
                continue
            item = assignment.item
            if result.canvas is not None and isinstance(item, RegionItem) and not result.all_failed:
                model = self.models[assignment.model]
                try:
                    rows = publish_region(
                        item,
                        result.canvas,
                        self._raster_reader(item, model),
                        model,
                        self.options.s3_endpoint_url,
                    )
                except TilerunnerError as error:
                    self._report_failure(assignment, error)
                    continue
                work = WorkResult(rows, result.n_tiles, result.tile_failures)
            try:
                recorded = self.source.complete(assignment, work, self.id)
            except LeaseLostError:
                log.info("lease of %s was lost; its redelivery does the work", key)
                continue
            except (InvalidRequestError, *_TRANSIENT) as error:
                # not released: the lease expires and the item is redelivered
                log.warning("%s not recorded (%s); it will be redelivered", key, error)
                continue
            finally:
                self._wake.set()  # room for the next item; with ``until``, maybe the end
            if recorded:
                with self._lock:
                    self._tiles_done += work.n_tiles - len(work.tile_failures)
                    self._regions_done += 1
            else:  # a duplicate delivery, or every tile failed and the item is tried again
                failures = len(work.tile_failures)
                log.info("%s was not recorded (%d tile failure(s))", key, failures)

    def _report_failure(self, assignment: Assignment, error: TilerunnerError) -> None:
        try:
            self.source.fail(assignment, error, self.id)
        except LeaseLostError:
            log.info("lease of %s was lost before it was failed", assignment.item.id)
        except (InvalidRequestError, *_TRANSIENT) as failure:
            log.warning("failure of %s not recorded (%s)", assignment.item.id, failure)

    # ------------------------------------------------------------ heartbeat
    def _heartbeat_loop(self) -> None:
        interval = max(0.05, self.options.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held.items())
            for key, assignment in held:
                try:
                    extended = self.source.extend(assignment)
                except LeaseLostError:
                    log.warning("lease of %s lost; its result will be a duplicate", key)
                    continue
                except (InvalidRequestError, *_TRANSIENT) as error:
                    log.warning("cannot extend the lease of %s: %s", key, error)
                    continue
                with self._lock:
                    if self._held.get(key) is assignment:
                        self._held[key] = extended
            self._report()

    def _report(self) -> None:
        elapsed = max(1e-9, time.monotonic() - self._started)
        with self._lock:
            leases, tiles, regions = len(self._held), self._tiles_done, self._regions_done
        report = WorkerReport(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            models=tuple(sorted(self.models)),
            leases_held=leases,
            tiles_done=tiles,
            regions_done=regions,
            tiles_per_second=tiles / elapsed,
            gpu=self._gpu,
            served=tuple(
                ServedModel(name, m.task, tuple(m.classes), m.backend, m.spec)
                for name, m in sorted(self.models.items())
            ),
        )
        try:
            self.source.heartbeat(report)
        except (InvalidRequestError, *_TRANSIENT) as error:
            log.warning("worker heartbeat not recorded: %s", error)


def _gpu_name() -> str | None:
    """The first NVIDIA GPU's name, when ``nvidia-smi`` is there to say it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines()
    return names[0] if out.returncode == 0 and names else None
