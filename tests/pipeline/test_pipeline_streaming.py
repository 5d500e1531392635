"""The in-worker streaming pipeline, in-process, on real rasters.

Every submitted region must come back exactly once with its tile count; tiles of different
regions share model batches; a poison tile, a failed read or malformed model output fails only
that tile (its region keeps every other tile's features); a transient read failure is tried
again and costs nothing; ``close()`` drains; and read-ahead stays bounded however slow the
model is.
Readers and models are instrumented (subclass / wrapper) rather than mocked, so the real
threads and queues run.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from tr_scenes import make_scene

from tilerunner.errors import RetryableError, SourceError
from tilerunner.imagery import RasterReader
from tilerunner.merging import owned_mask
from tilerunner.models import LoadedModel, wrap_model
from tilerunner.pipeline import RegionResult, RegionWork, TilePipeline
from tilerunner.pipeline.streaming import STRIP_BYTES
from tilerunner.store import FeatureRows
from tilerunner.testing import (
    ConstantClassifier,
    FailingModel,
    MalformedModel,
    SleepModel,
    TruthDetector,
)
from tilerunner.tiling import RegionGrid, TileGrid, TileRef, Window

TILE, OVERLAP = 64, 16  # stride 48: a 400 x 300 scene is 8 x 6 = 48 tiles
WIDTH, HEIGHT = 400, 300
MARKER = 255  # make_scene draws noise in 0..254, so 255 never occurs by chance
# (80, 80) lies in [64, 96) on both axes: inside tile (1, 1) and no other tile.
MARKED_PIXEL, MARKED_TILE = (80, 80), (1, 1)

Scene = tuple[Path, Path, list[tuple[float, float, float, float]]]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """Boxes no larger than the overlap, so keeping owned boxes recovers the truth exactly."""
    made: Scene = make_scene(
        tmp_path_factory.mktemp("pipe"), width=WIDTH, height=HEIGHT, n_boxes=40, max_side=16
    )
    return made


@pytest.fixture
def grid() -> TileGrid:
    return TileGrid(WIDTH, HEIGHT, TILE, OVERLAP)


class Results:
    """Collects what the pipeline reports (called from its post-processing thread)."""

    def __init__(self) -> None:
        self.items: list[RegionResult] = []
        self._lock = threading.Lock()

    def __call__(self, result: RegionResult) -> None:
        with self._lock:
            self.items.append(result)

    def by_key(self) -> dict[Hashable, RegionResult]:
        keys = [r.key for r in self.items]
        assert len(keys) == len(set(keys)), f"a region was reported twice: {sorted(map(str, keys))}"
        return {r.key: r for r in self.items}


class Recording:
    """Wraps a model: records each batch's tile windows and counts consumed tiles."""

    wants_windows = True

    def __init__(self, inner: Any, meter: Meter | None = None) -> None:
        self.inner = inner
        self.task = str(getattr(inner, "task", "detect"))
        self.classes = list(getattr(inner, "classes", []))
        self.batches: list[list[Window]] = []
        self.meter = meter
        self._lock = threading.Lock()

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> Any:
        with self._lock:
            self.batches.append(list(windows))
        if self.meter is not None:
            self.meter.consumed(len(tiles))
        if getattr(self.inner, "wants_windows", False):
            return self.inner.predict(tiles, windows)
        return self.inner.predict(tiles)


class Meter:
    """Tiles read but not yet taken by the model, and the most there ever were.

    A read counts the tiles of ``grid`` its window holds whole (a strip holds several).
    """

    def __init__(self, grid: TileGrid) -> None:
        self.windows = [grid.tile(c, r) for r in range(grid.n_rows) for c in range(grid.n_cols)]
        self.read = 0
        self.taken = 0
        self.max_ahead = 0
        self._lock = threading.Lock()

    def window_read(self, window: Window) -> None:
        n = sum(window.contains(w) for w in self.windows)
        with self._lock:
            self.read += n
            self.max_ahead = max(self.max_ahead, self.read - self.taken)

    def consumed(self, n: int) -> None:
        with self._lock:
            self.taken += n


class InstrumentedReader(RasterReader):
    """A real reader that can hold its first read, fail chosen windows, and count reads.

    A read fails when its window contains a failing window (a strip holding that tile, or the
    tile itself); ``failed_reads`` counts the failed reads per failing window.

    Holding the first read keeps one tile outstanding while the test submits, so the batcher
    never flushes a partial batch for lack of work: batch composition becomes deterministic.
    """

    def __init__(
        self,
        url: str | Path,
        *,
        hold_first: bool = False,
        fail: dict[Window, Exception] | None = None,
        fail_times: int | None = None,
        meter: Meter | None = None,
    ) -> None:
        super().__init__(str(url))
        self._release = threading.Event()
        if not hold_first:
            self._release.set()
        self._first_done = False
        self._hold_lock = threading.Lock()
        self._fail = fail or {}
        self._fail_times = fail_times  # None: every read of a failing window fails
        self.failed_reads: dict[Window, int] = {}
        self._meter = meter

    def release(self) -> None:
        self._release.set()

    def read(self, window: Window) -> NDArray[np.uint8]:
        with self._hold_lock:
            first, self._first_done = not self._first_done, True
        if first and not self._release.wait(timeout=60):
            raise SourceError("the held read was never released")
        bad = next((w for w in self._fail if window.contains(w)), None)
        if bad is not None:
            with self._hold_lock:
                n = self.failed_reads.get(bad, 0)
                failing = self._fail_times is None or n < self._fail_times
                if failing:
                    self.failed_reads[bad] = n + 1
            if failing:
                raise self._fail[bad]
        pixels = super().read(window)
        if self._meter is not None:
            self._meter.window_read(window)
        return pixels


def works(
    reader: RasterReader, grid: TileGrid, region_tiles: int, min_score: float = 0.0
) -> list[RegionWork]:
    regions = RegionGrid(grid, region_tiles)
    return [
        RegionWork(
            key=region.index,
            reader=reader,
            tiles=tuple(regions.tiles(region)),
            image_width=grid.width,
            image_height=grid.height,
            min_score=min_score,
        )
        for region in regions.regions()
    ]


def model(impl: object, name: str = "m") -> LoadedModel:
    return wrap_model(impl, name=name, spec=f"tests.pipeline:{type(impl).__name__}")


def run(
    loaded: LoadedModel,
    items: list[RegionWork],
    *,
    batch_size: int = 4,
    readers: int = 2,
    reader: InstrumentedReader | None = None,
    read_retries: int = 3,
    stats: list[TilePipeline] | None = None,
    strip_bytes: int = STRIP_BYTES,
) -> dict[Hashable, RegionResult]:
    """Submit every region, release a held reader, close, and return results by key."""
    results = Results()
    pipeline = TilePipeline(
        loaded,
        results,
        batch_size=batch_size,
        readers=readers,
        read_retries=read_retries,
        read_backoff=0.005,
        strip_bytes=strip_bytes,
    )
    if stats is not None:
        stats.append(pipeline)
    for item in items:
        pipeline.submit(item)
    if reader is not None:
        reader.release()
    pipeline.close()
    return results.by_key()


def sorted_boxes(boxes: NDArray[np.float64]) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in b) for b in boxes.tolist())


def tile_key(items: list[RegionWork]) -> dict[Window, Hashable]:
    return {tile.window: item.key for item in items for tile in item.tiles}


def owned_by(truth: list[tuple[float, ...]], tiles: Sequence[TileRef]) -> list[tuple[float, ...]]:
    """The truth boxes that these tiles own (centre in one of their cores)."""
    boxes = np.asarray(truth)
    mask = np.zeros(len(truth), dtype=bool)
    for tile in tiles:
        mask |= owned_mask(boxes, tile.core, WIDTH, HEIGHT)
    return [b for b, keep in zip(truth, mask.tolist(), strict=True) if keep]


class MarkedTruth(TruthDetector):
    """Replays the truth, but any batch holding the marker pixel raises (a poison tile)."""

    def __init__(self, truth: Path) -> None:
        super().__init__(truth)
        self.guard = FailingModel(marker_value=MARKER)

    def predict(self, tiles: NDArray[np.uint8], windows: Sequence[Window]) -> Any:
        self.guard.predict(tiles)
        return super().predict(tiles, windows)


# ------------------------------------------------------------------------------------ tests


def test_every_region_comes_back_once_with_its_tiles_and_the_truth(
    scene: Scene, grid: TileGrid
) -> None:
    tif, truth_csv, truth = scene
    reader = RasterReader(str(tif))
    items = works(reader, grid, region_tiles=3)  # 6 regions of 9 or 6 tiles
    empty = RegionWork("no-tiles", reader, (), WIDTH, HEIGHT)
    results = run(model(TruthDetector(truth_csv)), [*items, empty], batch_size=5, readers=3)
    reader.close()

    assert set(results) == {item.key for item in items} | {"no-tiles"}
    for item in items:
        assert results[item.key].tile_failures == ()
        assert results[item.key].n_tiles == len(item.tiles)
    assert sum(r.n_tiles for r in results.values()) == grid.n_tiles
    assert results["no-tiles"].n_tiles == 0 and len(results["no-tiles"].rows) == 0
    rows = FeatureRows.concat([r.rows for r in results.values()])
    assert sorted_boxes(rows.boxes) == sorted_boxes(np.asarray(truth))


def test_tiles_of_several_regions_share_batches(scene: Scene, grid: TileGrid) -> None:
    reader = InstrumentedReader(scene[0], hold_first=True)
    items = works(reader, grid, region_tiles=3)  # 9, 9, 6, 9, 9, 6 tiles
    recorder = Recording(TruthDetector(scene[1]))
    results = run(model(recorder), items, batch_size=4, reader=reader)
    reader.close()

    assert all(r.tile_failures == () for r in results.values())
    owner = tile_key(items)
    regions_per_batch = [{owner[w] for w in batch} for batch in recorder.batches]
    assert [len(b) for b in recorder.batches] == [4] * (grid.n_tiles // 4)  # every batch full
    # batching region by region would need ceil(n/4) batches per region: 3+3+2+3+3+2 = 16
    assert len(recorder.batches) < sum(-(-len(item.tiles) // 4) for item in items)
    assert sum(len(regions) > 1 for regions in regions_per_batch) >= 3
    seen = [w for batch in recorder.batches for w in batch]
    assert len(seen) == len(set(seen)) == len(owner)  # every tile inferred once


@pytest.fixture
def marked_tif(scene: Scene, tmp_path: Path) -> Path:
    """The scene with one marker pixel that only tile (1, 1) sees."""
    tif = tmp_path / "marked.tif"
    shutil.copy(scene[0], tif)
    with rasterio.open(tif, "r+") as dst:
        x, y = MARKED_PIXEL
        patch = np.full((3, 1, 1), MARKER, dtype=np.uint8)
        dst.write(patch, window=rasterio.windows.Window(x, y, 1, 1))
    return tif


def test_a_poison_tile_fails_alone_and_its_region_keeps_the_other_tiles(
    scene: Scene, marked_tif: Path, grid: TileGrid
) -> None:
    reader = InstrumentedReader(marked_tif, hold_first=True)
    items = works(reader, grid, region_tiles=2)  # 12 regions of 2 x 2 tiles
    recorder = Recording(MarkedTruth(scene[1]))
    results = run(model(recorder, name="poisoned"), items, batch_size=4, reader=reader)
    reader.close()

    marked_window = grid.tile(*MARKED_TILE)
    marked = tile_key(items)[marked_window]
    assert {key for key, r in results.items() if r.tile_failures} == {marked}
    [failure] = results[marked].tile_failures
    assert failure.window == marked_window
    assert failure.code == "model_error"
    assert "'poisoned'" in failure.message and "marker pixel" in failure.message
    # the region still carries what its three other tiles own
    region = next(item for item in items if item.key == marked)
    others = [t for t in region.tiles if t.window != marked_window]
    assert len(others) == 3 and owned_by(scene[2], others)
    assert sorted_boxes(results[marked].rows.boxes) == sorted(
        tuple(round(v, 6) for v in b) for b in owned_by(scene[2], others)
    )
    # every object but those of the poison tile came back, once
    poison = [t for t in region.tiles if t.window == marked_window]
    rows = FeatureRows.concat([r.rows for r in results.values()])
    lost = owned_by(scene[2], poison)
    kept = [b for b in scene[2] if b not in lost]
    assert sorted_boxes(rows.boxes) == sorted(tuple(round(v, 6) for v in b) for b in kept)
    # the batch that held the marked tile was full; it was retried one tile at a time
    batch = next(b for b in recorder.batches if marked_window in b)
    assert len(batch) == 4
    singles = [b[0] for b in recorder.batches if len(b) == 1]
    assert set(batch) <= set(singles) and singles.count(marked_window) == 1


@pytest.mark.parametrize(
    ("failure", "code"),
    [(SourceError("cannot read the tile"), "source_error"), (OSError("disk went away"), "error")],
    ids=["source-error", "reader-bug"],
)
@pytest.mark.parametrize("strip_bytes", [STRIP_BYTES, 0], ids=["strips", "per-tile"])
def test_a_read_error_fails_only_its_tile(
    scene: Scene, grid: TileGrid, failure: Exception, code: str, strip_bytes: int
) -> None:
    tif, truth_csv, truth = scene
    good = RasterReader(str(tif))
    items = works(good, grid, region_tiles=2)  # 12 regions of 4 tiles
    victim = items[5]
    bad_window = victim.tiles[2].window
    bad = InstrumentedReader(tif, fail={bad_window: failure})
    items[5] = RegionWork(victim.key, bad, victim.tiles, WIDTH, HEIGHT)
    results = run(model(TruthDetector(truth_csv)), items, strip_bytes=strip_bytes)
    good.close()
    bad.close()

    assert {key for key, r in results.items() if r.tile_failures} == {victim.key}
    [tile_failure] = results[victim.key].tile_failures
    assert (tile_failure.window, tile_failure.code) == (bad_window, code)
    assert str(failure) in tile_failure.message
    # not a transient error: read once (with strips: the strip, then the tile on its own)
    assert bad.failed_reads == {bad_window: 2 if strip_bytes else 1}
    assert results[victim.key].n_tiles == 4 and not results[victim.key].all_failed
    others = [t for t in victim.tiles if t.window != bad_window]
    assert sorted_boxes(results[victim.key].rows.boxes) == sorted(
        tuple(round(v, 6) for v in b) for b in owned_by(truth, others)
    )


@pytest.mark.parametrize("strip_bytes", [STRIP_BYTES, 0], ids=["strips", "per-tile"])
def test_a_transient_read_error_is_tried_again_and_costs_nothing(
    scene: Scene, grid: TileGrid, strip_bytes: int
) -> None:
    tif, truth_csv, truth = scene
    window = grid.tile(2, 3)
    reader = InstrumentedReader(
        tif, fail={window: RetryableError("object storage answered 503")}, fail_times=2
    )
    pipelines: list[TilePipeline] = []
    results = run(
        model(TruthDetector(truth_csv)),
        works(reader, grid, 2),
        stats=pipelines,
        strip_bytes=strip_bytes,
    )
    reader.close()

    assert reader.failed_reads == {window: 2}
    assert all(r.tile_failures == () for r in results.values())
    assert pipelines[0].stats.read_retries == 2 and pipelines[0].stats.tiles_failed == 0
    rows = FeatureRows.concat([r.rows for r in results.values()])
    assert sorted_boxes(rows.boxes) == sorted_boxes(np.asarray(truth))


@pytest.mark.parametrize("strip_bytes", [STRIP_BYTES, 0], ids=["strips", "per-tile"])
def test_a_read_that_keeps_failing_transiently_fails_its_tile_after_the_retries(
    scene: Scene, grid: TileGrid, strip_bytes: int
) -> None:
    window = grid.tile(0, 0)
    reader = InstrumentedReader(scene[0], fail={window: RetryableError("timed out")})
    items = works(reader, grid, 2)
    results = run(model(TruthDetector(scene[1])), items, read_retries=2, strip_bytes=strip_bytes)
    reader.close()

    # the read and two tries again; with strips, the strip's and then the tile's own
    assert reader.failed_reads == {window: 6 if strip_bytes else 3}
    assert all(r.n_tiles == len(i.tiles) for r, i in zip(results.values(), items, strict=True))
    [failure] = [f for r in results.values() for f in r.tile_failures]
    assert (failure.window, failure.code) == (window, "retryable")
    assert "timed out" in failure.message


@pytest.mark.parametrize("kind", ["count", "not-a-list", "nan-boxes", "label-out-of-range"])
def test_malformed_output_fails_every_tile_with_a_model_error(
    scene: Scene, grid: TileGrid, kind: str
) -> None:
    reader = RasterReader(str(scene[0]))
    items = works(reader, grid, region_tiles=4)  # 2 x 2 regions
    results = run(model(MalformedModel(kind), name="broken"), items, batch_size=3)
    reader.close()

    assert set(results) == {item.key for item in items}
    for item in items:
        result = results[item.key]
        assert result.all_failed and len(result.rows) == 0
        assert {f.window for f in result.tile_failures} == {t.window for t in item.tiles}
        assert {f.code for f in result.tile_failures} == {"model_error"}
        assert all("'broken'" in f.message for f in result.tile_failures)


def test_close_drains_every_submitted_region(scene: Scene, grid: TileGrid) -> None:
    reader = RasterReader(str(scene[0]))
    items = works(reader, grid, region_tiles=2)
    results = Results()
    # one reader: PipelineStats counters are plain attributes, summed without a lock
    slow = model(SleepModel(seconds_per_batch=0.005))
    pipeline = TilePipeline(slow, results, batch_size=3, readers=1)
    for item in items:
        pipeline.submit(item)
    pipeline.close()  # returns only once everything submitted is reported
    reader.close()

    assert set(results.by_key()) == {item.key for item in items}
    assert all(r.tile_failures == () for r in results.items)
    assert pipeline.stats.tiles_read == grid.n_tiles
    assert pipeline.stats.tiles_inferred == grid.n_tiles
    assert pipeline.stats.batches >= -(-grid.n_tiles // 3)


@pytest.mark.parametrize("strip_bytes", [STRIP_BYTES, 0], ids=["strips", "per-tile"])
@pytest.mark.parametrize(("batch_size", "readers"), [(2, 1), (4, 3)])
def test_read_ahead_is_bounded_with_a_slow_model(
    scene: Scene, grid: TileGrid, batch_size: int, readers: int, strip_bytes: int
) -> None:
    """Documented bound: 2 x batch waiting + per reader the tiles of its strip in hand (per-tile
    reads: 2) + one batch in the model + two batches in post-processing. Without
    back-pressure the fast readers would read all 48."""
    meter = Meter(grid)
    reader = InstrumentedReader(scene[0], meter=meter)
    items = works(reader, grid, region_tiles=2)  # one strip of 4 tiles per region
    slow = Recording(SleepModel(seconds_per_batch=0.01), meter=meter)
    results = run(
        model(slow), items, batch_size=batch_size, readers=readers, strip_bytes=strip_bytes
    )
    reader.close()

    in_hand = 4 if strip_bytes else 2
    bound = 2 * batch_size + readers * in_hand + batch_size + 2 * batch_size
    assert bound < grid.n_tiles
    assert meter.read == meter.taken == grid.n_tiles
    assert meter.max_ahead <= bound
    assert meter.max_ahead > batch_size  # readers did run ahead of the model
    assert all(r.tile_failures == () for r in results.values())


def test_classifier_gives_one_feature_per_tile_with_its_footprint_and_scores(
    scene: Scene, grid: TileGrid
) -> None:
    reader = RasterReader(str(scene[0]))
    items = works(reader, grid, region_tiles=3)
    classifier = ConstantClassifier(scores="0.2,0.7,0.1", classes="a,b,c")
    results = run(model(classifier), items)
    reader.close()

    rows = FeatureRows.concat([r.rows for r in results.values()])
    assert len(rows) == grid.n_tiles
    footprints = [
        (float(w.col_off), float(w.row_off), float(w.col_end), float(w.row_end))
        for w in (tile.window for item in items for tile in item.tiles)
    ]
    assert sorted_boxes(rows.boxes) == sorted(footprints)
    assert set(rows.labels) == {"b"}
    assert np.allclose(rows.scores, 0.7)
    assert rows.extra is not None
    assert all(e == {"scores": [0.2, 0.7, 0.1]} for e in rows.extra)


def test_classifier_footprint_is_clipped_to_an_image_smaller_than_a_tile(tmp_path: Path) -> None:
    tif = make_scene(tmp_path, width=50, height=40, n_boxes=1, max_side=10)[0]
    grid = TileGrid(50, 40, TILE, OVERLAP)
    reader = RasterReader(str(tif))
    items = works(reader, grid, region_tiles=1)
    results = run(model(ConstantClassifier(scores="0.9,0.1")), items)
    below = run(model(ConstantClassifier(scores="0.9,0.1")), works(reader, grid, 1, min_score=0.95))
    reader.close()

    rows = results[0].rows
    assert rows.boxes.tolist() == [[0.0, 0.0, 50.0, 40.0]]
    assert rows.labels == ["class0"]
    assert len(below[0].rows) == 0 and below[0].tile_failures == ()
