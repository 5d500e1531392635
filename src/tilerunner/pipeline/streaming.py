"""The in-worker hot path: reader threads -> batcher -> model -> post-processing.

Stages are threads joined by bounded queues, so reading (GDAL releases the GIL), inference
and post-processing overlap, and memory is bounded by the queue sizes and the strip budget,
never by image size: each reader thread reads one region at a time in block-aligned strips of
at most ``strip_bytes`` (:mod:`tilerunner.pipeline.reads`; about twice that while it carries
rows from one strip to the next), at most ``3 x batch_size + readers`` decoded tiles wait for
the model (the ready queue, the batch being formed, one per reader thread), one batch is
inside it and two wait for post-processing. With ``strip_bytes=0`` readers read tile by tile,
as they always do for readers that are not rasters (a tile job's map tiles share no blocks and
are fetched ahead by :mod:`tilerunner.xyz.reader`).

Tiles of different regions share batches, so the model never waits for a region boundary.
Batches are full whenever tiles are coming; a partial batch is flushed only when no read is
outstanding (end of the work at hand): the reader that delivers the last outstanding tile
says so to the batcher at once, so the last tiles of a job never wait on a timeout.

Failures are as small as their cause. A read that fails transiently (a timeout or a 5xx from
object storage: :class:`~tilerunner.errors.RetryableError`) is tried again ``read_retries``
times with a short doubling back-off; a tile whose read still fails, or whose model call fails
(a failing batch is retried one tile at a time to find it), or whose output is malformed,
becomes a :class:`~tilerunner.jobs.features.TileFailure`, and its region completes with the
features of every other tile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import ModelError, TilerunnerError
from tilerunner.imagery import RasterReader
from tilerunner.jobs.features import FeatureRows, TileFailure
from tilerunner.models import LoadedModel, TileOutput
from tilerunner.pipeline.postprocess import add_mask, owned_features
from tilerunner.pipeline.reads import TileReads
from tilerunner.pipeline.work import RegionResult, RegionState, RegionWork, TileItem

__all__ = ["STRIP_BYTES", "PipelineStats", "TilePipeline"]

log = logging.getLogger(__name__)

_STOP = None


class _Flush:
    """Put on the ready queue by the reader whose tile was the last outstanding one."""


_FLUSH = _Flush()

#: Default budget of one strip of a region read at once (decoded bytes): a 4096 px region of
#: an RGB image (48 MiB) is one strip, so its blocks are fetched in one burst of requests.
STRIP_BYTES = 64 * 2**20

#: Tiles per model call unless the user sets ``--batch-size``: 8, but 2 for segmentation
#: models, whose per-pixel activations dominate a worker's memory (a 512 px tile of a 16-channel
#: float32 layer is 16 MiB; batch 8 put a worker above 1.4 GiB, batch 2 keeps it under 1 GiB;
#: docs/benchmarks.md) while a larger batch hardly speeds a per-pixel model up on a CPU.
DEFAULT_BATCH_SIZE = 8
SEGMENT_BATCH_SIZE = 2


def default_batch_size(task: str) -> int:
    """Tiles per model call for a model of ``task`` when the user did not choose."""
    return SEGMENT_BATCH_SIZE if task == "segment" else DEFAULT_BATCH_SIZE


@dataclass(slots=True)
class PipelineStats:
    """Counters for throughput reporting (read by the worker's heartbeat)."""

    tiles_read: int = 0
    tiles_inferred: int = 0
    tiles_failed: int = 0
    read_retries: int = 0
    batches: int = 0
    read_seconds: float = 0.0
    model_seconds: float = 0.0


class TilePipeline:
    """Streams the tiles of submitted regions through one model; reports each finished region."""

    def __init__(
        self,
        model: LoadedModel,
        on_result: Callable[[RegionResult], None],
        *,
        batch_size: int = 8,
        readers: int = 2,
        read_retries: int = 3,
        read_backoff: float = 0.25,
        strip_bytes: int = STRIP_BYTES,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if read_retries < 0:
            raise ValueError("read_retries must not be negative")
        if strip_bytes < 0:
            raise ValueError("strip_bytes must not be negative (0 reads tile by tile)")
        self.model = model
        self.batch_size = batch_size
        self.read_retries = read_retries
        self.read_backoff = read_backoff
        self.stats = PipelineStats()
        self.strip_bytes = strip_bytes
        self._reads = TileReads(
            strip_bytes=strip_bytes,
            retries=read_retries,
            backoff=read_backoff,
            on_retry=self._count_retry,
            native=model.native_input,
        )
        self._on_result = on_result
        self._read_q: queue.Queue[TileItem | RegionState | None] = queue.Queue(
            maxsize=max(2, readers * 2)
        )
        self._ready_q: queue.Queue[TileItem | _Flush | None] = queue.Queue(maxsize=batch_size * 2)
        self._post_q: queue.Queue[tuple[list[TileItem], list[TileOutput | None]] | None] = (
            queue.Queue(maxsize=2)
        )
        self._outstanding = 0
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._readers = [
            threading.Thread(target=self._read_loop, name=f"reader-{i}", daemon=True)
            for i in range(max(1, readers))
        ]
        self._batcher = threading.Thread(target=self._batch_loop, name="batcher", daemon=True)
        self._post = threading.Thread(target=self._post_loop, name="post", daemon=True)
        for thread in [*self._readers, self._batcher, self._post]:
            thread.start()

    # ------------------------------------------------------------------ API
    def submit(self, work: RegionWork) -> None:
        """Queue a region's tiles; blocks while the pipeline is full (back-pressure)."""
        self._raise_if_broken()
        state = RegionState(work)
        if not work.tiles:
            self._on_result(RegionResult(work.key, FeatureRows(), 0))
            return
        if self.strip_bytes and isinstance(work.reader, RasterReader):
            # rasters in strips; map tiles share no blocks and are fetched ahead, one by one
            with self._lock:
                self._outstanding += len(work.tiles)
            self._read_q.put(state)
            return
        for tile in work.tiles:
            with self._lock:
                self._outstanding += 1
            self._read_q.put(TileItem(state, tile))

    def close(self) -> None:
        """Finish every submitted region, then stop the threads."""
        for _ in self._readers:
            self._read_q.put(_STOP)
        for thread in self._readers:
            thread.join()
        self._ready_q.put(_STOP)
        self._batcher.join()
        self._post.join()
        self._raise_if_broken()

    # -------------------------------------------------------------- readers
    def _read_loop(self) -> None:
        while (task := self._read_q.get()) is not _STOP:
            if isinstance(task, RegionState):
                self._deliver(self._reads.region(task))
            else:
                self._deliver(self._reads.tile(item) for item in (task,))

    def _deliver(self, items: Iterator[TileItem]) -> None:
        """Hand each tile read to the batcher, timing the reads (not the waits for room)."""
        while True:
            started = time.perf_counter()
            item = next(items, None)
            if item is None:
                return
            with self._lock:
                self.stats.read_seconds += time.perf_counter() - started
                self.stats.tiles_read += 1
            self._ready_q.put(item)
            with self._lock:
                self._outstanding -= 1
                idle = self._outstanding == 0
            if idle:  # the batcher flushes its partial batch now, not after a poll
                self._ready_q.put(_FLUSH)

    def _count_retry(self) -> None:
        with self._lock:
            self.stats.read_retries += 1

    # -------------------------------------------------------------- batcher
    def _batch_loop(self) -> None:
        try:
            self._batches()
        except BaseException as error:  # keep the failure for the caller of submit/close
            self._failure = error
            raise
        finally:
            self._post_q.put(_STOP)

    def _batches(self) -> None:
        batch: list[TileItem] = []
        while True:
            item = self._ready_q.get()
            if isinstance(item, _Flush):
                with self._lock:
                    idle = self._outstanding == 0  # else more tiles came: keep filling
                if batch and idle:
                    self._infer(batch)
                    batch = []
                continue
            if item is _STOP:
                if batch:
                    self._infer(batch)
                return
            if item.pixels is None:  # a failed read: straight to post-processing
                self._post_q.put(([item], [None]))
                continue
            if batch and batch[0].pixels is not None and batch[0].pixels.shape != item.pixels.shape:
                self._infer(batch)
                batch = []
            batch.append(item)
            if len(batch) >= self.batch_size:
                self._infer(batch)
                batch = []

    def _infer(self, batch: list[TileItem]) -> None:
        try:
            outputs: list[TileOutput | None] = list(self._predict(batch))
        except ModelError as error:
            if len(batch) == 1:
                batch[0].error = error
                outputs = [None]
            else:
                for item in batch:  # isolate the poison tile
                    self._infer([item])
                return
        self._post_q.put((batch, outputs))

    def _predict(self, batch: list[TileItem]) -> list[TileOutput]:
        # uint8, or float32 for a native_input model: one reader kind per pipeline
        tiles: NDArray[Any] = np.stack([item.pixels for item in batch if item.pixels is not None])
        windows = [item.tile.window for item in batch] if self.model.wants_windows else None
        started = time.perf_counter()
        outputs = self.model.predict(tiles, windows)
        self.stats.model_seconds += time.perf_counter() - started
        self.stats.tiles_inferred += len(batch)
        self.stats.batches += 1
        return outputs

    # ------------------------------------------------------ post-processing
    def _post_loop(self) -> None:
        while (entry := self._post_q.get()) is not _STOP:
            items, outputs = entry
            for item, output in zip(items, outputs, strict=True):
                self._account(item, output)

    def _account(self, item: TileItem, output: TileOutput | None) -> None:
        state = item.state
        work = state.work
        error = item.error
        if error is None and output is not None:
            try:
                if work.canvas is not None:
                    add_mask(work.canvas, item.tile, output)
                else:
                    state.parts.append(
                        owned_features(
                            output,
                            item.tile,
                            self.model,
                            work.image_width,
                            work.image_height,
                            work.min_score,
                        )
                    )
            except TilerunnerError as malformed:
                error = malformed
        if error is not None:
            state.failures.append(TileFailure.of(item.tile.window, error.code, str(error)))
            self.stats.tiles_failed += 1
        state.seen += 1
        if state.seen == len(work.tiles):
            self._on_result(
                RegionResult(
                    work.key,
                    FeatureRows.concat(state.parts),
                    len(work.tiles),
                    tuple(state.failures),
                    work.canvas,
                )
            )

    def _raise_if_broken(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the tile pipeline stopped") from self._failure
